"""Exact simulation speed: ``dormant.net.logic.simulate.forward`` against a dense torch forward.

Both run the same zoo network (MD5 by default, all 64 steps) on the same batch of random strings.
The baseline is what one does with the puzzle's pickle: ``nn.Sequential`` of dense float32
``Linear``+``ReLU`` layers, ``torch.no_grad()``, on one thread by default (``--torch-threads``;
more threads make the dense timing erratic on a shared machine). ``forward`` is exact, on one core: a
plan that skips copy wires, multiplies only real gates sparsely, keeps a small reused value table,
and runs in float32 only while a bound proves it exact (float64 otherwise). The direct sparse loop (``forward_dense``: one CSR product per layer, every
neuron computed) is printed too. The outputs of all three are compared.

    python bench/bench_simulate.py                        # md5, 64 steps, batch 256
    python bench/bench_simulate.py --kind sha1 --rounds 20 --batch 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def dense_torch(net):
    import torch
    from torch import nn

    mods = []
    with torch.no_grad():
        for layer in net.layers:
            lin = nn.Linear(layer.in_features, layer.out_features)
            w = layer.weight.toarray() if hasattr(layer.weight, "toarray") else np.asarray(layer.weight)
            lin.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(layer.bias, dtype=np.float32)))
            mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods)


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    import torch

    from dormant.net.logic.simulate import build_plan, forward, forward_dense
    from dormant.zoo.net import build_net

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="md5", choices=["md5", "sha1", "sha256", "toy"])
    ap.add_argument("--rounds", type=int, default=None, help="compression steps (default: all)")
    ap.add_argument("--batch", type=int, default=256, help="strings per forward pass")
    ap.add_argument("--repeats", type=int, default=2, help="best of N timings")
    ap.add_argument("--torch-threads", type=int, default=1, help="threads of the dense torch baseline")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)

    built = build_net(args.kind, "lantern", rounds=args.rounds, pickle="never")
    net = built.network
    rng = np.random.default_rng(0)
    length = net.adapter.length
    texts = ["".join(chr(int(c)) for c in rng.integers(32, 127, size=rng.integers(0, min(32, length) + 1))) for _ in range(args.batch)]
    texts[0] = "lantern"
    x = np.stack([net.adapter.encode(t) for t in texts])

    t_plan, plan = timed(lambda: build_plan(net), 1)
    t_ours, y_ours = timed(lambda: forward(net, x)[0], args.repeats)
    t_csr, y_csr = timed(lambda: forward_dense(net, x), 1)
    seq = dense_torch(net)
    xt = torch.from_numpy(x.astype(np.float32))
    with torch.no_grad():
        t_torch, y_torch = timed(lambda: seq(xt).numpy(), args.repeats)

    same = np.array_equal(y_ours, y_csr) and np.array_equal(y_ours, y_torch.astype(np.float64))
    dense_params = sum(layer.out_features * layer.in_features for layer in net.layers)
    print(f"net: {args.kind}, {built.rounds} steps, {len(net.layers)} layers, {dense_params / 1e6:.1f}M dense weights, "
          f"{plan.n_gate_weights / 1e3:.0f}k gate weights after removing copy wires, value table {plan.n_slots} rows")
    print(f"batch {args.batch}; torch threads {torch.get_num_threads()}; outputs identical: {same}; accepted: {int(y_ours.sum())}")
    print(f"plan build (once per network): {t_plan:.2f} s")
    print(f"dense torch float32 forward : {args.batch / t_torch:10.1f} inputs/s  (baseline)")
    print(f"direct CSR float64 loop     : {args.batch / t_csr:10.1f} inputs/s  ({t_torch / t_csr:.1f}x)")
    print(f"simulate.forward (exact)    : {args.batch / t_ours:10.1f} inputs/s  ({t_torch / t_ours:.1f}x vs dense torch)")


if __name__ == "__main__":
    main()
