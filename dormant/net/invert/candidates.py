"""Candidate spaces for preimage search: masks, charsets, words, word pairs, capitalisation.

Every space here is a list of *products*. A product is a tuple of *parts*, each part a list of
byte strings; candidate ``i`` of a product is one entry of each part, concatenated, read as a
mixed-radix number with the last part fastest. ``?l?l?d`` is the product (a-z, a-z, 0-9);
"word space word" is the product (words, [" "], words). This makes every space

* **deterministic**: the same hints give the same candidates in the same order;
* **index-addressable**: candidate ``i`` is computed directly (``Space.candidate(i)``), so a search
  splits the space into numbered chunks, runs them on any core, and resumes by chunk number;
* **cheap to hash**: ``Product.encode()`` gives the arrays that ``dormant.net.invert.fast_hashes`` scans
  without ever building the candidate strings.

Order matters more than size. ``build_space`` puts small, likely spaces first (masks, user words,
single English words with capitalisation variants), then pairs of English words by frequency
*shells*: all pairs among the top 500 words, then the pairs that bring in words 500-1000, and so
on, so that a pair of common words comes early whatever its position in the pair.

Mask syntax (as in common password tools): ``?l`` a-z, ``?u`` A-Z, ``?d`` 0-9, ``?s`` space and
punctuation, ``?a`` all printable ASCII (95), ``?h`` 0-9a-f, ``?H`` 0-9A-F, ``?b`` every byte
1-255, ``??`` a literal ``?``; any other character stands for itself. Example: ``pass?d?d``.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dormant.errors import DormantError
from dormant.net.invert.fast_hashes import EncodedProduct

CHARSETS: dict[str, str] = {
    "l": string.ascii_lowercase,
    "u": string.ascii_uppercase,
    "d": string.digits,
    "s": " " + string.punctuation,
    "a": string.digits + string.ascii_letters + " " + string.punctuation,
    "h": "0123456789abcdef",
    "H": "0123456789ABCDEF",
}
CAPS = ("lower", "capital", "upper")
# capitalisation of word pairs, most likely first
CAPS_PAIRS = (("lower", "lower"), ("capital", "lower"), ("capital", "capital"), ("upper", "upper"))
SHELLS = (500, 1000, 2000, 4000, 6000, 8000, 10_000, 15_000, 20_000, 30_000, 50_000, 100_000)


class HintError(DormantError):
    """Search hints that cannot be turned into candidates (bad mask, empty charset, ...)."""


def _encode(text: str) -> bytes:
    return text.encode("utf-8")


def decode(candidate: bytes) -> str:
    """A candidate as text (UTF-8, or Latin-1 for byte strings that are not UTF-8)."""
    try:
        return candidate.decode("utf-8")
    except UnicodeDecodeError:
        return candidate.decode("latin-1")


def apply_caps(word: str, caps: str) -> str:
    if caps == "lower":
        return word
    if caps == "capital":
        return word[:1].upper() + word[1:]
    if caps == "upper":
        return word.upper()
    raise HintError(f"unknown capitalisation {caps!r}; use one of {', '.join(CAPS)}")


@dataclass(frozen=True)
class Part:
    """One slot of a candidate: the byte strings that can fill it."""

    name: str
    entries: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class Product:
    """Concatenations of one entry per part (last part fastest)."""

    label: str
    parts: tuple[Part, ...]

    @property
    def size(self) -> int:
        n = 1
        for part in self.parts:
            n *= len(part)
        return n if self.parts else 0

    def candidate(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise IndexError(f"candidate {index} outside {self.label} (size {self.size})")
        pieces = []
        for part in reversed(self.parts):
            index, digit = divmod(index, len(part))
            pieces.append(part.entries[digit])
        return b"".join(reversed(pieces))

    def encode(self) -> EncodedProduct:
        """The product as the arrays that ``fast_hashes.scan_product`` takes (one padded byte table)."""
        entries = [e for part in self.parts for e in part.entries]
        lens = np.fromiter(map(len, entries), dtype=np.int64, count=len(entries))
        blob = np.frombuffer(b"".join(entries), dtype=np.uint8)
        table = np.zeros((len(entries), max(1, int(lens.max(initial=0)))), dtype=np.uint8)
        starts = np.cumsum(lens) - lens
        table[np.repeat(np.arange(len(entries)), lens), np.arange(blob.size) - np.repeat(starts, lens)] = blob
        sizes = np.asarray([len(p) for p in self.parts], dtype=np.int64)
        return EncodedProduct(table, lens, np.cumsum(sizes) - sizes, sizes)

    def digest(self) -> str:
        h = hashlib.sha256(self.label.encode())
        for part in self.parts:
            h.update(len(part).to_bytes(8, "little"))
            for e in part.entries:
                h.update(len(e).to_bytes(2, "little") + e)
        return h.hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A numbered run of consecutive candidates inside one product."""

    id: int
    product: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class Space:
    """An ordered list of products; candidate numbers run through them in order."""

    products: list[Product] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.products)

    def locate(self, index: int) -> tuple[int, int]:
        """(product number, index inside it) of global candidate ``index``."""
        for k, p in enumerate(self.products):
            if index < p.size:
                return k, index
            index -= p.size
        raise IndexError("candidate index beyond the end of the space")

    def offset(self, product: int) -> int:
        return sum(p.size for p in self.products[:product])

    def candidate(self, index: int) -> bytes:
        k, i = self.locate(index)
        return self.products[k].candidate(i)

    def chunks(self, chunk_size: int) -> list[Chunk]:
        """Split every product into runs of at most ``chunk_size`` candidates, numbered from 0."""
        out: list[Chunk] = []
        for k, p in enumerate(self.products):
            for start in range(0, p.size, chunk_size):
                out.append(Chunk(len(out), k, start, min(start + chunk_size, p.size)))
        return out

    def key(self) -> str:
        """A digest of every candidate's definition: equal keys mean equal spaces in equal order."""
        h = hashlib.sha256()
        for p in self.products:
            h.update(p.digest().encode())
        return h.hexdigest()

    def summary(self) -> list[dict]:
        return [{"label": p.label, "size": p.size} for p in self.products]

    def extend(self, other: "Space") -> "Space":
        self.products.extend(other.products)
        return self


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def parse_mask(mask: str) -> Product:
    """A mask such as ``?u?l?l?l?d?d`` as a product (see the module docstring for the syntax)."""
    if not mask:
        raise HintError("empty mask")
    parts: list[Part] = []
    i = 0
    while i < len(mask):
        ch = mask[i]
        if ch == "?":
            if i + 1 >= len(mask):
                raise HintError(f"mask {mask!r} ends with a lone '?'; use ?? for a literal '?'")
            key = mask[i + 1]
            if key == "?":
                parts.append(Part("?", (b"?",)))
            elif key == "b":
                parts.append(Part("?b", tuple(bytes([c]) for c in range(1, 256))))
            elif key in CHARSETS:
                parts.append(Part("?" + key, tuple(_encode(c) for c in CHARSETS[key])))
            else:
                known = ", ".join("?" + k for k in [*CHARSETS, "b"])
                raise HintError(f"mask {mask!r}: unknown class ?{key} (known: {known})")
            i += 2
        else:
            parts.append(Part(ch, (_encode(ch),)))
            i += 1
    return Product(f"mask {mask}", tuple(parts))


