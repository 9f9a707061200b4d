"""The package's own network format: ``layers.safetensors`` + ``network.json`` in one folder.

``network.json`` holds the format version, widths, each layer's activation and storage kind, the
input adapter and free-form metadata. ``layers.safetensors`` holds ``L{i}.weight`` (dense) or
``L{i}.rows/L{i}.cols/L{i}.vals`` (sparse COO) plus ``L{i}.bias``. Safe to load: no pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from dormant.errors import NetworkFileError
from dormant.net.load.network import ACTIVATIONS, InputAdapter, Layer, Network

FORMAT = "dormant-network/1"
SPEC_NAME = "network.json"
TENSORS_NAME = "layers.safetensors"
_REEXPORT = "the folder is inconsistent (edited by hand, or files of two networks): write it again from the original network with `dormant net export`"


def save_network(net: Network, folder: str | Path, *, sparse: bool | None = None) -> Path:
    """Write ``net`` to ``folder``; ``sparse=None`` stores each layer sparsely when under 25% dense."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    layers_meta = []
    for i, layer in enumerate(net.layers):
        w = layer.weight
        nnz = w.nnz if sp.issparse(w) else int(np.count_nonzero(w))
        use_sparse = sparse if sparse is not None else nnz < 0.25 * w.shape[0] * w.shape[1]
        if use_sparse:
            coo = sp.coo_matrix(w)
            tensors[f"L{i}.rows"] = coo.row.astype(np.int32)
            tensors[f"L{i}.cols"] = coo.col.astype(np.int32)
            tensors[f"L{i}.vals"] = coo.data.astype(np.float32 if _exact_f32(coo.data) else np.float64)
        else:
            dense = w.toarray() if sp.issparse(w) else np.asarray(w)
            tensors[f"L{i}.weight"] = np.ascontiguousarray(dense.astype(np.float32 if _exact_f32(dense) else np.float64))
        if layer.bias is not None:
            b = np.asarray(layer.bias)
            tensors[f"L{i}.bias"] = b.astype(np.float32 if _exact_f32(b) else np.float64)
        layers_meta.append({"name": layer.name, "activation": layer.activation, "shape": [layer.out_features, layer.in_features], "sparse": bool(use_sparse), "bias": layer.bias is not None})
    save_file(tensors, str(out / TENSORS_NAME))
    spec = {"format": FORMAT, "widths": net.widths, "layers": layers_meta, "adapter": asdict(net.adapter), "meta": net.meta}
    (out / SPEC_NAME).write_text(json.dumps(spec, indent=1))
    return out


def _exact_f32(a: np.ndarray) -> bool:
    a = np.asarray(a)
    return a.size == 0 or bool(np.array_equal(a.astype(np.float32).astype(a.dtype), a))


def load_network_folder(folder: str | Path) -> Network:
    """Load a folder written by ``save_network``."""
    root = Path(folder)
    spec_path, tensor_path = root / SPEC_NAME, root / TENSORS_NAME
    if not spec_path.is_file() or not tensor_path.is_file():
        raise NetworkFileError(f"{root}: expected {SPEC_NAME} and {TENSORS_NAME} (a folder written by dormant)")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NetworkFileError(f"{spec_path}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise NetworkFileError(f"{spec_path}: holds a JSON {type(spec).__name__}, not the object dormant writes; {_REEXPORT}")
    if spec.get("format") != FORMAT:
        raise NetworkFileError(f"{spec_path}: unknown format {spec.get('format')!r} (expected {FORMAT})")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as exc:  # safetensors raises its own error types
        raise NetworkFileError(f"{tensor_path}: cannot read safetensors ({exc})") from None
    if not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise NetworkFileError(f"{spec_path}: no 'layers' list; {_REEXPORT}")
    layers = []
    for i, meta in enumerate(spec["layers"]):
        try:
            shape = (int(meta["shape"][0]), int(meta["shape"][1])) if len(meta["shape"]) == 2 else None
            sparse, has_bias, activation = bool(meta["sparse"]), bool(meta["bias"]), meta["activation"]
        except (KeyError, TypeError, ValueError):
            raise NetworkFileError(f"{spec_path}: layer {i} has no valid shape, sparse, bias and activation entries; {_REEXPORT}") from None
        if shape is None or min(shape) <= 0:
            raise NetworkFileError(f"{spec_path}: layer {i} has shape {meta['shape']!r}, not two positive sizes [out, in]; {_REEXPORT}")
        if activation not in ACTIVATIONS:
            raise NetworkFileError(f"{spec_path}: layer {i} has unknown activation {activation!r} (known: {', '.join(ACTIVATIONS)}); {_REEXPORT}")
        if layers and shape[1] != layers[-1].out_features:
            raise NetworkFileError(f"{spec_path}: layer {i} takes {shape[1]} inputs (shape {list(shape)}) but layer {i - 1} gives {layers[-1].out_features}; {_REEXPORT}")
        try:
            if sparse:
                rows, cols, vals = tensors[f"L{i}.rows"], tensors[f"L{i}.cols"], tensors[f"L{i}.vals"]
                if not rows.shape == cols.shape == vals.shape or rows.ndim != 1:
                    raise NetworkFileError(f"{tensor_path}: layer {i}: L{i}.rows, L{i}.cols and L{i}.vals differ in shape ({rows.shape}, {cols.shape}, {vals.shape}); {_REEXPORT}")
                if rows.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= shape[0] or cols.max() >= shape[1]):
                    raise NetworkFileError(f"{tensor_path}: layer {i}: sparse indices reach outside its declared shape {list(shape)}; {_REEXPORT}")
                w = sp.csr_matrix((vals.astype(np.float64), (rows, cols)), shape=shape)
            else:
                w = tensors[f"L{i}.weight"]
                if w.shape != shape:
                    raise NetworkFileError(f"{tensor_path}: layer {i}: L{i}.weight has shape {list(w.shape)}, network.json declares {list(shape)}; {_REEXPORT}")
            b = tensors[f"L{i}.bias"] if has_bias else None
        except KeyError as exc:
            raise NetworkFileError(f"{tensor_path}: missing tensor {exc.args[0]} for layer {i}") from None
        if b is not None and b.shape != (shape[0],):
            raise NetworkFileError(f"{tensor_path}: layer {i}: L{i}.bias has shape {list(b.shape)}, but the layer has {shape[0]} outputs; {_REEXPORT}")
        layers.append(Layer(weight=w, bias=b, activation=activation, name=meta.get("name", str(i))))
    widths = [layers[0].in_features] + [layer.out_features for layer in layers]
    if "widths" in spec and spec["widths"] != widths:
        raise NetworkFileError(f"{spec_path}: 'widths' {_clip(spec['widths'])} do not match the layers' shapes {_clip(widths)}; {_REEXPORT}")
    try:
        adapter = InputAdapter(**spec.get("adapter", {}))
    except TypeError:
        raise NetworkFileError(f"{spec_path}: 'adapter' {_clip(spec.get('adapter'))} is not an input adapter (kind, length, description); {_REEXPORT}") from None
    return Network(layers=layers, adapter=adapter, source=str(root), fmt="dormant-folder", meta=spec.get("meta", {}))


def _clip(values, n: int = 6) -> str:
    text = ", ".join(str(v) for v in list(values)[:n])
    return f"[{text}{', ...' if len(values) > n else ''}]" if isinstance(values, list) else repr(values)[:60]
