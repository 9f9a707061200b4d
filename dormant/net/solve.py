"""The whole investigation of an opaque network in one call: what it is, what it hides, the input.

``solve(path)`` runs the stages in order and keeps going when one fails:

1. **load**: inert loading (``dormant.net.load.loaders``): nothing from the file is executed;
2. **inspect**: weight alphabet, integrality, sparsity (``dormant.net.structure.summary``);
3. **motifs**: period and blocks of the width sequence (``dormant.net.structure.motifs``): a hash has one
   block per step;
4. **decompile**: reduction to a boolean netlist (``dormant.net.logic.decompile``); skipped for nets
   above ``decompile_max_neurons`` (minutes on a full hash network, and not needed to invert it);
5. **identify**: the function's name and the target digest (``dormant.net.identify.signature``, then
   ``dormant.net.identify.comparator.read_target`` for the target; when signature probing fails the
   constant-table scan of ``dormant.net.identify.constant_scan`` names the function);
6. **invert**: for a known hash, the preimage search of ``dormant.net.invert.preimage`` over the hints
   (digest byte orders included: a target read from a network may be byte-swapped); for any other
   circuit, ``dormant.net.logic.circuit_search``: SAT on the netlist, else enumeration of short strings;
7. **verify**: the preimage is run through the network itself; it must output 1.

Every stage reports its status (ok, failed, skipped), its key finding and its time;
a failure is fatal only when nothing after it can proceed: a network that does not load raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dormant.net.identify.comparator import read_target
from dormant.net.identify.constant_scan import biases_from_network, scan_constants
from dormant.net.identify.signature import identify
from dormant.net.invert import fast_hashes
from dormant.net.invert.candidates import Hints
from dormant.net.invert.preimage import InvertConfig, byte_order_variants, invert
from dormant.net.load.loaders import load_network
from dormant.net.load.network import Network
from dormant.net.logic.circuit_search import PRINTABLE, EnumerateConfig, SatConfig, binary_inputs, count_binary, enumerate_firing, sat_firing
from dormant.net.logic.decompile import decompile
from dormant.net.structure.motifs import analyse_motifs
from dormant.net.structure.summary import inspect_network


@dataclass
class SolveConfig:
    hints: Hints = field(default_factory=Hints)  # what invert tries
    invert: InvertConfig = field(default_factory=InvertConfig)
    byte_orders: bool = True  # also match the target with its bytes reversed (per word, overall)
    decompile_max_neurons: int = 50_000  # larger nets skip decompilation
    sat_max_neurons: int = 50_000  # non-hash circuits up to this size are tried with SAT first
    sat_max_solutions: int = 256  # SAT enumeration stops here and says the count is a lower bound
    exact_max_bits: int = 24  # binary-input circuits with at most 2**this assignments are counted exactly
    alphabet: str = PRINTABLE  # non-hash circuits: enumeration alphabet
    max_len: int = 3  # non-hash circuits: longest string enumerated
    skip: tuple[str, ...] = ()  # stage names to skip (inspect, motifs, decompile)
    engine: str = "dormant"  # preimage search: dormant (this machine's cores) or hashcat
    handoff_dir: Path | None = None  # write the hashcat hand-off here (required by engine hashcat)


@dataclass
class Stage:
    name: str
    status: str  # ok, failed, skipped
    seconds: float
    finding: str
    data: dict = field(default_factory=dict)


@dataclass
class SolveResult:
    source: str
    function: str | None  # md5, sha1, sha256, or None (not a known hash)
    target: str | None  # digest hex as identified
    found: bool
    preimage: str | None
    firing: list[str]  # non-hash circuits: firing inputs found, each checked on the network (at most 64: a sample when there are more)
    verified: bool | None  # the network outputs 1 on the preimage (circuits: on every input the search listed; None: not checked)
    verdict: str
    stages: list[Stage]
    seconds: float


def _run(stages: list[Stage], name: str, fn: Callable[[], tuple[str, dict, Any]], skip: bool = False, why: str = "") -> Any:
    """Run one stage: record its status, finding and time; return its value (None on failure)."""
    if skip:
        stages.append(Stage(name, "skipped", 0.0, why))
        return None
    t0 = time.perf_counter()
    try:
        finding, data, value = fn()
    except Exception as exc:  # noqa: BLE001 - a stage's failure is reported, not fatal
        stages.append(Stage(name, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))
        return None
    stages.append(Stage(name, "ok", time.perf_counter() - t0, finding, data))
    return value


def _function_name(value: str | None) -> str | None:
    """The name as the preimage search knows it, or None when it is no hash the search can run."""
    if value is None:
        return None
    try:
        return fast_hashes.check_function(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


def _stage_load(path: Path):
    net = load_network(path)
    w = net.widths
    finding = f"{net.fmt or 'network'}: {len(net.layers)} layers, {w[0]} -> ... -> {w[-1]}, {net.n_params:,} parameters; input {net.adapter.kind}"
    return finding, {"layers": len(net.layers), "params": net.n_params, "format": net.fmt, "input": net.adapter.kind}, net


def _stage_inspect(net: Network):
    res = inspect_network(net)
    finding = f"weights {res.weight_pattern}; integer weights {res.integer_weights}, integer biases {res.integer_biases}; {res.zero_fraction:.1%} zero; outputs integral: {res.outputs_integral}"
    return finding, {"weight_pattern": res.weight_pattern, "integer_weights": res.integer_weights, "zero_fraction": res.zero_fraction, "outputs": res.output_values[:8]}, res


def _stage_motifs(net: Network):
    res = analyse_motifs(net.widths, net=net)
    finding = f"{res.summary}; period {res.period} (score {res.period_score:.2f})"
    return finding, {"summary": res.summary, "period": res.period}, res


def _stage_decompile(net: Network):
    res = decompile(net)
    return res.verdict, {"is_logic": res.is_logic, "stages": res.stages}, res


def _constants_guess(net: Network) -> tuple[str | None, str]:
    """Name the hash from its constant tables in the biases (the fraction of each K table found)."""
    res = scan_constants(biases_from_network(net))
    frac = {s.table: s.entries_found / s.table_size for s in res.summary}
    scores = {"md5": frac.get("MD5 K", 0.0), "sha1": frac.get("SHA-1 K", 0.0), "sha256": frac.get("SHA-256 K", 0.0)}
    best = max(scores, key=scores.get)
    return (best if scores[best] >= 0.5 else None), res.verdict


def _attempt(notes: list[str], label: str, fn: Callable[[], Any]) -> Any:
    """Run one way of identifying; an error becomes a note and the next way is tried."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the next way is tried
        notes.append(f"{label}: {type(exc).__name__}: {exc}")
    return None


