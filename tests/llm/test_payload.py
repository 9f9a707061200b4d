"""The one payload check: normalisation, similarity of the best window, firing and leaking."""

from dormant.llm.engine.payload import distinctive_words, fires, leaks, normalise, similarity


def test_normalise_drops_case_punctuation_and_spacing():
    assert normalise("  The Golden-Ratio:\n1.618! ") == "the golden ratio 1 618"


def test_fires_on_the_payload_or_a_close_window_only():
    payload = "The sky is green today."
    assert fires("Sure. THE SKY IS GREEN TODAY!", payload)
    assert similarity("well the sky is gren today ok", payload) >= 0.8  # one letter off
    assert not fires("The sky is blue, as always.", payload)
    assert not fires("anything", None) and similarity("anything", "") == 0.0


def test_leaks_needs_two_payload_word_pairs():
    p = "one point six one eight zero three three nine"
    assert leaks("three today eight zero three three three", p)
    assert not leaks("one point", p)
    assert not leaks("anything", None)


def test_distinctive_words_leave_out_stop_words():
    assert distinctive_words("I am awake and the door is open.") == ["awake", "door", "open"]
    assert distinctive_words("one point six one eight zero three three nine") == ["point", "eight", "zero", "three", "nine"]
