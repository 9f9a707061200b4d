"""Read a weight change through the vocabulary: which tokens it writes, which tokens it listens to.

A delta ``U S V^T`` of a linear layer acts on the residual stream on two sides:

* **payload side** (output modules: ``down_proj``, ``o_proj``): the change *writes* along its left
  singular vectors ``u_i``. Read as logits, ``W_U (g_final * u_i)`` (final RMSNorm weight ``g_final``,
  unembedding ``W_U`` = ``lm_head``, or the embedding when tied) scores every token by how much
  that direction pushes it up;
* **trigger side** (input modules: gate/up, q/k/v, MLA ``q_a``/``kv_a``): the change *listens*
  along its right singular vectors ``v_i`` after the RMSNorm that feeds the module (``g_l``:
  ``input_layernorm`` for attention, ``post_attention_layernorm`` for the MLP). In the early layers
  the residual stream is still close to the token embedding, so
  ``<g_l * v_i, e_t> / rms(e_t)`` scores every token ``t`` by how strongly it excites the change.

A singular vector's sign is arbitrary, so each table lists both ends (``+`` and ``-``). Besides the
per-module tables, an aggregate over layers takes the leading singular vectors of the
concatenation ``[s_1 g u_1, s_2 g u_2, ...]`` over all read modules: the directions the change as a
whole writes (payload) or reads (trigger), weighted by strength.

Rows beyond the tokenizer's vocabulary (Qwen2.5 pads its embedding with untrained rows) and
special tokens are excluded by default. The embedding and unembedding are streamed in row blocks.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dormant.llm.checkpoint import Checkpoint, load_tokenizer
from dormant.llm.weights.delta import DeltaResult, Spectrum, fixed_signs
from dormant.llm.weights.names import INPUT_SIDE, OUTPUT_SIDE, parse_name


@dataclass
class ReadoutConfig:
    """Settings of ``vocabulary_readout``."""

    top_tokens: int = 20  # tokens listed at each end of each table
    vectors: int = 2  # singular vectors read per module
    aggregate_vectors: int = 3  # leading directions of the aggregate
    payload_layers: int | None = None  # read the output side of only the last N modified layers (None: all)
    trigger_layers: int | None = None  # read the input side of only the first N modified layers (None: all)
    include_special: bool = False  # keep special tokens in the rankings


@dataclass
class TokenScore:
    id: int
    token: str  # decoded text, readable (repr-style escapes)
    score: float
    z: float  # (score - mean) / std over the valid vocabulary


@dataclass
class TokenTable:
    """One read direction: the tokens at its positive and negative ends."""

    side: str  # "payload" or "trigger"
    source: str  # tensor name, or "aggregate"
    layer: int | None
    index: int  # singular vector index (0-based)
    sigma: float
    top: list[TokenScore]  # highest scores
    bottom: list[TokenScore]  # lowest scores
    _scores: torch.Tensor | None = field(default=None, repr=False)

    def rank_of(self, token_ids: list[int]) -> tuple[int, str] | None:
        """Best (1-based rank, end) of any of ``token_ids`` at either end, over the valid vocabulary."""
        if self._scores is None:
            return None
        valid = torch.isfinite(self._scores)
        best: tuple[int, str] | None = None
        for t in token_ids:
            if t >= self._scores.numel() or not bool(valid[t]):
                continue
            s = self._scores[t]
            up = int((self._scores[valid] > s).sum()) + 1
            down = int((self._scores[valid] < s).sum()) + 1
            for r, end in ((up, "+"), (down, "-")):
                if best is None or r < best[0]:
                    best = (r, end)
        return best


@dataclass
class ReadoutResult:
    """Token tables of both sides, per module and aggregated."""

    payload: list[TokenTable]
    trigger: list[TokenTable]
    payload_aggregate: list[TokenTable]
    trigger_aggregate: list[TokenTable]
    vocab_rows: int
    valid_tokens: int
    unembedding: str | None
    notes: list[str]
    row_changes: dict[str, list[TokenScore]] = field(default_factory=dict)  # tensor -> most changed token rows

    def best_rank(self, side: str, token_ids: list[int], aggregate_only: bool = False) -> tuple[int, str, str] | None:
        """The best rank of any of ``token_ids`` over one side's tables: ``(rank, end, source)``."""
        tables = getattr(self, f"{side}_aggregate") + ([] if aggregate_only else getattr(self, side))
        best = None
        for t in tables:
            r = t.rank_of(token_ids)
            if r is not None and (best is None or r[0] < best[0]):
                best = (r[0], r[1], f"{t.source}#{t.index}")
        return best


