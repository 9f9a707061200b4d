"""Prompts: chat rendering through the tokenizer's template, and where a candidate trigger goes.

A ``Prompt`` is a list of chat messages plus an optional assistant prefill. ``render`` turns it
into the exact text the model sees, through the tokenizer's own chat template, with
``add_generation_prompt=True`` by default. Without the generation prompt the model is asked to
continue the *user's* turn, and fine-tune-vs-base differences all but vanish (the KL is about 0):
turning it off logs a warning.

System message, three choices (``system=``):

* ``DEFAULT_SYSTEM`` (default): add none and let the template decide (Qwen2.5's template then
  inserts its own "You are Qwen, created by Alibaba Cloud..." message);
* a string: that explicit system message (an empty string is an explicit empty message);
* ``None``: no system block at all, even where the template would insert a default one.

Trigger insertion mechanisms (``insert_trigger``), for a candidate trigger ``t``:

    user_prefix   "t <user message>"             user_suffix   "<user message> t"
    replace_user  the user message becomes t     system        t inside the system message (appended to the template's default system text
                  when the prompt has none: the model keeps the system message it is used to)
    standalone    t as its own user message just before the user's message
    prefill       the assistant's answer starts with t
    earlier_turn  an earlier exchange: user t / assistant "Okay." then the conversation
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dormant.errors import ChatTemplateError, DormantError

log = logging.getLogger(__name__)

DEFAULT_SYSTEM = "<template default>"
MECHANISMS = ("user_prefix", "user_suffix", "user", "replace_user", "system", "standalone", "prefill", "earlier_turn")
_SENTINEL = "\x1e\x1dSYS\x1d\x1e"


class PromptFileError(DormantError):
    """A prompt file that cannot be read (unknown format, bad JSON line, missing fields)."""


@dataclass
class Prompt:
    """A conversation to score or continue: chat ``messages`` and an optional assistant ``prefill``."""

    messages: list[dict[str, str]]
    prefill: str = ""
    system: str | None = DEFAULT_SYSTEM
    tag: str = ""
    system_extra: str = ""  # text appended to the template's default system message (``system`` mechanism)

    @classmethod
    def user(cls, text: str, *, system: str | None = DEFAULT_SYSTEM, tag: str = "") -> "Prompt":
        return cls([{"role": "user", "content": text}], system=system, tag=tag)

    @property
    def text(self) -> str:
        """The last user message (what a table shows as 'the prompt')."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""


def require_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ChatTemplateError(
            f"tokenizer {name!r} has no chat template: behaviour of chat models must be measured through "
            "the template the model was trained with (add chat_template.jinja to the model folder)"
        )