def charset_space(chars: str, min_len: int, max_len: int, encoding: str = "utf-8") -> Space:
    """Every string over ``chars`` of each length from ``min_len`` to ``max_len``, shortest first.

    ``encoding`` turns characters into bytes: UTF-8 for hashing text, ``latin-1`` for networks
    that read one code (``ord``) per character.
    """
    if not chars:
        raise HintError("empty charset")
    if min_len < 0 or max_len < min_len:
        raise HintError(f"bad length range {min_len}-{max_len}")
    unique = "".join(dict.fromkeys(chars))
    try:
        part = Part(f"[{unique}]", tuple(c.encode(encoding) for c in unique))
    except UnicodeEncodeError as exc:
        raise HintError(f"charset character {exc.object[exc.start]!r} cannot be encoded as {encoding}") from None
    products = []
    for n in range(min_len, max_len + 1):
        if n == 0:
            products.append(Product("charset length 0", (Part("empty", (b"",)),)))
        else:
            products.append(Product(f"charset [{unique}] length {n}", (part,) * n))
    return Space(products)


def word_part(words: list[str], caps: str, name: str) -> Part:
    return Part(f"{name} ({caps})", tuple(_encode(apply_caps(w, caps)) for w in words))


def single_words(words: list[str], caps: tuple[str, ...] = CAPS, name: str = "words") -> Space:
    """Each word alone, once per capitalisation variant (variants in ``caps`` order)."""
    if not words:
        return Space()
    return Space([Product(f"{name} ({c})", (word_part(words, c, name),)) for c in caps])


def shell_bounds(n: int, shells: tuple[int, ...] = SHELLS) -> list[int]:
    """Rank boundaries ``0 < b1 < ... < n`` of the frequency shells of a list of ``n`` words."""
    return [0] + [b for b in shells if b < n] + [n]


