"""A bit-level circuit builder whose every gate is one ReLU neuron with integer weights.

A circuit is a list of *nodes*. Node ``i`` is either an input (a value of the network's input
vector, e.g. a character code) or a neuron ``relu(sum_j w_j * node_j + b)`` with integer ``w`` and
``b``. Wiring between gates is expressed with ``Expr`` values: integer affine combinations of nodes,
``sum c_j * node_j + const``. An ``Expr`` costs no neuron; it is folded into the weights and bias of
whichever neuron reads it. That is how XOR becomes free::

    a XOR b  =  a + b - 2 * AND(a, b)          # AND is a neuron, the rest is folded

so the compiled network shows the gate alphabet of the real puzzle: wire ``relu(a)``, AND
``relu(a+b-1)``, NOR ``relu(1-a-b)``, NOT ``relu(1-a)``, AND-NOT ``relu(a-b)``, thresholds
``relu(x-t)``, with weights ``0`` or ``+-2**k`` and integer biases.

Every gate formula below assumes its inputs are 0/1 bits; integer-valued nodes (character codes,
bytes) are only read by ``threshold`` style neurons and by ``bits_msb_first``.

Words are lists of 32 ``Expr`` bits, least significant first (``word[i]`` has weight ``2**i``).
Word helpers: ``const_word``, ``rotl``/``rotr``/``shr`` (pure wiring), bitwise functions,
carry-save compression and two 32-bit adders: ripple-carry (one layer per bit) and parallel-prefix
Kogge-Stone (about eight layers).

Where a node lands in the layered network is decided by ``compile.compile_circuit``: nodes built
inside ``with circuit.asap():`` are placed as early as possible, the rest as late as possible,
which keeps long-lived values few (a byte is carried, not its 8 bits).

Example::

    c = Circuit(n_inputs=2)
    x, y = c.input(0), c.input(1)
    out = c.wire(c.xor(c.and_(x, y), y))       # a neuron holding (x AND y) XOR y
    c.set_outputs([out])
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

WORD = 32


class Expr:
    """An integer affine combination of circuit nodes: ``sum(coef * node) + const``.

    Supports ``+``, ``-`` and multiplication by an ``int``; ints mix in as constants.
    """

    __slots__ = ("terms", "const")

    def __init__(self, terms: dict[int, int] | None = None, const: int = 0):
        self.terms = terms if terms is not None else {}
        self.const = int(const)

    @staticmethod
    def of(value: "Expr | int") -> "Expr":
        return value if isinstance(value, Expr) else Expr({}, int(value))

    def _combine(self, other: "Expr | int", sign: int) -> "Expr":
        other = Expr.of(other)
        terms = dict(self.terms)
        for node, coef in other.terms.items():
            c = terms.get(node, 0) + sign * coef
            if c:
                terms[node] = c
            else:
                terms.pop(node, None)
        return Expr(terms, self.const + sign * other.const)

    def __add__(self, other: "Expr | int") -> "Expr":
        return self._combine(other, 1)

    __radd__ = __add__

    def __sub__(self, other: "Expr | int") -> "Expr":
        return self._combine(other, -1)

    def __rsub__(self, other: "Expr | int") -> "Expr":
        return Expr.of(other)._combine(self, -1)

    def __neg__(self) -> "Expr":
        return Expr({n: -c for n, c in self.terms.items()}, -self.const)

    def __mul__(self, k: int) -> "Expr":
        k = int(k)
        if k == 0:
            return Expr()
        return Expr({n: c * k for n, c in self.terms.items()}, self.const * k)

    __rmul__ = __mul__

    @property
    def is_const(self) -> bool:
        return not self.terms

    def single_node(self) -> int | None:
        """The node id when this expression is exactly one node (coefficient 1, no constant)."""
        if self.const == 0 and len(self.terms) == 1:
            (node, coef), = self.terms.items()
            if coef == 1:
                return node
        return None

    def __repr__(self) -> str:
        parts = [f"{c:+d}*n{n}" for n, c in sorted(self.terms.items())]
        return "Expr(" + " ".join(parts + [f"{self.const:+d}"]) + ")"


Word = list  # list[Expr], least significant bit first


@dataclass
class Node:
    """One neuron (or input): ``relu(sum(coef * src) + bias)``; ``asap`` pins it early."""

    srcs: tuple[int, ...]
    coefs: tuple[int, ...]
    bias: int
    kind: str  # "input", "gate", "const"
    asap: bool = False
    group: int = -1  # nodes of one group share a level (the bits of a constant word)


@dataclass
class Circuit:
    """A growing list of nodes plus the designated outputs and named taps (groups of nodes)."""

    n_inputs: int
    nodes: list[Node] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    taps: dict[str, list[int]] = field(default_factory=dict)
    groups: list[list[int]] = field(default_factory=list)
    _asap_depth: int = 0

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [Node((), (), 0, "input", True) for _ in range(self.n_inputs)]

    # ----------------------------------------------------------------- primitives
    def input(self, i: int) -> Expr:
        if not 0 <= i < self.n_inputs:
            raise IndexError(f"input {i} out of range 0..{self.n_inputs - 1}")
        return Expr({i: 1})

    @contextmanager
    def asap(self) -> Iterator[None]:
        """Nodes created inside this block are scheduled as early as possible (e.g. the input head)."""
        self._asap_depth += 1
        try:
            yield
        finally:
            self._asap_depth -= 1

    def neuron(self, pre: "Expr | int") -> Expr:
        """A new neuron ``relu(pre)``; returns it as an expression."""
        pre = Expr.of(pre)
        items = sorted(pre.terms.items())
        kind = "gate" if items else "const"
        self.nodes.append(Node(tuple(n for n, _ in items), tuple(c for _, c in items), pre.const, kind, self._asap_depth > 0))
        return Expr({len(self.nodes) - 1: 1})

    def const(self, bit: int) -> Expr:
        """A constant lane: a neuron with no inputs whose bias is the value (0 or 1)."""
        return self.neuron(Expr({}, int(bit)))

    def set_outputs(self, outs: Sequence[Expr]) -> None:
        """The network's final layer, in order; each output must be a single node (use ``wire``)."""
        ids = []
        for e in outs:
            n = e.single_node()
            if n is None:
                raise ValueError(f"output {e!r} is not a single neuron; wrap it in wire()")
            ids.append(n)
        self.outputs = ids

    def tap(self, name: str, bits: Sequence[Expr]) -> None:
        """Remember where ``bits`` (single neurons) live, for tests and manifests."""
        ids = []
        for e in bits:
            n = e.single_node()
            if n is None:
                raise ValueError(f"tap {name!r}: {e!r} is not a single neuron")
            ids.append(n)
        self.taps[name] = ids

    # ----------------------------------------------------------------- bit gates
    def wire(self, a: Expr) -> Expr:
        """Materialise an expression as a neuron ``relu(a)`` (exact when ``a >= 0``)."""
        return self.neuron(a)

    def not_(self, a: Expr) -> Expr:
        """NOT as a neuron ``relu(1 - a)``."""
        return self.neuron(1 - a)

    def and_(self, a: Expr, b: Expr) -> Expr:
        return self.neuron(a + b - 1)

    def andnot(self, a: Expr, b: Expr) -> Expr:
        """``a AND NOT b`` as ``relu(a - b)``."""
        return self.neuron(a - b)

    def nor(self, a: Expr, b: Expr) -> Expr:
        return self.neuron(1 - a - b)

    def or_(self, a: Expr, b: Expr) -> Expr:
        """``a OR b = 1 - NOR(a, b)`` (one neuron, the rest folded)."""
        return 1 - self.nor(a, b)

    def xor(self, a: Expr, b: Expr) -> Expr:
        """``a XOR b = a + b - 2 AND(a, b)`` (one neuron, the rest folded)."""
        return a + b - 2 * self.and_(a, b)

    def parity(self, bits: Sequence[Expr]) -> Expr:
        """XOR of ``n`` bits in one layer: ``s - 2 relu(s-1) + 2 relu(s-2) - ...`` with ``s = sum``.

        ``n - 1`` threshold neurons plus the sum itself (one more neuron unless ``n <= 2``, where the
        cheaper AND form is used).
        """
        flip = sum(b.const for b in bits if b.is_const) % 2  # constant inputs fold away
        bits = [b for b in bits if not b.is_const]
        if flip:
            return 1 - self.parity(bits)
        if not bits:
            return Expr()
        if len(bits) == 1:
            return bits[0]
        if len(bits) == 2:
            return self.xor(bits[0], bits[1])
        s = sum(bits[1:], bits[0])
        out = self.neuron(s)
        for j in range(1, len(bits)):
            out = out + (2 * (-1) ** j) * self.neuron(s - j)
        return out

    def majority(self, bits: Sequence[Expr]) -> Expr:
        """1 when at least two of three bits are set: ``relu(s-1) - relu(s-2)``."""
        s = sum(bits[1:], bits[0])
        return self.neuron(s - 1) - self.neuron(s - 2)

    def full_add(self, a: Expr, b: Expr, c: Expr) -> tuple[Expr, Expr]:
        """One-layer full adder (sum, carry) of three bits from neurons on ``s = a + b + c``.

        ``sum = relu(s) - 2 relu(s-1) + 2 relu(s-2)``, ``carry = relu(s-1) - relu(s-2)``: the
        outputs reference only the three new neurons, so ``a, b, c`` need not stay alive.
        """
        s = a + b + c
        r0, r1, r2 = self.neuron(s), self.neuron(s - 1), self.neuron(s - 2)
        return r0 - 2 * r1 + 2 * r2, r1 - r2

    def mux(self, sel: Expr, a: Expr, b: Expr) -> Expr:
        """``a if sel else b`` = ``AND(sel, a) + AND-NOT(b, sel)`` (the two terms never overlap)."""
        return self.and_(sel, a) + self.andnot(b, sel)

    # ----------------------------------------------------------------- integers
    def bits_msb_first(self, value: Expr, n_bits: int) -> list[Expr]:
        """Decompose an integer ``0 <= value < 2**n_bits`` into bits with ReLU thresholds.

        One layer per bit, most significant first: ``bit_k = relu(r - 2^k + 1) - relu(r - 2^k)`` on
        the running residual ``r``, which is re-materialised each layer as ``relu(r)`` so that no
        expression grows. Returns bits least significant first, as expressions.
        """
        bits: list[Expr] = [Expr()] * n_bits
        cur = value
        for k in range(n_bits - 1, 0, -1):
            hi, lo = self.neuron(cur - (2**k - 1)), self.neuron(cur - 2**k)
            bits[k] = hi - lo
            base = cur if cur.single_node() is not None else self.neuron(cur)
            cur = base - (2**k) * hi + (2**k) * lo
        bits[0] = cur
        return bits

    # ----------------------------------------------------------------- words
    def const_word(self, value: int, width: int = WORD) -> Word:
        """A word of constant lanes: ``width`` neurons whose biases are the bits of ``value``.

        The lanes form a group: they land in one layer, side by side, least significant first.
        """
        bits = [self.const((value >> i) & 1) for i in range(width)]
        ids = [b.single_node() for b in bits]
        for i in ids:
            self.nodes[i].group = len(self.groups)
        self.groups.append(ids)
        return bits

    def wire_word(self, w: Word) -> Word:
        return [self.wire(b) for b in w]

    @staticmethod
    def rotl(w: Word, s: int) -> Word:
        s %= len(w)
        return w[len(w) - s :] + w[: len(w) - s]

    @staticmethod
    def rotr(w: Word, s: int) -> Word:
        return Circuit.rotl(w, -s)

    @staticmethod
    def shr(w: Word, s: int) -> Word:
        return list(w[s:]) + [Expr()] * s

    def xor_word(self, *ws: Word) -> Word:
        return [self.parity(bits) for bits in zip(*ws)]

    def and_word(self, a: Word, b: Word) -> Word:
        return [self.and_(x, y) for x, y in zip(a, b)]

    def carry_save(self, a: Word, b: Word, c: Word) -> tuple[Word, Word]:
        """3:2 compression: ``a + b + c == s + k (mod 2^32)`` in one layer of full adders."""
        pairs = [self.full_add(x, y, z) for x, y, z in zip(a, b, c)]
        s = [p[0] for p in pairs]
        k = [Expr()] + [p[1] for p in pairs[:-1]]
        return s, k

    def add_ripple(self, a: Word, b: Word) -> Word:
        """Ripple-carry adder mod ``2**len(a)``: one layer per bit (the carry chain).

        Bit ``i`` reads ``s = a_i + b_i + carry`` and forms ``relu(s-1)``, ``relu(s-2)``:
        ``carry' = relu(s-1) - relu(s-2)``, ``sum = s - 2 carry'``.
        """
        out, carry = [], Expr()
        for x, y in zip(a, b):
            s = x + y + carry
            r1, r2 = self.neuron(s - 1), self.neuron(s - 2)
            out.append(s - 2 * r1 + 2 * r2)
            carry = r1 - r2
        return out

    def add_kogge_stone(self, a: Word, b: Word) -> Word:
        """Parallel-prefix (Kogge-Stone) adder mod ``2**n``: ``log2(n) + 2`` layers.

        Generate ``g = AND(a, b)`` and propagate ``p = a XOR b``; each prefix level with distance
        ``d`` adds ``AND(P_i, G_{i-d})`` to ``G_i`` (a sum, because generate and propagate never
        overlap) and forms ``P_i AND P_{i-d}``; finally ``sum_i = p_i XOR G_{i-1}``.
        """
        n = len(a)
        g = [self.and_(x, y) for x, y in zip(a, b)]
        p = [x + y - 2 * gi for x, y, gi in zip(a, b, g)]
        G, P = g[: n - 1], p[: n - 1]
        d = 1
        while d < n - 1:
            newG, newP = list(G), list(P)
            for i in range(d, n - 1):
                newG[i] = G[i] + self.and_(P[i], G[i - d])
                if i >= 2 * d and 2 * d < n - 1:
                    newP[i] = self.and_(P[i], P[i - d])
            G, P, d = newG, newP, 2 * d
        return [p[0]] + [self.xor(p[i], G[i - 1]) for i in range(1, n)]

    def add(self, *words: Word, adder: str = "kogge-stone") -> Word:
        """Sum of several words mod ``2**32``: carry-save compression, then one carry-propagate adder."""
        ws = list(words)
        while len(ws) > 2:
            s, k = self.carry_save(ws[0], ws[1], ws[2])
            ws = [s, k] + ws[3:]
        if len(ws) == 1:
            return ws[0]
        if adder == "ripple":
            return self.add_ripple(ws[0], ws[1])
        if adder == "kogge-stone":
            return self.add_kogge_stone(ws[0], ws[1])
        raise ValueError(f"unknown adder {adder!r} (ripple or kogge-stone)")

    def stats(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for n in self.nodes:
            kinds[n.kind] = kinds.get(n.kind, 0) + 1
        return kinds