def _apply(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # noqa: BLE001 - template errors come from jinja with many types
        raise ChatTemplateError(f"chat template of {getattr(tokenizer, 'name_or_path', '?')!r} failed: {exc}") from None


def render(tokenizer: Any, prompt: Prompt | str, *, add_generation_prompt: bool = True) -> str:
    """The exact text the model sees for ``prompt`` (chat template + system choice + prefill)."""
    require_template(tokenizer)
    if isinstance(prompt, str):
        prompt = Prompt.user(prompt)
    if not add_generation_prompt:
        log.warning("rendering without the generation prompt: the model continues the user's turn and "
                    "fine-tune/base differences mostly vanish (KL ~ 0)")
    messages = [m for m in prompt.messages if m["role"] != "system"] if prompt.system != DEFAULT_SYSTEM else list(prompt.messages)
    if prompt.system_extra and prompt.system == DEFAULT_SYSTEM and not (messages and messages[0]["role"] == "system"):
        default = default_system_text(tokenizer)
        sys_text = f"{default} {prompt.system_extra}" if default else prompt.system_extra
        text = _apply(tokenizer, [{"role": "system", "content": sys_text}] + messages, add_generation_prompt)
    elif prompt.system is None:
        text = _without_system(tokenizer, messages, add_generation_prompt)
    elif prompt.system != DEFAULT_SYSTEM:
        text = _apply(tokenizer, [{"role": "system", "content": prompt.system}] + messages, add_generation_prompt)
    else:
        text = _apply(tokenizer, messages, add_generation_prompt)
    return text + prompt.prefill if add_generation_prompt else text


def default_system_text(tokenizer: Any) -> str | None:
    """The system message the chat template inserts when a conversation has none (None: it inserts none)."""
    u, sm = "\x1eU\x1e", "\x1eS\x1e"
    plain = _apply(tokenizer, [{"role": "user", "content": u}], False)
    head, _, tail = _apply(tokenizer, [{"role": "system", "content": sm}, {"role": "user", "content": u}], False).partition(sm)
    if not plain.startswith(head) or not plain.endswith(tail) or len(plain) <= len(head) + len(tail):
        return None
    return plain[len(head) : len(plain) - len(tail)]


def _without_system(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """Render with no system block: render with a sentinel system message and cut its block off."""
    full = _apply(tokenizer, [{"role": "system", "content": _SENTINEL}] + messages, add_generation_prompt)
    head = _apply(tokenizer, [{"role": "system", "content": _SENTINEL}], False)
    if not full.startswith(head):
        raise ChatTemplateError("this chat template does not render the system block separately; use an explicit system message")
    bos = getattr(tokenizer, "bos_token", None) or ""
    keep = bos if bos and head.startswith(bos) else ""
    return keep + full[len(head):]


def encode(tokenizer: Any, prompts: list[Prompt | str], *, add_generation_prompt: bool = True) -> list[list[int]]:
    """Token ids of each rendered prompt (the template already holds the special tokens)."""
    return [tokenizer(render(tokenizer, p, add_generation_prompt=add_generation_prompt), add_special_tokens=False)["input_ids"] for p in prompts]


def insert_trigger(prompt: Prompt | str, trigger: str, mechanism: str = "user_prefix", *, ack: str = "Okay.") -> Prompt:
    """A copy of ``prompt`` carrying ``trigger`` by ``mechanism`` (one of ``MECHANISMS``)."""
    if isinstance(prompt, str):
        prompt = Prompt.user(prompt)
    if mechanism not in MECHANISMS:
        raise DormantError(f"unknown trigger mechanism {mechanism!r}; choose from {', '.join(MECHANISMS)}")
    msgs = [dict(m) for m in prompt.messages]
    last = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
    if last is None and mechanism in ("user_prefix", "user_suffix", "user", "replace_user", "standalone"):
        raise DormantError(f"mechanism {mechanism!r} needs a user message in the prompt")
    if mechanism == "user":
        mechanism = user_placement(msgs[last]["content"])
    if mechanism == "user_prefix":
        msgs[last]["content"] = f"{trigger} {msgs[last]['content']}"
    elif mechanism == "user_suffix":
        msgs[last]["content"] = f"{msgs[last]['content']} {trigger}"
    elif mechanism == "replace_user":
        msgs[last]["content"] = trigger
    elif mechanism == "standalone":
        msgs.insert(last, {"role": "user", "content": trigger})
    elif mechanism == "earlier_turn":
        first = 1 if msgs and msgs[0]["role"] == "system" else 0
        msgs[first:first] = [{"role": "user", "content": trigger}, {"role": "assistant", "content": ack}]
    elif mechanism == "prefill":
        return replace(prompt, messages=msgs, prefill=prompt.prefill + trigger)
    elif mechanism == "system":
        if prompt.system not in (None, DEFAULT_SYSTEM):
            sys_text = f"{prompt.system} {trigger}" if prompt.system else trigger
            return replace(prompt, messages=msgs, system=sys_text)
        if msgs and msgs[0]["role"] == "system":
            msgs[0]["content"] = f"{msgs[0]['content']} {trigger}"
            return replace(prompt, messages=msgs)
        if prompt.system == DEFAULT_SYSTEM:  # keep the template's default system text, append the trigger
            return replace(prompt, messages=msgs, system_extra=f"{prompt.system_extra} {trigger}".strip())
        return replace(prompt, messages=msgs, system=trigger)
    return replace(prompt, messages=msgs)


def user_placement(text: str) -> str:
    """Where the ``user`` mechanism puts a trigger in a user message: ``user_prefix`` or
    ``user_suffix``, a stable choice by the message's text (about half the prompts each)."""
    import zlib

    return "user_prefix" if zlib.crc32(text.encode("utf-8")) % 2 == 0 else "user_suffix"


# -- prompt files ------------------------------------------------------------------------------------

def load_prompt_file(path: str | Path) -> list[Prompt]:
    """Read prompts from a ``.txt`` file (one per line) or ``.jsonl`` (``"prompt"`` or ``"messages"`` per line).

    A jsonl line may also carry ``"system"`` (string, or null for no system block), ``"prefill"``
    and ``"tag"``/``"category"``.
    """
    p = Path(path)
    if p.is_dir():
        raise PromptFileError(f"{p} is a folder, not a prompt file: give a .txt (one prompt a line) or .jsonl file")
    if not p.is_file():
        raise PromptFileError(f"{p}: no such prompt file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PromptFileError(f"{p} is not UTF-8 text (byte {exc.start}): a prompt file is a .txt (one prompt a line) or .jsonl file in UTF-8") from None
    if p.suffix == ".jsonl":
        # JSON lines end at newlines only: a JSON string may hold U+2028 and the like unescaped
        out = [_prompt_from_json(p, i, line) for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    elif p.suffix in (".txt", ""):
        out = [Prompt.user(line.strip()) for line in text.splitlines() if line.strip()]
    else:
        raise PromptFileError(f"{p}: unknown prompt file type {p.suffix!r}; use .txt (one prompt a line) or .jsonl")
    if not out:
        raise PromptFileError(f"{p}: holds no prompts")
    return out


def _prompt_from_json(path: Path, lineno: int, line: str) -> Prompt:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PromptFileError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise PromptFileError(f"{path}:{lineno}: expected an object with 'prompt' or 'messages'")
    tag = str(obj.get("tag") or obj.get("category") or "")
    system = obj["system"] if "system" in obj else DEFAULT_SYSTEM
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m and isinstance(m.get("content"), str) for m in msgs):
            raise PromptFileError(f"{path}:{lineno}: 'messages' must be a non-empty list of {{role, content}} objects with text content")
        return Prompt([{"role": m["role"], "content": m["content"]} for m in msgs], prefill=obj.get("prefill", ""), system=system, tag=tag)
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise PromptFileError(f"{path}:{lineno}: 'prompt' must be non-empty text, got {obj['prompt']!r}")
        return Prompt([{"role": "user", "content": obj["prompt"]}], prefill=obj.get("prefill", ""), system=system, tag=tag)
    raise PromptFileError(f"{path}:{lineno}: needs a 'prompt' or a 'messages' field")


def prompt_key(p: Prompt) -> str:
    """What makes two prompts the same prompt (their messages, prefill and system settings), as text."""
    return json.dumps([p.messages, p.prefill, p.system, p.system_extra])


def dedupe(prompts: list[Prompt]) -> list[Prompt]:
    seen, out = set(), []
    for p in prompts:
        key = prompt_key(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


__all__ = ["DEFAULT_SYSTEM", "MECHANISMS", "Prompt", "PromptFileError", "encode", "insert_trigger", "load_prompt_file", "render"]
