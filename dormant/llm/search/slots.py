"""Where a token-level trigger sits in each search prompt, and its value under the fine-tune.

The gradient methods (``gcg``, ``soft``) optimise token ids (or embeddings) at the trigger's
positions. A ``Slot`` holds, for every search prompt, the token ids before and after the trigger
as the objective's mechanism places it: the prompt is rendered with a marker as the trigger
(``insert_trigger`` + ``render``) and split there. A mechanism that puts a space before the
trigger (``user_suffix``, ``system``) leaves that space to the trigger's first token (``lead``),
since BPE tokenizers glue a space to the word after it.

**Round trip in context.** Token ids are only a trigger if the text they decode to, inserted by
the mechanism and re-encoded with the whole prompt, gives back the same ids (nanoGCG's filter
re-encodes the trigger alone, which misses merges with its neighbours). ``round_trip`` checks
every candidate on the text between the nearest special tokens on either side of the trigger in
every prompt (tokenizers split on special tokens before anything else, so this is the same
check as re-encoding the whole prompt, and batched); ``in_context`` is the full path, run on
every candidate before it is recorded.

**Value.** ``hard_values`` (token ids, no gradient, batched through the scoring engine with the
shared prefix computed once) and ``embed_value`` (embeddings at the trigger positions, with a
gradient) compute the same number: ``Objective.ft_value`` of the payload's log-likelihood under
the fine-tune and/or the change activation, over every search prompt. Logits are taken at the
payload positions only.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from dormant.errors import DormantError
from dormant.llm.engine.prompts import encode, insert_trigger, render
from dormant.llm.search.objectives import Objective

VOCABS = ("ascii", "words", "all")
_MARK = "\u2591\u2592\u2593"
_WORD = re.compile(r"[A-Za-z]+")


class GradientSearchError(DormantError):
    """A gradient search (gcg, soft) that cannot run as configured: an empty vocabulary, a budget
    too small for one step, an initial trigger that does not survive re-encoding."""


@dataclass
class Slot:
    objective: Objective
    lead: str  # text the mechanism puts right before the trigger that belongs to its first token (" " or "")
    before: list[list[int]]  # per prompt: ids up to the trigger (without the lead)
    after: list[list[int]]  # per prompt: ids after the trigger, up to the answer
    contexts: list[tuple[str, list[int], str, list[int]]]  # distinct (text, ids) before / after, between special tokens
    scorer: Objective | None = None  # what scores recorded candidates (default: ``objective``)
    _prefix: Any = None
    _checked: dict[tuple[int, ...], str | None] = field(default_factory=dict)

    @property
    def pair(self) -> Any:
        return self.objective.pair

    @property
    def tokenizer(self) -> Any:
        return self.objective.pair.tokenizer


def _ids(tok: Any, texts: list[str]) -> list[list[int]]:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tok(texts, add_special_tokens=False)["input_ids"]


def _specials(tok: Any) -> list[str]:
    out = set(tok.all_special_tokens)
    for t in getattr(tok, "added_tokens_decoder", {}).values():
        out.add(str(t))
    return [s for s in out if s]


def make_slot(objective: Objective) -> Slot:
    """The trigger's place in each of the objective's prompts under its mechanism.

    The ``user`` mechanism places a trigger at the start of some user messages and at the end of
    others; token ids cannot stand for the same text at both (a word's first token differs with and
    without the space before it), so the slot follows the suffix half of the prompts (the prefix
    half when there is none), and ``scorer`` (the whole objective, both halves) scores what is
    recorded."""
    if objective.mechanism == "user":
        from dormant.llm.search.objectives import placement_halves

        halves = placement_halves(objective.prompts)
        mech = "user_suffix" if halves["user_suffix"] else "user_prefix"
        slot = make_slot(objective.subset(halves[mech], mechanism=mech))
        slot.scorer = objective
        return slot
    tok = objective.pair.tokenizer
    specials = _specials(tok)
    before, after, leads, contexts = [], [], set(), {}
    for p in objective.prompts:
        text = render(tok, insert_trigger(p, _MARK, objective.mechanism))
        if text.count(_MARK) != 1:
            raise GradientSearchError(f"mechanism {objective.mechanism!r}: the chat template does not place the trigger exactly once")
        b, a = text.split(_MARK)
        head = b.rstrip(" ")
        leads.add(b[len(head):])
        cut_b = max((head.rfind(s) + len(s) for s in specials if s in head), default=0)
        cut_a = min((a.find(s) for s in specials if s in a), default=len(a))
        before.append(_ids(tok, [head])[0])
        after.append(_ids(tok, [a])[0])
        contexts.setdefault((head[cut_b:], a[:cut_a]), None)
    if len(leads) != 1:
        raise GradientSearchError(f"mechanism {objective.mechanism!r} puts different spacing before the trigger in different prompts")
    ctx = [(b, _ids(tok, [b])[0] if b else [], a, _ids(tok, [a])[0] if a else []) for b, a in contexts]
    return Slot(objective, leads.pop(), before, after, ctx)


def trigger_text(slot: Slot, ids: Sequence[int]) -> str | None:
    """The trigger text the ids stand for (their decoded text less the mechanism's lead), or None when it
    does not start with the lead, is blank, or has whitespace of its own at either end (``verify`` strips
    a trigger, and so does the ``system`` mechanism: such ids would not be the trigger that is tested)."""
    text = slot.tokenizer.decode(list(ids))
    if not text.startswith(slot.lead):
        return None
    trig = text[len(slot.lead):]
    if not trig.strip() or "\ufffd" in trig or trig != trig.strip():
        return None
    return trig


def round_trip(slot: Slot, batch: Sequence[Sequence[int]]) -> list[str | None]:
    """Per candidate: its trigger text when decoding, inserting into every prompt's context and
    re-encoding gives back the same ids; else None (remembered per id sequence)."""
    out: list[str | None] = [None] * len(batch)
    todo, texts = [], []
    for i, ids in enumerate(batch):
        key = tuple(int(x) for x in ids)
        if key in slot._checked:
            out[i] = slot._checked[key]
            continue
        trig = trigger_text(slot, key)
        slot._checked[key] = None
        if trig is None:
            continue
        todo.append((i, key, trig))
        texts += [b + slot.lead + trig + a for b, _, a, _ in slot.contexts]
    got = _ids(slot.tokenizer, texts) if texts else []
    n = len(slot.contexts)
    for k, (i, key, trig) in enumerate(todo):
        ok = all(got[k * n + j] == bi + list(key) + ai for j, (_, bi, _, ai) in enumerate(slot.contexts))
        if ok:
            slot._checked[key] = out[i] = trig
    return out


def in_context(slot: Slot, ids: Sequence[int], trigger: str) -> bool:
    """The full round trip: ``insert_trigger`` into every prompt, render and encode the whole prompt,
    and find exactly ``before + ids + after``."""
    o = slot.objective
    full = encode(slot.tokenizer, [insert_trigger(p, trigger, o.mechanism) for p in o.prompts])
    return all(f == b + list(ids) + a for f, b, a in zip(full, slot.before, slot.after))


def allowed_tokens(slot: Slot, n: int, vocab: str | Sequence[int | str] = "ascii") -> Any:
    """``[n, rows]`` bool: the tokens each trigger position may take. Never: embedding rows past the
    tokenizer's vocabulary (untrained), special tokens, tokens that do not decode to whole characters.
    ``ascii``: printable ASCII; ``words``: a space then letters (a whole word or a word's start), and at
    the first position, where the mechanism leaves no space before the trigger, letters alone; ``all``;
    or an explicit list of token ids or token texts. The first position must start with the lead."""
    import torch

    from dormant.llm.weights.readout import token_texts, valid_token_mask

    tok = slot.tokenizer
    rows = slot.pair.model.get_input_embeddings().weight.shape[0]
    base = valid_token_mask(rows, tok)
    decoded = token_texts(tok)
    texts = [decoded[i] if base[i] else "" for i in range(rows)]
    ok = torch.tensor([bool(t) and "\ufffd" not in t for t in texts]) & base
    if isinstance(vocab, str):
        if vocab not in VOCABS:
            raise GradientSearchError(f"unknown vocabulary {vocab!r}; choose from {', '.join(VOCABS)} or give a list of tokens")
        if vocab == "ascii":
            ok &= torch.tensor([t.isascii() and t.isprintable() for t in texts])
        rest = ok & torch.tensor([bool(_WORD.fullmatch(t[1:])) and t[0] == " " for t in texts]) if vocab == "words" else ok
        first = ok & torch.tensor([bool(_WORD.fullmatch(t)) for t in texts]) if vocab == "words" and not slot.lead else rest
    else:
        listed = torch.zeros(rows, dtype=torch.bool)
        for v in vocab:
            tid = v if isinstance(v, int) else _single_id(tok, v)
            if not 0 <= tid < rows:
                raise GradientSearchError(f"token id {tid} is outside the embedding's {rows} rows")
            listed[tid] = True
        rest = first = ok & listed
    if slot.lead:
        first = first & torch.tensor([t.startswith(slot.lead) for t in texts])
    mask = torch.stack([first] + [rest] * (n - 1))
    if not mask.any(dim=1).all():
        what = vocab if isinstance(vocab, str) else f"the {len(vocab)} listed tokens"
        raise GradientSearchError(f"vocabulary {what!r} leaves no allowed token for {'the first' if not first.any() else 'a'} trigger position "
                                  f"(after excluding special tokens, untrained rows and partial characters"
                                  f"{'; the first token must start with ' + repr(slot.lead) if slot.lead else ''}); "
                                  "choose a larger vocabulary (ascii, words, all) or list more tokens")
    return mask


def _single_id(tok: Any, text: str) -> int:
    ids = tok.convert_tokens_to_ids(text) if text in tok.get_vocab() else None
    if ids is None:
        enc = tok(text, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise GradientSearchError(f"listed token {text!r} is {len(enc)} tokens, not one")
        ids = enc[0]
    return int(ids)


def initial_ids(slot: Slot, init: str, n_tokens: int | None = None, filler: str = "x") -> list[int]:
    """The ids of ``init`` as it sits in context (with the lead), padded with `` x`` to ``n_tokens``;
    raises when they do not survive the round trip."""
    tok = slot.tokenizer
    text = init.strip()
    if n_tokens:
        while len(_ids(tok, [slot.lead + text])[0]) < n_tokens:
            text = f"{text} {filler}" if text else filler
    ids = _ids(tok, [slot.lead + text])[0]
    if not ids or round_trip(slot, [ids])[0] is None:
        raise GradientSearchError(f"initial trigger {init!r} does not survive decoding and re-encoding in context "
                                  f"(mechanism {slot.objective.mechanism}); start from whole words, e.g. 'x x x x x'")
    return ids


# -- values ------------------------------------------------------------------------------------------

def hard_values(slot: Slot, batch: Sequence[Sequence[int]]) -> list[float]:
    """``Objective.ft_value`` of each candidate's token ids over every search prompt (no gradient)."""
    import torch

    o = slot.objective
    o.pair.ft()
    w = o.gradient_weights()
    P, C = len(slot.before), len(batch)
    prompts = [b + list(ids) + a for ids in batch for b, a in zip(slot.before, slot.after)]
    lp = act = None
    if "payload" in w:
        cfg = replace(o.config, batch_size=max(o.config.batch_size, len(prompts)))  # one batch where memory allows (the caps hold)
        lp = torch.tensor(o.payload_logprobs(prompts, cfg)).view(C, P)
    if "activation" in w:
        act = torch.tensor(o.change_activation(prompts)).view(C, P)
    return o.ft_value(lp, act).tolist()


def payload_targets(slot: Slot, ids: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Per search prompt with the trigger ``ids`` in place: the lead and payload ids the objective scores
    (``Objective.payload_targets`` under the fine-tune); ``embed_value`` holds them fixed while it
    follows the gradient."""
    o = slot.objective
    o.pair.ft()
    return o.payload_targets([b + list(ids) + a for b, a in zip(slot.before, slot.after)])


def embed_value(slot: Slot, trigger: Any, targets: Sequence[tuple[list[int], list[int]]] | None = None) -> Any:
    """``Objective.ft_value`` of trigger embeddings ``[n, dim]`` (model dtype) over every search prompt,
    as a scalar with the autograd graph back to ``trigger``. ``targets``: per prompt, the lead and
    payload ids to score (``payload_targets``; needed when the objective asks for the payload
    ``anywhere``, since the lead depends on the trigger; by default the payload at the answer's start)."""
    import torch

    from dormant.llm.engine.scoring import _with_cache, compute_prefix
    from dormant.llm.instruments.hooks import capture

    o = slot.objective
    model = o.pair.ft()
    w = o.gradient_weights()
    pay = o.payload_ids if "payload" in w else []
    if pay and targets is None:
        if o.payload_at != "start":
            raise ValueError("embed_value: a payload asked for anywhere needs the targets (slots.payload_targets of the current ids)")
        targets = [([], pay)] * len(slot.before)
    if slot._prefix is None:
        first = slot.before[0]
        P0 = min(len(b) for b in slot.before)
        P0 = next((k for k in range(P0) if any(b[k] != first[k] for b in slot.before)), P0)
        slot._prefix = compute_prefix(model, first[:P0])
    prefix = slot._prefix
    emb = model.get_input_embeddings()
    dev = trigger.device
    rows, lasts = [], []
    for i, (b, a) in enumerate(zip(slot.before, slot.after)):
        lead, p = targets[i] if pay else ([], [])
        pre = torch.tensor(b[prefix.length:], dtype=torch.long, device=dev)
        post = torch.tensor(a + lead + p[:-1], dtype=torch.long, device=dev)
        rows.append(torch.cat([emb(pre), trigger, emb(post)]))
        lasts.append(len(b) - prefix.length + len(trigger) + len(a) + len(lead) - 1)
    L = max(r.shape[0] for r in rows)
    x = torch.zeros(len(rows), L, trigger.shape[-1], dtype=trigger.dtype, device=dev)
    mask = torch.zeros(len(rows), prefix.length + L, dtype=torch.long, device=dev)
    mask[:, : prefix.length] = 1
    for i, r in enumerate(rows):
        x[i, : r.shape[0]] = r
        mask[i, prefix.length : prefix.length + r.shape[0]] = 1
    cache = None
    if prefix.length:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(rows))
    idx = torch.arange(len(rows), device=dev)
    last = torch.tensor(lasts, device=dev)
    sites = [f"in:{n}" for n in o._directions()] if "activation" in w else []
    decoder = model.get_decoder()
    with capture(model, sites, keep=lambda h: h[idx, last], detach=False) as got:
        hidden = decoder(inputs_embeds=x, attention_mask=mask, use_cache=bool(prefix.length), **_with_cache(decoder, cache)).last_hidden_state
    lp = act = None
    if pay:
        # the payload positions only (per prompt its own payload ids: after a lead they may differ in length)
        r = torch.tensor([i for i, (_, p) in enumerate(targets) for _ in p], device=dev)
        c = torch.tensor([lasts[i] + t for i, (_, p) in enumerate(targets) for t in range(len(p))], device=dev)
        want = torch.tensor([x for _, p in targets for x in p], device=dev)
        logits = model.get_output_embeddings()(hidden[r, c]).float()
        tok_lp = logits.log_softmax(-1).gather(1, want[:, None]).squeeze(1)
        lp = torch.zeros(len(rows), device=dev, dtype=tok_lp.dtype).index_add(0, r, tok_lp)[None, :]
    if sites:
        act = o.activation_norms(got)[None, :]
    return o.ft_value(lp, act)[0]


__all__ = ["GradientSearchError", "Slot", "VOCABS", "allowed_tokens", "embed_value", "hard_values", "in_context", "initial_ids",
           "make_slot", "payload_targets", "round_trip", "trigger_text"]
