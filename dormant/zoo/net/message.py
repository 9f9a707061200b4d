"""The network's head: character codes in, one padded MD5/SHA message block out.

The input vector holds ``length`` character codes of a NUL-padded string (the puzzle's
``ord``-codes adapter). With threshold neurons the head

1. marks NUL characters: ``z_i = relu(1 - c_i)`` (1 for NUL, 0 for any code >= 1);
2. finds where the string ends: ``p_0 = z_0``, ``p_i = relu(z_i - z_{i-1})`` (AND-NOT: this
   character is NUL and the previous one is not) -- the position of the ``0x80`` padding byte;
3. lays out the block bytes ``b_i = relu(c_i + 128 p_i)`` (one lane per byte, carried as an integer);
4. counts characters, ``n = length - sum z_i``, and splits it into bits with thresholds; the
   64-bit message length ``8 n`` is those bits shifted by three (little-endian for MD5,
   big-endian for SHA).

Strings must be NUL-free with codes 1..255 (Latin-1); up to 55 characters fit one block and every
length 0..55 is encoded correctly (unless ``length_bug`` asks for the puzzle's padding).

A message word's 32 bits are extracted from its four byte lanes on demand (``Block.word``), right
before the step that reads it: one threshold layer per bit, seven layers per word.
"""

from __future__ import annotations

from dataclasses import dataclass

from dormant.zoo.net.circuit import Circuit, Expr, Word

BLOCK_BYTES = 64
MAX_MESSAGE = 55


@dataclass
class Block:
    """The 64 bytes of the padded block: an integer lane (``Expr``) or 8 known bit expressions."""

    entries: list  # Expr (byte value 0..255) or list[Expr] (8 bits, least significant first)
    little_endian: bool

    def byte_bits(self, c: Circuit, i: int) -> list[Expr]:
        e = self.entries[i]
        return list(e) if isinstance(e, list) else c.bits_msb_first(e, 8)

    def word(self, c: Circuit, j: int) -> Word:
        """Bits of message word ``j`` (least significant first), extracted afresh from the byte lanes."""
        order = range(4 * j, 4 * j + 4) if self.little_endian else range(4 * j + 3, 4 * j - 1, -1)
        bits: Word = []
        for i in order:
            bits.extend(self.byte_bits(c, i))
        return bits


def padded_block(c: Circuit, *, little_endian: bool, length_bug: bool = False) -> Block:
    """Build the head on inputs ``0..54`` (scheduled as early as possible); return the byte lanes.

    ``length_bug`` writes only the low byte of the bit length ``8 n``, as the opaque puzzle did
    (the digest is then the real hash for 0-31 characters only).
    """
    length = MAX_MESSAGE
    with c.asap():
        codes = [c.input(i) for i in range(length)]
        z = [c.neuron(1 - ch) for ch in codes]
        pad = [z[0]] + [c.andnot(z[i], z[i - 1]) for i in range(1, length)]
        entries: list = [c.wire(codes[i] + 128 * pad[i]) for i in range(length)]
        count = length - sum(z[1:], z[0])
        n_bits = c.bits_msb_first(count, 6)
    zero = Expr()
    entries.append([zero] * 7 + [1 - z[length - 1]])  # byte 55: 0x80 only when all 55 are used
    low = [zero] * 3 + n_bits[:5]  # (8n) & 0xff
    high = [zero if length_bug else n_bits[5]] + [zero] * 7  # (8n) >> 8
    length_bytes = [low, high] + [[zero] * 8 for _ in range(6)]
    entries.extend(length_bytes if little_endian else length_bytes[::-1])
    assert len(entries) == BLOCK_BYTES
    return Block(entries, little_endian)
