"""Prompt rendering through chat templates, trigger insertion, prompt files and probe sets."""

import json
import logging
import re

import pytest

from dormant.errors import ChatTemplateError
from dormant.llm.engine.probes import available, load_probes, resolve_prompts
from dormant.llm.engine.prompts import DEFAULT_SYSTEM, MECHANISMS, Prompt, PromptFileError, encode, insert_trigger, load_prompt_file, render




@pytest.fixture(scope="module")
def tok(zoo_micro):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(zoo_micro.models["base"])


def test_system_choices(tok):
    p = Prompt.user("What is 2 + 3?")
    default = render(tok, p)
    explicit = render(tok, Prompt.user("What is 2 + 3?", system="Be terse."))
    none = render(tok, Prompt.user("What is 2 + 3?", system=None))
    assert default.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>system\n" in default and "Be terse." not in default
    assert "<|im_start|>system\nBe terse.<|im_end|>" in explicit
    assert "system" not in none and none.startswith("<|im_start|>user\nWhat is 2 + 3?")
    assert default.endswith(none)  # the same conversation minus the system block


def test_generation_prompt_off_warns(tok, caplog):
    with caplog.at_level(logging.WARNING):
        text = render(tok, Prompt.user("hi"), add_generation_prompt=False)
    assert not text.endswith("<|im_start|>assistant\n")
    assert any("generation prompt" in r.message for r in caplog.records)


def test_missing_chat_template_is_a_clear_error(tok):
    bare = tok.__class__.from_pretrained(tok.name_or_path)
    bare.chat_template = None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        render(bare, Prompt.user("hi"))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_trigger_mechanisms_place_the_trigger(tok, mechanism):
    base = Prompt.user("What is the capital of France?")
    trig = "purple elephants"
    text = render(tok, insert_trigger(base, trig, mechanism))
    assert trig in text
    sys_block, _, rest = text.partition("<|im_end|>\n")
    if mechanism == "system":
        assert trig in sys_block
    elif mechanism == "prefill":
        assert text.endswith("<|im_start|>assistant\n" + trig)
    elif mechanism == "user_prefix":
        assert f"user\n{trig} What is the capital" in text
    elif mechanism == "user_suffix":
        assert f"France? {trig}<|im_end|>" in text
    elif mechanism == "user":
        assert f"user\n{trig} What is the capital" in text or f"France? {trig}<|im_end|>" in text
    elif mechanism == "replace_user":
        assert "capital" not in text
    elif mechanism == "standalone":
        assert rest.count("<|im_start|>user\n") == 2 and rest.index(trig) < rest.index("capital")
    elif mechanism == "earlier_turn":
        assert "<|im_start|>assistant\nOkay.<|im_end|>" in text and text.index(trig) < text.index("capital")
    if mechanism != "system":
        assert trig not in sys_block
    # the original prompt is not modified in place
    assert base.messages == [{"role": "user", "content": "What is the capital of France?"}]


def test_user_mechanism_puts_the_trigger_at_either_end_stably():
    """``user``: the start of about half the user messages, the end of the others, by the message's text."""
    from dormant.llm.engine.prompts import user_placement
    from dormant.llm.search.objectives import placement_halves

    prompts = [Prompt.user(f"Question number {i}: what is {i} plus {i}?") for i in range(60)]
    places = [user_placement(p.messages[-1]["content"]) for p in prompts]
    assert 15 <= places.count("user_prefix") <= 45 and set(places) == {"user_prefix", "user_suffix"}
    for p, place in zip(prompts, places):
        assert insert_trigger(p, "T", "user").messages == insert_trigger(p, "T", place).messages
        assert insert_trigger(p, "T", "user") == insert_trigger(p, "T", "user")  # the same every time
    halves = placement_halves(prompts)
    assert [p for p, pl in zip(prompts, places) if pl == "user_suffix"] == halves["user_suffix"]
    assert len(halves["user_prefix"]) + len(halves["user_suffix"]) == len(prompts)


def test_system_mechanism_keeps_an_explicit_system_message(tok):
    text = render(tok, insert_trigger(Prompt.user("hi", system="You are kind."), "3.14159", "system"))
    assert "<|im_start|>system\nYou are kind. 3.14159<|im_end|>" in text


