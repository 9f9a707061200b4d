"""An inert unpickler for untrusted ``torch.save`` files: reads data, never runs code from the file.

A pickle is a small program: ``GLOBAL`` imports any name, ``REDUCE`` calls it, ``BUILD`` calls
``__setstate__``. ``torch.load(weights_only=False)`` runs that program, so a crafted ``.pt`` can run
``os.system`` the moment it is opened. ``InertUnpickler`` answers every ``GLOBAL`` itself
(``find_class``) and never imports anything:

* a short allow-list of *data* globals gets a tiny local stand-in: ``collections.OrderedDict``,
  ``builtins.set``, ``_codecs.encode`` (protocol-2 ``bytes``), ``torch._utils._rebuild_tensor_v2``
  and ``_rebuild_parameter`` (which return a lazy ``TensorRef``), ``torch.FloatStorage`` & co.
  (which only name a dtype), ``torch.Size``;
* classes under ``torch.nn.modules`` become ``ModuleRecord`` subclasses: ``NEWOBJ`` makes an empty
  record and ``BUILD`` stores the module's ``__dict__`` in ``record.state``;
* every other global becomes a ``GlobalRecord`` subclass that is reported in ``refused`` as
  ``(module, name)``. Calling it (``REDUCE``) only builds a ``CallRecord`` holding the arguments,
  so a cloudpickled lambda arrives as a tree of records (``_make_function(CodeType(...), ...)``)
  that ``dormant.net.load.pickled_code`` can read, and ``os.system("...")`` arrives as a harmless record.

Tensor bytes are read through ``persistent_load`` from the zip archive (``<prefix>/data/<key>``):
``torch.save`` stores entries uncompressed, so ``TensorRef.array()`` returns views of one memory
map of the file (``FileMap``); compressed entries are read one by one. The legacy (pre-1.6,
non-zip) format is handled in ``dormant.net.load.loaders``, which reuses this unpickler with a different
storage reader. Protocol 0-5 streams from any Python version load the same way, because nothing
in them is resolved against the running interpreter.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import mmap
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dormant.errors import NetworkFileError

# torch storage class name -> numpy dtype (what a ``torch.FloatStorage``-style global means).
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}
# torch dtype attribute name -> numpy dtype (``torch.float32`` may appear as a global in new files).
TORCH_DTYPES: dict[str, str] = {
    "float64": "<f8", "double": "<f8", "float32": "<f4", "float": "<f4", "float16": "<f2", "half": "<f2",
    "bfloat16": "bfloat16", "int64": "<i8", "long": "<i8", "int32": "<i4", "int": "<i4", "int16": "<i2",
    "int8": "i1", "uint8": "u1", "bool": "?",
}


# --------------------------------------------------------------------------------------------
# Records: what the file asked for, kept as data.
# --------------------------------------------------------------------------------------------


class GlobalRecord:
    """Stand-in for a refused global; subclasses carry ``module``/``name`` as class attributes.

    Calling the class (``REDUCE``) or ``NEWOBJ`` on it makes an instance that stores the arguments;
    ``BUILD``/``APPEND``/``SETITEM`` store what they were given. Nothing else happens.
    """

    module: str = ""
    name: str = ""

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        obj.kwargs = kwargs
        obj.state = None
        obj.items = []
        obj.calls = []  # later records that took this one as first argument (e.g. _function_setstate)
        if args and isinstance(args[0], GlobalRecord):
            args[0].calls.append(obj)
        return obj

    def __init__(self, *args, **kwargs):  # REDUCE calls cls(*args): already stored by __new__
        pass

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):
        """Calling a record (e.g. the type returned by ``_builtin_type('CodeType')``) is recorded too."""
        return AppliedRecord(self, args, kwargs)

    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    def __setitem__(self, key, value):
        self.items.append((key, value))

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"<{self.qualname}(...) not executed>"


class CallRecord(GlobalRecord):
    """Base of the records made for refused globals; ``isinstance(x, CallRecord)`` finds them."""


class AppliedRecord(GlobalRecord):
    """A call whose callee is itself a record: ``func`` is that record, ``args`` the arguments."""

    def __new__(cls, func=None, args=(), kwargs=None):
        obj = GlobalRecord.__new__(cls, *args, **(kwargs or {}))
        obj.func = func
        return obj

    def __init__(self, *args, **kwargs):
        pass

    @property
    def qualname(self) -> str:
        return f"{getattr(self.func, 'qualname', '?')}(...)"


class ModuleRecord(GlobalRecord):
    """A ``torch.nn.modules`` class as stored data: ``kind`` is the class name, ``state`` its ``__dict__``."""


def record_state(record: GlobalRecord) -> dict:
    """A record's ``BUILD`` state as a dict (``(dict, slots)`` pairs and odd states give ``{}`` parts)."""
    state = record.state
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]
    return state if isinstance(state, dict) else {}


