"""Build, verify, save and cache a zoo network: ``build_net("md5", secret="bitter lesson")``.

A built net is one folder::

    network.json + layers.safetensors   the dormant folder format (sparse CSR layers, no pickle)
    model.pt                            a full-module pickle of ``nn.Sequential(Linear, ReLU, ...)``
                                        as in the puzzle, with the input adapter as plain data in
                                        the attribute ``dormant_adapter`` (no lambda)
    manifest.json                       the answer key for tests: function, secret, target digest,
                                        compiler style, rounds, widths, where the digest bits live
                                        ("digest": layer and lanes when one layer holds them all,
                                        and places, [layer, lane] per bit)) and where each step's state words live ("words":
                                        name -> [layer, lane] per bit, least significant first),
                                        gate census, build verification. Analysis tools must not
                                        read it.

``pickle="auto"`` writes ``model.pt`` in float32 when the dense weights take at most
``PICKLE_LIMIT_BYTES`` (300 MB), else in float16 when that fits (every weight and bias of these
circuits is a small integer, exact in float16), else skips it and says so in the manifest.
``"always"`` writes it regardless (float32), ``"never"`` skips it.

Every build is verified before it is saved: the output is 1 on the secret, 0 on near misses (one
character changed) and on random strings, and the digest lanes equal the reference digest
(``reference.digest``, which is ``hashlib`` at full rounds) on all of them.

Without ``out``, nets are cached under ``$DORMANT_CACHE/netzoo/<key>`` (default
``~/.cache/dormant/netzoo/<key>``), the key hashing the function, secret, rounds and the builder's
source code, so tests and benchmarks build each net once and a changed builder never serves a stale net.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import string
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dormant.cache import cache_root, locked, source_digest
from dormant.errors import DormantError
from dormant.net.load.network import InputAdapter, Network
from dormant.net.load.spec_format import load_network_folder, save_network
from dormant.net.logic.simulate import run_text
from dormant.zoo.net.compile import compile_circuit, gate_census
from dormant.zoo.net.hashes import CIRCUITS, STYLES
from dormant.zoo.net.message import MAX_MESSAGE
from dormant.zoo.net.reference import FULL_ROUNDS, TOY_LENGTH, digest

BUILDER_VERSION = 2
MANIFEST_NAME = "manifest.json"
PICKLE_NAME = "model.pt"
PICKLE_LIMIT_BYTES = 300 * 2**20
KINDS = tuple(CIRCUITS)


class ZooNetError(DormantError):
    """Bad arguments for a zoo network (unknown function, secret that cannot be encoded, ...)."""


@dataclass(frozen=True)
class NetSpec:
    """What a zoo net computes: ``1`` iff ``digest(kind, input, rounds, length_bug) == target``."""

    kind: str
    secret: str
    rounds: int
    length_bug: bool = False
    style: str = "standard"  # compiler style (``hashes.STYLES``)
    layout: str = "compact"  # compact (as compiled) or puzzle (stretched and padded onto the puzzle's widths)

    @property
    def target(self) -> bytes:
        return self.digest(self.secret)

    def digest(self, text: str) -> bytes:
        return digest(self.kind, text.encode("latin-1"), self.rounds, self.length_bug)

    @property
    def exact_lengths(self) -> str:
        """String lengths for which the digest is the real (possibly step-reduced) hash."""
        return "0-31" if self.length_bug else f"0-{max_length(self.kind)}"


LAYOUTS = ("compact", "puzzle")


def make_spec(kind: str, secret: str, rounds: int | None = None, length_bug: bool = False, style: str = "standard", layout: str = "compact") -> NetSpec:
    """Validate the arguments (``ZooNetError`` naming the problem) and resolve the step count."""
    check_secret(kind, secret)
    full = FULL_ROUNDS[kind]
    n = full if rounds is None else int(rounds)
    if not 1 <= n <= full:
        raise ZooNetError(f"{kind}: rounds must be 1..{full}, got {rounds}")
    if length_bug and kind == "toy":
        raise ZooNetError("the toy checksum has no length field; --length-bug applies to md5, sha1 and sha256")
    if style not in STYLES:
        raise ZooNetError(f"unknown compiler style {style!r}; choose one of {', '.join(STYLES)}")
    if layout not in LAYOUTS:
        raise ZooNetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "puzzle" and (kind, n, style) != ("md5", full, "standard"):
        raise ZooNetError("--layout puzzle lays out the puzzle's own function: full-round md5 in the standard style")
    return NetSpec(kind, secret, n, bool(length_bug), style, layout)


@dataclass
class BuiltNet:
    kind: str
    secret: str
    rounds: int
    length_bug: bool
    target: bytes
    folder: Path
    pickle_path: Path | None
    manifest: dict
    network: Network = field(repr=False)

    @property
    def style(self) -> str:
        return str(self.manifest.get("style", "standard"))

    @property
    def digest_layer(self) -> int | None:
        """The layer holding every digest bit (None when the bits are made in different layers)."""
        layer = self.manifest["digest"]["layer"]
        return None if layer is None else int(layer)

    @property
    def digest_lanes(self) -> list[int]:
        return list(self.manifest["digest"]["lanes"])

    @property
    def digest_places(self) -> list[tuple[int, int]]:
        """(layer, lane) where each digest bit is made, in digest bit order."""
        return [tuple(p) for p in self.manifest["digest"]["places"]]


def max_length(kind: str) -> int:
    return TOY_LENGTH if kind == "toy" else MAX_MESSAGE


def check_secret(kind: str, secret: str) -> bytes:
    """The secret as bytes, or a ``ZooNetError`` saying why it cannot be an input of this net."""
    if kind not in CIRCUITS:
        raise ZooNetError(f"unknown zoo function {kind!r}; choose one of {', '.join(KINDS)}")
    limit = max_length(kind)
    if len(secret) > limit:
        raise ZooNetError(f"secret {secret!r} has {len(secret)} characters; {kind} nets take at most {limit}")
    bad = [ch for ch in secret if not 1 <= ord(ch) <= 255]
    if bad:
        raise ZooNetError(f"secret {secret!r} contains {bad[0]!r}: characters must have codes 1..255 (no NUL)")
    return secret.encode("latin-1")


def _source_digest() -> str:
    """Hash of the modules that decide a net's layout: any change to them gives new cache keys."""
    return source_digest(Path(__file__).parent, (
        "circuit.py", "asap_style.py", "compile.py", "message.py", "hashes.py", "comparator.py", "reference.py", "puzzle_layout.py",
        "data/puzzle_widths.txt",
    ))


