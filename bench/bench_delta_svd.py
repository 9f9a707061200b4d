"""The exact spectrum of a weight change: ``gram_svd`` vs ``torch.linalg.svd``, on the real-shape subject.

``dormant delta`` computes every singular value of each modified matrix whose smaller side is at most
``exact_max_dim`` (1024): on Qwen2.5-0.5B's shapes, every MLP matrix (896 x 4864). Baseline:
``torch.linalg.svd(delta, full_matrices=False)`` (what it called before). Ours: ``gram_svd``, the
eigendecomposition of the float64 Gram matrix of the smaller side, with the top 64 singular vectors.

Both decompose the same deltas (the real-shape fine-tune's rank-16 change, read from the two
checkpoints, ``--matrices`` of them) in the same process, one after the other per matrix, with the same
thread count. Printed: the total seconds of each, the ratio (the speed-up), the largest difference of
the singular values relative to the largest one, and whether the LoRA rank estimate and the effective
ranks agree on every matrix. Then the whole ``analyse_delta`` on all modified matrices, as ``dormant delta``
runs it (its worker threads), once with the baseline put in ``gram_svd``'s place and once as it is.
No absolute-time claims.

    .venv/bin/python bench/bench_delta_svd.py                 # 12 matrices, 1 thread
    .venv/bin/python bench/bench_delta_svd.py --threads 2     # as dormant delta runs on 2 cores (torch's default threads)
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matrices", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from dormant.llm.checkpoint import difference, open_checkpoint
    from dormant.llm.weights.delta import energy_ranks, gram_svd, lora_rank_estimate
    from dormant.llm.weights.diff import DiffConfig, compare_base
    from dormant.zoo.llm.real_shape import build_real_shape

    torch.set_num_threads(args.threads)
    subject = build_real_shape()
    ft, base = open_checkpoint(subject.ft), open_checkpoint(subject.base)
    names = [t.name for t in compare_base(ft, base, str(base.path), DiffConfig()).modified if t.shape and len(t.shape) == 2][: args.matrices]
    t_svd = t_gram = 0.0
    worst = 0.0
    agree = 0
    shape = ""
    for name in names:
        d = difference(ft, base, name)
        shape = shape or "x".join(map(str, d.shape))
        t = time.perf_counter()
        _, s_ref, _ = torch.linalg.svd(d, full_matrices=False)
        t_svd += time.perf_counter() - t
        t = time.perf_counter()
        _, s, _ = gram_svd(d, keep=64)
        t_gram += time.perf_counter() - t
        worst = max(worst, float((s.double() - s_ref.double()).abs().max() / s_ref[0]))
        total = float(d.double().norm() ** 2)
        same = (lora_rank_estimate(s, d.shape)[0] == lora_rank_estimate(s_ref, d.shape)[0]
                and energy_ranks(s, total) == energy_ranks(s_ref, total))
        agree += same
    print(f"{len(names)} modified matrices of the real-shape fine-tune (first: {names[0]}, {shape}), {args.threads} thread(s)")
    print(f"  torch.linalg.svd (baseline): {t_svd:.2f}s")
    print(f"  gram_svd:                    {t_gram:.2f}s")
    print(f"  speed-up (baseline / gram_svd): {t_svd / t_gram:.2f}x")
    print(f"  largest singular-value difference / largest value: {worst:.1e}; LoRA and effective ranks agree on {agree} of {len(names)}")

    import dormant.llm.weights.delta as delta_mod

    def lapack(d, keep):  # the baseline in gram_svd's place: full SVD, the top ``keep`` vectors kept
        u, s, vh = torch.linalg.svd(d, full_matrices=False)
        return u[:, :keep], s, vh.mT[:, :keep]

    ours = delta_mod.gram_svd
    runs = {}
    for label, fn in (("torch.linalg.svd", lapack), ("gram_svd", ours)):
        delta_mod.gram_svd = fn
        t = time.perf_counter()
        res = delta_mod.analyse_delta(ft, base)
        runs[label] = (time.perf_counter() - t, res.rank_summary)
    delta_mod.gram_svd = ours
    (a, sa), (b, sb) = runs.values()
    print(f"analyse_delta on all {len(res.spectra)} modified matrices ({delta_mod.DeltaConfig().workers} worker threads, "
          f"{args.threads} intra-op thread(s) each): "
          f"baseline {a:.1f}s, gram_svd {b:.1f}s, speed-up {a / b:.2f}x; same summary: {sa == sb} ({sb})")


if __name__ == "__main__":
    main()
