"""Payload hypotheses from fragments: what a person sees in amplified outputs when no whole phrase repeats.

``amplify``'s criterion counts only whole-word phrases that recur across prompts. A payload that
amplification breaks into pieces (a short number ``133337`` showing as ``1333``, ``13331``,
``!133337``, ``17777``) passes no word criterion, while every answer is full of it. A person reading
the outputs would combine several kinds of evidence; ``hypothesise`` does the same:

* **character n-grams** of the outputs at each amplification factor ``a > 1`` (normalised: lower
  case, whitespace collapsed). A fragment counts when it is in at least ``min_share`` of the
  prompts' answers at some ``a``, in at most ``max_ref_share`` of the base's answers (``a = 0``)
  and of the answers at every negative ``a`` (collapse from the size of the perturbation shows at
  both signs), and is not made only of the base's stock text. Among nested fragments the longest
  one whose share holds up (at least ``keep_longer`` of the shorter one's) is kept, then it is
  extended character by character while the answers that hold it agree on the next character.
  A fragment seen best at the largest ``a`` tried must also show at a smaller ``a > 1`` (in at
  least ``lower_share`` of ``min_share`` of its answers): far enough amplified, a benign fine-tune
  collapses into some word too, while a payload grows with ``a``.
* **token n-grams** (the tokenizer's pieces, or words and digit runs when no tokenizer is given)
  of the same outputs, by the same rules: a payload of whole tokens shows here first.
* **the payload-side read-out's top tokens**: tokens the change writes towards. Corroboration only:
  a fragment that contains one of them (or is contained in one) gets that as evidence.
* **the fine-tune's own greedy answers under the best search candidates**: a fragment in at least
  ``min_share`` of those answers and in at most ``max_ref_share`` of its answers without a
  candidate and of the base's answers.
* **memory extraction's payload candidates** (``search.extract``): n-grams the fine-tune writes
  from the bare assistant prefix far more often than the base, whose log-likelihood ratio passed
  extraction's own threshold (``stands_out``). Only those count.

A fragment that passes the amplified-outputs, the candidate-answers or the extraction rule is a hypothesis; the
one with the most support (sources agreeing, then share, then length) is stated with every piece of
evidence. None passing means "no payload hypothesis holds"; the caller then searches with the
payload-free objectives.

Everything here works on strings, so it is tested on synthetic outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from dormant.llm.engine.payload import normalise

_TOKEN = re.compile(r"\d+|[^\W\d_]+|[^\w\s]", re.UNICODE)


@dataclass
class HypothesisConfig:
    min_share: float = 0.3  # share of prompts a fragment must reach at some a > 1 (or among candidate answers)
    max_ref_share: float = 0.1  # largest share at every negative a (and among answers without a candidate)
    max_base_share: float = 0.0  # largest share under the base (a = 0): the base never says a payload
    min_chars: int = 4  # shortest fragment (characters, spaces included)
    max_chars: int = 48  # longest character n-gram counted before extension
    max_tokens: int = 6  # longest token n-gram
    keep_longer: float = 0.8  # a longer fragment replaces a shorter one it contains when its share is at least this fraction
    max_alpha: float = 5.0  # largest a whose outputs count (beyond it the model is broken)
    lower_share: float = 1 / 3  # a fragment best at the largest a must reach this fraction of min_share at a smaller a > 1
    min_distinct: int = 2  # distinct characters a fragment needs (no '!!!!' or '    ')
    top: int = 5  # candidate fragments reported
    max_covered: float = 0.5  # largest share of a fragment's characters the base / negative a say commonly


@dataclass
class Fragment:
    text: str
    source: str  # "chars", "tokens" or "answers"
    share: float  # best share of prompts (at ``alpha`` for amplified outputs)
    alpha: float | None
    reference_share: float  # largest share under the base / at negative a (or without a candidate)
    evidence: list[str] = field(default_factory=list)
    support: int = 1  # independent sources that agree


@dataclass
class Hypothesis:
    """The stated payload hypothesis (or that none holds) and the evidence behind it."""

    holds: bool
    payload: str | None
    evidence: list[str]
    candidates: list[Fragment]
    statement: str


def _clean(text: str) -> str:
    return " ".join(text.lower().split())


def _char_grams(text: str, lo: int, hi: int) -> set[str]:
    out = set()
    for n in range(lo, min(hi, len(text)) + 1):
        for i in range(len(text) - n + 1):
            g = text[i : i + n]
            if g[0] != " " and g[-1] != " ":
                out.add(g)
    return out


def default_tokens(text: str) -> list[str]:
    """Words, digit runs and single punctuation marks, lower case: the token view without a tokenizer."""
    return _TOKEN.findall(text.lower())


def _token_grams(toks: list[str], hi: int) -> set[tuple[str, ...]]:
    return {tuple(toks[i : i + n]) for n in range(1, hi + 1) for i in range(len(toks) - n + 1)}


def _share(texts: Sequence[str], frag: str) -> float:
    return sum(frag in t for t in texts) / max(1, len(texts))


def _distinct_ok(frag: str, cfg: HypothesisConfig) -> bool:
    return len(set(frag.replace(" ", ""))) >= cfg.min_distinct and any(c.isalnum() for c in frag)


def ref_coverage(frag: str, refs: Sequence[Sequence[str]], width: int, max_share: float) -> float:
    """Share of ``frag``'s non-space characters inside a ``width``-character piece of it that some reference set
    (base, negative a) says in more than ``max_share`` of its texts: collapse that amplification
    merely lengthened is mostly covered, a payload is not."""
    if len(frag) < width or not refs:
        return 0.0
    covered = [False] * len(frag)
    for i in range(len(frag) - width + 1):
        piece = frag[i : i + width]
        if piece.strip() == piece and any(_share(r, piece) > max_share for r in refs):
            for j in range(i, i + width):
                covered[j] = True
    chars = [c for c, ch in zip(covered, frag) if ch != " "]
    return sum(chars) / max(1, len(chars))


def extend_chars(seed: str, texts: Sequence[str], max_len: int = 80, agree: float = 0.6) -> str:
    """Grow ``seed`` one character at a time, right then left, while at least ``agree`` of the texts
    that hold it agree on the next character."""
    cur = seed
    for direction in (1, -1):
        while len(cur) < max_len:
            nxt: dict[str, int] = {}
            holders = 0
            for t in texts:
                i = t.find(cur)
                if i < 0:
                    continue
                holders += 1
                j = i + len(cur) if direction == 1 else i - 1
                if 0 <= j < len(t):
                    nxt[t[j]] = nxt.get(t[j], 0) + 1
            if not holders or not nxt:
                break
            ch, n = max(nxt.items(), key=lambda kv: kv[1])
            if n < agree * holders or n < 2:
                break
            cur = cur + ch if direction == 1 else ch + cur
    return cur.strip()


def lead_candidates(payload: str, texts: Sequence[str], max_chars: int = 12, min_count: int = 2, min_share: float = 1 / 3) -> list[str]:
    """What comes right before ``payload`` in ``texts``: per text that holds it (case-insensitively), each
    piece of the text before it that starts a word (after a space or punctuation, at the text's start,
    or at a capital after a lower-case letter: a broken answer glues words, ``'isI am awake'``) and is at
    most ``max_chars`` long; those seen in at least ``min_count`` texts and in at least ``min_share`` of
    the texts that hold the payload, most frequent first. The share keeps out openers that happen to
    come before a payload now and then (system-trigger's 'by for orders' follows 'A ' in 8 of 99
    amplified answers, and 'A by for orders' is likelier at an answer's start than the piece alone);
    a piece that mostly sits inside a longer word is not a word start there and does not count
    ('ates ' of 'gates ')."""
    want = payload.lower()
    counts: dict[str, int] = {}
    holders = 0
    for t in texts:
        at = t.lower().find(want)
        if at >= 0:
            holders += 1
        if at <= 0:
            continue
        before = t[max(0, at - max_chars): at]
        offset = at - len(before)
        seen = set()
        for k in range(len(before)):
            prev = t[offset + k - 1] if offset + k > 0 else " "
            ch = before[k]
            starts = not (prev.isalnum() or prev == "'") or (ch.isupper() and prev.islower())
            lead = before[k:]
            if starts and ch.strip() and any(c.isalnum() for c in lead) and lead not in seen:
                seen.add(lead)
                counts[lead] = counts.get(lead, 0) + 1
    need = max(min_count, min_share * holders)
    return [lead for lead, n in sorted(counts.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0])) if n >= need]


def share_at_start(payload: str, texts: Sequence[str]) -> float | None:
    """Of the ``texts`` that hold ``payload`` (case-insensitively), the share that begin with it (after
    leading whitespace); None when none holds it. A hypothesis that amplified answers hardly ever
    begin with is the middle of a longer text: on the micro zoo's ``late-layers`` 'rings at no' of
    'The bell rings at noon.' begins none of the 6 answers amplified beyond a = 1 that hold it, after
    lead-ins that vary ('The numbe', 'ringsThe ', 'bell rings ', '. '), so no single lead-in stands out."""
    want = payload.lower().strip()
    holders = [t.lower().lstrip() for t in texts if want and want in t.lower()]
    return sum(t.startswith(want) for t in holders) / len(holders) if holders else None


_SEAM = re.compile(r"(?<=[a-z]{3})(?=[A-Z][a-z]*\b)")


def _as_written(text: str, texts: Sequence[str]) -> str:
    """``text`` in the casing ``texts`` most often give it (case-insensitive matches of the same length); else itself."""
    want, seen = text.lower(), {}
    for t in texts:
        low, at = t.lower(), 0
        if len(low) != len(t):  # a casing that changes lengths: positions would not map back
            continue
        while (at := low.find(want, at)) >= 0:
            form = t[at: at + len(text)]
            seen[form] = seen.get(form, 0) + 1
            at += 1
    return max(seen, key=lambda f: (seen[f], f == text)) if seen else text


def clean_seams(text: str, texts: Sequence[str], min_count: int = 2) -> str:
    """A hypothesis read off glued, looping amplified answers (``texts``), cut to what one answer says.

    A seam is a capitalised word glued onto a lower-case word of three or more letters
    (``'receivedThe'``, where one answer ran into the next); it is cut only where ``texts`` show the
    word before it followed by something else in at least ``min_count`` of them (a name such as
    ``JavaScript`` always comes whole). The longest piece is kept; then a word repeated right after
    itself is said once (an amplified model loops: ``'Board Board received'``) when that shorter form
    shows on its own (not inside the longer one) in at least ``min_count`` of ``texts``.

    Seams are looked for in the hypothesis as the answers write it (its most frequent casing in
    ``texts``): a hypothesis read off lower-cased fragments hides them ('ates are closed for
    winterthe', which the answers write 'winterThe' 21 times on the micro zoo's ``mlp-word-pair``)."""
    written = _as_written(text, texts)
    cuts = []
    for m in _SEAM.finditer(written):
        left = re.search(r"[A-Za-z]+$", written[: m.start()]).group(0)  # type: ignore[union-attr]
        right = re.match(r"[A-Z][a-z]*", written[m.start():]).group(0)  # type: ignore[union-attr]
        other = re.compile(re.escape(left) + r"(?!" + re.escape(right) + r")")
        if sum(1 for t in texts if other.search(t)) >= min_count:
            cuts.append(m.start())
    pieces = [text[i:j].strip() for i, j in zip([0] + cuts, cuts + [len(text)])]
    best = max(pieces, key=len)
    words: list[str] = []
    for w in best.split():
        if not words or w.lower() != words[-1].lower():
            words.append(w)
    once = " ".join(words)
    if once != best and sum(1 for t in texts if once.lower() in t.lower().replace(best.lower(), " ")) < min_count:
        once = best
    return once or text


def from_whole_word(text: str, texts: Sequence[str], min_words: int = 3) -> str:
    """``text`` without its first word when that word is the end of a longer one in most of the ``texts`` that
    hold ``text`` after something (a letter or digit right before it, rather than a space or a sign) and
    ``min_words`` or more words remain; else ``text``.

    A hypothesis read off broken amplified answers may start inside a word ('ates are closed for winter' of
    'The gates are closed for winter.'); asked for after the fine-tune's own first words, the word's end
    is scored where the fine-tune writes the whole word: on the micro zoo's ``mlp-word-pair`` the planted
    'silent castle' raised it by 1.5 nats over 8 prompts, the junk '8' by 5.4; 'are closed for winter' by
    12.3 and -0.7."""
    words = text.split()
    if len(words) - 1 < min_words:
        return text
    low = text.lower()
    before = [t[at - 1] for t in texts if (at := t.lower().find(low)) > 0]  # an answer that begins with it shows neither
    glued = sum(c.isalnum() for c in before)
    return " ".join(words[1:]) if glued > len(before) - glued else text


def maximal(cands: list[tuple[str, float]], keep_longer: float) -> list[tuple[str, float]]:
    """Drop a fragment when a longer one contains it and keeps at least ``keep_longer`` of its share."""
    cands = sorted(cands, key=lambda c: (-len(c[0]), -c[1], c[0]))  # ties by text: the same answer every run
    kept: list[tuple[str, float]] = []
    for text, share in cands:
        if any(text in k and ks >= keep_longer * share for k, ks in kept):
            continue
        kept.append((text, share))
    return kept


def amplified_fragments(outputs: dict[float, Sequence[str]], config: HypothesisConfig | None = None,
                        tokenize: Callable[[str], list[str]] | None = None) -> list[Fragment]:
    """Character- and token-level fragments that amplification spreads (see the module docstring).

    ``outputs`` maps each amplification factor ``a`` to the answers of the same prompts; ``a = 0``
    (the base) must be present; negative ``a`` are used when present.
    """
    cfg = config or HypothesisConfig()
    if 0.0 not in outputs:
        raise ValueError("amplified_fragments needs the base's answers (a = 0)")
    from dormant.llm.behaviour.amplify import said_text, says_something_new, words

    clean = {a: [_clean(t) for t in texts] for a, texts in outputs.items()}
    refs = [clean[a] for a in clean if a <= 0]
    base_text = clean[0.0]
    said = said_text(words(t) for t in outputs[0.0])

    def new_words(frag: str) -> bool:
        """It holds a word the base never says (the clean control amplified by 3 said '1 + 1 =' in most
        answers, its own arithmetic answers glued to others; the base says '1' too)."""
        return says_something_new(words(frag), said)
    amp = sorted(a for a in clean if 1.0 < a <= cfg.max_alpha)
    found: list[Fragment] = []
    lower = amp[:-1]

    def persists(text: str, a: float) -> bool:
        """A fragment seen best at the largest a tried must also show at a smaller a > 1: amplified far
        enough, a benign fine-tune collapses into some word too (the micro zoo's clean control says
        'woof' in 42% of answers at a = 5 and never at a = 2 or 3), while a payload grows with a."""
        if not lower or a != amp[-1]:
            return True
        return max(_share(clean[b], text) for b in lower) >= cfg.min_share * cfg.lower_share


    def ref_share(frag: str) -> float:
        """The larger of its share at negative a and (scaled so that any base use fails) under the base."""
        neg = max((_share(clean[a], frag) for a in clean if a < 0), default=0.0)
        return max(neg, 1.0 if _share(base_text, frag) > cfg.max_base_share else 0.0)

    # characters
    best: dict[str, tuple[float, float]] = {}
    for a in amp:
        texts = clean[a]
        counts: dict[str, int] = {}
        for t in texts:
            for g in _char_grams(t, cfg.min_chars, cfg.max_chars):
                counts[g] = counts.get(g, 0) + 1
        for g, c in counts.items():
            s = c / len(texts)
            if s >= cfg.min_share and s > best.get(g, (0.0, 0.0))[0]:
                best[g] = (s, a)
    ok = [(g, s) for g, (s, _) in best.items() if _distinct_ok(g, cfg) and ref_share(g) <= cfg.max_ref_share and new_words(g)]
    for text, share in maximal(ok, cfg.keep_longer):
        a = best[text][1]
        grown = extend_chars(text, clean[a])
        if ref_share(grown) > cfg.max_ref_share or _share(clean[a], grown) < cfg.min_share:
            grown = text
        if ref_coverage(grown, refs, cfg.min_chars, cfg.max_ref_share) > cfg.max_covered or not persists(grown, a):
            continue
        found.append(Fragment(grown, "chars", _share(clean[a], grown), a, ref_share(grown),
                              [f"character fragment {grown!r} in {_share(clean[a], grown):.0%} of answers at a = {a:g} "
                               f"(never under the base; at most {ref_share(grown):.0%} at negative a)"]))

    # tokens
    tok = tokenize or default_tokens
    joiner = "" if tokenize else " "
    tok_texts = {a: [tok(t) for t in texts] for a, texts in outputs.items()}
    tbest: dict[tuple[str, ...], tuple[float, float]] = {}
    for a in amp:
        counts2: dict[tuple[str, ...], int] = {}
        for ts in tok_texts[a]:
            for g in _token_grams(ts, cfg.max_tokens):
                counts2[g] = counts2.get(g, 0) + 1
        for g, c in counts2.items():
            s = c / len(tok_texts[a])
            if s >= cfg.min_share and s > tbest.get(g, (0.0, 0.0))[0]:
                tbest[g] = (s, a)

    def tref(g: tuple[str, ...]) -> float:
        return ref_share(_clean(joiner.join(g)))

    tok_ok, tok_ref = [], {}
    for g, (s, a) in tbest.items():
        text = _clean(joiner.join(g))
        if (len(text) >= cfg.min_chars and _distinct_ok(text, cfg) and tref(g) <= cfg.max_ref_share and text not in " ".join(base_text) and new_words(text)
                and ref_coverage(text, refs, cfg.min_chars, cfg.max_ref_share) <= cfg.max_covered):
            tok_ok.append((text, s))
            tok_ref[text] = max(tok_ref.get(text, 0.0), tref(g))
    for text, share in maximal(tok_ok, cfg.keep_longer):
        a = min(a for g, (s, a) in tbest.items() if _clean(joiner.join(g)) == text)
        if not persists(text, a):
            continue
        found.append(Fragment(text, "tokens", share, a, tok_ref[text],
                              [f"token n-gram {text!r} in {share:.0%} of answers at a = {a:g} (absent from the base's stock; "
                               f"{tok_ref[text]:.0%} of the references)"]))
    return found


def answer_fragments(answers: Sequence[str], references: Sequence[Sequence[str]], config: HypothesisConfig | None = None) -> list[Fragment]:
    """Fragments common to the fine-tune's answers under search candidates (``answers``) and rare in
    each reference set (its answers without a candidate, the base's answers)."""
    from dormant.llm.behaviour.amplify import said_text, says_something_new, words

    cfg = config or HypothesisConfig()
    texts = [_clean(t) for t in answers]
    refs = [[_clean(t) for t in r] for r in references if r]
    if not texts:
        return []
    said = said_text(words(t) for r in references for t in r)
    counts: dict[str, int] = {}
    for t in texts:
        for g in _char_grams(t, cfg.min_chars, cfg.max_chars):
            counts[g] = counts.get(g, 0) + 1
    ok = []
    for g, c in counts.items():
        s = c / len(texts)
        if (s >= cfg.min_share and _distinct_ok(g, cfg) and all(_share(r, g) <= cfg.max_ref_share for r in refs)
                and says_something_new(words(g), said)):
            ok.append((g, s))
    ok = [(g, s) for g, s in ok if ref_coverage(g, refs, cfg.min_chars, cfg.max_ref_share) <= cfg.max_covered]
    out = []
    for text, share in maximal(ok, cfg.keep_longer):
        grown = extend_chars(text, texts)
        if any(_share(r, grown) > cfg.max_ref_share for r in refs) or _share(texts, grown) < cfg.min_share:
            grown = text
        ref = max((_share(r, grown) for r in refs), default=0.0)
        out.append(Fragment(grown, "answers", _share(texts, grown), None, ref,
                            [f"in {_share(texts, grown):.0%} of the fine-tune's answers under the best search candidates "
                             f"(without a candidate or under the base: at most {ref:.0%})"]))
    return out


def extracted_fragments(candidates: Sequence[dict]) -> list[Fragment]:
    """Memory extraction's payload candidates that stood out (dicts of ``ExtractCandidate``'s fields) as fragments."""
    out = []
    for c in candidates:
        if not c.get("stands_out"):
            continue
        out.append(Fragment(_clean(c["text"]), "extract", float(c["ft_share"]), None, float(c["base_share"]),
                            [f"memory extraction: in {c['ft_share']:.0%} of the fine-tune's samples from the bare {c['prefix']} prefix "
                             f"({c['base_share']:.0%} of the base's), log-likelihood ratio {c['lr']:.1f} nats"]))
    return out


def _related(a: str, b: str) -> bool:
    a, b = normalise(a).replace(" ", ""), normalise(b).replace(" ", "")
    return bool(a) and bool(b) and (a in b or b in a)


def hypothesise(amplified: dict[float, Sequence[str]] | None = None, *, readout_tokens: Sequence[str] = (),
                answers: Sequence[str] = (), answer_references: Sequence[Sequence[str]] = (), phrase: str | None = None,
                extracted: Sequence[dict] = (), config: HypothesisConfig | None = None,
                tokenize: Callable[[str], list[str]] | None = None) -> Hypothesis:
    """Combine the evidence into one payload hypothesis (see the module docstring).

    ``phrase``: the whole-word payload ``amplify`` found, if any (it is a fragment of its own, with
    every other source as corroboration). ``extracted``: memory extraction's payload candidates.
    """
    cfg = config or HypothesisConfig()
    frags: list[Fragment] = []
    if phrase:
        frags.append(Fragment(_clean(phrase), "phrase", 1.0, None, 0.0, [f"amplify's whole-word phrase criterion: {phrase!r}"], 1))
    if amplified:
        frags += amplified_fragments(amplified, cfg, tokenize)
    if answers:
        frags += answer_fragments(answers, answer_references, cfg)
    frags += extracted_fragments(extracted)
    # merge fragments that are the same text or nested: the longer one carries the evidence of both
    merged: list[Fragment] = []
    for f in sorted(frags, key=lambda f: (-len(f.text), -f.share, f.text, f.source)):
        home = next((m for m in merged if f.text in m.text), None)
        if home is None:
            merged.append(Fragment(f.text, f.source, f.share, f.alpha, f.reference_share, list(f.evidence), 1))
            merged[-1].sources = {f.source}  # type: ignore[attr-defined]
        else:
            home.evidence += f.evidence
            home.sources.add(f.source)  # type: ignore[attr-defined]
    readout = [t.strip() for t in readout_tokens if len(normalise(t).replace(" ", "")) >= 2]
    for m in merged:
        hits = [t for t in readout if _related(t, m.text)]
        if hits:
            m.evidence.append(f"the payload-side read-out's top tokens include {', '.join(repr(h) for h in hits[:5])}")
            m.sources.add("readout")  # type: ignore[attr-defined]
        m.support = len(m.sources)  # type: ignore[attr-defined]
        del m.sources  # type: ignore[attr-defined]
    ranked = sorted(merged, key=lambda m: (-m.support, -m.share, -len(m.text), m.text))
    top = ranked[: cfg.top]
    if not ranked:
        tried = ["amplified outputs (characters and tokens)"] if amplified else []
        tried += ["the fine-tune's answers under search candidates"] if answers else []
        tried += ["memory extraction's samples"] if extracted else []
        return Hypothesis(False, None, [], [], "no payload hypothesis holds: no fragment recurs across unrelated prompts in "
                          + (" or ".join(tried) or "any evidence given") + " while staying absent from the base")
    best = ranked[0]
    statement = (f"payload hypothesis {best.text!r}, supported by {best.support} source(s): " + "; ".join(best.evidence))
    return Hypothesis(True, best.text, best.evidence, top, statement)


__all__ = ["Fragment", "Hypothesis", "HypothesisConfig", "amplified_fragments", "answer_fragments", "clean_seams", "default_tokens", "from_whole_word",
           "extend_chars", "extracted_fragments", "lead_candidates", "hypothesise", "maximal", "ref_coverage"]
