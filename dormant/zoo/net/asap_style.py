"""A second, independent compiler style for the zoo's hash networks ("asap").

The standard style (``Circuit``) mimics the public puzzle. This one is built to look like
someone else's compiler, so that the analysis is not tuned to one construction:

* **scheduling**: every gate sits at its earliest level (no periodic blocks); a value read later
  is carried by copy neurons (``compile.compile_circuit`` inserts them);
* **data**: each message byte is split into bits once, right after the head, and the bits are
  carried (the standard style carries bytes and re-extracts bits per step); constants (IV, K) are
  folded into biases instead of sitting in constant lanes;
* **gates**: XOR is two AND-NOT neurons, ``relu(a - b) + relu(b - a)``; a parity is a chain of
  them;
* **adders**: ripple-carry (one layer per bit, pipelined), several operands chained adder after
  adder rather than carry-save compressed;
* **comparator**: each digest bit XNOR its target bit, then a tree of 4-input ANDs
  (``comparator.xnor_and_tree``), no hat neurons.

Example::

    from dormant.zoo.net.hashes import md5_circuit
    c = md5_circuit(target, rounds=8, style="asap")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dormant.zoo.net.circuit import WORD, Circuit, Expr, Word


@dataclass
class AsapCircuit(Circuit):
    _bits_memo: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._asap_depth = 1  # everything as soon as ready

    def const_word(self, value: int, width: int = WORD) -> Word:
        """Constants are folded into whatever reads them (biases), not held in lanes."""
        return [Expr({}, (value >> i) & 1) for i in range(width)]

    def xor(self, a: Expr, b: Expr) -> Expr:
        if a.is_const or b.is_const:  # a constant bit: wiring or a NOT folded into the reader
            k, x = (a, b) if a.is_const else (b, a)
            return (1 - x) if k.const & 1 else x
        return self.andnot(a, b) + self.andnot(b, a)

    def parity(self, bits) -> Expr:
        out = Expr()
        for b in bits:
            out = b if out.is_const and out.const == 0 else self.xor(out, b)
        return out

    def bits_msb_first(self, value: Expr, n_bits: int) -> list[Expr]:
        """Split once and reuse: the same byte read by several steps is one set of carried bits."""
        key = (tuple(sorted(value.terms.items())), value.const, n_bits)
        if key not in self._bits_memo:
            self._bits_memo[key] = [self.wire(b) if not b.is_const and b.single_node() is None else b for b in super().bits_msb_first(value, n_bits)]
        return list(self._bits_memo[key])

    def carry_save(self, a: Word, b: Word, c: Word) -> tuple[Word, Word]:
        return self.add(a, b, c), [Expr()] * len(a)

    def add(self, *words: Word, adder: str = "ripple") -> Word:
        """Adder after adder, ripple-carry each; intermediate sums materialised (pipelined by ASAP)."""
        out = words[0]
        for w in words[1:]:
            out = [b if b.is_const else self.wire(b) for b in self.add_ripple(out, w)]
        return out