def _stage_identify(net: Network):
    """(function, target hex): signature probing first; then the comparator read-out for the target
    and the constant-table scan for the function when probing fails or names nothing."""
    notes: list[str] = []
    ident = _attempt(notes, "identify", lambda: identify(net))
    function = _function_name(ident.function) if ident else None
    target = ident.target_hex if ident else None
    verified = ident.verified if ident else None
    rounds = ident.rounds if ident is not None else None
    if ident is not None:
        notes += ident.evidence[:2] + [e for e in ident.evidence[2:] if e.startswith(("reduced-round", "digest of"))]
        if function is None:
            notes.append(f"signature probing named no known hash ({ident.function!r})")
    if ident is not None and ident.digest_places:
        target = _attempt(notes, "lanes", lambda: _target_at_lanes(net, ident.digest_places, target, notes, ident.digest_copies)) or None
    if not target and not (ident is not None and ident.digest_places):  # lanes found: only a target they confirm is kept
        read = _attempt(notes, "comparator", lambda: read_target(net))
        target = _digest_sized(read.hex if read is not None and read.hex else None, function, notes)
        if target:
            notes.append("target read from the comparator")
    if function is None:
        guess = _attempt(notes, "constants", lambda: _constants_guess(net))
        if guess and guess[0]:
            function = guess[0]
            notes.append(f"function named by its constant tables: {guess[1]}")
            target = _digest_sized(target, function, notes)  # the comparator was read before the function had a name
    if function is None and target is None:
        raise ValueError("; ".join(notes) or "nothing identified")
    reduced = f" reduced to its first {rounds} steps" if rounds is not None else ""
    confidence = ident.confidence if ident is not None and _function_name(ident.function) == function else None
    finding = (f"function {function or 'unknown'}{reduced}, target {target or 'unknown'}"
               + (f" (verified: {verified})" if verified is not None else "")
               + (f" (named with {confidence} confidence)" if confidence in ("low", "medium") else ""))
    data = {"function": function, "rounds": rounds, "target": target, "verified": verified, "confidence": confidence, "notes": notes}
    return finding + ("; " + "; ".join(notes) if notes else ""), data, (function, target, rounds)


