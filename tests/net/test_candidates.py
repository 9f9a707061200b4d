"""Candidate spaces: masks, words, pairs, order, index addressing, chunking."""

import itertools

import pytest

from dormant.net.invert.candidates import Hints, HintError, build_space, charset_space, parse_mask, single_words, word_pairs
from dormant.net.invert.wordlists import WordListError, clean_words, english_words, load_wordlist


def test_mask_enumerates_in_order_with_literals():
    p = parse_mask("a?d??")
    assert p.size == 10
    assert [p.candidate(i) for i in range(p.size)] == [f"a{d}?".encode() for d in range(10)]
    p = parse_mask("?u?l")
    assert p.size == 26 * 26 and p.candidate(0) == b"Aa" and p.candidate(27) == b"Bb"
    with pytest.raises(HintError, match=r"\?x"):
        parse_mask("?x")
    with pytest.raises(HintError, match="lone"):
        parse_mask("ab?")


def test_charset_space_covers_every_string_once():
    space = charset_space("ab", 0, 3)
    got = [space.candidate(i) for i in range(space.size)]
    expected = [b""] + [bytes("".join(t), "ascii") for n in (1, 2, 3) for t in itertools.product("ab", repeat=n)]
    assert got == expected


def test_word_pairs_cover_all_ordered_pairs_once_common_first():
    words = [f"w{i}" for i in range(23)]
    space = word_pairs(words, (" ", ""), shells=(5, 10))
    got = [space.candidate(i).decode() for i in range(space.size)]
    expected = {a + s + b for s in (" ", "") for a in words for b in words}
    assert len(got) == len(expected) == 2 * 23 * 23 and set(got) == expected
    # a pair of two top-5 words comes before any pair that involves a word ranked 5 or worse
    assert max(got.index(f"w{a} w{b}") for a in range(5) for b in range(5)) < got.index("w0 w5")
    assert got.index("w7 w1") < got.index("w0 w12")


def test_single_words_capitalisation_variants():
    space = single_words(["bitter", "lesson"])
    assert [space.candidate(i) for i in range(space.size)] == [b"bitter", b"lesson", b"Bitter", b"Lesson", b"BITTER", b"LESSON"]


def test_chunks_partition_the_space_and_key_tracks_content():
    space = build_space(Hints(masks=["?d?d?d"], extra_words=["alpha", "beta", "gamma"], english=False, pairs_top=3, variants_top=2))
    chunks = space.chunks(7)
    assert [c.id for c in chunks] == list(range(len(chunks)))
    assert sum(c.size for c in chunks) == space.size
    seen = [space.products[c.product].candidate(i) for c in chunks for i in range(c.start, c.stop)]
    assert seen == [space.candidate(i) for i in range(space.size)]
    other = build_space(Hints(masks=["?d?d?d"], extra_words=["alpha", "beta", "delta"], english=False, pairs_top=3, variants_top=2))
    assert space.key() == build_space(Hints(masks=["?d?d?d"], extra_words=["alpha", "beta", "gamma"], english=False, pairs_top=3, variants_top=2)).key()
    assert space.key() != other.key()
    assert b"alpha-Beta" not in seen and b"Alpha-beta" in seen and b"Alpha Beta" in seen


def test_english_list_is_clean_and_frequency_ranked():
    words = english_words(5000)
    assert len(words) == 5000 and len(set(words)) == 5000
    assert words[0] == "the" and words.index("water") < words.index("bitter")
    assert all(w.isalnum() or "'" in w for w in words)
    assert clean_words(["The", "the", "x", "a", "don't", "u.s", "héllo", "42"]) == ["the", "a", "don't", "42"]


def test_user_word_list(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("# my words\nSecret\n\nsecret\nopen sesame\nSecret\n")
    assert load_wordlist(f) == ["Secret", "secret", "open sesame"]
    with pytest.raises(WordListError, match="no such file"):
        load_wordlist(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(WordListError, match="empty.txt: no words"):
        load_wordlist(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(WordListError, match="not UTF-8"):
        load_wordlist(tmp_path / "bin.txt")
