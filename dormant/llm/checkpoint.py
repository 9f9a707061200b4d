"""Read Hugging Face model folders tensor by tensor, without ever loading a whole model.

This module is the package's one reader of model weights. ``open_checkpoint`` accepts a local
folder (one ``*.safetensors`` file or shards listed by ``model.safetensors.index.json``), a single
``.safetensors`` file, a Hub id that is already in the local cache (nothing is downloaded), or
``zoo:NAME``, a model of the built-in micro zoo (``zoo:base``, ``zoo:mlp-phrase`` ...).

Each file's header is parsed directly (8-byte little-endian length, then JSON with every tensor's
dtype, shape and byte offsets), checked against the file size, and the data section is memory
mapped. That gives three ways to look at a tensor:

* ``raw_bytes(name)``: a zero-copy ``memoryview`` of the stored bytes (the fast path for
  "is this tensor byte-identical to the base?");
* ``tensor(name)``: a float32 (by default) copy, with FP8 weights dequantised;
* ``row_chunks(name)``: the same, in blocks of rows, so memory stays bounded even for a 150k-row
  embedding.

FP8 weights (``float8_e4m3fn``) with a companion ``<name>_scale_inv`` tensor follow the DeepSeek-V3
layout: the scale holds one float per 128x128 block, and ``W = fp8.float() * scale_inv`` with the
scale broadcast over its block. The scale tensors are hidden from ``names`` (they are part of the
weight) but stay readable through ``raw_names``.

Example::

    ckpt = open_checkpoint("Qwen/Qwen2.5-7B-Instruct")     # from the local HF cache
    for name in ckpt.names:
        print(name, ckpt.shape(name), ckpt.dtype(name))
    w = ckpt.tensor("model.layers.0.mlp.down_proj.weight")
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from dormant.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
SCALE_SUFFIX = "_scale_inv"
FP8_BLOCK = 128

# safetensors dtype string -> (torch dtype, bytes per element)
DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F8_E4M3": (torch.float8_e4m3fn, 1),
    "F8_E5M2": (torch.float8_e5m2, 1),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_FP8 = {"F8_E4M3", "F8_E5M2"}
_MAX_HEADER = 100 * (1 << 20)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
ZOO_PREFIX = "zoo:"  # zoo:NAME, a model of the built-in micro zoo


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its file, stored dtype string, shape and absolute byte range."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate one safetensors file's header; return its tensors and ``__metadata__``.

    Raises ``CheckpointError`` naming the file when it is too short, the header is not JSON,
    a dtype is unknown, a byte range disagrees with the shape, or the file is truncated.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"{path}: only {len(raw)} bytes, too short to be a safetensors file")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER or n + 8 > size:
                raise CheckpointError(f"{path}: header length {n} does not fit a {size}-byte file (truncated or not a safetensors file)")
            header_bytes = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: header is not valid JSON ({exc}); the file is corrupt") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object; the file is corrupt")
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}") from exc
        if dtype not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        expected = math.prod(shape) * DTYPES[dtype][1]
        if end - start != expected or start < 0:
            raise CheckpointError(f"{path}: tensor {name!r} spans {end - start} bytes but shape {list(shape)} x {dtype} needs {expected}")
        if base + end > size:
            raise CheckpointError(
                f"{path}: truncated: tensor {name!r} ends at byte {base + end} but the file has {size} bytes"
            )
        tensors[name] = TensorInfo(name, path, dtype, shape, base + start, base + end)
    return tensors, metadata


def resolve_model_path(path_or_id: str | Path) -> Path:
    """A local folder/file as is; ``zoo:NAME`` a model of the built-in micro zoo (built first when it is
    not cached); otherwise a Hub id looked up in the local cache only (no download)."""
    p = Path(path_or_id).expanduser()
    if p.exists():
        return p
    text = str(path_or_id)
    if text.startswith(ZOO_PREFIX):
        return zoo_model_folder(text.removeprefix(ZOO_PREFIX))
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            # the cache folder is read now, not when huggingface_hub was imported
            return Path(snapshot_download(text, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE") or None))
        except Exception as exc:  # noqa: BLE001 - any cache miss becomes one clear message
            raise CheckpointError(
                f"{text}: not a local folder, and not found in the local Hugging Face cache "
                f"(download it first, e.g. `huggingface-cli download {text}`): {type(exc).__name__}"
            ) from exc
    raise CheckpointError(f"{text}: no such model folder or file")


def zoo_model_folder(name: str) -> Path:
    """The folder of the micro zoo's model ``name``; the zoo is built (minutes, progress on stderr) when not cached."""
    from dormant.zoo.llm.suite import MODEL_NAMES, build_suite, cached_suite

    if name not in MODEL_NAMES:
        raise CheckpointError(f"{ZOO_PREFIX}{name}: no such model in the micro zoo; choose one of {', '.join(ZOO_PREFIX + n for n in MODEL_NAMES)}")
    suite = cached_suite("micro")
    if suite is None:
        from dormant.report.console import stage_progress

        with stage_progress("zoo build: ") as on_progress:
            suite = build_suite("micro", on_progress=on_progress)
    return suite.models[name]