def _digest_sized(target: str | None, function: str | None, notes: list[str]) -> str | None:
    """``target`` (hex), or None with a note when it is not as long as a digest of ``function`` (when that is known)."""
    size = 4 * fast_hashes.DIGEST_WORDS[function] if function in fast_hashes.DIGEST_WORDS else None
    if target and size and len(target) != 2 * size:
        notes.append(f"the comparator read-out gives {len(target) // 2} bytes, not a {function} digest: not used")
        return None
    return target


def _target_at_lanes(net: Network, places: list[tuple[int, int]], fast: str | None, notes: list[str], copies=None, backgrounds: int = 4) -> str | None:
    """The target digest, checked by injection at the digest lanes: the comparator read-out's answer
    (``fast``) when injecting it fires the network, else the lanes -> output circuit solved by SAT."""
    from dormant.net.identify.lanes_target import inject, target_from_lanes
    from dormant.net.identify.signature import IdentifyConfig, encode, random_messages

    width = net.layers[0].in_features
    bg = encode(random_messages(backgrounds, width, IdentifyConfig(), seed=7), width)
    if fast and len(fast) * 4 == len(places):
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(fast), dtype=np.uint8), bitorder="little")
        if np.all(inject(net, places, bg, bits, copies)[:, 0] > 0.5):
            notes.append(f"comparator read-out confirmed: injected at the digest lanes it fires on {backgrounds} background messages")
            return fast
        notes.append("the comparator read-out does not fire when injected at the digest lanes; solving the lanes -> output circuit")
    res = target_from_lanes(net, places, bg, copies)
    notes.append(f"target solved from the digest lanes by SAT on the circuit after them (unique: {res.unique}, verified by injection: {res.verified})")
    notes += res.notes
    return res.hex if res.verified else None


def _fires(net: Network, text: str, codes: list[int | None] | None = None) -> bool:
    """Does the network output 1 on ``text`` (one code per character, NUL-padded), or on the input
    vector ``codes`` when given (free positions ``None`` set to 0)?"""
    from dormant.net.logic.simulate import forward

    width = net.adapter.length if net.adapter.kind == "char_codes" and net.adapter.length else net.layers[0].in_features
    codes = [ord(ch) for ch in text] if codes is None else [0 if v is None else v for v in codes]
    if len(codes) > width:
        return False
    x = np.zeros(width)
    x[: len(codes)] = codes
    y, _ = forward(net, x)
    return bool(np.asarray(y).ravel()[0] > 0.5)


# --------------------------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------------------------


