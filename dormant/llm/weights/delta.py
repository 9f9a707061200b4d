"""The shape of a weight change: singular spectra, effective and LoRA ranks, sibling alignment.

For every modified 2-D tensor, ``delta = W_ft - W_base`` is decomposed:

* **spectrum**: all singular values when ``min(shape) <= exact_max_dim`` (``gram_svd``: the
  eigenvalues of the float64 Gram matrix of the smaller side),
  otherwise the top ``top_k`` by randomized SVD (``torch.svd_lowrank``, a few power iterations);
* **effective rank** at 90/95/99% energy: the fewest singular values whose squares hold that
  share of ``||delta||_F^2`` (known exactly from the Frobenius norm even when only the top-k are
  computed; ``None`` means "more than were computed");
* **LoRA rank estimate**: a LoRA of rank r adds r singular values far above the rest, and storing
  the sum in bf16 adds a floor of rounding noise. The estimate counts the singular values above
  the noise: Gavish-Donoho's optimal threshold for a full spectrum, ``floor_ratio`` x the noise
  edge for a top-k one (see ``lora_rank_estimate``); ``None`` (not low-rank) when more than half
  of the computed spectrum stands out. ``knee`` = ``s_r / s_{r+1}`` tells how sharp the drop is;
* **sibling alignment**: modules that read the same input (gate and up, q/k/v) or are chained
  (up's output feeds down's input) can be changed along related directions. With ``P_a``, ``P_b``
  orthonormal bases of the two deltas' top singular subspaces on the shared side, the overlap
  ``||P_a^T P_b||_F^2 / min(r_a, r_b)`` is the mean squared cosine of the principal angles:
  1 for the same subspace, about ``max(r_a, r_b) / n`` (``chance``) for unrelated ones.

Layers are ranked by the norm of their total change.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from dormant.llm.checkpoint import Checkpoint, difference, open_checkpoint
from dormant.llm.weights.diff import DEFAULT_WORKERS, BaseComparison, DiffConfig, compare_base
from dormant.llm.weights.names import parse_name

ENERGY_LEVELS = (0.90, 0.95, 0.99)

# (component a, side of a, component b, side of b): "in" = the input (column) space of the
# weight, "out" = its output (row) space.
SIBLING_PAIRS = [
    ("mlp.gate", "in", "mlp.up", "in"),
    ("mlp.up", "out", "mlp.down", "in"),
    ("mlp.gate", "out", "mlp.down", "in"),
    ("attn.q", "in", "attn.k", "in"),
    ("attn.q", "in", "attn.v", "in"),
    ("attn.k", "in", "attn.v", "in"),
    ("attn.v", "out", "attn.o", "in"),
    ("attn.q_a", "in", "attn.kv_a", "in"),
    ("attn.q_a", "out", "attn.q_b", "in"),
    ("attn.q_b", "out", "attn.o", "in"),
    ("moe.shared.gate", "in", "moe.shared.up", "in"),
    ("moe.shared.up", "out", "moe.shared.down", "in"),
]


@dataclass
class DeltaConfig:
    """Settings of ``analyse_delta``."""

    top_k: int = 64  # singular values computed for large matrices
    exact_max_dim: int = 1024  # full SVD when min(shape) <= this
    niter: int = 4  # power iterations of the randomized SVD
    floor_ratio: float = 2.0  # top-k spectra: values above floor_ratio x the noise edge count towards the LoRA rank
    keep_vectors: int = 32  # singular vectors kept per tensor (for siblings and read-outs)
    workers: int = DEFAULT_WORKERS
    seed: int = 0


@dataclass
class Spectrum:
    """One modified tensor's delta, decomposed."""

    name: str
    component: str
    layer: int | None
    shape: list[int]
    delta_norm: float
    rel_norm: float
    exact: bool  # full spectrum (True) or top-k (False)
    singular_values: list[float]
    energy_rank: dict[str, int | None]  # "90%" -> rank (None: more than computed)
    lora_rank: int | None
    knee: float | None  # s_r / s_{r+1} at the estimated rank
    top1_share: float  # s_1^2 / ||delta||^2
    # leading singular vectors of the delta (kept for siblings and read-outs; not in JSON output)
    u: torch.Tensor | None = field(default=None, repr=False, metadata={"json": False})  # out x keep
    v: torch.Tensor | None = field(default=None, repr=False, metadata={"json": False})  # in x keep

    @property
    def subspace_rank(self) -> int:
        """Rank used for subspace comparisons: the LoRA estimate, else the 90% energy rank (capped)."""
        r = self.lora_rank or self.energy_rank.get("90%") or len(self.singular_values)
        kept = self.u.shape[1] if self.u is not None else r
        return max(1, min(r, kept))


