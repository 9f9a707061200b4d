"""Hash circuits: MD5, SHA-1, SHA-256 on one padded block, and a small toy checksum.

Each ``*_circuit(target, rounds, length_bug)`` returns a ``Circuit`` whose single output is 1
exactly when the (possibly step-reduced, see ``reference``) digest of the input string equals
``target``. The digest
bits are materialised in one layer just before the comparator and tapped as ``"digest"`` (digest
byte order, each byte least significant bit first). Each step's new state word is tapped too
(``"step{i}.new"``; MD5 also ``"step{i}.sum"``, the sum before the rotation; SHA-256
``"step{i}.new_a"``/``"step{i}.new_e"``), least significant bit first.

Constants live in biases: the IV and every step constant K are ``const_word`` lanes (32 neurons
with no inputs whose biases are the bits), rotations are wiring. A step adds its operands with
carry-save compression (off the critical path first) and one Kogge-Stone adder; MD5 adds ``B`` with
a second Kogge-Stone adder.

``style="asap"`` builds the same functions with the second compiler style of ``asap_style``
(ripple-carry adders, everything scheduled as soon as ready, constants in biases, an XNOR/AND-tree
comparator).
"""

from __future__ import annotations

from dormant.net.identify.hash_tables import MD5_IV, MD5_K, MD5_MSG_INDEX, MD5_SHIFTS, SHA1_IV, SHA1_K, SHA256_IV, SHA256_K
from dormant.zoo.net.asap_style import AsapCircuit
from dormant.zoo.net.circuit import Circuit, Word
from dormant.zoo.net.comparator import hat_comparator, xnor_and_tree
from dormant.zoo.net.message import MAX_MESSAGE, padded_block
from dormant.zoo.net.reference import FULL_ROUNDS, TOY_K, TOY_LENGTH


def _xnor_tree(c: Circuit, digest_bytes, target: bytes):
    return xnor_and_tree(c, [b for byte in digest_bytes for b in byte], target)


# style -> (circuit class, comparator): "standard" mimics the puzzle, "asap" is deliberately unlike it
STYLES = {"standard": (Circuit, hat_comparator), "asap": (AsapCircuit, _xnor_tree)}


def _circuit(style: str, n_inputs: int) -> Circuit:
    if style not in STYLES:
        raise ValueError(f"unknown compiler style {style!r}; choose one of {', '.join(STYLES)}")
    return STYLES[style][0](n_inputs=n_inputs)


def _check_rounds(kind: str, rounds: int | None) -> int:
    full = FULL_ROUNDS[kind]
    r = full if rounds is None else int(rounds)
    if not 1 <= r <= full:
        raise ValueError(f"{kind}: rounds must be 1..{full}, got {rounds}")
    return r


def _finish(c: Circuit, state: list[Word], iv: tuple[int, ...], target: bytes, little_endian: bool) -> Circuit:
    """Add the IV back, materialise the digest bits, append the comparator."""
    words = [c.wire_word(c.add(w, c.const_word(v))) for w, v in zip(state, iv)]
    digest_bytes = []
    for w in words:
        chunks = [w[8 * j : 8 * j + 8] for j in range(4)]
        digest_bytes.extend(chunks if little_endian else chunks[::-1])
    c.tap("digest", [b for byte in digest_bytes for b in byte])
    compare = STYLES["asap" if isinstance(c, AsapCircuit) else "standard"][1]
    c.set_outputs([compare(c, digest_bytes, target)])
    return c


def _bitwise(fn, *words: Word) -> Word:
    return [fn(*bits) for bits in zip(*words)]


def md5_circuit(target: bytes, rounds: int | None = None, length_bug: bool = False, style: str = "standard") -> Circuit:
    """MD5 of a NUL-padded string of up to 55 characters, compared with ``target`` (16 bytes)."""
    n = _check_rounds("md5", rounds)
    c = _circuit(style, MAX_MESSAGE)
    block = padded_block(c, little_endian=True, length_bug=length_bug)
    a, b, cc, d = (c.const_word(v) for v in MD5_IV)
    for i in range(n):
        if i < 16:  # F = (B AND C) OR (NOT B AND D): B selects C or D
            f = _bitwise(lambda x, y, z: c.mux(x, y, z), b, cc, d)
        elif i < 32:  # G = (B AND D) OR (C AND NOT D): D selects B or C
            f = _bitwise(lambda x, y, z: c.mux(z, x, y), b, cc, d)
        elif i < 48:  # H = B XOR C XOR D
            f = _bitwise(lambda x, y, z: c.parity([x, y, z]), b, cc, d)
        else:  # I = C XOR (B OR NOT D)
            f = _bitwise(lambda x, y, z: c.xor(y, c.or_(x, 1 - z)), b, cc, d)
        m = block.word(c, MD5_MSG_INDEX[i])
        s, k = c.carry_save(a, m, c.const_word(MD5_K[i]))
        t = c.wire_word(c.add(s, k, f))
        new_b = c.wire_word(c.add(b, c.rotl(t, MD5_SHIFTS[i])))
        c.tap(f"step{i}.sum", t)
        c.tap(f"step{i}.new", new_b)
        a, b, cc, d = d, new_b, b, cc
    return _finish(c, [a, b, cc, d], MD5_IV, target, little_endian=True)