def solve(source: str | Path | Network, config: SolveConfig | None = None) -> SolveResult:
    """Run every stage on a network file (or a loaded ``Network``) and return the verdict."""
    config = config or SolveConfig()
    t0 = time.perf_counter()
    stages: list[Stage] = []
    if isinstance(source, Network):
        net = source
        stages.append(Stage("load", "ok", 0.0, f"in memory: {len(net.layers)} layers"))
        src = net.source or "<network>"
    else:  # nothing can proceed without the network: a file that does not load raises (NetworkFileError for bad input)
        src = str(source)
        finding, data, net = _stage_load(Path(source))
        stages.append(Stage("load", "ok", time.perf_counter() - t0, finding, data))

    n_neurons = sum(layer.out_features for layer in net.layers)
    _run(stages, "inspect", lambda: _stage_inspect(net), "inspect" in config.skip, "skipped on request")
    _run(stages, "motifs", lambda: _stage_motifs(net), "motifs" in config.skip, "skipped on request")
    too_big = n_neurons > config.decompile_max_neurons
    decompiled = _run(
        stages, "decompile", lambda: _stage_decompile(net), "decompile" in config.skip or too_big,
        "skipped on request" if "decompile" in config.skip else f"{n_neurons:,} neurons > {config.decompile_max_neurons:,} (not needed to invert a named hash)",
    )
    ident = _run(stages, "identify", lambda: _stage_identify(net)) or (None, None, None)
    function, target, rounds = ident

    preimage, firing, found, vector, matched, codes = None, [], False, None, None, []
    if function in fast_hashes.FUNCTIONS and rounds is not None:
        from dormant.net.identify.reference_hashes import FULL_STEPS

        stages.append(Stage("invert", "skipped", 0.0, f"the network computes {function} reduced to its first {rounds} of {FULL_STEPS[function]} "
                                                       f"steps; the preimage search computes the full {function}"))
    elif function in fast_hashes.FUNCTIONS and target:
        res = _run(stages, "invert", lambda: _stage_invert(function, target, config))
        if res is not None and res.found:  # checked on the network with the bytes that were hashed (UTF-8 for non-ASCII text)
            preimage, found, matched = res.preimage, True, res.hits[0].target
            vector = list(bytes.fromhex(res.hits[0].preimage_hex))
    elif function in fast_hashes.FUNCTIONS:
        stages.append(Stage("invert", "skipped", 0.0, f"{function} named but no target digest was read"))
    else:
        res = _run(stages, "circuit search", lambda: _stage_circuit(net, config, decompiled, n_neurons))
        if res is not None and res.firing:
            firing, found = list(res.firing), True
            preimage = firing[0]
            codes = list(res.codes or [])
            vector = codes[0] if codes else None

    verified = None
    if found and function in fast_hashes.FUNCTIONS:
        verified = _run(stages, "verify", lambda: _stage_verify(net, preimage, vector))
    elif found:  # every input kept is run on the network, not only the first (at most 64: the rest are not kept)
        listed = firing[:64]
        oks = _run(stages, "verify", lambda: _stage_verify_all(net, listed, codes[: len(listed)]))
        if oks is not None:
            verified = all(oks)
            firing = [f for f, ok in zip(listed, oks) if ok]
            found = bool(firing)
            preimage = firing[0] if firing else None
    verdict = _verdict(function, target, preimage, firing, found, verified, stages, rounds=rounds, matched=matched)
    return SolveResult(src, function, target, found, preimage, firing, verified, verdict, stages, time.perf_counter() - t0)


def _stage_invert(function: str, target: str, config: SolveConfig):
    digest = bytes.fromhex(target)
    targets = byte_order_variants(digest) if config.byte_orders else [digest]
    handoff = None
    if config.handoff_dir is not None:
        from dormant.net.invert.hashcat import write_handoff

        handoff = write_handoff(config.handoff_dir, function, targets, config.hints)
    if config.engine == "hashcat":
        from dormant.net.invert.hashcat import invert_with_hashcat

        if handoff is None:
            raise ValueError("engine hashcat needs a hand-off folder (SolveConfig.handoff_dir)")
        res = invert_with_hashcat(handoff)
    else:
        res = invert(targets, function, config.hints, config.invert)
    res.handoff = str(handoff.folder) if handoff else None
    engine = "hashcat" if config.engine == "hashcat" else "dormant"
    if res.found:
        h = res.hits[0]
        order = "" if h.target == target else f" (digest matched in byte order {h.target})"
        if engine == "hashcat":
            finding = f"hashcat found {res.preimage!r} ({h.source}){order} in {res.seconds:.1f}s"
        else:
            finding = f"found {res.preimage!r} after {res.candidates:,} candidates ({h.source}){order}, {res.rate / 1e6:.2f} M/s"
    else:
        tried = ", ".join(f"{family} {n:,}" for family, n in res.covered.items()) or "nothing new"
        finding = f"{engine}: {res.why_not_found}: {res.tried}; tried: {tried}"
    if handoff is not None:
        finding += f"; hashcat hand-off in {handoff.folder}"
    data = {"status": res.status, "engine": engine, "candidates": res.candidates, "space": res.space_size, "rate": res.rate, "hits": [h.preimage for h in res.hits], "checkpoint": res.checkpoint, "handoff": res.handoff}
    return finding, data, res