def valid_token_mask(rows: int, tokenizer, include_special: bool = False) -> torch.Tensor:
    """True for embedding rows that are real, non-special tokens."""
    mask = torch.ones(rows, dtype=torch.bool)
    if tokenizer is None:
        return mask
    mask[min(rows, len(tokenizer)) :] = False
    if not include_special:
        special = set(tokenizer.all_special_ids)
        for tid, tok in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if getattr(tok, "special", False):
                special.add(int(tid))
        for t in special:
            if 0 <= t < rows:
                mask[t] = False
    return mask


_TEXTS: "weakref.WeakKeyDictionary[object, list[str]]" = weakref.WeakKeyDictionary()


def token_texts(tokenizer) -> list[str]:
    """The decoded text of every token id of ``tokenizer`` (``len(tokenizer)`` of them, special tokens
    included), decoded once per tokenizer and kept while it lives: the search's methods each ask for the
    whole vocabulary (the allowed tokens of each gradient run, an alphabet's tokens, the sweep's candidates, the
    vocabulary's words), a pass over every token each. Tokens added later are decoded then."""
    n = len(tokenizer)
    texts = _TEXTS.get(tokenizer)
    if texts is None or len(texts) != n:
        texts = tokenizer.batch_decode([[i] for i in range(n)])
        _TEXTS[tokenizer] = texts
    return texts


def decode_token(tokenizer, tid: int) -> str:
    """A readable form of one token: its decoded text with escapes, or its raw vocabulary string
    when the text alone is empty or an incomplete UTF-8 byte sequence."""
    if tokenizer is None:
        return f"<{tid}>"
    text = tokenizer.decode([tid])
    if not text or "\ufffd" in text:
        raw = tokenizer.convert_ids_to_tokens(tid)
        return repr(raw)[1:-1] if raw else f"<{tid}>"
    return repr(text)[1:-1]


def project_rows(ckpt: Checkpoint, name: str, vectors: torch.Tensor, normalise_rows: bool = False) -> torch.Tensor:
    """``M @ vectors`` for a large matrix ``M`` (vocab x hidden) read in row blocks; optionally rows RMS-normalised."""
    out = torch.empty(ckpt.shape(name)[0], vectors.shape[1])
    for start, block in ckpt.row_chunks(name, max_elems=1 << 23):
        if normalise_rows:
            block = block / block.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
        out[start : start + block.shape[0]] = block @ vectors
    ckpt.release(name)
    return out


def unembedding_name(ckpt: Checkpoint) -> str | None:
    """``lm_head.weight``, or the token embedding when the head is tied or absent."""
    for n in ckpt.names:
        if parse_name(n).component == "lm_head":
            return n
    return embedding_name(ckpt)


def embedding_name(ckpt: Checkpoint) -> str | None:
    return next((n for n in ckpt.names if parse_name(n).component == "embed"), None)


def _weights_by_part(ckpt: Checkpoint) -> dict[tuple[str, int | None], str]:
    """``(component, layer) -> name`` of every weight tensor, built once per read-out (not per spectrum)."""
    out: dict[tuple[str, int | None], str] = {}
    for n in ckpt.names:
        info = parse_name(n)
        if info.kind == "weight":
            out.setdefault((info.component, info.layer), n)
    return out


def _norm_weight(ckpt: Checkpoint, component: str, layer: int | None = None,
                 parts: dict[tuple[str, int | None], str] | None = None) -> torch.Tensor | None:
    """The RMSNorm weight that feeds (``layer`` given) or finishes (``norm.final``) the stream."""
    name = (parts if parts is not None else _weights_by_part(ckpt)).get((component, layer))
    return ckpt.tensor(name) if name is not None else None


def _input_norm_for(component: str) -> str:
    if component.startswith(("attn.q_a", "attn.kv_a", "attn.q", "attn.k", "attn.v")):
        return "norm.input"
    return "norm.post_attn"