def cache_key(spec: NetSpec) -> str:
    blob = json.dumps({**asdict(spec), "version": BUILDER_VERSION, "source": _source_digest()}, sort_keys=True)
    return f"{spec.kind}-r{spec.rounds}{'-bug' if spec.length_bug else ''}{'' if spec.style == 'standard' else '-' + spec.style}{'' if spec.layout == 'compact' else '-' + spec.layout}-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- verification
def _probe_strings(spec: NetSpec, n_random: int, seed: int) -> tuple[list[str], int]:
    """The secret, near misses (one character changed, added or removed), random strings."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " .,-"
    secret, limit = spec.secret, max_length(spec.kind)
    probes = [secret]
    positions = list(range(len(secret)))
    rng.shuffle(positions)
    for i in positions[:12]:
        ch = rng.choice([a for a in alphabet if a != secret[i]])
        probes.append(secret[:i] + ch + secret[i + 1 :])
    if len(secret) < limit:
        probes.append(secret + "s")
    if secret:
        probes.append(secret[:-1])
    n_near = len(probes) - 1
    for _ in range(n_random):
        probes.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, min(31, limit)))))
    probes.append("".join(rng.choice(alphabet) for _ in range(limit)))
    return probes, n_near


def verify(net: Network, spec: NetSpec, digest_places: list[tuple[int, int]], *, n_random: int = 48, seed: int = 0) -> dict:
    """Check outputs and digest bits (each at its ``(layer, lane)``) on probe strings; raise
    ``AssertionError`` on any mismatch."""
    probes, n_near = _probe_strings(spec, n_random, seed)
    out, acts = run_text(net, probes, record=sorted({p[0] for p in digest_places}))
    out, bits = out[:, 0], np.stack([acts[layer][:, lane] for layer, lane in digest_places], axis=1)
    target = spec.target
    n_hits = 0
    for text, y, b in zip(probes, out, bits):
        ref = spec.digest(text)
        ref_bits = np.array([(byte >> k) & 1 for byte in ref for k in range(8)], dtype=np.float64)
        if not np.array_equal(b, ref_bits):
            raise AssertionError(f"{spec.kind} net: digest lanes differ from the reference on {text!r}")
        expected = 1.0 if ref == target else 0.0
        if y != expected:
            raise AssertionError(f"{spec.kind} net: output {y} on {text!r}, expected {expected}")
        n_hits += int(expected)
    return {"probes": len(probes), "near_misses": n_near, "random": len(probes) - 1 - n_near, "hits": n_hits}


# ----------------------------------------------------------------------------- pickle
def dense_bytes(net: Network, itemsize: int = 4) -> int:
    return sum((layer.out_features * layer.in_features + layer.out_features) * itemsize for layer in net.layers)


def pickle_plan(net: Network, policy: str) -> tuple[str | None, str]:
    """``(dtype or None, note)`` for the full-module pickle under ``policy``."""
    if policy not in ("auto", "always", "never"):
        raise ZooNetError(f"pickle policy {policy!r}: use auto, always or never")
    mb = dense_bytes(net) / 2**20
    if policy == "never":
        return None, "skipped (pickle=never)"
    if policy == "always" or dense_bytes(net) <= PICKLE_LIMIT_BYTES:
        return "float32", f"float32, {mb:.0f} MB dense"
    if dense_bytes(net, 2) <= PICKLE_LIMIT_BYTES:
        return "float16", f"float16 (exact for these integer weights), {mb / 2:.0f} MB dense; float32 would take {mb:.0f} MB"
    return None, f"skipped: dense float16 would take {mb / 2:.0f} MB (> {PICKLE_LIMIT_BYTES >> 20} MB); use the dormant folder format"


def write_pickle(net: Network, path: Path, dtype: str = "float32") -> Path:
    """``torch.save`` an ``nn.Sequential`` of ``Linear``/``ReLU`` with ``dormant_adapter`` as plain data."""
    import torch
    from torch import nn

    torch_dtype = {"float32": torch.float32, "float16": torch.float16}[dtype]
    modules: list[nn.Module] = []
    with torch.no_grad():
        for layer in net.layers:
            lin = nn.Linear(layer.in_features, layer.out_features, dtype=torch_dtype)
            w = layer.weight.toarray() if hasattr(layer.weight, "toarray") else np.asarray(layer.weight)
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(layer.bias, dtype=np.float32)))
            modules += [lin, nn.ReLU()]
    seq = nn.Sequential(*modules)
    seq.dormant_adapter = {"kind": net.adapter.kind, "length": net.adapter.length}
    partial = path.with_name(path.name + ".partial")
    torch.save(seq, partial)
    os.replace(partial, path)  # readers never see a half-written file
    return path


# ----------------------------------------------------------------------------- build
def compile_net(spec: NetSpec):
    """``(circuit, CompileResult, FitReport or None)`` of the net described by ``spec``; the puzzle
    layout stretches and pads the compiled net onto the puzzle's widths (``puzzle_layout``)."""
    circuit = CIRCUITS[spec.kind](spec.target, spec.rounds, length_bug=spec.length_bug, style=spec.style)
    adapter = InputAdapter(kind="char_codes", length=max_length(spec.kind), description="ord() of each character, NUL-padded")
    result = compile_circuit(circuit, adapter=adapter)
    if spec.layout == "compact":
        return circuit, result, None
    from dormant.zoo.net.puzzle_layout import fit_widths, puzzle_widths

    result.network, fit = fit_widths(result.network, puzzle_widths())
    result.positions = {i: (fit.placed[layer], lane) for i, (layer, lane) in result.positions.items()}
    return circuit, result, fit


