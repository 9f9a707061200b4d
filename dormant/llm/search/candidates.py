"""The candidate store: every scored candidate as one JSON line, appended and flushed per chunk.

A search writes each finished chunk of scores with one ``write`` + ``fsync``; a killed search
(even ``kill -9``) loses at most the chunk in flight, and ``--resume`` reads the file back to skip
what was already scored. A partial last line (killed mid-write) is ignored; any other line that is not
a candidate is an error naming the file and line (it is not a file a search wrote). A search that does
not resume never deletes an earlier run's file: it is set aside under a numbered name first.

A method whose name holds a colon (``sweep:coarse``, ``extract:payload``) records side results on
another scale; they rank only among themselves (``best(method=...)``), never beside final scores.
When the objective itself changes (a refined payload), ``new_scale`` sets every score so far apart:
a candidate ranks again once it is added anew, scored for the new objective (its new line follows
the old one in the file, and a resumed store keeps the later).

A store given its objective (``scale``: a text naming the payload, objectives, prompts and models) writes
it as a marker line, ``{"scale": ...}``, when it starts, when it resumes and at every ``new_scale``; each
candidate line was scored for the scale of the marker above it. A resumed store loads only the lines
scored for its own objective: a search resumed with another payload, or after its payload was refined,
never ranks scores of one objective beside another's (the others stay in the file and are counted in
``other_scale``; a file without markers, from an older search, is loaded whole).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from dormant.errors import DormantError


class CandidateFileError(DormantError):
    """A candidates or samples file that a search did not write (or that was damaged), given to resume."""


@dataclass
class Candidate:
    text: str
    mechanism: str
    method: str
    score: float  # the objective (higher is better)
    parts: dict[str, float] = field(default_factory=dict)  # each objective's value

    @property
    def key(self) -> str:
        return key_of(self.method, self.mechanism, self.text)


def key_of(method: str, mechanism: str, text: str) -> str:
    return f"{method}\x1f{mechanism}\x1f{text}"


class CandidateStore:
    """Append-only JSONL of candidates, with the keys already scored and the best so far."""

    def __init__(self, path: str | Path, *, resume: bool = False, scale: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.items: dict[str, Candidate] = {}
        self.stale: set[str] = set()  # keys scored for an earlier objective (``new_scale``)
        self.resumed = 0
        self.other_scale = 0  # lines of the resumed file scored for another objective (not loaded)
        self.set_aside: Path | None = None  # where an earlier run's file went (a search that does not resume)
        self.scale = scale
        if resume and self.path.is_file():
            for c, of in read_scaled(self.path):
                if scale is None or of is None or of == scale:
                    self.items[c.key] = c
                else:
                    self.other_scale += 1
            self.resumed = len(self.items)
            drop_cut_tail(self.path)
        elif self.path.exists():
            self.set_aside = set_aside(self.path)
        if scale is not None:
            append_jsonl(self.path, [{"scale": scale}])

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)

    def add(self, cands: Iterable[Candidate]) -> None:
        """Record one chunk: a single append, flushed to disk before returning."""
        new = list({c.key: c for c in cands if c.key not in self.items or c.key in self.stale}.values())
        if not new:
            return
        append_jsonl(self.path, [asdict(c) for c in new])
        for c in new:
            self.items[c.key] = c
            self.stale.discard(c.key)

    def new_scale(self, scale: str | None = None) -> None:
        """The objective changed: every score so far is on another scale and no longer ranks (``best``) until
        the candidate is added again with a score for the new objective (``scale``, marked in the file when given)."""
        self.stale = set(self.items)
        if scale is not None:
            self.scale = scale
            append_jsonl(self.path, [{"scale": scale}])

    def best(self, n: int = 1, method: str | None = None) -> list[Candidate]:
        """The ``n`` best of ``method`` (default: of every method whose scores are final, i.e. not a
        side result's such as a coarse pass's: those rank only among themselves)."""
        pool = [c for k, c in self.items.items() if k not in self.stale and (c.method == method if method else ":" not in c.method)]
        return sorted(pool, key=lambda c: -c.score)[:n]


def append_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` as JSON lines with one write, flushed to disk before returning (one chunk)."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def set_aside(path: str | Path) -> Path:
    """Rename an earlier run's ``path`` to the first free ``<stem>.<n>.previous<suffix>`` beside it (n = 1, 2, ...)."""
    path = Path(path)
    n = 1
    while (dest := path.with_name(f"{path.stem}.{n}.previous{path.suffix}")).exists():
        n += 1
    path.rename(dest)
    return dest


def drop_cut_tail(path: str | Path) -> None:
    """Before appending to a resumed file (read first, with ``read_jsonl``): cut off a last line that a kill left
    without its newline, so that it does not end up between whole lines."""
    with Path(path).open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return  # whole lines only: the usual case reads one byte, not the file again
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)


def _damaged(path: Path, where: str, what: str) -> CandidateFileError:
    return CandidateFileError(f"{path}{where} is damaged or not a file a search wrote ({what}); resume from another --out, or move "
                              "the file away to start afresh")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file a search wrote (one object a line, each line ended by a newline).

    An unfinished last line (no newline after it) that starts as an object does is what a kill leaves
    mid-write: it is skipped. Anything else that is not a JSON object, or text that is not UTF-8, raises
    ``CandidateFileError``; nothing is changed on disk. Lines end at newlines only (a text may hold
    U+2028 and the like, which ``append_jsonl`` writes as they are)."""
    path = Path(path)
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1  # the end of the last whole line (0: none)
    whole, tail = data[:cut], data[cut:]
    try:
        lines = whole.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise _damaged(path, "", f"not UTF-8 text at byte {exc.start}") from None
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise _damaged(path, f", line {i + 1},", "not JSON") from None
        if not isinstance(obj, dict):
            raise _damaged(path, f", line {i + 1},", "not a JSON object")
        out.append(obj)
    if tail and not tail.lstrip().startswith(b"{"):
        raise _damaged(path, f", line {len(lines)},", "an unfinished last line that no search began")
    return out


def read_candidates(path: str | Path) -> list[Candidate]:
    """The candidates of a store's file (``read_jsonl``; scale markers skipped); a line that is neither raises
    ``CandidateFileError``."""
    return [c for c, _ in read_scaled(path)]


def read_scaled(path: str | Path) -> list[tuple[Candidate, str | None]]:
    """Each candidate of a store's file with the scale it was scored for (the marker above it; None before any)."""
    out: list[tuple[Candidate, str | None]] = []
    scale: str | None = None
    for i, obj in enumerate(read_jsonl(path)):
        if set(obj) == {"scale"} and isinstance(obj["scale"], str):
            scale = obj["scale"]
            continue
        ok = (set(obj) <= {"text", "mechanism", "method", "score", "parts"} and all(isinstance(obj.get(k), str) for k in ("text", "mechanism", "method"))
              and isinstance(obj.get("score"), (int, float)) and not isinstance(obj.get("score"), bool) and isinstance(obj.get("parts", {}), dict))
        if not ok:
            raise _damaged(Path(path), f", record {i + 1},", "a candidate has a text, mechanism and method (strings), a score (a number) and parts")
        out.append((Candidate(**obj), scale))
    return out
