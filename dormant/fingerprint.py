"""Cheap, stable fingerprints of model inputs (never a hash of whole weight files).

A safetensors file is identified by its size, the SHA-256 of its JSON header (which lists
every tensor's name, dtype, shape and byte offsets) and a content sample: the first, middle and
last 4 KiB of every tensor's data (whole tensors up to 12 KiB), so that a fine-tune with the same
names and shapes as its base (a merged LoRA, a full fine-tune) gets a different fingerprint while
reading a few MiB per file, not its gigabytes. A model folder is identified by the fingerprints
of its weight files plus its small JSON/text files; any other file by its size, its first and
last MiB and 16 chunks of 64 KiB at evenly spaced offsets.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from pathlib import Path

_EDGE = 1 << 20
_TENSOR_SAMPLE = 4096  # bytes read at the start, middle and end of every safetensors tensor
_CHUNK = 64 << 10  # bytes of each evenly spaced chunk of other large files
_N_CHUNKS = 16
_SMALL_SUFFIXES = {".json", ".txt", ".model", ".jinja"}


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path}: too short to be a safetensors file ({len(raw)} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * (1 << 20):
            raise ValueError(f"{path}: safetensors header length {n} is implausible (corrupt file?)")
        header = fh.read(n)
        if len(header) != n:
            raise ValueError(f"{path}: truncated safetensors header ({len(header)} of {n} bytes)")
        return header


def _tensor_spans(header: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of every tensor's data, relative to the data section, in file order."""
    meta = json.loads(header)
    spans = []
    for name, info in meta.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        start, end = info.get("data_offsets", (0, 0))
        spans.append((int(start), int(end)))
    return sorted(spans)


def _sample_ranges(start: int, end: int, k: int) -> list[tuple[int, int]]:
    """The first, middle and last ``k`` bytes of ``[start, end)`` (all of it when it is short)."""
    if end - start <= 3 * k:
        return [(start, end)]
    mid = start + (end - start - k) // 2
    return [(start, start + k), (mid, mid + k), (end - k, end)]


def _update_with_file(h: "hashlib._Hash", path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    if path.suffix == ".safetensors":
        header = _safetensors_header(path)
        h.update(header)
        base = 8 + len(header)
        with path.open("rb") as fh:
            for start, end in _tensor_spans(header):
                for a, b in _sample_ranges(start, end, _TENSOR_SAMPLE):
                    fh.seek(base + a)
                    h.update(fh.read(b - a))
    elif path.suffix in _SMALL_SUFFIXES and size <= 4 * _EDGE:
        h.update(path.read_bytes())
    else:
        with path.open("rb") as fh:
            h.update(fh.read(_EDGE))
            if size > 2 * _EDGE:
                fh.seek(size - _EDGE)
                h.update(fh.read(_EDGE))
                for i in range(1, _N_CHUNKS + 1):  # evenly spaced chunks between the edges
                    fh.seek(_EDGE + (size - 2 * _EDGE - _CHUNK) * i // (_N_CHUNKS + 1))
                    h.update(fh.read(_CHUNK))


def fingerprint(path: str | Path) -> str:
    """Return ``"sha256:<hex16>"`` identifying a model folder or file from a small sample of its bytes."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"cannot fingerprint {p}: no such file or folder")
    h = hashlib.sha256()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and (f.suffix == ".safetensors" or f.suffix in _SMALL_SUFFIXES or f.suffix in {".pt", ".bin", ".npz"}))
        for f in files:
            _update_with_file(h, f)
    else:
        _update_with_file(h, p)
    return "sha256:" + h.hexdigest()[:16]


def source_digest(root: str | Path) -> str:
    """``"code:<hex16>"``: a digest of the ``.py`` files under ``root``, by relative path and content."""
    root = Path(root)
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root).as_posix()).encode() + b"\0")
        h.update(f.read_bytes())
    return "code:" + h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The ``source_digest`` of this installation's ``dormant`` package, so that a result reused by key
    (a hunt's stage) is one the same code computed: a change to any module (an upgrade, a local
    edit) gives another version. Read once per process (some 200 small files)."""
    return source_digest(Path(__file__).resolve().parent)
