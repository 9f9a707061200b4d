"""``load_network(path)``: any supported network file -> ``Network``, without executing the file.

Formats, recognised by content rather than by name:

* a dormant folder (``network.json`` + ``layers.safetensors``) -> ``spec_format.load_network_folder``;
* a ``torch.save`` zip archive holding a full module pickle -> inert unpickler
  (``dormant.net.load.unpickle``), layers rebuilt from the ``Linear``/activation modules in module order,
  nested ``Sequential``s flattened; refused globals become ``Network.warnings``; a pickled
  ``forward`` is decoded (``dormant.net.load.pickled_code``) and a plain ``dormant_adapter`` dict attribute is
  read into ``Network.adapter``;
* a ``torch.save`` archive holding a state dict -> the same inert unpickler (never ``torch.load``);
* the legacy (pre-zip) ``torch.save`` stream -> the same inert unpickler, storages located by a
  scan of the trailing storage records;
* ``.safetensors`` and ``.npz`` -> layers from ``<prefix>.weight`` / ``<prefix>.bias`` keys.

State dicts, safetensors and npz files do not record activations; ``activation`` (default
``relu``) is assumed after every layer and said so in ``Network.warnings``.
``export_network`` writes any of them to the dormant folder format.
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dormant.errors import NetworkFileError
from dormant.net.load.network import InputAdapter, Layer, Network
from dormant.net.load.pickled_code import find_callables, recognise_adapter
from dormant.net.load.spec_format import SPEC_NAME, load_network_folder, save_network
from dormant.net.load.unpickle import (
    FileMap,
    GlobalRecord,
    InertUnpickler,
    ModuleRecord,
    StorageRef,
    TensorRef,
    UnpickleResult,
    _np_dtype,
    find_pickle_entry,
    record_children,
    record_param,
    record_state,
    unpickle_torch_zip,
)
from dormant.report.jsonable import to_jsonable

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch.nn module class -> activation name in dormant.net.load.network.ACTIVATIONS
MODULE_ACTIVATIONS = {
    "ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "GELU": "gelu", "LeakyReLU": "leaky_relu",
    "Softplus": "softplus", "SiLU": "silu", "ELU": "elu", "Hardtanh": "hardtanh", "Identity": "identity",
}
# the parameters the simulation (``dormant.net.logic.simulate``) takes at their defaults: another value is warned about
ACTIVATION_DEFAULTS = {
    "LeakyReLU": (("negative_slope", 0.01),), "Hardtanh": (("min_val", -1.0), ("max_val", 1.0)), "ELU": (("alpha", 1.0),),
    "Softplus": (("beta", 1.0), ("threshold", 20.0)), "GELU": (("approximate", "none"),),
}
HOOK_ATTRS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")  # functions a module runs around its forward
PASS_THROUGH = {"Dropout", "Identity", "Flatten"}  # modules that do nothing to a (batch, features) input at inference
CONTAINERS = {"Sequential", "ModuleList"}


def load_network(path: str | Path, *, activation: str = "relu", mmap: bool = True) -> Network:
    """Load a network file or folder of any supported format (see module docstring).

    ``activation`` is assumed between layers for formats that do not store activations.
    ``mmap`` keeps tensors memory-mapped where the file allows (large pickles stay out of RAM).
    """
    p = Path(path)
    if not p.exists():
        raise NetworkFileError(f"{p}: no such file or folder")
    if p.is_dir():
        if not (p / SPEC_NAME).is_file():
            raise NetworkFileError(f"{p}: a folder, but not a dormant network folder (no {SPEC_NAME})")
        return load_network_folder(p)
    with open(p, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise NetworkFileError(f"{p}: empty file")
    if head[:4] == b"PK\x03\x04":
        names = _zip_names(p)
        if names and all(n.endswith(".npy") for n in names):
            return _load_npz(p, activation)
        return _load_torch_zip(p, names, activation=activation, mmap=mmap)
    if p.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        return _load_safetensors(p, activation)
    if head[:1] == b"\x80":
        return _load_torch_legacy(p, activation)
    raise NetworkFileError(f"{p}: unrecognised format (expected a torch .pt/.pth, .safetensors, .npz or a dormant folder)")


def export_network(net: Network, folder: str | Path) -> Path:
    """Write ``net`` to the dormant folder format (``layers.safetensors`` + ``network.json``)."""
    net.meta.setdefault("exported_from", {"source": net.source, "format": net.fmt})
    return save_network(net, folder)


# --------------------------------------------------------------------------------------------
# torch archives
# --------------------------------------------------------------------------------------------


def _zip_names(p: Path) -> list[str]:
    try:
        with zipfile.ZipFile(p) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise NetworkFileError(f"{p}: zip archive is corrupt or truncated ({exc})") from None


def _load_torch_zip(p: Path, names: list[str], *, activation: str, mmap: bool) -> Network:
    try:
        find_pickle_entry(names)
    except NetworkFileError as exc:
        raise NetworkFileError(f"{p}: {exc}") from None
    result = unpickle_torch_zip(p, mmap=mmap)
    if isinstance(result.obj, GlobalRecord) and (isinstance(result.obj, ModuleRecord) or "_modules" in record_state(result.obj)):
        return network_from_modules(result, source=str(p), fmt="torch-full-pickle")
    if isinstance(result.obj, Mapping):
        return _load_state_dict(p, result, activation)
    raise NetworkFileError(f"{p}: the pickle holds {_held(result.obj)}, not a torch module or a state dict")


def _load_state_dict(p: Path, result: UnpickleResult, activation: str) -> Network:
    """A state dict: the tensors the inert pass already read, layer order from key order.

    The file is never handed to ``torch.load``, not even with ``weights_only=True``: torch's own
    restricted unpickler has had remote-code-execution flaws (CVE-2025-32434, torch <= 2.5.1, which
    the declared ``torch>=2.4`` allows), and the inert pass has every tensor already. Refused globals
    (e.g. a planted ``os.system``) are reported.
    """
    obj = result.obj["state_dict"] if isinstance(result.obj.get("state_dict"), Mapping) else result.obj
    arrays = {k: v.array() for k, v in obj.items() if isinstance(v, TensorRef)}
    net = network_from_tensors(arrays, source=str(p), fmt="state-dict", activation=activation, ordered=True)
    net.warnings = [f"refused global {m}.{n} (never imported or called; referenced {c}x)" for (m, n), c in sorted(result.refused.items())] + net.warnings
    net.meta.update({"pickle_protocol": result.protocol, "refused_globals": result.refused_names()})
    return net


class _LegacyStorages:
    """Storage reader for the legacy stream: offsets are found after the main pickle is read."""

    def __init__(self, path: Path):
        self.path = path
        self.dtypes: dict[str, str] = {}
        self.offsets: dict[str, int] = {}
        self._map = FileMap(path)

    def __call__(self, key: str, dtype: str, numel: int) -> StorageRef:
        self.dtypes[key] = dtype
        return StorageRef(key=key, dtype=dtype, numel=numel, reader=self._read)

    def _read(self, ref: StorageRef) -> np.ndarray:
        if ref.key not in self.offsets:
            raise NetworkFileError(f"{self.path}: storage {ref.key} not found in the file's storage records")
        dt = _np_dtype(ref.dtype)
        arr = self._map.array(self.offsets[ref.key], dt, ref.numel) if ref.numel else np.zeros(0, dt)
        return (arr.astype(np.uint32) << 16).view(np.float32) if ref.dtype == "bfloat16" else arr


def _load_torch_legacy(p: Path, activation: str) -> Network:
    """The pre-1.6 ``torch.save`` stream: magic, protocol, sys info, the object, storage keys, storages."""
    storages = _LegacyStorages(p)
    size = p.stat().st_size
    try:
        with open(p, "rb") as fh:
            unpickler = InertUnpickler(fh, storages)
            magic = unpickler.load()
            if magic != LEGACY_MAGIC:
                raise NetworkFileError(f"{p}: a pickle, but not a torch.save file (no torch magic number)")
            unpickler.load()  # protocol version
            unpickler.load()  # sys info
            obj = unpickler.load()
            keys = InertUnpickler(fh, storages).load()
            offset = fh.tell()
            for key in keys:
                fh.seek(offset)
                raw = fh.read(8)
                if len(raw) < 8:
                    raise NetworkFileError(f"{p}: truncated before storage {key}")
                (numel,) = struct.unpack("<q", raw)
                storages.offsets[str(key)] = offset + 8
                offset += 8 + numel * _np_dtype(storages.dtypes.get(str(key), "u1")).itemsize
                if offset > size:
                    raise NetworkFileError(f"{p}: storage {key} runs past the end of the file (truncated?)")
    except NetworkFileError:
        raise
    except Exception as exc:  # malformed stream
        raise NetworkFileError(f"{p}: cannot read legacy torch stream ({type(exc).__name__}: {exc})") from None
    result = UnpickleResult(obj=obj, refused=unpickler.refused, protocol=None)
    if isinstance(obj, GlobalRecord) and (isinstance(obj, ModuleRecord) or "_modules" in record_state(obj)):
        return network_from_modules(result, source=str(p), fmt="torch-full-pickle-legacy")
    if isinstance(obj, Mapping):
        arrays = {k: v.array() for k, v in obj.items() if isinstance(v, TensorRef)}
        return network_from_tensors(arrays, source=str(p), fmt="state-dict-legacy", activation=activation, ordered=True)
    raise NetworkFileError(f"{p}: the pickle holds {_held(obj)}, not a torch module or a state dict")


def _held(obj: Any) -> str:
    """What a pickle that is no network holds, in the user's terms."""
    if isinstance(obj, TensorRef):
        return f"a single tensor (shape {list(obj.shape)})"
    if isinstance(obj, StorageRef):
        return "a bare tensor storage"
    if isinstance(obj, GlobalRecord):
        return f"the result of {obj.qualname} (refused: never imported or called)"
    return f"a Python {type(obj).__name__}"


