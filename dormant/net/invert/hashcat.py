"""Hand-off to hashcat: the target and the search of ``preimage.invert`` as hashcat attacks.

``write_handoff(folder, function, targets, hints)`` writes a folder that anyone with hashcat (a GPU,
a cluster) can run without dormant:

* ``target.hash``: the digest as read, one per line (then its byte-order variants, when asked);
* word lists: ``<list>.txt`` holds every single word in each capitalisation our search tries
  (lower, Capital, UPPER, in that order); ``<list>.pairs.lower.txt`` the words that are paired;
  ``<list>.variants.<caps>.txt`` the words of the pair variants, one file per capitalisation;
* ``charset.hcchr`` for ``--charset`` searches;
* ``run.sh``: one hashcat command per family of candidates, in our search order, stopping at the
  first crack. Straight mode (``-a 0``) for single words, combinator mode (``-a 1``) for pairs with
  the separator appended to the left word by a ``-j '$<sep>'`` rule, mask mode (``-a 3``) for
  masks and charsets. Hash modes: ``-m 0`` MD5, ``-m 100`` SHA-1, ``-m 1400`` SHA-256. Cracks go to
  ``found.txt`` (``--outfile-format 1,3``: digest and hex plain) and to ``hashcat.potfile``.

The attacks cover the same candidates as our search (capitalisation is written into the lists, not
left to hashcat's rules, so words that are not all lowercase come out the same); only the order
inside an attack differs (hashcat runs left word by left word, our search by frequency shells).
Empty strings (a charset of minimum length 0) have no hashcat equivalent and are listed in
``notes``.

``run_handoff`` runs the attacks with an installed hashcat, one by one, and reads the cracks back;
every plain is re-hashed here before it is reported, so a wrong line never becomes a secret.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dormant.net.invert import fast_hashes
from dormant.net.invert.candidates import CAPS_PAIRS, Hints, apply_caps, decode, parse_mask
from dormant.net.invert.preimage import Hit, InvertError, InvertResult

HASH_MODES = {"md5": 0, "sha1": 100, "sha256": 1400}
INSTALL_HINT = (
    "hashcat is not installed (or not on PATH): install it with `apt-get install hashcat pocl-opencl-icd` "
    "(Debian/Ubuntu; pocl runs it on the CPU, a GPU driver's OpenCL/CUDA runtime on a GPU), "
    "or see https://hashcat.net/hashcat/"
)
FOUND = "found.txt"
POTFILE = "hashcat.potfile"
HASH_FILE = "target.hash"


class HashcatMissing(InvertError):
    """``--engine hashcat`` asked for, but no hashcat binary found."""


@dataclass(frozen=True)
class Attack:
    """One hashcat run: a family of our candidates."""

    label: str
    mode: int  # -a: 0 straight, 1 combinator, 3 mask
    inputs: tuple[str, ...]  # mode 0: word file; mode 1: left and right word files; mode 3: the mask
    rule_left: str = ""  # mode 1: -j rule on the left word (appends the separator)
    charset: str = ""  # mode 3: file given as -1 (the mask then uses ?1)
    increment: tuple[int, int] | None = None  # mode 3: --increment-min/--increment-max
    size: int = 0  # candidates

    def args(self, function: str) -> list[str]:
        """hashcat's arguments (without the binary and the output options)."""
        out = ["-m", str(HASH_MODES[function]), "-a", str(self.mode)]
        if self.rule_left:
            out += ["-j", self.rule_left]
        if self.charset:
            out += ["-1", self.charset]
        if self.increment:
            out += ["--increment", "--increment-min", str(self.increment[0]), "--increment-max", str(self.increment[1])]
        return out + [HASH_FILE, *self.inputs]


@dataclass
class Handoff:
    folder: Path
    function: str
    hash_mode: int
    targets: list[str]  # hex, as written to target.hash
    attacks: list[Attack]
    files: list[str]  # written, relative to folder
    script: Path
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(a.size for a in self.attacks)


def output_args() -> list[str]:
    return ["--potfile-path", POTFILE, "--outfile", FOUND, "--outfile-format", "1,3"]


def _write_list(folder: Path, name: str, entries: list[bytes], files: dict[str, int]) -> str:
    if name not in files:
        (folder / name).write_bytes(b"".join(e + b"\n" for e in entries))
        files[name] = len(entries)
    return name


def _words(folder: Path, prefix: str, words: list[str], caps: tuple[str, ...], files: dict[str, int]) -> str:
    entries = [apply_caps(w, c).encode("utf-8") for c in caps for w in words]
    return _write_list(folder, f"{prefix}.txt", entries, files)


def _sep_rule(sep: str) -> str:
    return "".join("$" + ch for ch in sep)