def sha1_circuit(target: bytes, rounds: int | None = None, length_bug: bool = False, style: str = "standard") -> Circuit:
    """SHA-1 of a NUL-padded string of up to 55 characters, compared with ``target`` (20 bytes)."""
    n = _check_rounds("sha1", rounds)
    c = _circuit(style, MAX_MESSAGE)
    block = padded_block(c, little_endian=False, length_bug=length_bug)
    w = [c.wire_word(block.word(c, j)) for j in range(min(n, 16))]
    for t in range(16, n):
        w.append(c.wire_word(c.rotl(c.xor_word(w[t - 3], w[t - 8], w[t - 14], w[t - 16]), 1)))
    a, b, cc, d, e = (c.const_word(v) for v in SHA1_IV)
    for t in range(n):
        if t < 20:
            f = _bitwise(lambda x, y, z: c.mux(x, y, z), b, cc, d)
        elif t < 40 or t >= 60:
            f = _bitwise(lambda x, y, z: c.parity([x, y, z]), b, cc, d)
        else:
            f = _bitwise(lambda x, y, z: c.majority([x, y, z]), b, cc, d)
        temp = c.wire_word(c.add(e, c.const_word(SHA1_K[t // 20]), w[t], c.rotl(a, 5), f))
        c.tap(f"step{t}.new", temp)
        a, b, cc, d, e = temp, a, c.rotl(b, 30), cc, d
    return _finish(c, [a, b, cc, d, e], SHA1_IV, target, little_endian=False)


def sha256_circuit(target: bytes, rounds: int | None = None, length_bug: bool = False, style: str = "standard") -> Circuit:
    """SHA-256 of a NUL-padded string of up to 55 characters, compared with ``target`` (32 bytes)."""
    n = _check_rounds("sha256", rounds)
    c = _circuit(style, MAX_MESSAGE)
    rotr, shr = c.rotr, c.shr
    block = padded_block(c, little_endian=False, length_bug=length_bug)
    w = [c.wire_word(block.word(c, j)) for j in range(min(n, 16))]
    for t in range(16, n):
        x, y = w[t - 15], w[t - 2]
        s0 = c.xor_word(rotr(x, 7), rotr(x, 18), shr(x, 3))
        s1 = c.xor_word(rotr(y, 17), rotr(y, 19), shr(y, 10))
        w.append(c.wire_word(c.add(w[t - 16], w[t - 7], s0, s1)))
    a, b, cc, d, e, f, g, h = (c.const_word(v) for v in SHA256_IV)
    for t in range(n):
        k = c.const_word(SHA256_K[t])
        big_s1 = c.xor_word(rotr(e, 6), rotr(e, 11), rotr(e, 25))
        ch = _bitwise(lambda x, y, z: c.mux(x, y, z), e, f, g)
        big_s0 = c.xor_word(rotr(a, 2), rotr(a, 13), rotr(a, 22))
        maj = _bitwise(lambda x, y, z: c.majority([x, y, z]), a, b, cc)
        new_e = c.wire_word(c.add(h, k, w[t], d, big_s1, ch))
        new_a = c.wire_word(c.add(h, k, w[t], big_s1, ch, big_s0, maj))
        c.tap(f"step{t}.new_a", new_a)
        c.tap(f"step{t}.new_e", new_e)
        a, b, cc, d, e, f, g, h = new_a, a, b, cc, new_e, e, f, g
    return _finish(c, [a, b, cc, d, e, f, g, h], SHA256_IV, target, little_endian=False)


def toy_circuit(target: bytes, rounds: int | None = None, length_bug: bool = False, style: str = "standard") -> Circuit:
    """The toy checksum of ``reference.toy`` over 8 raw character codes (no padding), < 40 layers."""
    _check_rounds("toy", rounds)
    if length_bug:
        raise ValueError("the toy checksum has no length field; length_bug applies to md5, sha1, sha256")
    c = _circuit(style, TOY_LENGTH)
    bits = [c.bits_msb_first(c.input(i), 8) for i in range(TOY_LENGTH)]
    w0 = [b for byte in bits[:4] for b in byte]
    w1 = [b for byte in bits[4:] for b in byte]
    h = c.wire_word(c.add(c.xor_word(w0, c.rotl(w1, 7)), c.const_word(TOY_K)))
    out = c.wire_word(c.xor_word(h, c.rotl(h, 13)))
    c.tap("digest", out)
    c.set_outputs([STYLES[style][1](c, [out[8 * j : 8 * j + 8] for j in range(4)], target)])
    return c


CIRCUITS = {"md5": md5_circuit, "sha1": sha1_circuit, "sha256": sha256_circuit, "toy": toy_circuit}