# --------------------------------------------------------------------------------------------
# modules -> layers
# --------------------------------------------------------------------------------------------


def _is_container(mod: GlobalRecord) -> bool:
    """``Sequential``/``ModuleList``, or a custom module class (not torch's) that holds sub-modules."""
    if isinstance(mod, ModuleRecord):
        return mod.name in CONTAINERS
    return "_modules" in record_state(mod)


def _walk_modules(root: GlobalRecord) -> list[tuple[str, GlobalRecord]]:
    """Leaf modules in execution order (containers flattened), with dotted names; no recursion."""
    out: list[tuple[str, GlobalRecord]] = []
    stack: list[tuple[str, GlobalRecord]] = [("", root)]
    while stack:
        name, mod = stack.pop()
        if _is_container(mod):
            kids = [(f"{name}.{k}" if name else k, v) for k, v in record_children(mod)]
            stack.extend(reversed(kids))
            if name or mod is root:
                out.append((name, mod))  # kept for callables and notes; not a layer
        else:
            out.append((name, mod))
    return out


def network_from_modules(result: UnpickleResult, *, source: str, fmt: str) -> Network:
    """Rebuild the layer list of an unpickled module tree (``Linear`` + activation modules).

    A module of a custom class (its code is not in the file) is read as a container whose
    children run in registration order, and a warning says so.
    """
    root = result.obj
    layers: list[Layer] = []
    warnings = [f"refused global {m}.{n} (never imported or called; referenced {c}x)" for (m, n), c in sorted(result.refused.items())]
    walked = _walk_modules(root)
    for name, mod in walked:
        state = record_state(mod)
        hooks = [h for attr in HOOK_ATTRS if isinstance(state.get(attr), Mapping) for h in state[attr].values()]
        if hooks:
            warnings.append(f"module {name or '(top)'} has {len(hooks)} hook(s) ({', '.join(sorted({a for a in HOOK_ATTRS if state.get(a)}))}): "
                            "never run, so the network is simulated without what they change")
    for name, mod in walked:
        kind = mod.name
        if _is_container(mod):
            if not isinstance(mod, ModuleRecord):
                warnings.append(f"module {name or '(top)'} is a custom class {mod.qualname}: its forward is not in the file; children assumed to run in registration order")
            continue
        if kind == "Linear" and isinstance(mod, ModuleRecord):
            w, b = record_param(mod, "weight"), record_param(mod, "bias")
            if w is None or len(w.shape) != 2:
                raise NetworkFileError(f"{source}: Linear module {name} has no 2-D weight")
            weight = w.array()
            bias = b.array() if b is not None else None
            if bias is not None and bias.shape != (weight.shape[0],):
                raise NetworkFileError(f"{source}: Linear module {name}: bias shape {bias.shape} does not match weight {weight.shape}")
            if layers and layers[-1].out_features != weight.shape[1]:
                raise NetworkFileError(f"{source}: Linear module {name} takes {weight.shape[1]} inputs but the previous layer gives {layers[-1].out_features}")
            layers.append(Layer(weight=weight, bias=bias, activation="identity", name=name))
        elif kind in MODULE_ACTIVATIONS and kind != "Identity" and isinstance(mod, ModuleRecord):
            act = MODULE_ACTIVATIONS[kind]
            state = record_state(mod)
            for attr, default in ACTIVATION_DEFAULTS.get(kind, ()):
                value = state.get(attr, default)
                if value != default and not (isinstance(value, (int, float)) and isinstance(default, (int, float)) and float(value) == default):
                    warnings.append(f"{name}: {kind} {attr}={value!r} simulated as {attr}={default!r} (outputs may differ from the module's)")
            if not layers:
                raise NetworkFileError(f"{source}: activation {kind} ({name}) before any Linear layer is not supported")
            if layers[-1].activation != "identity":
                raise NetworkFileError(f"{source}: two activations in a row after layer {layers[-1].name} ({layers[-1].activation}, then {kind} at {name}) are not supported")
            layers[-1].activation = act
        elif kind in PASS_THROUGH and isinstance(mod, ModuleRecord):
            continue
        else:
            raise NetworkFileError(f"{source}: module {name or '(top)'} is a {mod.qualname}; only Linear, activations and Sequential (or containers of them) are supported")
    if not layers:
        raise NetworkFileError(f"{source}: the module holds no Linear layers")
    callables = []
    for name, mod in walked:
        callables += find_callables(record_state(mod), prefix=f"{name}." if name else "")
    adapter = _plain_adapter(root) or recognise_adapter(callables) or InputAdapter()
    meta: dict[str, Any] = {
        "pickle_protocol": result.protocol,
        "refused_globals": result.refused_names(),
        "callables": to_jsonable(callables),
    }
    return Network(layers=layers, adapter=adapter, source=source, fmt=fmt, warnings=warnings, meta=meta)


