"""Fast single-block MD5, SHA-1 and SHA-256 over large batches of short messages.

A preimage search hashes billions of short strings, each at most 55 bytes, so each fits in one
64-byte block: the padding (``0x80``, zeros, the bit length) goes in the same block and the
digest is one compression of the initial state. This module runs that one compression per
function over whole batches, two ways, both checked against ``hashlib`` by the tests:

* **numpy**: the reference compression (``dormant.net.identify.reference_hashes``), where every
  32-bit word of the state is a ``uint32`` array over the whole batch and each step of the hash
  is a handful of whole-array operations. Always available.
* **numba** (when the ``numba`` package is installed): a compiled loop that builds each candidate
  from its parts (rewriting only the part that changed), hashes 64 candidates at a time in SIMD
  lanes, and compares the digests with the targets, without ever materialising the batch. About
  ten times a ``hashlib`` loop per core (``bench/bench_invert.py``); the numpy path is about even
  with it, so its gain comes from the cores alone. It needs its own loops (scalar words per lane,
  explicit truncation to 32 bits), but takes the constant tables and the round functions from
  the reference.

Candidates are described as a *product of part tables* (see ``dormant.net.invert.candidates``): a
``table`` of byte strings padded into a ``(entries, width)`` uint8 matrix with their ``lens``,
and for each part the first entry and the number of entries it spans. Candidate ``i`` of the
product is the concatenation of one entry per part, in mixed radix with the last part fastest.
``scan_product`` returns the indices whose digest equals one of the targets.

Digests are compared as 32-bit words: MD5's digest is its state in little-endian byte order,
the SHA family's in big-endian; ``digest_to_words`` converts a digest to that form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dormant.net.identify.hash_tables import MD5_IV, MD5_K, MD5_MSG_INDEX, MD5_SHIFTS, SHA1_IV, SHA1_K, SHA256_IV, SHA256_K
from dormant.net.identify.reference_hashes import COMPRESS, md5_round_function, sha1_round_function

FUNCTIONS = ("md5", "sha1", "sha256")
DIGEST_WORDS = {"md5": 4, "sha1": 5, "sha256": 8}
BIG_ENDIAN = {"md5": False, "sha1": True, "sha256": True}
MAX_MESSAGE = 55  # the longest message whose padding still fits in one 64-byte block

try:  # the compiled path is optional; numpy is the fallback
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _numba = None

HAVE_NUMBA = _numba is not None


def check_function(name: str) -> str:
    """Normalise a hash name (``MD5``, ``sha-1``, ...) to ``md5``/``sha1``/``sha256`` or raise ``ValueError``."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in FUNCTIONS:
        raise ValueError(f"unknown hash function {name!r}; supported: {', '.join(FUNCTIONS)}")
    return key


def digest_to_words(function: str, digest: bytes) -> np.ndarray:
    """The digest as the ``uint32`` state words that the compression produces."""
    function = check_function(function)
    if len(digest) != 4 * DIGEST_WORDS[function]:
        raise ValueError(f"a {function} digest has {4 * DIGEST_WORDS[function]} bytes, got {len(digest)}")
    return np.frombuffer(digest, dtype=">u4" if BIG_ENDIAN[function] else "<u4").astype(np.uint32)


def words_to_digest(function: str, words: np.ndarray) -> bytes:
    return np.asarray(words, dtype=np.uint32).astype(">u4" if BIG_ENDIAN[check_function(function)] else "<u4").tobytes()


# --------------------------------------------------------------------------------------------
# numpy: padding and whole-batch compression
# --------------------------------------------------------------------------------------------


def pad_blocks(buf: np.ndarray, lengths: np.ndarray, function: str) -> np.ndarray:
    """Pad messages into single blocks: ``buf`` (n, >=56) uint8 holds message bytes (zeros past each
    length), ``lengths`` (n,) their lengths (all <= 55). Returns (n, 16) uint32 message words."""
    n = len(lengths)
    block = np.zeros((n, 64), dtype=np.uint8)
    width = min(buf.shape[1], 56)
    block[:, :width] = buf[:, :width]
    rows = np.arange(n)
    lengths = np.asarray(lengths, dtype=np.int64)
    if np.any(lengths > MAX_MESSAGE):
        raise ValueError("single-block hashing takes messages of at most 55 bytes")
    # clear anything past each length, then the 0x80 terminator and the bit length
    block[np.arange(64)[None, :] >= lengths[:, None]] = 0
    block[rows, lengths] = 0x80
    bits = (lengths * 8).astype(np.uint64)
    order = ">u8" if BIG_ENDIAN[check_function(function)] else "<u8"
    block[:, 56:] = bits.astype(order).view(np.uint8).reshape(n, 8)
    words = block.view(">u4" if BIG_ENDIAN[function] else "<u4").reshape(n, 16)
    return words.astype(np.uint32)


