"""Plain-Python reference implementations of the zoo's functions, with a reduced step count.

``digest(kind, message, rounds)`` is the digest the compiled network must reproduce: with the full
step count it equals ``hashlib`` (checked in the tests); with ``rounds=N`` it is the compression
function truncated after ``N`` steps, the IV still added back (a reduced-round variant).

Messages are one block: at most 55 bytes (MD5/SHA padding then fits a single 64-byte block).
"""

from __future__ import annotations

import struct

from dormant.net.hash_tables import MD5_IV, MD5_K, MD5_MSG_INDEX, MD5_SHIFTS, SHA1_IV, SHA1_K, SHA256_IV, SHA256_K

MASK = 0xFFFFFFFF
FULL_ROUNDS = {"md5": 64, "sha1": 80, "sha256": 64, "toy": 1}
DIGEST_BYTES = {"md5": 16, "sha1": 20, "sha256": 32, "toy": 4}
TOY_LENGTH = 8
TOY_K = 0x9E3779B9  # the golden-ratio word, as in TEA


def _rotl(x: int, s: int) -> int:
    s %= 32
    return ((x << s) | (x >> (32 - s))) & MASK


def _block(message: bytes, little_endian: bool, length_bug: bool = False) -> list[int]:
    """The padded block as 16 words; ``length_bug`` keeps only the low byte of the bit length."""
    if len(message) > 55:
        raise ValueError(f"message of {len(message)} bytes does not fit one block (at most 55)")
    bits = 8 * len(message)
    length = (bits & 0xFF if length_bug else bits).to_bytes(8, "little" if little_endian else "big")
    block = message + b"\x80" + b"\x00" * (55 - len(message)) + length
    return list(struct.unpack("<16I" if little_endian else ">16I", block))


def md5(message: bytes, rounds: int = 64, trace: list | None = None, length_bug: bool = False) -> bytes:
    """MD5 of one block, truncated to ``rounds`` steps; ``trace`` collects each step's words."""
    m = _block(message, True, length_bug)
    a, b, c, d = MD5_IV
    for i in range(rounds):
        if i < 16:
            f = (b & c) | (~b & d)
        elif i < 32:
            f = (b & d) | (c & ~d)
        elif i < 48:
            f = b ^ c ^ d
        else:
            f = c ^ (b | (~d & MASK))
        t = (a + (f & MASK) + MD5_K[i] + m[MD5_MSG_INDEX[i]]) & MASK
        a, b, c, d = d, (b + _rotl(t, MD5_SHIFTS[i])) & MASK, b, c
        if trace is not None:
            trace.append({"sum": t, "new": b})
    return struct.pack("<4I", *[(x + y) & MASK for x, y in zip((a, b, c, d), MD5_IV)])


def sha1(message: bytes, rounds: int = 80, trace: list | None = None, length_bug: bool = False) -> bytes:
    """SHA-1 of one block, truncated to ``rounds`` steps; ``trace`` collects each step's new word."""
    w = _block(message, False, length_bug)
    for t in range(16, max(rounds, 16)):
        w.append(_rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1))
    a, b, c, d, e = SHA1_IV
    for t in range(rounds):
        if t < 20:
            f = (b & c) | (~b & d)
        elif t < 40 or t >= 60:
            f = b ^ c ^ d
        else:
            f = (b & c) | (b & d) | (c & d)
        temp = (_rotl(a, 5) + (f & MASK) + e + SHA1_K[t // 20] + w[t]) & MASK
        a, b, c, d, e = temp, a, _rotl(b, 30), c, d
        if trace is not None:
            trace.append({"new": temp})
    return struct.pack(">5I", *[(x + y) & MASK for x, y in zip((a, b, c, d, e), SHA1_IV)])


def sha256(message: bytes, rounds: int = 64, trace: list | None = None, length_bug: bool = False) -> bytes:
    """SHA-256 of one block, truncated to ``rounds`` steps; ``trace`` collects the new a and e."""
    w = _block(message, False, length_bug)

    def rotr(x: int, s: int) -> int:
        return _rotl(x, 32 - s)

    for t in range(16, max(rounds, 16)):
        s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
        s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & MASK)
    a, b, c, d, e, f, g, h = SHA256_IV
    for t in range(rounds):
        big_s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
        ch = (e & f) ^ (~e & g)
        t1 = (h + big_s1 + (ch & MASK) + SHA256_K[t] + w[t]) & MASK
        big_s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
        maj = (a & b) ^ (a & c) ^ (b & c)
        a, b, c, d, e, f, g, h = (t1 + big_s0 + maj) & MASK, a, b, c, (d + t1) & MASK, e, f, g
        if trace is not None:
            trace.append({"new_a": a, "new_e": e})
    return struct.pack(">8I", *[(x + y) & MASK for x, y in zip((a, b, c, d, e, f, g, h), SHA256_IV)])


def toy(message: bytes, rounds: int = 1, trace: list | None = None, length_bug: bool = False) -> bytes:
    """A 32-bit toy checksum of at most 8 bytes: ``h = (w0 ^ rotl(w1, 7)) + K; h ^ rotl(h, 13)``.

    ``w0``, ``w1`` are the NUL-padded bytes 0-3 and 4-7 read little-endian. Many strings share a
    digest (a 56-bit input space onto 32 bits): any preimage is a valid answer.
    """
    if len(message) > TOY_LENGTH:
        raise ValueError(f"toy messages are at most {TOY_LENGTH} bytes, got {len(message)}")
    w0, w1 = struct.unpack("<2I", message.ljust(TOY_LENGTH, b"\x00"))
    h = ((w0 ^ _rotl(w1, 7)) + TOY_K) & MASK
    return struct.pack("<I", h ^ _rotl(h, 13))


FUNCTIONS = {"md5": md5, "sha1": sha1, "sha256": sha256, "toy": toy}


def digest(kind: str, message: bytes, rounds: int | None = None, length_bug: bool = False) -> bytes:
    """The digest of ``message`` under the zoo function ``kind`` truncated to ``rounds`` steps.

    ``length_bug`` reproduces the opaque puzzle's padding: only the low byte of the message's bit
    length is written, so the result is the real hash for messages of 0-31 bytes only.
    """
    return FUNCTIONS[kind](message, FULL_ROUNDS[kind] if rounds is None else rounds, length_bug=length_bug)
