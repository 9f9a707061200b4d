"""Constant tables of well-known hash and checksum functions, computed from their definitions.

Used to build hash circuits (zoo), to scan biases for constants (``constant_scan``) and by the
reference implementations. Every word is an unsigned 32-bit integer.
"""

from __future__ import annotations

import math


def _iroot(n: int, k: int) -> int:
    """Floor of the k-th root of a non-negative integer, exactly."""
    x = int(round(n ** (1.0 / k))) if n < 1 << 1000 else 1 << (n.bit_length() // k + 1)
    while x**k > n:
        x -= 1
    while (x + 1) ** k <= n:
        x += 1
    return x


def _primes(n: int) -> list[int]:
    out, c = [], 2
    while len(out) < n:
        if all(c % p for p in out if p * p <= c):
            out.append(c)
        c += 1
    return out


def _frac_root_words(count: int, k: int) -> tuple[int, ...]:
    # first 32 bits of the fractional part of the k-th root of the first `count` primes
    return tuple(_iroot(p << (32 * k), k) & 0xFFFFFFFF for p in _primes(count))


MD5_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
MD5_K = tuple(int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64))
MD5_SHIFTS = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4
MD5_MSG_INDEX = tuple([i for i in range(16)] + [(5 * i + 1) % 16 for i in range(16)] + [(3 * i + 5) % 16 for i in range(16)] + [(7 * i) % 16 for i in range(16)])

SHA1_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
SHA1_K = (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6)

SHA256_IV = _frac_root_words(8, 2)
SHA256_K = _frac_root_words(64, 3)


def _crc32_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else (c >> 1)
        table.append(c)
    return tuple(table)


CRC32_TABLE = _crc32_table()

# name -> words, for scanners; MD5 shift amounts are small integers, not 32-bit words.
TABLES: dict[str, tuple[int, ...]] = {
    "MD5 IV": MD5_IV,
    "MD5 K": MD5_K,
    "SHA-1 IV": SHA1_IV,
    "SHA-1 K": SHA1_K,
    "SHA-256 IV": SHA256_IV,
    "SHA-256 K": SHA256_K,
    "CRC-32 table": CRC32_TABLE,
}
