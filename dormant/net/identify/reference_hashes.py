"""Reference MD5, SHA-1 and SHA-256 on one block, batched with numpy, with per-step state traces.

A compiled hash network computes the same intermediate words as the textbook algorithm: the
round function's output, the sum before rotation, the new state word of every step. To recognise
the network we compute those words for many messages at once and look for neurons that equal one
of their bits on every message (see ``signature``).

Each ``trace_*`` function takes a batch of messages (each at most 55 bytes, so that it fits one
padded block) and returns a ``Trace``: the digests and a dict ``label -> (steps, batch)`` array of
uint32 words. The digests are checked against ``hashlib`` in the tests.

Example::

    t = trace_md5([b"abc", b"bitter lesson"])
    t.digests[1].hex()          # 'c7ef65233c40aa32c2b9ace37595fa7c'
    t.words["new"].shape        # (64, 2): the state word written by each of the 64 steps
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dormant.net.identify.hash_tables import MD5_IV, MD5_K, MD5_MSG_INDEX, MD5_SHIFTS, SHA1_IV, SHA1_K, SHA256_IV, SHA256_K

MAX_ONE_BLOCK = 55  # longest message whose padding fits one 64-byte block


@dataclass
class Trace:
    """Intermediate words of one hash function over a batch of messages."""

    function: str  # "md5", "sha1", "sha256"
    digests: list[bytes]
    words: dict[str, np.ndarray] = field(default_factory=dict)  # label -> (steps, batch) uint32
    digest_words: np.ndarray | None = None  # (n_words, batch) uint32, in digest order
    little_endian: bool = False  # byte order of words in the digest and message block


def pad_block(messages: list[bytes], *, little_endian: bool, length_bug: bool = False) -> np.ndarray:
    """Pad each message to one 64-byte block (MD5/SHA style); return (16, batch) uint32 words.

    ``length_bug`` writes only the low byte of the message's bit length (the opaque puzzle's
    padding): the result is the real hash for messages of 0-31 bytes only.
    """
    out = np.zeros((16, len(messages)), dtype=np.uint32)
    for j, m in enumerate(messages):
        if len(m) > MAX_ONE_BLOCK:
            raise ValueError(f"message of {len(m)} bytes does not fit one block (at most {MAX_ONE_BLOCK})")
        bits = 8 * len(m)
        bitlen = (bits & 0xFF if length_bug else bits).to_bytes(8, "little" if little_endian else "big")
        block = m + b"\x80" + b"\x00" * (55 - len(m)) + bitlen
        out[:, j] = np.frombuffer(block, dtype="<u4" if little_endian else ">u4").astype(np.uint32)
    return out


def _rotl(x: np.ndarray, s: int) -> np.ndarray:
    s %= 32
    if s == 0:
        return x.copy()
    return ((x << np.uint32(s)) | (x >> np.uint32(32 - s))).astype(np.uint32)


def _digest_bytes(words: np.ndarray, little_endian: bool) -> list[bytes]:
    dt = "<u4" if little_endian else ">u4"
    return [words[:, j].astype(dt).tobytes() for j in range(words.shape[1])]


# The round functions: plain bitwise expressions, so that the same definition serves numpy
# arrays here and uint32 scalars in the compiled kernel of ``dormant.net.invert.fast_hashes``.


def md5_round_function(i, b, c, d):
    """MD5's boolean function of step ``i`` (F, G, H, I for the four rounds of 16 steps)."""
    if i < 16:
        return (b & c) | (~b & d)
    if i < 32:
        return (d & b) | (~d & c)
    if i < 48:
        return b ^ c ^ d
    return c ^ (b | ~d)


def sha1_round_function(t, b, c, d):
    """SHA-1's boolean function of step ``t`` (choose, parity, majority, parity)."""
    if t < 20:
        return (b & c) | (~b & d)
    if t < 40 or t >= 60:
        return b ^ c ^ d
    return (b & c) | (b & d) | (c & d)


# Compression of one padded block per message: ``M`` is (16, batch) uint32 message words, the
# result (state words, batch) uint32. Arithmetic wraps modulo 2**32 in uint32. With ``words``
# (a dict), each step's intermediate words are recorded in it as ``label -> (steps, batch)``.


def md5_compress(M: np.ndarray, rounds: int = 64, words: dict | None = None) -> np.ndarray:
    """MD5; words: ``F`` (round function), ``T`` (a+F+K+M, before the rotation), ``new`` (the
    state word written by the step), ``M`` (message word the step reads). With ``rounds < 64``
    the compression stops after that many steps (IV still added back)."""
    n = M.shape[1]
    a, b, c, d = (np.full(n, v, dtype=np.uint32) for v in MD5_IV)
    F_, T_, new_, Mw = [], [], [], []
    for i in range(rounds):
        f = md5_round_function(i, b, c, d)
        m = M[MD5_MSG_INDEX[i]]
        t = a + f + np.uint32(MD5_K[i]) + m
        nb = b + _rotl(t, MD5_SHIFTS[i])
        a, b, c, d = d, nb, b, c
        if words is not None:
            F_.append(f), T_.append(t), new_.append(nb), Mw.append(m)
    if words is not None:
        words.update(F=np.stack(F_), T=np.stack(T_), new=np.stack(new_), M=np.stack(Mw))
    return np.stack([x + np.uint32(iv) for x, iv in zip((a, b, c, d), MD5_IV)])