def _dictionary_attacks(folder: Path, words: list[str], hints: Hints, prefix: str, label: str, files: dict[str, int]) -> list[Attack]:
    """The attacks of ``candidates.dictionary_space``: single words, pairs, pair variants."""
    attacks = [Attack(f"{label} ({'/'.join(hints.caps)})", 0, (_words(folder, prefix, words, hints.caps, files),), size=len(words) * len(hints.caps))]
    if not hints.pairs:
        return attacks
    paired = words[: hints.pairs_top]

    def pair_attacks(top: list[str], tag: str, seps: tuple[str, ...], caps_pairs) -> list[Attack]:
        out = []
        for sep in seps:  # our search: per shell, separators then capitalisations
            for c1, c2 in caps_pairs:
                left = _words(folder, f"{prefix}.{tag}.{c1}", top, (c1,), files)
                right = _words(folder, f"{prefix}.{tag}.{c2}", top, (c2,), files)
                out.append(Attack(f"{label} pairs sep {sep!r} {c1}/{c2}", 1, (left, right), _sep_rule(sep), size=len(top) ** 2))
        return out

    attacks += pair_attacks(paired, "pairs", hints.separators, (("lower", "lower"),))
    top = words[: min(hints.variants_top, hints.pairs_top)]
    variant_caps = tuple(p for p in CAPS_PAIRS[1:] if p[0] in hints.caps and p[1] in hints.caps)
    if variant_caps:
        attacks += pair_attacks(top, "variants", hints.separators, variant_caps)
    if hints.variant_separators:
        attacks += pair_attacks(top, "variants", hints.variant_separators, (("lower", "lower"),) + variant_caps)
    return [a for a in attacks if a.size > 0]


def plan_attacks(folder: Path, hints: Hints) -> tuple[list[Attack], dict[str, int], list[str]]:
    """Write the lists ``hints`` need into ``folder``; the attacks in our search order, the files, notes."""
    from dormant.net.invert.wordlists import english_words, load_wordlist

    files: dict[str, int] = {}
    notes: list[str] = []
    attacks = [Attack(f"mask {m}", 3, (m,), size=parse_mask(m).size) for m in hints.masks]
    if hints.charset:
        chars = "".join(dict.fromkeys(hints.charset))
        if not chars.isascii():
            notes.append("the charset has non-ASCII characters: no hashcat charset attack written")
        else:
            (folder / "charset.hcchr").write_text(chars.replace("?", "??"))
            files["charset.hcchr"] = len(chars)
            lo = max(1, hints.min_len)
            if hints.min_len == 0:
                notes.append("the empty string (charset length 0) has no hashcat attack")
            if hints.max_len >= lo:
                size = sum(len(chars) ** n for n in range(lo, hints.max_len + 1))
                attacks.append(Attack(f"charset length {lo}-{hints.max_len}", 3, ("?1" * hints.max_len,), charset="charset.hcchr", increment=(lo, hints.max_len), size=size))
    user = list(hints.extra_words)
    for path in hints.word_files:
        user.extend(load_wordlist(path))
    user = list(dict.fromkeys(user))
    if user:
        attacks += _dictionary_attacks(folder, user, hints, "user", "user words", files)
    if hints.uses_english:
        attacks += _dictionary_attacks(folder, english_words(hints.english_top), hints, "english", "english", files)
    return attacks, files, notes


def render_script(handoff: Handoff) -> str:
    lines = [
        "#!/bin/sh",
        f"# hashcat attacks equivalent to dormant's preimage search for the {handoff.function} digest(s) in {HASH_FILE}:",
        "# the same candidates, family by family in dormant's order (the order inside an attack differs).",
        f"# Stops at the first crack; cracks are in {FOUND} (digest:hex plain) and {POTFILE}.",
        "# A CPU OpenCL runtime (pocl) needs --force: HASHCAT_OPTS=--force sh run.sh",
        "# Faster: HASHCAT_OPTS='-O -w 3' (optimised kernels reject candidates above their length limit, about 31 bytes).",
        "set -u",
        'cd "$(dirname "$0")"',
        'HASHCAT="${HASHCAT:-hashcat}"',
        f"[ -s {FOUND} ] && {{ cat {FOUND}; exit 0; }}",
    ]
    outputs = " ".join(shlex.quote(a) for a in output_args())
    for k, attack in enumerate(handoff.attacks, 1):
        args = " ".join(shlex.quote(a) for a in attack.args(handoff.function))
        lines += [
            f"# {k}/{len(handoff.attacks)} {attack.label}: {attack.size:,} candidates",
            f'"$HASHCAT" {outputs} ${{HASHCAT_OPTS:-}} {args}',
            'rc=$?; [ "$rc" -gt 1 ] && exit "$rc"',
            f"[ -s {FOUND} ] && {{ cat {FOUND}; exit 0; }}",
        ]
    lines += ["echo 'not found: every attack ran to its end' >&2", "exit 1", ""]
    return "\n".join(lines)


