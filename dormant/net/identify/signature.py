"""Name the function a network computes by matching its neurons with reference hash internals.

A constant table in the biases hints at a function, but it does not name it (SHA-1 starts from
MD5's IV). Evidence that does: run random messages through the network and through reference
implementations that record every intermediate word (``reference_hashes``); a neuron that equals bit ``k``
of MD5 step 17's new state word on every one of 128 random messages *is* that bit (a chance match
has probability 2**-128). Counting matched words per function gives the verdict; matching the
final digest's bits gives the digest lanes, which are then checked on fresh messages against
``hashlib``, and the comparator read-out (``comparator.read_target``) is put into digest order.

Message words are shared by every function (the same input bits), so they are counted but are
not evidence for one function over another.

Example::

    ident = identify(net)
    ident.function, ident.confidence     # 'md5', 'high'
    ident.target_hex                      # the digest the comparator wants
    ident.verified                        # digest lanes == hashlib.md5 on fresh inputs
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from dormant.errors import DormantError
from dormant.net.identify.comparator import ComparatorError, read_target, target_bits
from dormant.net.identify.reference_hashes import FULL_STEPS, MAX_ONE_BLOCK, TRACERS, Trace, digest_bits
from dormant.net.load.network import Network
from dormant.net.logic.simulate import activate, affine

HASHLIB = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}
MESSAGE_LABELS = {"md5": ("M",), "sha1": (), "sha256": ()}  # plus W[0..15] for the SHA family


class IdentifyError(DormantError):
    """A network that cannot be probed (e.g. an input it does not take as character codes)."""


@dataclass
class IdentifyConfig:
    probes: int = 128  # random messages; a chance match of one neuron has probability 2**-probes
    verify_probes: int = 32
    min_length: int = 1
    max_length: int = 31  # the public puzzle is exact MD5 only up to 31 characters
    functions: tuple[str, ...] = ("md5", "sha1", "sha256")
    word_threshold: int = 32  # bits of a reference word that must be matched to count the word
    seed: int = 0


@dataclass
class FunctionMatch:
    function: str
    matched_bits: int  # evidence bits (message words excluded)
    matched_words: int
    total_words: int
    steps_matched: int  # distinct steps with at least one matched word
    total_steps: int
    last_step: int  # highest step with a matched word (-1: none)
    message_bits: int  # matched bits of message words (shared by all functions)
    by_label: dict[str, int] = field(default_factory=dict)  # label -> matched words


@dataclass
class Identification:
    function: str | None
    confidence: str  # "high", "medium", "low", "none"
    rounds: int | None = None  # steps computed, when fewer than the full function (reduced-round variant)
    evidence: list[str] = field(default_factory=list)
    matches: list[FunctionMatch] = field(default_factory=list)
    digest_layer: int | None = None  # layer whose outputs hold the whole digest
    digest_lanes: list[int] | None = None  # neuron of that layer for digest bit 8*byte + bit
    digest_places: list[tuple[int, int]] | None = None  # (layer, neuron) of each digest bit: its latest place
    digest_copies: list[list[tuple[int, int]]] | None = None  # per digest bit: every neuron equal to it on the probes
    verified: bool = False
    verified_probes: int = 0
    target_hex: str | None = None  # comparator target in digest order
    comparator_hex: str | None = None  # comparator groups in layer order
    probes: int = 0
    binary_neurons: int = 0
    per_layer: dict[str, dict[int, int]] = field(default_factory=dict)  # function (or "message") -> layer -> matched neurons
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- probing


def random_messages(n: int, length: int, config: IdentifyConfig, seed: int) -> list[bytes]:
    """Random NUL-free messages (codes 1..255) that fit one block and the network's input."""
    rng = np.random.default_rng(seed)
    hi = min(config.max_length, length, MAX_ONE_BLOCK)
    lo = min(config.min_length, hi)
    lengths = rng.integers(lo, hi + 1, size=n)
    return [bytes(rng.integers(1, 256, size=int(L)).astype(np.uint8).tolist()) for L in lengths]