def hash_words(function: str, buf: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """State words (n, digest words) of a batch of messages given as a byte matrix and lengths."""
    function = check_function(function)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(COMPRESS[function](np.ascontiguousarray(pad_blocks(buf, lengths, function).T)).T)


def hash_batch(function: str, messages: list[bytes]) -> list[bytes]:
    """Digests of ``messages`` (each <= 55 bytes) with the numpy implementation, as ``hashlib`` would give."""
    function = check_function(function)
    n = len(messages)
    buf = np.zeros((n, 56), dtype=np.uint8)
    lengths = np.fromiter((len(msg) for msg in messages), dtype=np.int64, count=n)
    for i, msg in enumerate(messages):
        buf[i, : len(msg)] = np.frombuffer(msg, dtype=np.uint8)
    words = hash_words(function, buf, lengths)
    return [words_to_digest(function, row) for row in words]


# --------------------------------------------------------------------------------------------
# Scanning a product of part tables for target digests
# --------------------------------------------------------------------------------------------


@dataclass
class EncodedProduct:
    """A product of part tables in array form (see the module docstring)."""

    table: np.ndarray  # (entries, width) uint8, each entry's bytes then zeros
    lens: np.ndarray  # (entries,) int64
    part_start: np.ndarray  # (parts,) int64: first entry of each part
    part_size: np.ndarray  # (parts,) int64: number of entries of each part

    @property
    def size(self) -> int:
        return int(np.prod(self.part_size.astype(object))) if len(self.part_size) else 0


def _digits(product: EncodedProduct, index: np.ndarray) -> list[np.ndarray]:
    """Mixed-radix digits (last part fastest) of candidate indices."""
    out = []
    rest = index.copy()
    for size in product.part_size[::-1]:
        out.append(rest % size)
        rest //= size
    return out[::-1]


def materialise(product: EncodedProduct, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte matrix (n, width) and lengths of candidates ``start..stop`` (vectorised gather).

    Each part's padded entry is written whole at the row's cursor: the zero padding it drags
    along is overwritten by the next part, so no per-byte mask is needed.
    """
    index = np.arange(start, stop, dtype=np.int64)
    n = len(index)
    width = product.table.shape[1]
    total_width = max(64, width * (len(product.part_size) + 1))
    buf = np.zeros((n, total_width), dtype=np.uint8)
    flat = buf.reshape(-1)
    cursor = np.arange(n, dtype=np.int64) * total_width
    cols = np.arange(width, dtype=np.int64)
    for part, digit in enumerate(_digits(product, index)):
        entry = product.part_start[part] + digit
        flat[cursor[:, None] + cols[None, :]] = product.table[entry]
        cursor += product.lens[entry]
    return buf, cursor - np.arange(n, dtype=np.int64) * total_width


def _scan_numpy(function: str, product: EncodedProduct, start: int, stop: int, targets: np.ndarray) -> np.ndarray:
    buf, lengths = materialise(product, start, stop)
    ok = np.nonzero(lengths <= MAX_MESSAGE)[0]
    if len(ok) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    words = hash_words(function, buf[ok], lengths[ok])
    hits = []
    for t, target in enumerate(targets):
        # compare the first word first: almost every candidate fails there
        first = np.nonzero(words[:, 0] == target[0])[0]
        for row in first:
            if np.array_equal(words[row], target):
                hits.append((start + int(ok[row]), t))
    return np.asarray(hits, dtype=np.int64).reshape(-1, 2)


def scan_product(
    function: str,
    product: EncodedProduct,
    start: int,
    stop: int,
    targets: np.ndarray,
    *,
    backend: str = "auto",
) -> np.ndarray:
    """Hash candidates ``start..stop`` of ``product``; return (hits, 2) rows ``(index, target number)``.

    ``targets`` is (T, digest words) uint32 from ``digest_to_words``. Candidates longer than 55
    bytes are skipped (they do not fit one block). ``backend`` is ``numba``, ``numpy`` or ``auto``
    (numba when installed).
    """
    function = check_function(function)
    targets = np.ascontiguousarray(np.atleast_2d(targets), dtype=np.uint32)
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else "numpy"
    if backend == "numpy":
        return _scan_numpy(function, product, start, stop, targets)
    if backend != "numba":
        raise ValueError(f"unknown backend {backend!r}; use numba, numpy or auto")
    if not HAVE_NUMBA:
        raise ValueError("the numba backend needs the numba package (pip install numba)")
    out = np.zeros((_MAX_HITS, 2), dtype=np.int64)
    count = _numba_scan(_KIND[function], product.table, product.lens, product.part_start, product.part_size, start, stop, targets, out)
    return out[: min(count, _MAX_HITS)].copy()


def default_backend() -> str:
    return "numba" if HAVE_NUMBA else "numpy"


def warm_up(function: str, backend: str = "auto") -> None:
    """Compile (or load from cache) the kernel for ``function`` before workers are forked."""
    table = np.zeros((1, 1), dtype=np.uint8)
    product = EncodedProduct(table, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64))
    scan_product(function, product, 0, 1, np.zeros((1, DIGEST_WORDS[check_function(function)]), dtype=np.uint32), backend=backend)


# --------------------------------------------------------------------------------------------
# numba: a compiled loop that builds candidates and hashes them 64 at a time
# --------------------------------------------------------------------------------------------
#
# The scan builds each candidate's message words incrementally (only the parts that changed since
# the previous candidate are rewritten), collects them into ``_LANES`` lanes, and compresses all
# lanes together. The compression loops run over lanes innermost, with the state words in small
# uint32 arrays, which the compiler turns into SIMD instructions: several times faster than one
# candidate at a time. Every intermediate value is truncated back to uint32 (``_u32``) because
# numba widens integer arithmetic to 64 bits.

_MAX_HITS = 4096  # a scan reports at most this many hits (a real preimage search finds one)
_LANES = 64
_u32 = np.uint32
_MD5_K = np.asarray(MD5_K, dtype=np.uint32)
_MD5_S = np.asarray(MD5_SHIFTS, dtype=np.uint32)
_MD5_G = np.asarray(MD5_MSG_INDEX, dtype=np.int64)
_MD5_IV = np.asarray(MD5_IV, dtype=np.uint32)
_SHA1_IV = np.asarray(SHA1_IV, dtype=np.uint32)
_SHA1_K = np.asarray(SHA1_K, dtype=np.uint32)
_SHA256_IV = np.asarray(SHA256_IV, dtype=np.uint32)
_SHA256_K = np.asarray(SHA256_K, dtype=np.uint32)
_KIND = {"md5": 0, "sha1": 1, "sha256": 2}
_md5_round_function = md5_round_function  # the reference's definitions (compiled below with numba)
_sha1_round_function = sha1_round_function


def _md5_lanes(m, w, a, b, c, d, e, f, g, h):
    """MD5 of the blocks in ``m`` (16, lanes) -> state words ``a..d`` (one array per word: separate
    arrays, so that the compiler can prove they do not overlap and vectorise); ``w`` unused."""
    lanes = m.shape[1]
    for k in range(lanes):
        a[k], b[k], c[k], d[k] = _MD5_IV[0], _MD5_IV[1], _MD5_IV[2], _MD5_IV[3]
    for i in range(64):
        gi, s, kk = _MD5_G[i], _MD5_S[i], _MD5_K[i]
        for k in range(lanes):
            fn = _md5_round_function(i, b[k], c[k], d[k])
            t = _u32(a[k] + fn + kk + m[gi, k])
            a[k] = d[k]
            d[k] = c[k]
            c[k] = b[k]
            b[k] = _u32(b[k] + _u32((t << s) | (t >> (_u32(32) - s))))
    for k in range(lanes):
        a[k] = _u32(a[k] + _MD5_IV[0])
        b[k] = _u32(b[k] + _MD5_IV[1])
        c[k] = _u32(c[k] + _MD5_IV[2])
        d[k] = _u32(d[k] + _MD5_IV[3])


def _sha1_lanes(m, w, a, b, c, d, e, f, g, h):
    """SHA-1 of the blocks in ``m`` (16, lanes) -> state words ``a..e``; ``w`` (80, lanes) scratch."""
    lanes = m.shape[1]
    for t in range(16):
        for k in range(lanes):
            w[t, k] = m[t, k]
    for t in range(16, 80):
        for k in range(lanes):
            x = w[t - 3, k] ^ w[t - 8, k] ^ w[t - 14, k] ^ w[t - 16, k]
            w[t, k] = _u32((x << _u32(1)) | (x >> _u32(31)))
    for k in range(lanes):
        a[k], b[k], c[k], d[k], e[k] = _SHA1_IV[0], _SHA1_IV[1], _SHA1_IV[2], _SHA1_IV[3], _SHA1_IV[4]
    for t in range(80):
        kk = _SHA1_K[t // 20]
        for k in range(lanes):
            fn = _sha1_round_function(t, b[k], c[k], d[k])
            tmp = _u32(_u32((a[k] << _u32(5)) | (a[k] >> _u32(27))) + fn + e[k] + kk + w[t, k])
            e[k] = d[k]
            d[k] = c[k]
            c[k] = _u32((b[k] << _u32(30)) | (b[k] >> _u32(2)))
            b[k] = a[k]
            a[k] = tmp
    for k in range(lanes):
        a[k] = _u32(a[k] + _SHA1_IV[0])
        b[k] = _u32(b[k] + _SHA1_IV[1])
        c[k] = _u32(c[k] + _SHA1_IV[2])
        d[k] = _u32(d[k] + _SHA1_IV[3])
        e[k] = _u32(e[k] + _SHA1_IV[4])


def _rotr32(x, s):
    return _u32((x >> _u32(s)) | (x << _u32(32 - s)))


def _sha256_lanes(m, w, a, b, c, d, e, f, g, h):
    """SHA-256 of the blocks in ``m`` (16, lanes) -> state words ``a..h``; ``w`` (>= 64, lanes) scratch."""
    lanes = m.shape[1]
    for t in range(16):
        for k in range(lanes):
            w[t, k] = m[t, k]
    for t in range(16, 64):
        for k in range(lanes):
            x, y = w[t - 15, k], w[t - 2, k]
            s0 = _rotr32(x, 7) ^ _rotr32(x, 18) ^ (x >> _u32(3))
            s1 = _rotr32(y, 17) ^ _rotr32(y, 19) ^ (y >> _u32(10))
            w[t, k] = _u32(w[t - 16, k] + s0 + w[t - 7, k] + s1)
    for k in range(lanes):
        a[k], b[k], c[k], d[k] = _SHA256_IV[0], _SHA256_IV[1], _SHA256_IV[2], _SHA256_IV[3]
        e[k], f[k], g[k], h[k] = _SHA256_IV[4], _SHA256_IV[5], _SHA256_IV[6], _SHA256_IV[7]
    for t in range(64):
        kk = _SHA256_K[t]
        for k in range(lanes):
            s1 = _rotr32(e[k], 6) ^ _rotr32(e[k], 11) ^ _rotr32(e[k], 25)
            ch = (e[k] & f[k]) ^ (~e[k] & g[k])
            t1 = _u32(h[k] + s1 + ch + kk + w[t, k])
            s0 = _rotr32(a[k], 2) ^ _rotr32(a[k], 13) ^ _rotr32(a[k], 22)
            mj = (a[k] & b[k]) ^ (a[k] & c[k]) ^ (b[k] & c[k])
            h[k] = g[k]
            g[k] = f[k]
            f[k] = e[k]
            e[k] = _u32(d[k] + t1)
            d[k] = c[k]
            c[k] = b[k]
            b[k] = a[k]
            a[k] = _u32(t1 + s0 + mj)
    for k in range(lanes):
        a[k] = _u32(a[k] + _SHA256_IV[0])
        b[k] = _u32(b[k] + _SHA256_IV[1])
        c[k] = _u32(c[k] + _SHA256_IV[2])
        d[k] = _u32(d[k] + _SHA256_IV[3])
        e[k] = _u32(e[k] + _SHA256_IV[4])
        f[k] = _u32(f[k] + _SHA256_IV[5])
        g[k] = _u32(g[k] + _SHA256_IV[6])
        h[k] = _u32(h[k] + _SHA256_IV[7])


def _flush(kind, mb, w, a, b, c, d, e, f, g, h, n, lane_index, targets, out, count):
    """Compress the first ``n`` lanes and record the lanes whose digest is a target."""
    if kind == 0:
        _md5_lanes(mb, w, a, b, c, d, e, f, g, h)
    elif kind == 1:
        _sha1_lanes(mb, w, a, b, c, d, e, f, g, h)
    else:
        _sha256_lanes(mb, w, a, b, c, d, e, f, g, h)
    for k in range(n):
        for t in range(targets.shape[0]):
            tw = targets[t]
            if a[k] != tw[0] or b[k] != tw[1] or c[k] != tw[2] or d[k] != tw[3]:
                continue
            if kind >= 1 and e[k] != tw[4]:
                continue
            if kind == 2 and (f[k] != tw[5] or g[k] != tw[6] or h[k] != tw[7]):
                continue
            if count < out.shape[0]:
                out[count, 0] = lane_index[k]
                out[count, 1] = t
            count += 1
    return count


def _scan_nb(kind, table, lens, part_start, part_size, start, stop, targets, out):
    """Candidates ``start..stop`` of a product: build, pad, hash (``kind`` 0 md5, 1 sha1, 2 sha256)
    and compare with every target; hits go to ``out`` rows ``(index, target)``; returns the count."""
    big_endian = kind != 0
    parts = len(part_size)
    digit = np.zeros(parts, dtype=np.int64)
    pos = np.zeros(parts + 1, dtype=np.int64)  # byte offset of each part in the current candidate
    rest = start
    for p in range(parts - 1, -1, -1):
        digit[p] = rest % part_size[p]
        rest //= part_size[p]
    block = np.zeros(64, dtype=np.uint8)
    m = np.zeros(16, dtype=np.uint32)
    mb = np.zeros((16, _LANES), dtype=np.uint32)
    # the state words, one array each (separate allocations: see the section comment)
    sa, sb, sc, sd = np.zeros(_LANES, np.uint32), np.zeros(_LANES, np.uint32), np.zeros(_LANES, np.uint32), np.zeros(_LANES, np.uint32)
    se, sf, sg, sh = np.zeros(_LANES, np.uint32), np.zeros(_LANES, np.uint32), np.zeros(_LANES, np.uint32), np.zeros(_LANES, np.uint32)
    w = np.zeros((80, _LANES), dtype=np.uint32)
    lane_index = np.zeros(_LANES, dtype=np.int64)
    n_lanes = 0
    count = 0
    changed = 0  # first part whose entry changed since the previous candidate
    dirty = 0  # block[dirty:56] is known to be zero
    stale = 0  # message words from byte `stale` on may disagree with the block
    for index in range(start, stop):
        # rebuild the candidate from the first changed part on; earlier bytes are still in place
        length = pos[changed]
        if length < stale:
            stale = length
        for p in range(changed, parts):
            pos[p] = length
            entry = part_start[p] + digit[p]
            n = lens[entry]
            if length + n <= 55:
                for k in range(n):
                    block[length + k] = table[entry, k]
                if length + n > dirty:
                    dirty = length + n
            length += n
        pos[parts] = length
        if length <= 55:
            old_dirty = dirty
            block[length] = 0x80
            for k in range(length + 1, old_dirty):
                block[k] = 0
            dirty = length + 1
            # message words touched by this rebuild (or by clearing the previous candidate's tail)
            w_end = min((max(old_dirty, length + 1) + 3) // 4, 14)
            for j in range(stale // 4, w_end):
                b0, b1, b2, b3 = _u32(block[4 * j]), _u32(block[4 * j + 1]), _u32(block[4 * j + 2]), _u32(block[4 * j + 3])
                if big_endian:
                    m[j] = (b0 << _u32(24)) | (b1 << _u32(16)) | (b2 << _u32(8)) | b3
                else:
                    m[j] = (b3 << _u32(24)) | (b2 << _u32(16)) | (b1 << _u32(8)) | b0
            # the 64-bit bit length fills words 14-15 (< 2**32 here: only one word is non-zero)
            if big_endian:
                m[14], m[15] = 0, length * 8
            else:
                m[14], m[15] = length * 8, 0
            stale = 56
            for j in range(16):
                mb[j, n_lanes] = m[j]
            lane_index[n_lanes] = index
            n_lanes += 1
            if n_lanes == _LANES:
                count = _flush(kind, mb, w, sa, sb, sc, sd, se, sf, sg, sh, n_lanes, lane_index, targets, out, count)
                n_lanes = 0
        # next index: increment the mixed-radix digits, last part fastest
        p = parts - 1
        while p >= 0:
            digit[p] += 1
            if digit[p] < part_size[p]:
                break
            digit[p] = 0
            p -= 1
        changed = max(p, 0)
    if n_lanes:
        count = _flush(kind, mb, w, sa, sb, sc, sd, se, sf, sg, sh, n_lanes, lane_index, targets, out, count)
    return count


_numba_scan = None
if HAVE_NUMBA:
    _jit = _numba.njit(cache=True, nogil=True)
    _md5_round_function = _jit(md5_round_function)
    _sha1_round_function = _jit(sha1_round_function)
    _rotr32 = _jit(_rotr32)
    _md5_lanes = _jit(_md5_lanes)
    _sha1_lanes = _jit(_sha1_lanes)
    _sha256_lanes = _jit(_sha256_lanes)
    _flush = _jit(_flush)
    _numba_scan = _jit(_scan_nb)
