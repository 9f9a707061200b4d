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
from dormant.net.load.network import InputAdapter, Layer, Network

FORMAT = "dormant-network/1"
SPEC_NAME = "network.json"
TENSORS_NAME = "layers.safetensors"


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
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as exc:
        raise NetworkFileError(f"{spec_path}: not valid JSON ({exc})") from None
    if spec.get("format") != FORMAT:
        raise NetworkFileError(f"{spec_path}: unknown format {spec.get('format')!r} (expected {FORMAT})")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as exc:  # safetensors raises its own error types
        raise NetworkFileError(f"{tensor_path}: cannot read safetensors ({exc})") from None
    layers = []
    for i, meta in enumerate(spec["layers"]):
        shape = tuple(meta["shape"])
        try:
            if meta["sparse"]:
                w = sp.csr_matrix((tensors[f"L{i}.vals"].astype(np.float64), (tensors[f"L{i}.rows"], tensors[f"L{i}.cols"])), shape=shape)
            else:
                w = tensors[f"L{i}.weight"]
            b = tensors.get(f"L{i}.bias") if meta["bias"] else None
        except KeyError as exc:
            raise NetworkFileError(f"{tensor_path}: missing tensor {exc.args[0]} for layer {i}") from None
        layers.append(Layer(weight=w, bias=b, activation=meta["activation"], name=meta.get("name", str(i))))
    return Network(layers=layers, adapter=InputAdapter(**spec.get("adapter", {})), source=str(root), fmt="dormant-folder", meta=spec.get("meta", {}))