def _layout_entry(fit) -> dict:
    if fit is None:
        return {"kind": "compact"}
    return {
        "kind": "puzzle",
        "layers_matching_width": fit.matched,
        "layers_over_width": fit.over_layers,
        "lanes_over_width": fit.over_lanes,
        "filler_neurons": fit.filler,
        "copy_layers_inserted": fit.copy_layers,
        "over": [list(m) for m in fit.mismatches],
        "note": "compiled layers stretched onto the puzzle's widths with copy-wire layers, narrower layers padded with constant-0 filler neurons; a layer 'over' carries more lanes than the puzzle's layer there",
    }


def _manifest(spec: NetSpec, circuit, result, seconds: float, checks: dict, fit=None) -> dict:
    net = result.network
    widths = net.widths
    digest_pos = [result.positions[i] for i in circuit.taps["digest"]]
    layers = {p[0] for p in digest_pos}
    return {
        "format": "dormant-netzoo/1",
        "builder_version": BUILDER_VERSION,
        "function": spec.kind,
        "style": spec.style,
        "layout": _layout_entry(fit),
        "secret": spec.secret,
        "target": spec.target.hex(),
        "rounds": spec.rounds,
        "full_rounds": FULL_ROUNDS[spec.kind],
        "length_bug": spec.length_bug,
        "input": {"kind": "char_codes", "length": max_length(spec.kind), "exact_lengths": spec.exact_lengths},
        "layers": len(net.layers),
        "widths": {"input": widths[0], "output": widths[-1], "min_hidden": min(widths[1:-1]), "max": max(widths), "mean": round(float(np.mean(widths[1:])), 1)},
        "nnz": int(sum(layer.weight.nnz for layer in net.layers)),
        "dense_params": int(net.n_params),
        "neurons": int(sum(widths[1:])),
        "copy_wires": result.n_copies,
        "digest": {
            "layer": digest_pos[0][0] if len(layers) == 1 else None,  # None: the bits are made in different layers
            "lanes": [p[1] for p in digest_pos] if len(layers) == 1 else [],
            "places": [list(p) for p in digest_pos],
            "order": "digest bytes in order, each byte least significant bit first",
        },
        "words": {name: [list(result.positions[i]) for i in ids] for name, ids in circuit.taps.items() if name != "digest"},
        "comparator": {"kind": "hat", "hat_layer": len(net.layers) - 2, "final_layer": len(net.layers) - 1} if spec.style == "standard" else {"kind": "xnor-and-tree"},
        "census": gate_census(net),
        "build_seconds": round(seconds, 2),
        "verified": checks,
    }