def sha1_compress(M: np.ndarray, rounds: int = 80, words: dict | None = None) -> np.ndarray:
    """SHA-1; words: ``W`` (schedule), ``f`` (round function), ``new`` (the new ``a`` =
    rotl(a,5)+f+e+K+W of each of the 80 steps, or of the first ``rounds``)."""
    W = [M[t] for t in range(16)]
    for t in range(16, max(rounds, 16)):
        W.append(_rotl(W[t - 3] ^ W[t - 8] ^ W[t - 14] ^ W[t - 16], 1))
    W = W[: max(rounds, 16)]
    n = M.shape[1]
    a, b, c, d, e = (np.full(n, v, dtype=np.uint32) for v in SHA1_IV)
    F_, new_ = [], []
    for t in range(rounds):
        f = sha1_round_function(t, b, c, d)
        na = _rotl(a, 5) + f + e + np.uint32(SHA1_K[t // 20]) + W[t]
        a, b, c, d, e = na, a, _rotl(b, 30), c, d
        if words is not None:
            F_.append(f), new_.append(na)
    if words is not None:
        words.update(W=np.stack(W), f=np.stack(F_), new=np.stack(new_))
    return np.stack([x + np.uint32(iv) for x, iv in zip((a, b, c, d, e), SHA1_IV)])


def sha256_compress(M: np.ndarray, rounds: int = 64, words: dict | None = None) -> np.ndarray:
    """SHA-256; words: ``W`` (schedule), ``T1``, ``T2``, ``new_a``, ``new_e`` of each of the 64
    steps (or of the first ``rounds``)."""
    W = [M[t] for t in range(16)]
    for t in range(16, max(rounds, 16)):
        s0 = _rotl(W[t - 15], 25) ^ _rotl(W[t - 15], 14) ^ (W[t - 15] >> np.uint32(3))
        s1 = _rotl(W[t - 2], 15) ^ _rotl(W[t - 2], 13) ^ (W[t - 2] >> np.uint32(10))
        W.append(W[t - 16] + s0 + W[t - 7] + s1)
    n = M.shape[1]
    a, b, c, d, e, f, g, h = (np.full(n, v, dtype=np.uint32) for v in SHA256_IV)
    T1_, T2_, A_, E_ = [], [], [], []
    for t in range(rounds):
        S1 = _rotl(e, 26) ^ _rotl(e, 21) ^ _rotl(e, 7)
        ch = (e & f) ^ (~e & g)
        t1 = h + S1 + ch + np.uint32(SHA256_K[t]) + W[t]
        S0 = _rotl(a, 30) ^ _rotl(a, 19) ^ _rotl(a, 10)
        maj = (a & b) ^ (a & c) ^ (b & c)
        t2 = S0 + maj
        h, g, f, e, d, c, b, a = g, f, e, d + t1, c, b, a, t1 + t2
        if words is not None:
            T1_.append(t1), T2_.append(t2), A_.append(a), E_.append(e)
    if words is not None:
        words.update(W=np.stack(W), T1=np.stack(T1_), T2=np.stack(T2_), new_a=np.stack(A_), new_e=np.stack(E_))
    return np.stack([x + np.uint32(iv) for x, iv in zip((a, b, c, d, e, f, g, h), SHA256_IV)])


COMPRESS = {"md5": md5_compress, "sha1": sha1_compress, "sha256": sha256_compress}
LITTLE_ENDIAN = {"md5": True, "sha1": False, "sha256": False}  # byte order of message and digest words


def _trace(function: str, messages: list[bytes], rounds: int, length_bug: bool) -> Trace:
    little = LITTLE_ENDIAN[function]
    words: dict[str, np.ndarray] = {}
    dw = COMPRESS[function](pad_block(messages, little_endian=little, length_bug=length_bug), rounds, words)
    return Trace(function, _digest_bytes(dw, little), words, dw, little)


def trace_md5(messages: list[bytes], rounds: int = 64, length_bug: bool = False) -> Trace:
    """MD5 of one-block messages, with the words of ``md5_compress``."""
    return _trace("md5", messages, rounds, length_bug)


def trace_sha1(messages: list[bytes], rounds: int = 80, length_bug: bool = False) -> Trace:
    """SHA-1 of one-block messages, with the words of ``sha1_compress``."""
    return _trace("sha1", messages, rounds, length_bug)


def trace_sha256(messages: list[bytes], rounds: int = 64, length_bug: bool = False) -> Trace:
    """SHA-256 of one-block messages, with the words of ``sha256_compress``."""
    return _trace("sha256", messages, rounds, length_bug)


TRACERS = {"md5": trace_md5, "sha1": trace_sha1, "sha256": trace_sha256}
FULL_STEPS = {"md5": 64, "sha1": 80, "sha256": 64}


def digest_bits(trace: Trace) -> np.ndarray:
    """The digests as bits, shape (8 * n_bytes, batch): row ``8*j + k`` is bit ``k`` (LSB = 0) of byte ``j``."""
    raw = np.frombuffer(b"".join(trace.digests), dtype=np.uint8).reshape(len(trace.digests), -1)
    return np.unpackbits(raw, axis=1, bitorder="little").T.copy()