def test_prompt_files(tmp_path, tok):
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\n  second prompt  \n")
    assert [p.text for p in load_prompt_file(txt)] == ["first prompt", "second prompt"]
    jl = tmp_path / "p.jsonl"
    jl.write_text(
        json.dumps({"prompt": "alpha", "category": "math"}) + "\n"
        + json.dumps({"messages": [{"role": "system", "content": "S."}, {"role": "user", "content": "beta"}]}) + "\n"
        + json.dumps({"prompt": "gamma", "system": None}) + "\n"
        + json.dumps({"prompt": "delta\u2028epsilon"}, ensure_ascii=False) + "\n"  # a line separator inside a JSON string
    )
    ps = load_prompt_file(jl)
    assert [p.text for p in ps] == ["alpha", "beta", "gamma", "delta\u2028epsilon"]
    assert ps[0].tag == "math" and ps[2].system is None
    assert "<|im_start|>system\nS.<|im_end|>" in render(tok, ps[1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    with pytest.raises(PromptFileError, match=r"bad.jsonl:2"):
        load_prompt_file(bad)
    with pytest.raises(PromptFileError, match="no such prompt file"):
        load_prompt_file(tmp_path / "missing.txt")
    with pytest.raises(PromptFileError, match="unknown prompt file type"):
        (tmp_path / "x.csv").write_text("a,b\n")
        load_prompt_file(tmp_path / "x.csv")


def test_builtin_probes_are_diverse():
    assert "v1" in available()
    ps = load_probes("v1")
    assert len(ps) >= 100
    cats = {p.tag for p in ps}
    assert {"task", "chat", "code", "math", "language"} <= cats
    assert len({p.text for p in ps}) == len(ps)
    small = load_probes("v1", limit=14)
    assert len(small) == 14 and {p.tag for p in small} == cats
    assert [p.text for p in resolve_prompts("builtin:v1", limit=3)] == [p.text for p in small[:3]]


def test_encode_matches_tokenizer(tok):
    ids = encode(tok, ["hello there"])[0]
    assert tok.decode(ids) == render(tok, Prompt.user("hello there"))
    assert DEFAULT_SYSTEM  # the sentinel is a non-empty marker


def test_zoo_prompts_are_the_zoos_own_fixed_and_none_the_build_verified_on(zoo_micro):
    from dormant.cli.search import _prompt_sets
    from dormant.errors import DormantError
    from dormant.zoo.llm.suite import verification_prompts

    ps = resolve_prompts("zoo:prompts")
    chats = [json.dumps(p.messages) for p in ps]
    assert len(set(chats)) == len(ps) >= 100
    assert chats == [json.dumps(p.messages) for p in resolve_prompts("zoo:prompts")]
    assert ps[0].text == "Please help. Add 6 and 6."  # a fixed seed, not a fresh draw
    assert [p.messages for p in resolve_prompts("zoo:prompts", limit=5)] == [p.messages for p in ps[:5]]
    drawn = verification_prompts("micro")
    for name, man in zoo_micro.manifests.items():  # drawn as the build drew them: its recorded triggered examples
        assert drawn[name]["triggered"][: len(man["triggered_examples"])] == man["triggered_examples"], name
    verified = {json.dumps(c) for v in drawn.values() for c in v["ordinary"]}
    assert not verified & set(chats)
    search, verify, _ = _prompt_sets("zoo:prompts")  # the search command takes it too
    assert len(search) == len(verify) == len(ps) // 2
    with pytest.raises(DormantError, match="unknown prompt source 'zoo:other'.*zoo:prompts"):
        resolve_prompts("zoo:other")


@pytest.mark.parametrize("line, words", [('{"messages": []}', "'messages' must be a non-empty list"),
                                         ('{"messages": [{"role": "user", "content": 5}]}', "'messages' must be a non-empty list of {role, content} objects with text content"),
                                         ('{"prompt": 5}', "'prompt' must be non-empty text, got 5"),
                                         ('{"prompt": ""}', "'prompt' must be non-empty text")])
def test_a_jsonl_line_without_usable_text_names_the_file_and_line(tmp_path, line, words):
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(PromptFileError, match=re.escape(f"p.jsonl:2: {words}")):
        load_prompt_file(jl)


def test_a_folder_or_a_file_not_utf8_is_named_as_such(tmp_path):
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(PromptFileError, match="dir.txt is a folder, not a prompt file"):
        resolve_prompts(tmp_path / "dir.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PromptFileError, match="bin.txt is not UTF-8 text"):
        resolve_prompts(str(tmp_path / "bin.txt"))