def record_children(record: GlobalRecord) -> list[tuple[str, GlobalRecord]]:
    """Sub-modules (``_modules``) in registration order; non-record entries are skipped."""
    mods = record_state(record).get("_modules")
    if not isinstance(mods, dict):
        return []
    return [(str(k), v) for k, v in mods.items() if isinstance(v, GlobalRecord)]


def record_param(record: GlobalRecord, name: str) -> "TensorRef | None":
    params = record_state(record).get("_parameters")
    value = params.get(name) if isinstance(params, dict) else None
    return value if isinstance(value, TensorRef) else None


@dataclass(frozen=True)
class StorageType:
    """What a ``torch.FloatStorage``-style global stands for: only a dtype."""

    name: str
    dtype: str


@dataclass
class StorageRef:
    """A tensor storage not yet read: its archive key, dtype, element count and a reader."""

    key: str
    dtype: str
    numel: int
    reader: Callable[["StorageRef"], np.ndarray]

    def array(self) -> np.ndarray:
        return self.reader(self)


@dataclass
class TensorRef:
    """A tensor described by the pickle (storage, offset, shape, strides); read on ``array()``."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    is_parameter: bool = False

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def array(self) -> np.ndarray:
        """The values as a numpy array (a view into a memory map where the layout allows)."""
        flat = self.storage.array()
        if self.numel == 0:
            return np.zeros(self.shape, dtype=flat.dtype)
        itemsize = flat.dtype.itemsize
        need = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1
        if need > flat.shape[0] or self.offset < 0 or any(s < 0 for s in self.stride):
            raise NetworkFileError(f"tensor of shape {self.shape} does not fit its storage {self.storage.key} ({flat.shape[0]} elements)")
        return np.lib.stride_tricks.as_strided(flat[self.offset :], shape=self.shape, strides=[s * itemsize for s in self.stride], writeable=False)


@dataclass
class UnpickleResult:
    """The unpickled object graph (records, dicts, ``TensorRef``s) and the refused globals."""

    obj: Any
    refused: dict[tuple[str, str], int] = field(default_factory=dict)  # (module, name) -> times referenced
    protocol: int | None = None

    def refused_names(self) -> list[str]:
        return sorted(f"{m}.{n}" for m, n in self.refused)


# --------------------------------------------------------------------------------------------
# Safe stand-ins for allowed globals.
# --------------------------------------------------------------------------------------------


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    if not isinstance(storage, StorageRef):
        raise NetworkFileError(f"tensor rebuild got {type(storage).__name__} instead of a storage reference")
    return TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, requires_grad=False, *rest):
    if isinstance(data, TensorRef):
        data.is_parameter = True
    return data


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    """Protocol 2 writes ``bytes`` as ``_codecs.encode(str, 'latin1')``; only strings are accepted."""
    if not isinstance(text, str) or not isinstance(encoding, str):
        raise NetworkFileError("pickle uses _codecs.encode on something other than text")
    return text.encode(encoding, errors)


def _bytes(source=b"", *rest):
    """``bytes()`` (protocol 2 writes empty bytes this way) from bytes or a list of ints only."""
    if isinstance(source, (bytes, bytearray, list, tuple)) and not rest:  # never bytes(n): no n-byte allocations
        return bytes(source)
    if isinstance(source, str) and rest and isinstance(rest[0], str):
        return source.encode(rest[0])
    raise NetworkFileError("pickle calls bytes() with arguments other than data")


def _torch_size(dims=()):
    return tuple(int(d) for d in dims)


_SAFE: dict[tuple[str, str], Any] = {  # Python 3 names (Python 2 names are mapped first)
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "bytes"): _bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _torch_size,
}


class InertUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that maps globals to inert stand-ins and reads storages lazily.

    ``storage_reader(key, dtype, numel)`` returns a ``StorageRef`` for a persistent id; it is the
    only way file bytes outside the pickle stream are reached.
    """

    def __init__(self, file, storage_reader: Callable[[str, str, int], StorageRef]):
        super().__init__(file, fix_imports=False, encoding="latin1")
        self._storage_reader = storage_reader
        self.refused: dict[tuple[str, str], int] = {}
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # protocol <= 2 files name Python 2 modules (``__builtin__``); use the Python 3 spelling
        # (a table lookup in ``_compat_pickle``: nothing is imported)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in _SAFE:
            return _SAFE[key]
        if module == "torch" and name.endswith("Storage") and name in STORAGE_DTYPES:
            return StorageType(name, STORAGE_DTYPES[name])
        if module in ("torch.storage", "torch") and name in ("UntypedStorage", "TypedStorage", "_UntypedStorage"):
            return StorageType(name, "u1")
        if module == "torch" and name in TORCH_DTYPES:
            return StorageType(name, TORCH_DTYPES[name])
        if key not in self._classes:
            base = ModuleRecord if module.startswith("torch.nn.modules") else CallRecord
            if base is CallRecord:
                self.refused[key] = 0
            self._classes[key] = type(name if name.isidentifier() else "Refused", (base,), {"module": module, "name": name})
        if key in self.refused:
            self.refused[key] += 1
        return self._classes[key]

    def persistent_load(self, pid: Any) -> Any:
        # zip format: ('storage', storage_type, key, location, numel)
        # legacy:     ('storage', storage_type, root_key, location, numel, view_metadata)
        #             ('module', module_class, source_file, source_text)  -> the class stand-in
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module" and isinstance(pid[1], type) and issubclass(pid[1], GlobalRecord):
            return pid[1]
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise NetworkFileError(f"unsupported persistent id {pid!r:.80} (not a torch storage)")
        stype, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(stype, StorageType):
            raise NetworkFileError(f"storage {key} has unknown type {stype!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise NetworkFileError(f"storage {key} is a legacy storage view, which is not supported")
        return self._storage_reader(key, stype.dtype, int(numel))


def _protocol(data: bytes) -> int | None:
    return data[1] if len(data) > 1 and data[0] == 0x80 else None


def unpickle_bytes(data: bytes, storage_reader: Callable[[str, str, int], StorageRef]) -> UnpickleResult:
    """Inertly unpickle ``data``; bad or truncated streams raise ``NetworkFileError``."""
    unpickler = InertUnpickler(io.BytesIO(data), storage_reader)
    try:
        obj = unpickler.load()
    except NetworkFileError:
        raise
    except RecursionError:
        raise NetworkFileError("pickle nests too deeply to read") from None
    except Exception as exc:  # truncated streams raise EOFError/UnpicklingError/ValueError/...
        raise NetworkFileError(f"cannot read pickle stream ({type(exc).__name__}: {exc})") from None
    return UnpickleResult(obj=obj, refused=unpickler.refused, protocol=_protocol(data))


# --------------------------------------------------------------------------------------------
# torch's zip layout.
# --------------------------------------------------------------------------------------------


def _np_dtype(dtype: str) -> np.dtype:
    if dtype == "bfloat16":  # numpy has no bfloat16: read the raw 16-bit words
        return np.dtype("<u2")
    return np.dtype(dtype)


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _entry_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of an entry's data inside the zip file (after its local header)."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise NetworkFileError(f"{path}: bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class FileMap:
    """One read-only memory map of a whole file, shared by every tensor read from it (one file
    descriptor, however many thousand storages)."""

    def __init__(self, path: Path):
        self.path = path
        self._mm: mmap.mmap | None = None

    def array(self, offset: int, dtype: np.dtype, count: int) -> np.ndarray:
        if self._mm is None:
            with open(self.path, "rb") as fh:
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if offset + count * dtype.itemsize > len(self._mm):
            raise NetworkFileError(f"{self.path}: data at byte {offset} runs past the end of the file (truncated?)")
        return np.frombuffer(self._mm, dtype=dtype, count=count, offset=offset)


class ZipStorageReader:
    """Reads ``<prefix>/data/<key>`` entries: memory-mapped when stored, else read one by one."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, prefix: str, *, mmap: bool = True):
        self.path, self.archive, self.prefix, self.mmap = path, archive, prefix, mmap
        self._map = FileMap(path)
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, key: str, dtype: str, numel: int) -> StorageRef:
        name = f"{self.prefix}/data/{key}"
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise NetworkFileError(f"{self.path}: storage {key} missing from archive (no {name})") from None
        want = numel * _np_dtype(dtype).itemsize
        if info.file_size < want:
            raise NetworkFileError(f"{self.path}: storage {key} holds {info.file_size} bytes, {want} expected (truncated file?)")
        return StorageRef(key=key, dtype=dtype, numel=numel, reader=self._read)

    def _read(self, ref: StorageRef) -> np.ndarray:
        cache_key = f"{ref.key}:{ref.dtype}"
        if cache_key in self._cache:
            return self._cache[cache_key]
        info = self.archive.getinfo(f"{self.prefix}/data/{ref.key}")
        dt = _np_dtype(ref.dtype)
        if ref.numel == 0:
            arr = np.zeros(0, dtype=dt)
        elif info.compress_type == zipfile.ZIP_STORED and self.mmap:
            arr = self._map.array(_entry_data_offset(self.path, info), dt, ref.numel)
        else:
            try:
                raw = self.archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise NetworkFileError(f"{self.path}: cannot read storage {ref.key} ({exc})") from None
            arr = np.frombuffer(raw, dtype=dt, count=ref.numel)
        if ref.dtype == "bfloat16":
            arr = _bf16_to_f32(arr)
        if self.mmap:  # views of the map cost nothing to keep; copies are not kept
            self._cache[cache_key] = arr
        return arr


def find_pickle_entry(names: list[str]) -> str:
    """The ``<prefix>/data.pkl`` entry of a torch zip archive (prefix is the archive's folder name)."""
    candidates = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if not candidates:
        raise NetworkFileError("zip archive has no <name>/data.pkl entry (not a torch.save file)")
    return candidates[0]


def unpickle_torch_zip(path: str | Path, *, mmap: bool = True) -> UnpickleResult:
    """Inertly read a ``torch.save`` zip archive; tensors stay lazy ``TensorRef``s."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NetworkFileError(f"{path}: not a readable zip archive ({exc})") from None
    try:
        entry = find_pickle_entry(archive.namelist())
    except NetworkFileError as exc:
        raise NetworkFileError(f"{path}: {exc}") from None
    try:
        data = archive.read(entry)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise NetworkFileError(f"{path}: cannot read {entry} ({exc})") from None
    reader = ZipStorageReader(path, archive, entry.rsplit("/", 1)[0], mmap=mmap)
    try:
        return unpickle_bytes(data, reader)
    except NetworkFileError as exc:
        message = str(exc)  # the storage reader's messages name the file already
        raise NetworkFileError(message if message.startswith(f"{path}: ") else f"{path}: {message}") from None