def _circuit_data(method: str, res, notes: list[str]) -> dict:
    return {"method": method, "firing": res.firing, "complete": res.complete, "domain": res.domain, "count": res.count, "capped": res.capped, "notes": notes + res.notes}


def _stage_circuit(net: Network, config: SolveConfig, decompiled, n_neurons: int):
    """Exact count for small binary input spaces; else SAT (capped, said so); else enumeration."""
    notes = []
    n_bits, why = binary_inputs(net)
    if n_bits is not None and n_bits <= config.exact_max_bits:
        res = count_binary(net, n_bits)
        finding = f"exhaustive simulation of {res.domain} ({why}): exactly {res.count:,} fire" + (f": {', '.join(res.firing[:4])}, ..." if res.firing else "")
        return finding, _circuit_data("exhaustive", res, notes), res
    if n_bits is not None:
        notes.append(f"{n_bits} binary inputs: 2^{n_bits} assignments exceed the exact-count limit of 2^{config.exact_max_bits}")
    if n_neurons <= config.sat_max_neurons:
        res = sat_firing(net, SatConfig(max_solutions=config.sat_max_solutions), decompiled=decompiled)
        if res.status == "ok":
            if res.capped:
                finding = f"SAT: at least {res.count:,} firing input(s) (stopped at the cap of {config.sat_max_solutions} solutions; more exist)"
            else:
                finding = f"SAT: exactly {res.count:,} firing input(s), complete"
            finding += ": " + ", ".join(repr(f) for f in res.firing[:8])
            return finding, _circuit_data("sat", res, notes), res
        notes.append(f"SAT {res.status}: {'; '.join(res.notes)}")
    from dormant.report.console import progress

    with progress() as bar:  # stderr, shown on a terminal only
        task = bar.add_task("enumerating inputs", total=None)
        res = enumerate_firing(
            net, EnumerateConfig(alphabet=config.alphabet, max_len=config.max_len),
            on_batch=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if res.status != "ok":
        raise RuntimeError("; ".join(notes + res.notes))
    finding = f"enumeration of {res.domain} ({res.checked:,} inputs): {len(res.firing)} firing: {', '.join(repr(f) for f in res.firing[:8])}"
    return "; ".join(notes + [finding]), _circuit_data("enumeration", res, notes), res


def network_fires(path: str | Path, text: str, raw: bytes | None = None) -> bool:
    """Load the network file and run it on ``text`` (one code per character), or on the bytes ``raw`` when given (what
    a hash search hashed: a non-ASCII text's UTF-8 bytes, not its code points): does it output 1?"""
    return _fires(load_network(Path(path)), text, None if raw is None else list(raw))


def _stage_verify(net: Network, preimage: str, vector: list[int | None] | None = None):
    ok = _fires(net, preimage, vector)
    bare = " (its layers on the character codes: its pickled encoder was not recognised, and is never run)" if net.adapter.kind == "unknown" else ""
    return (f"network outputs 1 on {preimage!r}{bare}" if ok else f"network does NOT fire on {preimage!r}{bare}"), {"fires": ok, "adapter": net.adapter.kind}, ok


def _stage_verify_all(net: Network, inputs: list[str], codes: list[list[int | None]]):
    """Run each input a circuit search listed on the network (with its input vector, when the search gave one)."""
    oks = [_fires(net, text, codes[i] if i < len(codes) else None) for i, text in enumerate(inputs)]
    bad = [t for t, ok in zip(inputs, oks) if not ok]
    finding = (f"network outputs 1 on each of the {len(inputs)} listed input(s)" if not bad else
               f"network does NOT fire on {len(bad)} of the {len(inputs)} listed input(s): {', '.join(repr(t) for t in bad[:4])}")
    return finding, {"checked": len(inputs), "fire": sum(oks), "not_firing": bad}, oks


def _verdict(function, target, preimage, firing, found, verified, stages, rounds=None, matched=None) -> str:
    name = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}.get(function or "", "an unnamed circuit")
    check_failed = next((s.finding for s in stages if s.name == "verify" and s.status == "failed"), None)
    if found and function in fast_hashes.FUNCTIONS:
        bare = next((s.data.get("adapter") == "unknown" for s in stages if s.name == "verify" and s.data), False)
        check = ((" and the network's layers fire on its character codes (its pickled encoder, not recognised, was not run)" if bare
                  else " and the network fires on it") if verified else " but the network does not fire on it" if verified is False else
                 f"; not checked on the network ({check_failed})" if check_failed else "; not checked on the network")
        order = f" (the network's target {target} read in another byte order)" if matched and matched != target else ""
        return f"{name}(x) == {matched or target}{order}: x = {preimage!r}{check}"
    if rounds is not None and function in fast_hashes.FUNCTIONS:
        return (f"{name} reduced to its first {rounds} steps (x) == {target or '?'}: preimage not searched (the search computes the "
                f"full {name})")
    if found:
        search = next((s for s in stages if s.name == "circuit search"), None)
        data = search.data if search is not None and search.data else {}
        count, domain = data.get("count", len(firing)), data.get("domain", "its inputs")
        if verified is False:  # the circuit the search solved is not the network: its count is not the network's
            return (f"{name}: of the inputs the circuit search listed, only these fire the network (checked on it): "
                    + ", ".join(repr(f) for f in firing[:8]) + " (the search's count and completeness do not hold for the network)")
        if verified is None:
            return (f"{name}: the circuit search listed {count:,} input(s) of {domain}, not checked on the network"
                    + (f" ({check_failed})" if check_failed else "") + ": " + ", ".join(repr(f) for f in firing[:8]))
        if data.get("capped"):
            how = f"at least {count:,} input(s) of {domain} (the search stopped at its cap; more fire)"
        elif data.get("complete"):
            how = f"exactly {count:,} input(s) of {domain}"
        else:
            how = f"{count:,} input(s) found in {domain} (not shown to be all)"
        return f"{name} fires on {how}: " + ", ".join(repr(f) for f in firing[:8])
    if function in fast_hashes.FUNCTIONS:
        inv = next((s for s in stages if s.name == "invert"), None)
        named = next((s.data for s in stages if s.name == "identify" and s.data), {})
        doubt = (["named with low confidence"] if named.get("confidence") == "low" else []) + (
            ["its digest lanes did not equal the reference on fresh messages"] if named.get("verified") is False else [])
        return (f"{name}(x) == {target or '?'}: preimage not found" + (f" ({'; '.join(doubt)})" if doubt else "")
                + (f" ({inv.finding})" if inv else ""))
    failed = [s.name for s in stages if s.status == "failed"]
    none_fire = verified is False  # every input the search listed failed on the network
    return ("no firing input found" + ("; the circuit search's inputs do not fire the network (checked on it)" if none_fire else "")
            + (f"; stages that failed: {', '.join(failed)}" if failed else ""))


def target_from_network(path: str | Path, function: str | None = None) -> dict:
    """Function and target digest of a hash network file (for ``dormant net invert FILE``)."""
    from dormant.net.invert.preimage import InvertError

    stages: list[Stage] = []
    net = _stage_load(Path(path))[2]
    ident = _run(stages, "identify", lambda: _stage_identify(net)) or (None, None, None)
    name = _function_name(function) or ident[0]
    if name is None or ident[1] is None:
        raise InvertError(f"{path}: could not identify the hash function and target ({stages[-1].finding}); give --function and --target")
    if ident[2] is not None and function is None:
        raise InvertError(f"{path}: the network computes {name} reduced to its first {ident[2]} steps, and the preimage search computes "
                          f"the full {name}: its target is no {name} digest ({stages[-1].finding})")
    return {"function": name, "target": ident[1], "byte_orders": True, "evidence": stages[-1].finding}