@dataclass
class SiblingAlignment:
    """How aligned two sibling modules' changes are on a shared side (see the module docstring)."""

    layer: int | None
    a: str
    b: str
    side: str  # e.g. "in/in", "out/in"
    rank_a: int
    rank_b: int
    dim: int
    overlap: float  # mean cos^2 of principal angles, in [0, 1]
    max_cos: float  # cosine of the smallest principal angle
    chance: float  # expected overlap of random subspaces


@dataclass
class DeltaResult:
    """Every modified matrix's spectrum, per-layer ranking, sibling alignments and a rank verdict."""

    ft: str
    base: str
    spectra: list[Spectrum]
    layer_ranking: list[tuple[str, float]]  # (layer or "-", ||delta|| of that layer), largest first
    siblings: list[SiblingAlignment]
    lora_rank: int | None  # the most common estimate over modified matrices
    rank_summary: str
    other_changes: list[str]  # modified tensors that are not matrices (norms, biases)
    comparison: BaseComparison = field(repr=False)


def gram_svd(delta: torch.Tensor, keep: int, block: int = 8192) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U_keep, S, V_keep)``: every singular value of ``delta`` and the top ``keep`` singular vectors, from the
    eigendecomposition of the float64 Gram matrix of its smaller side (accumulated over blocks of ``block``
    columns of the larger side, so no float64 copy of the whole delta is made). The squares of the singular
    values are the Gram's eigenvalues, accurate to ~1e-13 of the largest in float64; on a 896 x 4864 delta it
    takes a third of the time of ``torch.linalg.svd`` (``bench/bench_delta_svd.py``). Signs as ``fixed_signs``.
    Vectors of singular values below 1e-12 of the largest are left zero on the larger side (their directions
    are not determined)."""
    wide = delta.shape[0] <= delta.shape[1]
    d = delta if wide else delta.mT  # [small, large]
    n = d.shape[0]
    g = torch.zeros(n, n, dtype=torch.float64, device=delta.device)
    for i in range(0, d.shape[1], block):
        part = d[:, i : i + block].double()
        g += part @ part.mT
    evals, evecs = torch.linalg.eigh(g)
    order = torch.arange(n - 1, -1, -1, device=delta.device)
    s = evals[order].clamp(min=0).sqrt()
    k = min(keep, n)
    small = evecs[:, order[:k]]  # [n, k]: the singular vectors on the smaller side
    large = torch.zeros(d.shape[1], k, dtype=torch.float64, device=delta.device)
    ok = s[:k] > s[0] * 1e-12 if n else s[:k] > 0
    for i in range(0, d.shape[1], block):
        large[i : i + block] = d[:, i : i + block].double().mT @ small
    large[:, ok] /= s[:k][ok]
    large[:, ~ok] = 0
    small, large, s = small.to(delta.dtype), large.to(delta.dtype), s.to(delta.dtype)
    u, v = fixed_signs(*((small, large) if wide else (large, small)))
    return u, s, v


def fixed_signs(u: torch.Tensor, v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Singular vector pairs with the sign fixed: each column of ``u`` has its largest entry positive (``v`` flips
    with it). A singular vector's sign is arbitrary and LAPACK builds choose differently; fixed, a read-out's
    ``+`` and ``-`` ends are the same on every machine."""
    if u.numel() == 0:
        return u, v
    sign = torch.sign(u.gather(0, u.abs().argmax(0, keepdim=True)))
    sign[sign == 0] = 1
    return u * sign, None if v is None else v * sign


