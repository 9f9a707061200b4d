"""The fast hash paths agree with hashlib, byte for byte."""

import hashlib

import numpy as np
import pytest

from dormant.net.invert import fast_hashes
from dormant.net.invert.candidates import Part, Product

BACKENDS = ["numpy"] + (["numba"] if fast_hashes.HAVE_NUMBA else [])


def _random_messages(seed: int, n: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    msgs = [bytes(rng.integers(0, 256, size=int(k), dtype=np.uint8)) for k in rng.integers(0, 56, size=n)]
    return msgs + [b"", b"a" * 55, b"bitter lesson", b"\x00" * 7, b"\xff" * 31]


@pytest.mark.parametrize("function", fast_hashes.FUNCTIONS)
def test_numpy_batch_matches_hashlib(function):
    msgs = _random_messages(1, 400)
    assert fast_hashes.hash_batch(function, msgs) == [hashlib.new(function, m).digest() for m in msgs]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("function", fast_hashes.FUNCTIONS)
def test_scan_finds_exactly_the_messages_with_the_target_digest(function, backend):
    # each random message becomes a one-part product; targets are the digests of a few of them
    msgs = _random_messages(2, 150)
    product = Product("random", (Part("msgs", tuple(msgs)),))
    chosen = [3, 77, len(msgs) - 4, len(msgs) - 1]
    targets = np.stack([fast_hashes.digest_to_words(function, hashlib.new(function, msgs[i]).digest()) for i in chosen])
    hits = fast_hashes.scan_product(function, product.encode(), 0, len(msgs), targets, backend=backend)
    found = sorted((int(i), int(t)) for i, t in hits)
    expected = sorted((i, t) for t, c in enumerate(chosen) for i, m in enumerate(msgs) if m == msgs[c])
    assert found == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_of_a_multi_part_product_respects_ranges_and_skips_long_candidates(backend):
    words = (b"alpha", b"beta", b"x" * 40)
    product = Product("pairs", (Part("w", words), Part("sep", (b" ", b"-")), Part("w", words)))
    enc = product.encode()
    every = [product.candidate(i) for i in range(product.size)]
    assert b"beta-alpha" in every and len(every) == 18
    target = fast_hashes.digest_to_words("sha1", hashlib.sha1(b"beta-alpha").digest())[None]
    index = every.index(b"beta-alpha")
    assert fast_hashes.scan_product("sha1", enc, 0, product.size, target, backend=backend)[:, 0].tolist() == [index]
    # a range that stops just before the hit misses it
    assert len(fast_hashes.scan_product("sha1", enc, 0, index, target, backend=backend)) == 0
    # 'x'*40 + ' ' + 'x'*40 is 81 bytes: never hashed, never a hit, no error
    long = fast_hashes.digest_to_words("sha1", hashlib.sha1(b"x" * 40 + b" " + b"x" * 40).digest())[None]
    assert len(fast_hashes.scan_product("sha1", enc, 0, product.size, long, backend=backend)) == 0


def test_digest_words_round_trip_and_bad_input():
    d = hashlib.md5(b"abc").digest()
    assert fast_hashes.words_to_digest("md5", fast_hashes.digest_to_words("MD5", d)) == d
    with pytest.raises(ValueError, match="20 bytes"):
        fast_hashes.digest_to_words("sha1", d)
    with pytest.raises(ValueError, match="unknown hash"):
        fast_hashes.check_function("crc32")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 256, 276, 278])
def test_scan_hashes_every_candidate_of_random_products_correctly(backend, seed):
    # parts with entries of very different lengths, so that candidates cross the 55-byte limit
    # back and forth: every candidate that fits must hit its own digest, at its own index
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        sizes = rng.choice([0, 1, 2, 3, 5, 9, 20, 30, 52], size=int(rng.integers(1, 5)))
        parts.append(Part("p", tuple(bytes(rng.integers(97, 123, size=int(k), dtype=np.uint8)) for k in sizes)))
    product = Product("random", tuple(parts))
    cands = [product.candidate(i) for i in range(product.size)]
    fits = [i for i, c in enumerate(cands) if len(c) <= 55]
    targets = np.stack([fast_hashes.digest_to_words("md5", hashlib.md5(cands[i]).digest()) for i in fits])
    start = int(rng.integers(0, product.size))  # start mid-way: the digits are decoded from `start`
    hits = fast_hashes.scan_product("md5", product.encode(), start, product.size, targets, backend=backend)
    found = {(int(i), int(t)) for i, t in hits}
    expected = {(i, t) for t, j in enumerate(fits) for i in range(start, product.size) if cands[i] == cands[j]}
    assert found == expected