def write_handoff(folder: str | Path, function: str, targets: list[str | bytes], hints: Hints) -> Handoff:
    """Write ``target.hash``, the word lists and ``run.sh`` for ``targets`` (hex or raw digests)."""
    name = fast_hashes.check_function(function)
    if name not in HASH_MODES:
        raise InvertError(f"no hashcat mode known for {name}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hexes = list(dict.fromkeys(t.hex() if isinstance(t, bytes) else t.lower() for t in targets))
    text = "".join(h + "\n" for h in hexes)
    if (folder / HASH_FILE).is_file() and (folder / HASH_FILE).read_text() != text:
        (folder / FOUND).unlink(missing_ok=True)  # another network's crack: run.sh would print it as this one's
    (folder / HASH_FILE).write_text(text)
    attacks, files, notes = plan_attacks(folder, hints)
    handoff = Handoff(folder, name, HASH_MODES[name], hexes, attacks, [HASH_FILE, *files, "run.sh"], folder / "run.sh", notes)
    handoff.script.write_text(render_script(handoff))
    handoff.script.chmod(0o755)
    return handoff


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


def find_hashcat(binary: str | None = None) -> str | None:
    return shutil.which(binary or os.environ.get("HASHCAT", "hashcat"))


def _plain(text: str) -> bytes:
    if text.startswith("$HEX[") and text.endswith("]"):
        return bytes.fromhex(text[5:-1])
    return text.encode("utf-8")


def read_cracks(folder: Path, function: str, targets: list[str]) -> list[tuple[str, bytes]]:
    """(digest hex, plain) of every crack in ``found.txt`` and the potfile whose plain really hashes
    to one of ``targets`` (each line is checked with hashlib, never taken on trust)."""
    out: dict[str, bytes] = {}
    for name, hexplain in ((FOUND, True), (POTFILE, False)):
        path = folder / name
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            digest, sep, plain = line.partition(":")
            if not sep:
                continue
            try:
                raw = bytes.fromhex(plain) if hexplain else _plain(plain)
            except ValueError:
                continue
            real = hashlib.new(function, raw).hexdigest()
            if real == digest.lower() and real in targets:
                out.setdefault(real, raw)
    return list(out.items())


@dataclass
class HashcatRun:
    cracks: list[tuple[str, bytes]]
    attacks_done: list[str]  # run to their end (or to the crack)
    candidates: int  # of the attacks hashcat ran to their end (a lower bound of what it hashed)
    seconds: float
    returncode: int
    log_tail: str


def run_handoff(handoff: Handoff, binary: str | None = None, options: list[str] | None = None, timeout: float | None = None) -> HashcatRun:
    """Run the hand-off's attacks in order with hashcat, stopping at the first crack."""
    exe = find_hashcat(binary)
    if exe is None:
        raise HashcatMissing(f"{INSTALL_HINT}; the hand-off is written to {handoff.folder} (run.sh there)")
    opts = options if options is not None else shlex.split(os.environ.get("HASHCAT_OPTS", "--force"))
    session = "dormant-" + hashlib.sha256(str(handoff.folder.resolve()).encode()).hexdigest()[:12]
    t0 = time.perf_counter()
    done: list[str] = []
    hashed, rc, tail = 0, 1, ""
    cracks = read_cracks(handoff.folder, handoff.function, handoff.targets)
    for attack in [] if cracks else handoff.attacks:
        cmd = [exe, *output_args(), "--session", session, "--quiet", *opts, *attack.args(handoff.function)]
        proc = subprocess.run(cmd, cwd=handoff.folder, capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
        if rc not in (0, 1):
            raise InvertError(f"hashcat failed (exit {rc}) on {attack.label}: {tail.strip()[-600:]}")
        done.append(attack.label)
        if rc == 1:  # exhausted: every candidate of the attack was hashed (0: all digests cracked early)
            hashed += attack.size
        cracks = read_cracks(handoff.folder, handoff.function, handoff.targets)
        if cracks:
            break
    return HashcatRun(cracks, done, hashed, time.perf_counter() - t0, rc, tail)


def invert_with_hashcat(handoff: Handoff, binary: str | None = None, options: list[str] | None = None) -> InvertResult:
    """``preimage.invert``'s result, with hashcat as the engine."""
    run = run_handoff(handoff, binary, options)
    hits = [Hit(decode(plain), plain.hex(), -1, "hashcat: " + (run.attacks_done[-1] if run.attacks_done else "earlier run"), digest) for digest, plain in run.cracks]
    hits.sort(key=lambda h: handoff.targets.index(h.target))
    # "exhausted" only where every candidate of the search was planned as an attack and each ran to its end: a charset
    # with non-ASCII characters or the empty string has no attack (said in ``handoff.notes``)
    dropped = [n for n in handoff.notes if "no hashcat" in n]
    status = "found" if hits else "exhausted" if not dropped and run.candidates >= handoff.size else "incomplete"
    sizes = {a.label: a.size for a in handoff.attacks}
    covered = {label: sizes[label] for label in run.attacks_done}  # attacks started (the last may have stopped at its crack)
    return InvertResult(
        function=handoff.function,
        targets=handoff.targets,
        found=bool(hits),
        preimage=hits[0].preimage if hits else None,
        hits=hits,
        status=status,
        space_size=handoff.size,
        candidates=run.candidates,
        chunks_total=len(handoff.attacks),
        chunks_resumed=0,
        chunks_run=list(range(len(run.attacks_done))),
        seconds=run.seconds,
        rate=run.candidates / run.seconds if run.seconds > 0 else 0.0,
        workers=0,
        backend="hashcat",
        stages=[{"label": a.label, "size": a.size} for a in handoff.attacks],
        covered=covered,
        notes=list(handoff.notes),
    )