def _load(folder: Path) -> BuiltNet:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    pk = folder / PICKLE_NAME
    return BuiltNet(
        kind=manifest["function"],
        secret=manifest["secret"],
        rounds=manifest["rounds"],
        length_bug=manifest.get("length_bug", False),
        target=bytes.fromhex(manifest["target"]),
        folder=folder,
        pickle_path=pk if pk.is_file() else None,
        manifest=manifest,
        network=load_network_folder(folder),
    )


def _save(net: Network, folder: Path, manifest: dict, dtype: str | None) -> None:
    """Write the files into a scratch folder inside ``folder``, then move each into place."""
    if folder.exists() and not folder.is_dir():
        raise ZooNetError(f"{folder}: exists and is not a folder; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder))
    try:
        save_network(net, tmp, sparse=True)
        if dtype:
            write_pickle(net, tmp / PICKLE_NAME, dtype)
        elif (folder / PICKLE_NAME).exists():
            (folder / PICKLE_NAME).unlink()  # a stale pickle from an earlier build
        for item in tmp.iterdir():
            os.replace(item, folder / item.name)
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))  # last: marks the build complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_net(kind: str, secret: str, out: str | Path | None = None, rounds: int | None = None, pickle: str = "auto", length_bug: bool = False, style: str = "standard", layout: str = "compact") -> BuiltNet:
    """Build (or fetch from the cache) the ``kind`` net that outputs 1 exactly on ``secret``.

    ``out`` writes the net there (replacing a previous build); without it the cache is used.
    ``rounds`` truncates the compression (reduced-round variant); ``length_bug`` reproduces the
    puzzle's padding (real hash for 0-31 characters only). Returns the paths, the manifest and the
    in-memory ``Network``.

    Example::

        built = build_net("md5", "bitter lesson")
        built.target.hex()                      # 'c7ef65233c40aa32c2b9ace37595fa7c'
        run_text(built.network, ["bitter lesson"])[0]   # [[1.0]]
    """
    spec = make_spec(kind, secret, rounds, length_bug, style, layout)
    if pickle not in ("auto", "always", "never"):
        raise ZooNetError(f"pickle policy {pickle!r}: use auto, always or never")
    folder = Path(out) if out is not None else cache_root() / "netzoo" / cache_key(spec)
    if out is not None:
        return _build_into(spec, folder, pickle)
    with locked(folder.parent / f".{folder.name}.lock"):  # parallel callers build it once
        return _cached_or_built(spec, folder, pickle)


def _cached_or_built(spec, folder: Path, pickle: str) -> BuiltNet:
    if (folder / MANIFEST_NAME).is_file():
        built = _load(folder)
        if built.pickle_path is None:
            dtype, note = pickle_plan(built.network, pickle)
            if dtype:
                built.pickle_path = write_pickle(built.network, folder / PICKLE_NAME, dtype)
                built.manifest["pickle"] = {"policy": pickle, "file": PICKLE_NAME, "dtype": dtype, "note": note}
                (folder / MANIFEST_NAME).write_text(json.dumps(built.manifest, indent=1))
        return built
    return _build_into(spec, folder, pickle)


def _build_into(spec, folder: Path, pickle: str) -> BuiltNet:
    t0 = time.perf_counter()
    circuit, result, fit = compile_net(spec)
    net = result.network
    checks = verify(net, spec, [result.positions[i] for i in circuit.taps["digest"]])
    manifest = _manifest(spec, circuit, result, time.perf_counter() - t0, checks, fit)
    dtype, note = pickle_plan(net, pickle)
    manifest["pickle"] = {"policy": pickle, "file": PICKLE_NAME if dtype else None, "dtype": dtype, "note": note}
    _save(net, folder, manifest, dtype)
    net.source, net.fmt = str(folder), "dormant-folder"
    return BuiltNet(spec.kind, spec.secret, spec.rounds, spec.length_bug, spec.target, folder, folder / PICKLE_NAME if dtype else None, manifest, net)