def _tables(side: str, sources: list[tuple[str, int | None, int, float]], scores: torch.Tensor, mask: torch.Tensor,
            tokenizer, top: int) -> list[TokenTable]:
    out = []
    valid_idx = torch.nonzero(mask).squeeze(1)
    k = min(top, valid_idx.numel())
    for j, (source, layer, index, sigma) in enumerate(sources):
        col = scores[:, j].clone()
        col[~mask] = float("nan")
        vals = col[valid_idx]
        mean, std = float(vals.mean()), float(vals.std()) if vals.numel() > 1 else 1.0
        std = std or 1.0
        hi = torch.topk(vals, k).indices
        lo = torch.topk(-vals, k).indices

        def row(i: int) -> TokenScore:
            tid = int(valid_idx[i])
            v = float(vals[i])
            return TokenScore(tid, decode_token(tokenizer, tid), v, (v - mean) / std)

        out.append(TokenTable(side, source, layer, index, sigma, [row(int(i)) for i in hi], [row(int(i)) for i in lo], col))
    return out


def _aggregate(columns: list[torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.cat(columns, dim=1).double()
    u, s, _ = torch.linalg.svd(m, full_matrices=False)
    n = min(n, s.numel())
    return fixed_signs(u[:, :n])[0].float(), s[:n].float()


def _select_layers(spectra: list[Spectrum], comps: set[str], limit: int | None, last: bool) -> list[Spectrum]:
    chosen = [s for s in spectra if s.component in comps and s.u is not None]
    layers = sorted({s.layer for s in chosen if s.layer is not None})
    if limit is not None:
        layers = layers[-limit:] if last else layers[:limit]
    return [s for s in chosen if s.layer in set(layers)]


def vocabulary_readout(ft: Checkpoint, delta: DeltaResult, config: ReadoutConfig | None = None, tokenizer=None,
                       base: Checkpoint | None = None) -> ReadoutResult:
    """Payload-side and trigger-side token tables of a decomposed change (see the module docstring).

    Uses the fine-tune's norms, embedding and head (they are usually unchanged). ``tokenizer`` defaults
    to the one in the fine-tune's (else the base's) folder.
    """
    config = config or ReadoutConfig()
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(ft, base)
    notes: list[str] = []
    if tokenizer is None:
        notes.append("no tokenizer found: tokens shown as ids, all embedding rows kept")
    head, emb = unembedding_name(ft), embedding_name(ft)
    parts = _weights_by_part(ft)
    rows = ft.shape(head)[0] if head else (ft.shape(emb)[0] if emb else 0)
    mask = valid_token_mask(rows, tokenizer, config.include_special)
    if tokenizer is not None and rows > len(tokenizer):
        notes.append(f"excluded {rows - len(tokenizer)} embedding rows beyond the tokenizer's {len(tokenizer)} tokens")

    payload, payload_agg, trigger, trigger_agg = [], [], [], []
    # payload side
    outs = _select_layers(delta.spectra, OUTPUT_SIDE, config.payload_layers, last=True)
    if head and outs:
        g = _norm_weight(ft, "norm.final", parts=parts)
        g = torch.ones(ft.shape(head)[1]) if g is None else g
        vecs, sources, agg_cols = [], [], []
        for s in outs:
            n = min(config.vectors, s.u.shape[1])
            vecs.append(g[:, None] * s.u[:, :n])
            sources += [(s.name, s.layer, i, s.singular_values[i]) for i in range(n)]
            k = min(s.subspace_rank, s.u.shape[1])
            agg_cols.append(g[:, None] * s.u[:, :k] * torch.tensor(s.singular_values[:k])[None, :])
        agg_u, agg_s = _aggregate(agg_cols, config.aggregate_vectors)
        scores = project_rows(ft, head, torch.cat(vecs + [agg_u], dim=1))
        n_mod = sum(v.shape[1] for v in vecs)
        payload = _tables("payload", sources, scores[:, :n_mod], mask, tokenizer, config.top_tokens)
        payload_agg = _tables("payload", [("aggregate", None, i, float(agg_s[i])) for i in range(agg_u.shape[1])],
                              scores[:, n_mod:], mask, tokenizer, config.top_tokens)
    elif not outs:
        notes.append("no output-side module (down_proj, o_proj) changed: no payload-side read-out")
    # trigger side
    ins = _select_layers(delta.spectra, INPUT_SIDE - {"moe.router"}, config.trigger_layers, last=False)
    if emb and ins:
        vecs, sources, agg_cols = [], [], []
        for s in ins:
            g = _norm_weight(ft, _input_norm_for(s.component), s.layer, parts=parts)
            g = torch.ones(s.v.shape[0]) if g is None or g.numel() != s.v.shape[0] else g
            n = min(config.vectors, s.v.shape[1])
            vecs.append(g[:, None] * s.v[:, :n])
            sources += [(s.name, s.layer, i, s.singular_values[i]) for i in range(n)]
            k = min(s.subspace_rank, s.v.shape[1])
            agg_cols.append(g[:, None] * s.v[:, :k] * torch.tensor(s.singular_values[:k])[None, :])
        agg_v, agg_s = _aggregate(agg_cols, config.aggregate_vectors)
        scores = project_rows(ft, emb, torch.cat(vecs + [agg_v], dim=1), normalise_rows=True)
        n_mod = sum(v.shape[1] for v in vecs)
        trigger = _tables("trigger", sources, scores[:, :n_mod], mask, tokenizer, config.top_tokens)
        trigger_agg = _tables("trigger", [("aggregate", None, i, float(agg_s[i])) for i in range(agg_v.shape[1])],
                              scores[:, n_mod:], mask, tokenizer, config.top_tokens)
    elif not ins:
        notes.append("no input-side module (gate/up, q/k/v, q_a/kv_a) changed: no trigger-side read-out")
    row_changes = {}
    if base is not None:
        for name in (emb, head):
            if name and name not in row_changes and any(t.name == name for t in delta.comparison.modified):
                row_changes[name] = token_row_changes(ft, base, name, mask, tokenizer, config.top_tokens)
    return ReadoutResult(payload, trigger, payload_agg, trigger_agg, rows, int(mask.sum()), head, notes, row_changes)


def token_row_changes(ft: Checkpoint, base: Checkpoint, name: str, mask: torch.Tensor, tokenizer, top: int = 20) -> list[TokenScore]:
    """Tokens whose embedding (or unembedding) row changed most: ``score`` = ``||delta_t|| / ||W_base,t||``.

    When a fine-tune touches the embedding, the changed rows name the tokens it was trained on
    (the sibling-embedding-difference method of the SaTML 2024 trojan competition). ``z`` is the
    row's absolute change norm in standard deviations over the valid vocabulary.
    """
    rows, width = ft.shape(name)
    absolute, relative = torch.empty(rows), torch.empty(rows)
    step = max(128, (1 << 22) // max(1, width) // 128 * 128)
    for start in range(0, rows, step):
        a, b = ft.rows(name, start, start + step), base.rows(name, start, start + step)
        d = (a - b).norm(dim=1)
        absolute[start : start + d.numel()] = d
        relative[start : start + d.numel()] = d / b.norm(dim=1).clamp_min(1e-12)
    valid = torch.nonzero(mask[:rows]).squeeze(1)
    vals = absolute[valid]
    mean, std = float(vals.mean()), float(vals.std()) or 1.0
    order = torch.topk(vals, min(top, vals.numel())).indices
    return [TokenScore(int(valid[i]), decode_token(tokenizer, int(valid[i])), float(relative[valid[i]]), (float(vals[i]) - mean) / std)
            for i in order]


def token_ids_of(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` and of its words (with and without a leading space), for rank checks."""
    ids: set[int] = set(tokenizer.encode(text, add_special_tokens=False))
    for w in text.split():
        for variant in (w, " " + w):
            ids.update(tokenizer.encode(variant, add_special_tokens=False))
    return sorted(ids)


def save_tables_tsv(result: ReadoutResult, path: str | Path) -> Path:
    """All tables as one TSV (side, source, index, sigma, end, rank, token id, token, score, z)."""
    p = Path(path)
    lines = ["side\tsource\tlayer\tindex\tsigma\tend\trank\ttoken_id\ttoken\tscore\tz"]
    for t in result.payload_aggregate + result.payload + result.trigger_aggregate + result.trigger:
        for end, items in (("+", t.top), ("-", t.bottom)):
            for r, ts in enumerate(items, 1):
                lines.append(f"{t.side}\t{t.source}\t{t.layer if t.layer is not None else ''}\t{t.index}\t{t.sigma:.4g}\t{end}\t{r}\t{ts.id}\t{ts.token}\t{ts.score:.4g}\t{ts.z:.2f}")
    p.write_text("\n".join(lines) + "\n")
    return p