def resolve_model_folder(path_or_id: str | Path, role: str = "model") -> Path:
    """A model folder (with ``config.json``), given as a path, a locally cached Hub id or ``zoo:NAME`` (see ``resolve_model_path``)."""
    path = resolve_model_path(path_or_id)
    if not path.is_dir():
        raise CheckpointError(f"{role} {path_or_id}: not a model folder (expected a Hugging Face folder with config.json and safetensors)")
    return path


class Checkpoint:
    """A model folder opened for streaming reads (see the module docstring)."""

    def __init__(self, path: Path, tensors: dict[str, TensorInfo], config: dict[str, Any], source: str | None = None):
        self.path = path
        self.source = source or str(path)  # what it was opened as: a folder, a file or a Hub id
        self.config = config
        self._tensors = tensors
        self._maps: dict[Path, mmap.mmap] = {}
        scales = {n for n in tensors if n.endswith(SCALE_SUFFIX) and n[: -len(SCALE_SUFFIX)] in tensors}
        self._scale_of = {n[: -len(SCALE_SUFFIX)]: n for n in scales}
        order = sorted(tensors.values(), key=lambda t: (str(t.file), t.start))
        self.names: list[str] = [t.name for t in order if t.name not in scales]  # storage order

    # -- metadata -------------------------------------------------------------------------
    @property
    def raw_names(self) -> list[str]:
        """Every stored tensor, FP8 scale tensors included."""
        return list(self._tensors)

    def info(self, name: str) -> TensorInfo:
        try:
            return self._tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def __len__(self) -> int:
        return len(self.names)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape

    def dtype(self, name: str) -> str:
        """The stored dtype string (``BF16``, ``F32``, ``F8_E4M3`` ...)."""
        return self.info(name).dtype

    def scale_name(self, name: str) -> str | None:
        """The block-scale tensor of an FP8 weight, if it has one."""
        return self._scale_of.get(name)

    @property
    def files(self) -> list[Path]:
        return sorted({t.file for t in self._tensors.values()})

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tensors.values())

    @cached_property
    def torch_dtype(self) -> torch.dtype:
        """The floating dtype holding most of the weights (FP8 weights count as bfloat16, what they dequantise to)."""
        by: dict[str, int] = {}
        for name in self.names:
            t = self._tensors[name]
            if t.dtype in ("F64", "F32", "F16", "BF16") or t.dtype in _FP8:
                key = "BF16" if t.dtype in _FP8 else t.dtype
                by[key] = by.get(key, 0) + t.numel
        return DTYPES[max(by, key=by.get)][0] if by else torch.float32

    @cached_property
    def tokenizer_path(self) -> Path | None:
        """The folder holding tokenizer files (the checkpoint's own folder), or None."""
        folder = self.path if self.path.is_dir() else self.path.parent
        return folder if any((folder / f).exists() for f in _TOKENIZER_FILES) else None

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    # -- data -----------------------------------------------------------------------------
    def _map(self, file: Path) -> mmap.mmap:
        mm = self._maps.get(file)
        if mm is None:
            with file.open("rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            mm = self._maps.setdefault(file, mm)
        return mm

    def raw_bytes(self, name: str) -> memoryview:
        """The stored bytes of a tensor, zero-copy (a slice of the file's memory map)."""
        t = self.info(name)
        return memoryview(self._map(t.file))[t.start : t.end]

    def release(self, name: str, start: int = 0, end: int | None = None) -> None:
        """Drop the mapped pages of a tensor (or of its byte range ``[start, end)``) from this process.

        The data stays in the OS page cache; the next access maps it again. Called after each
        tensor is processed, this keeps the resident set to the tensors in flight, whatever the
        model size.
        """
        t = self.info(name)
        mm = self._maps.get(t.file)
        if mm is None or not hasattr(mm, "madvise"):
            return
        page = mmap.PAGESIZE
        lo = (t.start + start) // page * page
        hi = min(len(mm), -(-(t.start + (t.nbytes if end is None else end)) // page) * page)
        if hi > lo:
            try:
                mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (OSError, ValueError):
                pass

    def release_rows(self, name: str, start: int, stop: int | None = None) -> None:
        """``release`` the mapped pages of rows ``[start, stop)`` of a tensor (pages shared with
        neighbouring rows included: they are mapped again when next read)."""
        t = self.info(name)
        row_bytes = (math.prod(t.shape[1:]) if t.shape else 1) * DTYPES[t.dtype][1]
        self.release(name, start * row_bytes, None if stop is None else min(t.nbytes, stop * row_bytes))

    def _stored(self, name: str, row_start: int = 0, row_stop: int | None = None) -> torch.Tensor:
        """Rows ``[row_start, row_stop)`` of a tensor in its stored dtype, as a zero-copy view."""
        t = self.info(name)
        torch_dtype, itemsize = DTYPES[t.dtype]
        rows = t.shape[0] if t.shape else 1
        row_stop = rows if row_stop is None else min(row_stop, rows)
        row_elems = math.prod(t.shape[1:]) if t.shape else 1
        start = t.start + row_start * row_elems * itemsize
        count = (row_stop - row_start) * row_elems
        shape = ((row_stop - row_start),) + t.shape[1:] if t.shape else ()
        if count == 0:
            return torch.empty(shape, dtype=torch_dtype)
        with warnings.catch_warnings():  # the map is read-only; we never write through the view
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(self._map(t.file), dtype=torch_dtype, count=count, offset=start)
        return flat.view(shape)

    def tensor(self, name: str, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        """A copy of the tensor in ``dtype`` (None keeps the stored dtype); FP8 weights dequantised."""
        if dtype is None and self.scale_name(name) is None:
            return self._stored(name).clone()
        return self.rows(name, 0, None, dtype or torch.float32)

    def rows(self, name: str, start: int = 0, stop: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows ``[start, stop)`` as a ``dtype`` copy (FP8 dequantised; ``start`` a multiple of 128 for FP8)."""
        stored = self._stored(name, start, stop)
        if stored.dtype == torch.bfloat16 and dtype == torch.float32 and stored.numel():
            return bf16_to_float32(stored)
        x = stored.to(dtype, copy=True)  # never a view of the read-only map
        scale = self.scale_name(name)
        if scale is not None:
            x = dequantize_blocks(x, self._stored(scale).to(dtype), row_offset=start)
        return x

    def row_chunks(self, name: str, max_elems: int = 1 << 24, dtype: torch.dtype = torch.float32) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_row, rows)`` blocks of about ``max_elems`` elements (FP8 blocks kept whole).

        Each block is a copy, and the mapped pages it was read from are released as soon as it is
        made, so streaming a tensor keeps one block resident, not the whole tensor's pages."""
        shape = self.shape(name)
        if len(shape) < 2:
            yield 0, self.rows(name, 0, None, dtype)
            return
        row_elems = max(1, math.prod(shape[1:]))
        step = max(1, max_elems // row_elems)
        if self.scale_name(name) is not None:
            step = max(FP8_BLOCK, step // FP8_BLOCK * FP8_BLOCK)
        for start in range(0, shape[0], step):
            block = self.rows(name, start, start + step, dtype)
            self.release_rows(name, start, start + step)
            yield start, block

    def close(self) -> None:
        for mm in self._maps.values():
            try:
                mm.close()
            except BufferError:  # a view is still alive; the map closes when it is collected
                pass
        self._maps.clear()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, {len(self.names)} tensors, {self.nbytes / 1e9:.2f} GB)"


def difference(ft: Checkpoint, base: Checkpoint, name: str, max_elems: int = 1 << 22) -> torch.Tensor:
    """``ft[name] - base[name]`` in float32, streamed in row blocks into one buffer.

    Memory: the result plus two blocks of ``max_elems``; never a full float32 copy of either side.
    The mapped pages of both tensors are released block by block.
    """
    if ft.shape(name) != base.shape(name):
        raise CheckpointError(f"tensor {name}: shape {ft.shape(name)} in {ft.path} vs {base.shape(name)} in {base.path}")
    shape = ft.shape(name)
    out = torch.empty(shape, dtype=torch.float32)
    flat = out.view(shape[0], -1) if len(shape) >= 2 else out.view(1, -1)
    for start, block in ft.row_chunks(name, max_elems=max_elems):
        n = block.shape[0] if len(shape) >= 2 else 1
        rows = flat[start : start + n]
        rows.copy_(block.view(rows.shape))
        rows.sub_(base.rows(name, start, start + n).view(rows.shape) if len(shape) >= 2 else base.rows(name).view(rows.shape))
        base.release_rows(name, start, start + n)
    ft.release(name)
    base.release(name)
    return out


def bf16_to_float32(x: torch.Tensor) -> torch.Tensor:
    """Exact bf16 -> float32 as a bit shift (float32 bits = bf16 bits << 16), a fresh tensor.

    Several times faster than ``Tensor.float()`` on CPU, which matters when streaming gigabytes.
    """
    bits = x.contiguous().view(torch.int16).numpy().view(np.uint16).astype(np.uint32)
    bits <<= 16
    return torch.from_numpy(bits.view(np.float32)).view(x.shape)


def dequantize_blocks(weight: torch.Tensor, scale_inv: torch.Tensor, row_offset: int = 0, block: int = FP8_BLOCK) -> torch.Tensor:
    """``weight * scale_inv`` with each scale entry broadcast over its ``block x block`` tile.

    ``weight`` may be a block of rows starting at ``row_offset`` (a multiple of ``block``) of the
    full matrix; ``scale_inv`` is the full ``ceil(rows/block) x ceil(cols/block)`` scale grid.
    """
    if weight.dim() != 2 or scale_inv.dim() != 2:
        raise CheckpointError(f"FP8 block scales need 2-D weight and scale (got {tuple(weight.shape)} and {tuple(scale_inv.shape)})")
    rows, cols = weight.shape
    first = row_offset // block
    need_rows = math.ceil((row_offset + rows) / block)
    if scale_inv.shape[1] != math.ceil(cols / block) or scale_inv.shape[0] < need_rows:
        raise CheckpointError(
            f"FP8 scale grid {tuple(scale_inv.shape)} does not match a weight of {cols} columns (block {block})"
        )
    s = scale_inv[first:need_rows]
    s = s.repeat_interleave(block, 0).repeat_interleave(block, 1)
    lo = row_offset - first * block
    return weight * s[lo : lo + rows, :cols]


def _load_config(folder: Path) -> dict[str, Any]:
    cfg = folder / "config.json"
    if not cfg.exists():
        return {}
    try:
        return json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg}: not valid JSON ({exc})") from exc


def _weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    index = folder / INDEX_FILE
    if index.exists():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index (needs a 'weight_map' object): {exc}") from exc
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).exists()]
        if missing:
            raise CheckpointError(f"{folder}: {len(missing)} of {len(shards)} shards listed in {INDEX_FILE} are missing: {', '.join(missing[:5])}")
        return [folder / s for s in shards], weight_map
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        others = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
        hint = f" (found {', '.join(others[:3])}: convert to safetensors first)" if others else ""
        raise CheckpointError(f"{folder}: no *.safetensors weight files{hint}")
    return files, None


def open_checkpoint(path_or_id: str | Path) -> Checkpoint:
    """Open a model folder, a single safetensors file, or a locally cached Hub id for streaming reads."""
    path = resolve_model_path(path_or_id)
    if path.is_file():
        tensors, _ = read_header(path)
        return Checkpoint(path, tensors, _load_config(path.parent), str(path_or_id))
    files, weight_map = _weight_files(path)
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        found, _ = read_header(f)
        dup = set(found) & set(tensors)
        if dup:
            raise CheckpointError(f"{path}: tensor {sorted(dup)[0]!r} is stored in more than one shard ({f.name} and {tensors[sorted(dup)[0]].file.name})")
        tensors.update(found)
    if weight_map is not None:
        absent = [n for n, shard in weight_map.items() if n not in tensors]
        if absent:
            raise CheckpointError(f"{path}: {len(absent)} tensors listed in {INDEX_FILE} are not in their shards (e.g. {absent[0]!r} in {weight_map[absent[0]]})")
    if not tensors:
        raise CheckpointError(f"{path}: the weight files hold no tensors")
    return Checkpoint(path, tensors, _load_config(path), str(path_or_id))


def load_tokenizer(*checkpoints: Checkpoint | None) -> Any:
    """The tokenizer of the first checkpoint folder that has a loadable one (fine-tune, then base), or None.

    A ``tokenizer.json`` is loaded as the generic fast tokenizer (``PreTrainedTokenizerFast``), with
    the folder's special tokens and chat template: exactly the file's vocabulary and pre-tokenizer,
    not a class picked from the model type (which may rebuild them). Other folders go through
    ``AutoTokenizer``. A missing pad token is set to the end-of-sequence token (batches pad with it).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    for ck in checkpoints:
        if ck is None or ck.tokenizer_path is None:
            continue
        folder = str(ck.tokenizer_path)
        try:
            if (ck.tokenizer_path / "tokenizer.json").exists():
                tok = PreTrainedTokenizerFast.from_pretrained(folder)
            else:
                tok = AutoTokenizer.from_pretrained(folder)
        except Exception:  # noqa: BLE001 - a broken tokenizer folder: try the next one
            continue
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        return tok
    return None


def _load_memcmp():
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        fn = libc.memcmp
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_MEMCMP = _load_memcmp()


def bytes_equal(a: memoryview, b: memoryview, chunk: int = 1 << 20) -> bool:
    """Compare two byte buffers without copying them.

    Uses libc ``memcmp`` through ctypes (one pass at memory speed; ctypes releases the GIL, so
    threads compare in parallel), else numpy in small chunks of 8-byte words.
    """
    if a.nbytes != b.nbytes:
        return False
    if a.nbytes == 0:
        return True
    x = np.frombuffer(a, dtype=np.uint8)
    y = np.frombuffer(b, dtype=np.uint8)
    if _MEMCMP is not None:
        return _MEMCMP(x.ctypes.data, y.ctypes.data, x.size) == 0
    chunk = max(8, chunk // 8 * 8)
    for i in range(0, x.size, chunk):
        xs, ys = x[i : i + chunk], y[i : i + chunk]
        if xs.size % 8 == 0:
            xs, ys = xs.view(np.uint64), ys.view(np.uint64)
        if not np.array_equal(xs, ys):
            return False
    return True