def encode(messages: list[bytes], width: int) -> np.ndarray:
    x = np.zeros((len(messages), width))
    for j, m in enumerate(messages):
        x[j, : len(m)] = np.frombuffer(m, dtype=np.uint8)
    return x


def _keys(bits: np.ndarray) -> list[bytes]:
    """One hashable signature per row of a 0/1 matrix (rows = neurons or reference bits)."""
    packed = np.packbits(bits.astype(np.uint8), axis=1)
    return [r.tobytes() for r in packed]


def _is_message(function: str, label: str, step: int) -> bool:
    return label in MESSAGE_LABELS[function] or (label == "W" and step < 16)


def reference_index(traces: dict[str, Trace]) -> dict[bytes, list[tuple[str, str, int, int]]]:
    """Signature -> every (function, label, step, bit) reference bit with that signature."""
    index: dict[bytes, list[tuple[str, str, int, int]]] = {}
    for fn, tr in traces.items():
        for label, words in tr.words.items():
            steps, n = words.shape
            bits = ((words[:, None, :] >> np.arange(32, dtype=np.uint32)[None, :, None]) & 1).reshape(steps * 32, n)
            varying = bits.min(axis=1) != bits.max(axis=1)
            for row, key in zip(np.nonzero(varying)[0], _keys(bits[varying])):
                index.setdefault(key, []).append((fn, label, int(row // 32), int(row % 32)))
        db = digest_bits(tr)
        varying = db.min(axis=1) != db.max(axis=1)
        for row, key in zip(np.nonzero(varying)[0], _keys(db[varying])):
            index.setdefault(key, []).append((fn, "digest", int(row // 8), int(row % 8)))
    return index


def probe_matches(net: Network, x: np.ndarray, index: dict[bytes, list]) -> tuple[dict[tuple, list[tuple[int, int]]], int]:
    """Run the batch layer by layer; return reference bit -> [(layer, neuron)] and the number of
    binary, non-constant neurons looked up."""
    found: dict[tuple, list[tuple[int, int]]] = {}
    h = np.asarray(x, dtype=np.float64)
    looked = 0
    for i, layer in enumerate(net.layers):
        h = activate(layer.activation, affine(layer.weight, layer.bias, h))
        binary = ((h == 0) | (h == 1)).all(axis=0) & (h.min(axis=0) != h.max(axis=0))
        cols = np.nonzero(binary)[0]
        looked += cols.size
        if cols.size == 0:
            continue
        for n, key in zip(cols, _keys(h[:, cols].T)):
            for ref in index.get(key, ()):
                found.setdefault(ref, []).append((i, int(n)))
    return found, looked


def summarise(found: dict[tuple, list], traces: dict[str, Trace], threshold: int) -> list[FunctionMatch]:
    """Matched bits and words per function (a word counts when ``threshold`` of its bits matched)."""
    out = []
    for fn, tr in traces.items():
        per_word: dict[tuple[str, int], int] = {}
        for (f, label, step, bit) in found:
            if f == fn and label != "digest":
                per_word[(label, step)] = per_word.get((label, step), 0) + 1
        evidence = {k: v for k, v in per_word.items() if not _is_message(fn, *k)}
        message = {k: v for k, v in per_word.items() if _is_message(fn, *k)}
        words = [k for k, v in evidence.items() if v >= threshold]
        by_label: dict[str, int] = {}
        for label, _ in words:
            by_label[label] = by_label.get(label, 0) + 1
        total_words = sum(1 for lab, w in tr.words.items() for s in range(w.shape[0]) if not _is_message(fn, lab, s))
        n_steps = tr.words["new"].shape[0] if "new" in tr.words else tr.words["new_a"].shape[0]
        out.append(
            FunctionMatch(
                function=fn,
                matched_bits=sum(evidence.values()),
                matched_words=len(words),
                total_words=total_words,
                steps_matched=len({s for _, s in words}),
                total_steps=n_steps,
                last_step=max((s for label, s in words if label != "W"), default=-1),
                message_bits=sum(message.values()),
                by_label=by_label,
            )
        )
    out.sort(key=lambda m: -m.matched_bits)
    return out


def _verdict(matches: list[FunctionMatch]) -> tuple[str | None, str, list[str]]:
    best = matches[0] if matches else None
    if best is None or best.matched_bits == 0:
        return None, "none", ["no neuron equals a bit of any reference hash's intermediate words"]
    second = matches[1].matched_bits if len(matches) > 1 else 0
    ev = [
        f"{m.function}: {m.matched_words}/{m.total_words} words ({m.matched_bits} bits) matched, "
        f"{m.steps_matched}/{m.total_steps} steps" + (f", by word: {m.by_label}" if m.by_label else "")
        for m in matches
    ]
    if best.matched_words == 0:  # stray bits (a schedule word equal to a message bit, ...) name nothing
        return None, "none", ev + ["no reference word is matched in full"]
    if best.matched_words >= 8 and second * 10 < best.matched_bits:
        conf = "high"
    elif best.matched_words >= 1 and second < best.matched_bits:
        conf = "medium"
    else:
        conf = "low"
    return best.function, conf, ev


# ----------------------------------------------------------------------------- digest and target


def digest_places(found: dict[tuple, list], fn: str, n_bytes: int) -> list[tuple[int, int]] | None:
    """Each digest bit's latest ``(layer, neuron)`` (the last copy before the comparator reads it),
    for digests whose bits are made in different layers; None unless every bit is found."""
    places = []
    for k in range(8 * n_bytes):
        spots = found.get((fn, "digest", k // 8, k % 8))
        if not spots:
            return None
        places.append(max(spots))
    return places


def digest_lanes(found: dict[tuple, list], fn: str, n_bytes: int) -> tuple[int | None, list[int] | None]:
    """The last layer holding every digest bit of ``fn`` and the neuron of each bit there."""
    per_layer: dict[int, dict[int, int]] = {}
    for (f, label, byte, bit), places in found.items():
        if f == fn and label == "digest":
            for layer, n in places:
                per_layer.setdefault(layer, {}).setdefault(8 * byte + bit, n)
    complete = [layer for layer, bits in per_layer.items() if len(bits) == 8 * n_bytes]
    if not complete:
        return None, None
    layer = max(complete)
    return layer, [per_layer[layer][k] for k in range(8 * n_bytes)]


def verify_digest(net: Network, fn: str, places: list[tuple[int, int]], config: IdentifyConfig, rounds: int | None = None) -> tuple[bool, int]:
    """Fresh random messages: do the digest lanes (``(layer, neuron)`` per bit) equal hashlib's
    digest on every one?

    For a reduced-round variant (``rounds``) the reference is the truncated compression function.
    """
    from dormant.net.logic.simulate import forward

    msgs = random_messages(config.verify_probes, net.layers[0].in_features, config, config.seed + 1)
    layers = sorted({layer for layer, _ in places})
    _, acts = forward(net, encode(msgs, net.layers[0].in_features), record=layers, stop=layers[-1] + 1)
    got = np.stack([acts[layer][:, n] for layer, n in places], axis=1).astype(np.uint8)  # (n, 8 * bytes), bit k of byte j at 8j + k
    want = [HASHLIB[fn](m).digest() for m in msgs] if rounds is None else TRACERS[fn](msgs, rounds=rounds).digests
    for row, w in zip(got, want):
        if np.packbits(row, bitorder="little").tobytes() != w:
            return False, len(msgs)
    return True, len(msgs)


def target_in_digest_order(net: Network, layer: int, lanes: list[int]) -> tuple[str | None, str | None, list[str]]:
    """The comparator's target, reordered through the digest lanes (when they feed the comparator)."""
    notes = []
    try:
        t = read_target(net)
    except ComparatorError as exc:
        return None, None, [f"no comparator read: {exc}"]
    notes += t.notes
    if layer != t.layer - 1:
        notes.append(f"digest lanes are in layer {layer}, the comparator reads layer {t.layer - 1}'s outputs")
        return None, t.hex or None, notes
    want = target_bits(t)
    if not all(n in want for n in lanes):
        notes.append("the comparator does not fix every digest bit")
        return None, t.hex or None, notes
    bits = np.array([want[n] for n in lanes], dtype=np.uint8)
    return np.packbits(bits, bitorder="little").tobytes().hex(), t.hex or None, notes


def _per_layer(found: dict[tuple, list]) -> dict[str, dict[int, int]]:
    """Matched neurons per layer, per function; message bits (shared by all) as "message"."""
    out: dict[str, dict[int, set]] = {}
    for (fn, label, step, _), places in found.items():
        series = "message" if label != "digest" and _is_message(fn, label, step) else fn
        for layer, n in places:
            out.setdefault(series, {}).setdefault(layer, set()).add(n)
    return {fn: {layer: len(ns) for layer, ns in sorted(d.items())} for fn, d in out.items()}


def identify(net: Network, config: IdentifyConfig | None = None) -> Identification:
    """Probe, match, name, locate the digest, verify it, read the target (see the module docstring)."""
    config = config or IdentifyConfig()
    width = net.layers[0].in_features
    notes = []
    if net.adapter.kind != "char_codes":
        notes.append(f"input adapter is {net.adapter.kind!r}; probing with character codes in the {width} inputs")
    msgs = random_messages(config.probes, width, config, config.seed)
    traces = {fn: TRACERS[fn](msgs) for fn in config.functions}
    index = reference_index(traces)
    found, looked = probe_matches(net, encode(msgs, width), index)
    matches = summarise(found, traces, config.word_threshold)
    fn, conf, evidence = _verdict(matches)
    ident = Identification(fn, conf, evidence=evidence, matches=matches, probes=config.probes, binary_neurons=looked, per_layer=_per_layer(found), notes=notes)
    if fn is None:
        return ident
    n_bytes = len(traces[fn].digests[0])
    layer, lanes = digest_lanes(found, fn, n_bytes)
    places = [(layer, n) for n in lanes] if layer is not None else digest_places(found, fn, n_bytes)
    best = next(m for m in matches if m.function == fn)
    if places is None and 0 <= best.last_step < FULL_STEPS[fn] - 1:
        # a reduced-round variant: look for the digest of the first last_step + 1 steps
        r = best.last_step + 1
        short = TRACERS[fn](msgs, rounds=r)
        found_r, _ = probe_matches(net, encode(msgs, width), reference_index({fn: short}))
        layer, lanes = digest_lanes(found_r, fn, n_bytes)
        places = [(layer, n) for n in lanes] if layer is not None else digest_places(found_r, fn, n_bytes)
        if places is not None:
            ident.rounds = r
            ident.evidence.append(f"reduced-round {fn}: the network computes the first {r} of {FULL_STEPS[fn]} steps")
    if places is None:
        ident.notes.append(f"no neurons hold all {8 * n_bytes} digest bits of {fn}; target given in the comparator's group order")
        try:
            t = read_target(net)
            ident.comparator_hex = t.hex or None
            ident.target_hex = t.hex if len(t.hex) == 2 * n_bytes else None
            ident.notes += t.notes
        except ComparatorError as exc:
            ident.notes.append(f"no comparator read: {exc}")
        return ident
    ident.digest_layer, ident.digest_lanes, ident.digest_places = layer, lanes, places
    spots = found_r if ident.rounds is not None else found
    ident.digest_copies = [sorted(spots.get((fn, "digest", k // 8, k % 8), [])) for k in range(8 * n_bytes)]
    ident.verified, ident.verified_probes = verify_digest(net, fn, places, config, ident.rounds)
    ref = "hashlib" if ident.rounds is None else f"reference {fn} truncated to {ident.rounds} steps"
    where = f"layer {layer}" if layer is not None else f"layers {min(p[0] for p in places)}-{max(p[0] for p in places)} (made in different layers)"
    ident.evidence.append(f"digest of {fn} found in {where}; equals {ref} on {ident.verified_probes} fresh messages: {ident.verified}")
    if layer is not None:
        ident.target_hex, ident.comparator_hex, more = target_in_digest_order(net, layer, lanes)
        ident.notes += more
    else:
        ident.notes.append("the digest lanes span several layers: no hat comparator reads them in one layer")
    return ident