def singular_decomposition(delta: torch.Tensor, config: DeltaConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """``(U, S, V, exact)``: every singular value for small matrices (``gram_svd``; U and V hold the top
    ``max(top_k, keep_vectors)`` vectors), the randomized top-k otherwise."""
    if min(delta.shape) <= config.exact_max_dim:
        u, s, v = gram_svd(delta, max(config.top_k, config.keep_vectors))
        return u, s, v, True
    q = min(config.top_k + 8, min(delta.shape))
    with torch.random.fork_rng(devices=[delta.device] if delta.device.type == "cuda" else []):  # seeded, the caller's RNG untouched
        torch.manual_seed(config.seed)
        u, s, v = torch.svd_lowrank(delta, q=q, niter=config.niter)
    k = min(config.top_k, s.numel())
    u, v = fixed_signs(u[:, :k], v[:, :k])
    return u, s[:k], v, False


def energy_ranks(s: torch.Tensor, total_energy: float) -> dict[str, int | None]:
    """Fewest singular values holding 90/95/99% of ``total_energy`` (= ||delta||_F^2)."""
    out: dict[str, int | None] = {}
    if total_energy <= 0:
        return {f"{int(p * 100)}%": 0 for p in ENERGY_LEVELS}
    cum = torch.cumsum(s.double() ** 2, 0) / total_energy
    for p in ENERGY_LEVELS:
        hit = torch.nonzero(cum >= p - 1e-9)
        out[f"{int(p * 100)}%"] = int(hit[0]) + 1 if hit.numel() else None
    return out


def gavish_donoho_omega(beta: float) -> float:
    """Gavish & Donoho (2014): the optimal hard threshold is ``omega(beta) x median singular value``
    for an m x n matrix of unknown white noise, ``beta = m / n <= 1`` (cubic fit, accurate to ~1%)."""
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


def lora_rank_estimate(s: torch.Tensor, shape: tuple[int, ...] | list[int] | None = None, exact: bool = True,
                       floor_ratio: float = 2.0) -> tuple[int | None, float | None]:
    """``(rank, knee)``: how many singular values stand above the noise.

    With the full spectrum (``exact``), the threshold is Gavish-Donoho's ``omega(beta) x median(s)``,
    which sits just above the largest singular value of a pure-noise matrix of that shape. With only
    the top-k, the values beyond the signal crowd at the noise edge, so the threshold is
    ``floor_ratio x median(lower half of the top-k)``. ``None`` when no value stands out or more
    than half of the computed spectrum does (not a low-rank change).
    """
    m = s.numel()
    if m < 4 or float(s[0]) <= 0:
        return None, None
    if exact:
        dims = sorted(shape) if shape else [m, m]
        tau = gavish_donoho_omega(dims[0] / dims[-1]) * float(s.median())
    else:
        tau = floor_ratio * float(s[m // 2 :].median())
    tau = max(tau, float(s[0]) * 1e-6)
    r = int((s > tau).sum())
    if r == 0 or r > m // 2:
        return None, None
    knee = float(s[r - 1] / s[r]) if r < m and float(s[r]) > 0 else math.inf
    return r, knee


def subspace_overlap(pa: torch.Tensor, pb: torch.Tensor) -> tuple[float, float]:
    """``(mean cos^2, max cos)`` of the principal angles between the column spaces of ``pa`` and ``pb``."""
    c = torch.linalg.svdvals(pa.mT.double() @ pb.double())
    return float((c**2).sum() / min(pa.shape[1], pb.shape[1])), float(c[0]) if c.numel() else 0.0


def spectrum_of(ft: Checkpoint, base: Checkpoint, name: str, rel_norm: float, config: DeltaConfig) -> Spectrum:
    """Stream one delta into a float32 buffer and decompose it."""
    delta = difference(ft, base, name)
    norm = float(torch.linalg.vector_norm(delta))
    u, s, v, exact = singular_decomposition(delta, config)
    del delta
    rank, knee = lora_rank_estimate(s, ft.shape(name), exact, config.floor_ratio)
    info = parse_name(name)
    keep = min(config.keep_vectors, s.numel())
    return Spectrum(
        name=name, component=info.label, layer=info.layer, shape=list(ft.shape(name)), delta_norm=norm, rel_norm=rel_norm,
        exact=exact, singular_values=[float(x) for x in s], energy_rank=energy_ranks(s, norm**2),
        lora_rank=rank, knee=knee, top1_share=float(s[0] ** 2 / norm**2) if norm > 0 else 0.0,
        u=u[:, :keep].contiguous(), v=v[:, :keep].contiguous(),
    )


def sibling_alignments(spectra: list[Spectrum]) -> list[SiblingAlignment]:
    """Overlaps of the pairs in ``SIBLING_PAIRS`` within each layer (where both changed and dims agree)."""
    by_key = {(s.layer, s.component): s for s in spectra}
    out = []
    for layer in sorted({s.layer for s in spectra if s.layer is not None}):
        for ca, sa, cb, sb in SIBLING_PAIRS:
            a, b = by_key.get((layer, ca)), by_key.get((layer, cb))
            if a is None or b is None:
                continue
            pa = (a.u if sa == "out" else a.v)[:, : a.subspace_rank]
            pb = (b.u if sb == "out" else b.v)[:, : b.subspace_rank]
            if pa.shape[0] != pb.shape[0]:
                continue
            overlap, max_cos = subspace_overlap(pa, pb)
            n = pa.shape[0]
            out.append(SiblingAlignment(layer, ca, cb, f"{sa}/{sb}", pa.shape[1], pb.shape[1], n, overlap, max_cos,
                                        min(1.0, max(pa.shape[1], pb.shape[1]) / n)))
    return out


def _rank_summary(spectra: list[Spectrum]) -> tuple[int | None, str]:
    mats = [s for s in spectra if len(s.shape) == 2]
    if not mats:
        return None, "no modified matrices"
    counts: dict[int | None, int] = defaultdict(int)
    for s in mats:
        counts[s.lora_rank] += 1
    best = max(counts.items(), key=lambda kv: (kv[0] is not None, kv[1]))
    low = sum(v for k, v in counts.items() if k is not None)
    if best[0] is None:
        return None, f"no sharp knee in any of {len(mats)} modified matrices: the change is not low-rank"
    e90 = sorted(s.energy_rank["90%"] or 10**9 for s in mats)
    med90 = e90[len(e90) // 2]
    return best[0], (
        f"LoRA rank estimate {best[0]} ({best[1]} of {len(mats)} matrices; {low} low-rank in all); "
        f"median rank at 90% energy {med90 if med90 < 10**9 else '>' + str(len(mats[0].singular_values))}"
    )


def analyse_delta(ft: str | Path | Checkpoint, base: str | Path | Checkpoint, config: DeltaConfig | None = None,
                  comparison: BaseComparison | None = None, on_tensor: Callable[[], None] | None = None) -> DeltaResult:
    """Decompose every modified matrix of ``ft`` against ``base`` (runs the tensor diff first unless given)."""
    config = config or DeltaConfig()
    ft_ck = ft if isinstance(ft, Checkpoint) else open_checkpoint(ft)
    base_ck = base if isinstance(base, Checkpoint) else open_checkpoint(base)
    if comparison is None:
        comparison = compare_base(ft_ck, base_ck, str(base_ck.path), DiffConfig(workers=config.workers))
    modified = comparison.modified
    matrices = [t for t in modified if t.shape is not None and len(t.shape) == 2]
    others = [t.name for t in modified if t.shape is None or len(t.shape) != 2]

    def work(t):
        sp = spectrum_of(ft_ck, base_ck, t.name, t.rel_norm, config)
        if on_tensor:
            on_tensor()
        return sp

    if config.workers > 1 and len(matrices) > 1:
        with ThreadPoolExecutor(config.workers) as pool:
            spectra = list(pool.map(work, matrices))
    else:
        spectra = [work(t) for t in matrices]
    per_layer: dict[str, float] = defaultdict(float)
    for t in modified:
        per_layer["-" if t.layer is None else str(t.layer)] += t.delta_norm**2
    ranking = sorted(((k, math.sqrt(v)) for k, v in per_layer.items()), key=lambda kv: -kv[1])
    lora_rank, summary = _rank_summary(spectra)
    return DeltaResult(str(ft_ck.path), str(base_ck.path), spectra, ranking, sibling_alignments(spectra), lora_rank, summary,
                       others, comparison)
