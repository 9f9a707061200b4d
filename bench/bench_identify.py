"""Signature matching speed: ``signature.probe_matches`` (hashed probe signatures) against a direct
comparison of every neuron with every reference bit.

Both run the same zoo network (MD5 by default) on the same random messages and must find the same
matches. The baseline is the obvious implementation: per layer, compare each binary neuron's
column of probe values with each reference bit's row (``(neurons, bits, probes)`` equality,
chunked to bound memory). ``probe_matches`` packs each neuron's values into a 128-bit key and
looks it up in a dict of reference keys: one lookup per neuron instead of one comparison per
(neuron, reference bit) pair.

    python bench/bench_identify.py                 # md5, first 40 layers, 128 probes
    python bench/bench_identify.py --kind sha1 --layers 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def direct_matches(net, x, ref_bits: np.ndarray, ref_ids: list) -> dict:
    """Baseline: explicit comparison of neuron columns with reference rows, layer by layer."""
    from dormant.net.logic.simulate import activate, affine

    found: dict = {}
    h = x
    for i, layer in enumerate(net.layers):
        h = activate(layer.activation, affine(layer.weight, layer.bias, h))
        binary = ((h == 0) | (h == 1)).all(axis=0) & (h.min(axis=0) != h.max(axis=0))
        cols = np.nonzero(binary)[0]
        vals = h[:, cols].T.astype(np.uint8)  # (neurons, probes)
        for start in range(0, len(cols), 64):
            eq = (vals[start : start + 64, None, :] == ref_bits[None, :, :]).all(axis=2)
            for a, b in zip(*np.nonzero(eq)):
                found.setdefault(ref_ids[b], []).append((i, int(cols[start + a])))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="md5", choices=["md5", "sha1", "sha256"])
    ap.add_argument("--layers", type=int, default=40, help="first N layers only (0: all; the baseline is slow)")
    ap.add_argument("--probes", type=int, default=128)
    args = ap.parse_args()

    from dormant.net.identify.reference_hashes import TRACERS
    from dormant.net.identify.signature import IdentifyConfig, encode, probe_matches, random_messages, reference_index
    from dormant.net.load.network import Network
    from dormant.zoo.net.build import build_net

    net = build_net(args.kind, secret="bench", pickle="never").network
    if args.layers:
        net = Network(net.layers[: args.layers], net.adapter)
    cfg = IdentifyConfig(probes=args.probes)
    msgs = random_messages(args.probes, net.layers[0].in_features, cfg, 0)
    x = encode(msgs, net.layers[0].in_features)
    index = reference_index({fn: TRACERS[fn](msgs) for fn in ("md5", "sha1", "sha256")})
    ref_ids = [ref for refs in index.values() for ref in refs]
    ref_keys = [key for key, refs in index.items() for _ in refs]
    ref_bits = np.unpackbits(np.frombuffer(b"".join(ref_keys), np.uint8).reshape(len(ref_keys), -1), axis=1)[:, : args.probes]

    t0 = time.perf_counter()
    fast, _ = probe_matches(net, x, index)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = direct_matches(net, x, ref_bits, ref_ids)
    t_slow = time.perf_counter() - t0
    same = {k: sorted(v) for k, v in fast.items()} == {k: sorted(v) for k, v in slow.items()}
    print(f"{args.kind}, {len(net.layers)} layers, {args.probes} probes, {len(ref_ids)} reference bits, {sum(len(v) for v in fast.values())} matches, same results: {same}")
    print(f"baseline direct comparison: {t_slow:.2f} s; probe_matches: {t_fast:.2f} s; speed-up x{t_slow / t_fast:.1f}")


if __name__ == "__main__":
    main()
