"""Cheap, stable fingerprints of model inputs (never a hash of whole weight files).

A safetensors file is identified by its size and the SHA-256 of its JSON header (which lists
every tensor's name, dtype, shape and byte offsets); a model folder by the fingerprints of its
weight files plus its small JSON/text files; any other file by its size and the SHA-256 of its
first and last MiB.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

_EDGE = 1 << 20
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


def _update_with_file(h: "hashlib._Hash", path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    if path.suffix == ".safetensors":
        h.update(_safetensors_header(path))
    elif path.suffix in _SMALL_SUFFIXES and size <= 4 * _EDGE:
        h.update(path.read_bytes())
    else:
        with path.open("rb") as fh:
            h.update(fh.read(_EDGE))
            if size > 2 * _EDGE:
                fh.seek(size - _EDGE)
                h.update(fh.read(_EDGE))


def fingerprint(path: str | Path) -> str:
    """Return ``"sha256:<hex16>"`` identifying a model folder or file without reading its weights."""
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
