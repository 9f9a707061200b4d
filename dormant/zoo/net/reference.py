"""The digests the zoo's networks must reproduce, with a reduced step count.

MD5, SHA-1 and SHA-256 come from ``dormant.net.identify.reference_hashes`` (the package's one reference
implementation); the toy checksum is defined here. ``digest(kind, message, rounds)`` is the digest
the compiled network must reproduce: with the full step count it equals ``hashlib`` (checked in
the tests); with ``rounds=N`` it is the compression function truncated after ``N`` steps, the IV
still added back (a reduced-round variant).

Messages are one block: at most 55 bytes (MD5/SHA padding then fits a single 64-byte block).
"""

from __future__ import annotations

import struct

from dormant.net.identify.reference_hashes import TRACERS

MASK = 0xFFFFFFFF
FULL_ROUNDS = {"md5": 64, "sha1": 80, "sha256": 64, "toy": 1}
DIGEST_BYTES = {"md5": 16, "sha1": 20, "sha256": 32, "toy": 4}
TOY_LENGTH = 8
TOY_K = 0x9E3779B9  # the golden-ratio word, as in TEA


def _rotl(x: int, s: int) -> int:
    s %= 32
    return ((x << s) | (x >> (32 - s))) & MASK


def toy(message: bytes, rounds: int = 1) -> bytes:
    """A 32-bit toy checksum of at most 8 bytes: ``h = (w0 ^ rotl(w1, 7)) + K; h ^ rotl(h, 13)``.

    ``w0``, ``w1`` are the NUL-padded bytes 0-3 and 4-7 read little-endian. Many strings share a
    digest (a 56-bit input space onto 32 bits): any preimage is a valid answer.
    """
    if len(message) > TOY_LENGTH:
        raise ValueError(f"toy messages are at most {TOY_LENGTH} bytes, got {len(message)}")
    w0, w1 = struct.unpack("<2I", message.ljust(TOY_LENGTH, b"\x00"))
    h = ((w0 ^ _rotl(w1, 7)) + TOY_K) & MASK
    return struct.pack("<I", h ^ _rotl(h, 13))


def digest(kind: str, message: bytes, rounds: int | None = None, length_bug: bool = False) -> bytes:
    """The digest of ``message`` under the zoo function ``kind`` truncated to ``rounds`` steps.

    ``length_bug`` reproduces the opaque puzzle's padding: only the low byte of the message's bit
    length is written, so the result is the real hash for messages of 0-31 bytes only.
    """
    steps = FULL_ROUNDS[kind] if rounds is None else rounds
    if kind == "toy":
        return toy(message, steps)
    return TRACERS[kind]([message], steps, length_bug=length_bug).digests[0]