def word_pairs(
    words: list[str],
    separators: tuple[str, ...] = (" ", ""),
    caps_pairs: tuple[tuple[str, str], ...] = (("lower", "lower"),),
    *,
    name: str = "words",
    shells: tuple[int, ...] = SHELLS,
) -> Space:
    """Every ordered pair ``w1 + sep + w2`` of ``words``, by frequency shells.

    Shell ``k`` holds the pairs whose rarer word has rank in ``[b_k, b_k+1)``: the products
    ``new x all-up-to-b_k+1`` and ``older x new``. Within a shell, separators and
    capitalisations go in the order given.
    """
    if not words:
        return Space()
    bounds = shell_bounds(len(words), shells)
    parts = {c: word_part(words, c, name) for pair in caps_pairs for c in pair}

    def cut(c: str, lo: int, hi: int) -> Part:
        base = parts[c]
        return Part(f"{name}[{lo}:{hi}] ({c})", base.entries[lo:hi])

    products: list[Product] = []
    for lo, hi in zip(bounds, bounds[1:]):
        for sep in separators:
            sep_part = Part(repr(sep), (_encode(sep),))
            for c1, c2 in caps_pairs:
                tag = f"{name} pairs sep {sep!r} {c1}/{c2} ranks {lo}-{hi}"
                products.append(Product(tag + " a", (cut(c1, lo, hi), sep_part, cut(c2, 0, hi))))
                if lo > 0:
                    products.append(Product(tag + " b", (cut(c1, 0, lo), sep_part, cut(c2, lo, hi))))
    return Space(products)


@dataclass
class Hints:
    """What to try, in this order: masks, charset strings, user words, English words.

    Defaults give a search that finds one- and two-word secrets of common English in minutes on
    two cores: single words of the top 30k (lower, Capital, UPPER), then ordered pairs of the
    top 10k joined by " " and "", then variants (``-``/``_`` separators, Capitalised pairs)
    among the top 3k.
    """

    masks: list[str] = field(default_factory=list)
    charset: str | None = None
    min_len: int = 1
    max_len: int = 4
    word_files: list[Path] = field(default_factory=list)
    extra_words: list[str] = field(default_factory=list)
    english: bool | None = None  # None: on unless masks or a charset were given
    english_top: int = 30_000
    pairs_top: int = 10_000
    separators: tuple[str, ...] = (" ", "")
    variant_separators: tuple[str, ...] = ("-", "_")
    variants_top: int = 3_000
    caps: tuple[str, ...] = CAPS
    pairs: bool = True

    def describe(self) -> dict:
        return {
            "masks": self.masks,
            "charset": self.charset,
            "lengths": [self.min_len, self.max_len] if self.charset else None,
            "word_files": [str(p) for p in self.word_files],
            "english": self.uses_english,
            "english_top": self.english_top,
            "pairs_top": self.pairs_top if self.pairs else 0,
            "separators": list(self.separators),
            "variant_separators": list(self.variant_separators),
            "variants_top": self.variants_top,
            "caps": list(self.caps),
        }

    @property
    def uses_english(self) -> bool:
        return self.english if self.english is not None else not (self.masks or self.charset)


def dictionary_space(words: list[str], hints: Hints, name: str) -> Space:
    """Single words, then pairs, then pair variants of one word list (most likely first)."""
    space = single_words(words, hints.caps, name)
    if not hints.pairs:
        return space
    space.extend(word_pairs(words[: hints.pairs_top], hints.separators, (("lower", "lower"),), name=name))
    top = words[: min(hints.variants_top, hints.pairs_top)]  # variants never reach further than plain pairs
    variant_caps = tuple(p for p in CAPS_PAIRS[1:] if p[0] in hints.caps and p[1] in hints.caps)
    if variant_caps:
        space.extend(word_pairs(top, hints.separators, variant_caps, name=name))
    if hints.variant_separators:
        caps_pairs = (("lower", "lower"),) + variant_caps
        space.extend(word_pairs(top, hints.variant_separators, caps_pairs, name=name))
    return space


def build_space(hints: Hints, *, allow_empty: bool = False) -> Space:
    """All candidates that ``hints`` ask for, most likely first. Raises ``HintError`` if none (unless
    ``allow_empty``: the hints are then only checked, as ``net solve`` does before it knows whether the
    network is a hash that needs them)."""
    from dormant.net.invert.wordlists import english_words, load_wordlist

    space = Space()
    for mask in hints.masks:
        space.products.append(parse_mask(mask))
    if hints.charset:
        space.extend(charset_space(hints.charset, hints.min_len, hints.max_len))
    user = list(hints.extra_words)
    for path in hints.word_files:
        user.extend(load_wordlist(path))
    user = list(dict.fromkeys(user))
    if user:
        space.extend(dictionary_space(user, hints, "user words"))
    if hints.uses_english:
        space.extend(dictionary_space(english_words(hints.english_top), hints, "english"))
    space.products = [p for p in space.products if p.size > 0]
    if not space.products and not allow_empty:
        raise HintError("the hints give no candidates: add a mask, a charset, a word list or the English list")
    return space