def _plain_adapter(root: GlobalRecord) -> InputAdapter | None:
    """A ``dormant_adapter = {"kind": ..., "length": ...}`` attribute set on the top module (plain data)."""
    spec = record_state(root).get("dormant_adapter")
    if not isinstance(spec, Mapping):
        return None
    kind, length = spec.get("kind"), spec.get("length")
    if not isinstance(kind, str) or not (length is None or isinstance(length, int)):
        return None
    return InputAdapter(kind=kind, length=length, description=str(spec.get("description", "dormant_adapter attribute of the pickled module")))


# --------------------------------------------------------------------------------------------
# tensors -> layers (state dicts, safetensors, npz)
# --------------------------------------------------------------------------------------------


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _key(prefix: str, leaf: str) -> str:
    """``0.weight``; a bare ``Linear``'s own state dict has no prefix (``weight``)."""
    return f"{prefix}.{leaf}" if prefix else leaf


def network_from_tensors(tensors: Mapping[str, np.ndarray], *, source: str, fmt: str, activation: str = "relu", ordered: bool = False) -> Network:
    """Layers from ``<prefix>.weight`` (2-D) and optional ``<prefix>.bias`` entries.

    ``ordered`` keeps the mapping's order (state dicts are ordered by module); otherwise prefixes
    are sorted naturally (``2.weight`` before ``10.weight``). ``activation`` follows every layer.
    """
    prefixes = [k[: -len(".weight")] for k in tensors if k.endswith(".weight")] + ([""] if "weight" in tensors else [])
    if not ordered:
        prefixes.sort(key=_natural_key)
    layers, ignored = [], []
    for prefix in prefixes:
        w = np.asarray(tensors[_key(prefix, "weight")])  # a view when the tensor is memory-mapped
        if w.ndim != 2:
            ignored.append(f"{_key(prefix, 'weight')} ({w.ndim}-D)")
            continue  # not a Linear weight (e.g. a norm's 1-D weight): said in the warnings
        b = tensors.get(_key(prefix, "bias"))
        if b is not None and np.shape(b) != (w.shape[0],):
            raise NetworkFileError(f"{source}: {prefix}.bias shape {np.shape(b)} does not match {prefix}.weight {w.shape}")
        if layers and layers[-1].out_features != w.shape[1]:
            raise NetworkFileError(f"{source}: {prefix}.weight takes {w.shape[1]} inputs but the previous layer gives {layers[-1].out_features}")
        layers.append(Layer(weight=w, bias=None if b is None else np.asarray(b), activation=activation, name=prefix))
    if not layers:
        raise NetworkFileError(f"{source}: no 2-D '<name>.weight' tensors found (keys: {', '.join(list(tensors)[:8])})")
    warnings = [f"{fmt} files do not store activations: assumed {activation} after every layer"]
    if ignored:
        warnings.append(f"ignored, not Linear weights: {', '.join(ignored[:6])}{' ...' if len(ignored) > 6 else ''} (a module with them, "
                        "such as a norm, is not simulated)")
    return Network(layers=layers, source=source, fmt=fmt, warnings=warnings)


def _load_safetensors(p: Path, activation: str) -> Network:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers/truncation
        raise NetworkFileError(f"{p}: cannot read safetensors ({type(exc).__name__}: {exc})") from None
    return network_from_tensors(tensors, source=str(p), fmt="safetensors", activation=activation)


def _load_npz(p: Path, activation: str) -> Network:
    try:
        with np.load(p, allow_pickle=False) as z:
            tensors = {k: z[k] for k in z.files}
    except Exception as exc:  # BadZipFile, ValueError (object arrays refused), truncated members
        raise NetworkFileError(f"{p}: cannot read npz ({type(exc).__name__}: {exc})") from None
    return network_from_tensors(tensors, source=str(p), fmt="npz", activation=activation)
