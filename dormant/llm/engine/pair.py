"""A fine-tune and its base held as one model: identical tensors shared, views served in place.

Weight amplification (``W_base + a * (W_ft - W_base)``) and layer restoration need the base and
the fine-tune side by side. Loading two full models doubles memory; but a fine-tune usually
changes a small part of the weights (the public warmup changed 84 of 339 tensors). ``ModelPair``
loads the fine-tune once with transformers, then streams both checkpoints tensor by tensor with
``safetensors.safe_open`` and keeps private copies *only of the tensors that differ* (a base copy
and a fine-tune copy of each). Memory: one model plus two copies of the modified tensors; with
``copies_device="cpu"`` the accelerator holds one model, with ``"disk"`` memory is one model and
a view switch re-reads the modified tensors from the memory-mapped checkpoints.

A *view* assigns each modified tensor a coefficient ``c`` and writes ``base + c * (ft - base)``
into the live parameter, in place, under ``torch.no_grad``. Switching views therefore costs at
most one rewrite of the modified tensors; untouched tensors never move.

Views are spec strings (``base``, ``ft``, ``amp:3``, ``restore:19-23`` ...): the grammar is in
``dormant.llm.engine.views``.

Typical use::

    pair = ModelPair.load("runs/ft", "Qwen/Qwen2.5-7B-Instruct", dtype="bfloat16", device="cuda")
    model = pair.amplified(3.0)        # the same nn.Module object, weights rewritten
    model = pair.restored("19-23")     # layer-restoration experiment
    model = pair.view("amp:5@mlp")     # any spec string
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant.errors import ArchitectureMismatch, CheckpointError, DormantError
from dormant.llm.engine.views import Selection, View
from dormant.llm.weights.names import layer_of

# Config keys that decide whether two checkpoints can share one module structure.
_STRUCTURAL_KEYS = (
    "model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "vocab_size", "head_dim", "n_routed_experts",
    "moe_intermediate_size", "q_lora_rank", "kv_lora_rank", "tie_word_embeddings",
)


@dataclass(frozen=True)
class OnDisk:
    """A tensor left in its safetensors file, read (through the OS page cache) when a view needs it."""

    path: Path
    name: str
    dtype: Any

    def to(self, device: Any) -> Any:
        from safetensors import safe_open

        with safe_open(self.path, framework="pt") as fh:
            return fh.get_tensor(self.name).to(device=device, dtype=self.dtype)


@dataclass
class ModifiedTensor:
    """A tensor that differs between the checkpoints: the live parameter and both originals."""

    name: str
    param: Any  # torch.nn.Parameter (the live weights the model computes with)
    base: Any  # torch.Tensor, base values in the parameter's dtype/device
    ft: Any  # torch.Tensor, fine-tune values
    coefficient: float = 1.0  # what the live parameter currently holds

    def write(self, c: float) -> None:
        """Set the live parameter to ``base + c * (ft - base)`` in place (exact for c = 0 and 1)."""
        import torch

        if c == self.coefficient:
            return
        dev = self.param.device  # copies may live in host memory or on disk: bring them here
        with torch.no_grad():
            if c == 0.0:
                self.param.copy_(self.base.to(dev))
            elif c == 1.0:
                self.param.copy_(self.ft.to(dev))
            else:  # in float32, then rounded once to the parameter's dtype
                self.param.copy_(torch.lerp(self.base.to(dev).float(), self.ft.to(dev).float(), float(c)))
        self.coefficient = c


@dataclass
class ModelPair:
    """One loaded model that can act as the base, the fine-tune, or any view between and beyond."""

    model: Any
    tokenizer: Any
    modified: dict[str, ModifiedTensor]
    ft_path: Path
    base_path: Path
    shared_tensors: int = 0
    current: View = field(default_factory=lambda: View("ft", 1.0))

    @classmethod
    def load(
        cls,
        ft_path: str | Path,
        base_path: str | Path,
        *,
        dtype: Any = None,
        device: str | None = None,
        device_map: Any = None,
        copies_device: str | None = None,
    ) -> "ModelPair":
        """Load the fine-tune, stream both checkpoints and keep copies only of the tensors that differ.

        ``dtype``: a torch dtype or its name (``"bfloat16"``, ``"float32"``); default float32 on
        CPU, the checkpoint's dtype elsewhere. ``device``: ``"cpu"`` (default) or ``"cuda"``.
        ``device_map``: passed to transformers for models larger than one device.
        ``copies_device``: where the base/fine-tune copies of modified tensors live (default: beside
        the parameter). ``"cpu"`` keeps accelerator memory at one model when most tensors changed
        (the warmup changed every MLP matrix: ~75% of the weights); views then cost a host-to-device
        copy. ``"disk"`` keeps no copies at all: a view switch reads the modified tensors back from
        the two checkpoints (memory-mapped, so repeated switches come from the page cache).
        Raises ``ArchitectureMismatch`` naming the first difference (config key, tensor name or shape).
        """
        import torch
        from transformers import AutoModelForCausalLM

        ft_path, base_path = Path(ft_path), Path(base_path)
        check_compatible(ft_path, base_path)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype is None and (device in (None, "cpu") and device_map is None):
            dtype = torch.float32
        kwargs: dict[str, Any] = {"dtype": dtype if dtype is not None else "auto"}
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = AutoModelForCausalLM.from_pretrained(ft_path, **kwargs)
        if device_map is None and device not in (None, "cpu"):
            model.to(device)
        model.eval()
        modified, shared = _find_modified(model, ft_path, base_path, copies_device)
        return cls(model=model, tokenizer=load_tokenizer(ft_path, base_path), modified=modified,
                   ft_path=ft_path, base_path=base_path, shared_tensors=shared)

    # -- views ---------------------------------------------------------------------------------
    def view(self, spec: "str | View") -> Any:
        """Rewrite the modified tensors for ``spec`` and return the (same) model object."""
        v = View.parse(spec)
        for t in self.modified.values():
            t.write(v.coefficient(t.name))
        self.current = v
        return self.model

    def base(self) -> Any:
        return self.view(View("base", 0.0))

    def ft(self) -> Any:
        return self.view(View("ft", 1.0))

    def amplified(self, alpha: float, selection: "str | Selection | None" = None) -> Any:
        sel = Selection.parse(selection) if isinstance(selection, str) else selection
        return self.view(View("amp", float(alpha), sel))

    def restored(self, selection: "str | Selection | list[int]") -> Any:
        """The fine-tune with the selected layers/modules set back to base (restoration experiment)."""
        if isinstance(selection, (list, tuple, set, frozenset)):
            selection = Selection(layers=frozenset(int(x) for x in selection))
        sel = Selection.parse(selection) if isinstance(selection, str) else selection
        return self.view(View("restore", 0.0, sel))

    # -- facts ---------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def modified_layers(self) -> list[int]:
        return sorted({l for n in self.modified if (l := layer_of(n)) is not None})

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held: the model's unique parameters plus the private copies of modified tensors."""
        seen, model_bytes = set(), 0
        for p in list(self.model.parameters()) + list(self.model.buffers()):
            if p.data_ptr() in seen:
                continue
            seen.add(p.data_ptr())
            model_bytes += p.numel() * p.element_size()
        extra = sum(x.numel() * x.element_size() for t in self.modified.values() for x in (t.base, t.ft) if not isinstance(x, OnDisk))
        return {"model": model_bytes, "modified_copies": extra, "total": model_bytes + extra}

    def describe(self) -> dict[str, Any]:
        return {
            "ft": str(self.ft_path),
            "base": str(self.base_path),
            "modified_tensors": sorted(self.modified),
            "shared_tensors": self.shared_tensors,
            "modified_layers": self.modified_layers(),
            "view": str(self.current),
        }


# -- loading helpers -------------------------------------------------------------------------------

def load_tokenizer(*folders: Path) -> Any:
    """The tokenizer of the first folder that has one (fine-tunes usually ship the base's)."""
    from transformers import AutoTokenizer

    errors = []
    for f in folders:
        try:
            tok = AutoTokenizer.from_pretrained(f)
        except Exception as exc:  # noqa: BLE001 - try the next folder, report all at the end
            errors.append(f"{f}: {exc}")
            continue
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    raise CheckpointError("no loadable tokenizer in " + "; ".join(errors))


def _read_config(folder: Path) -> dict[str, Any]:
    p = folder / "config.json"
    if not p.is_file():
        raise CheckpointError(f"{folder}: no config.json (is this a model folder?)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p}: not valid JSON ({exc})") from None


def check_compatible(ft_path: Path, base_path: Path) -> None:
    """Refuse two checkpoints whose configs differ in a structural key (architecture, sizes)."""
    a, b = _read_config(ft_path), _read_config(base_path)
    for key in _STRUCTURAL_KEYS:
        if a.get(key) != b.get(key):
            raise ArchitectureMismatch(
                f"{ft_path} and {base_path} differ in config key {key!r}: {a.get(key)!r} vs {b.get(key)!r}; "
                "a fine-tune and its base must share one architecture"
            )


def weight_files(folder: Path) -> dict[str, Path]:
    """Map every tensor name to the safetensors file holding it (single file or sharded index)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no .safetensors weight files")
    out: dict[str, Path] = {}
    for f in files:
        try:
            with safe_open(f, framework="pt") as fh:
                for k in fh.keys():
                    out[k] = f
        except Exception as exc:  # noqa: BLE001 - any read failure means a broken checkpoint
            raise CheckpointError(f"{f}: cannot read safetensors file ({exc})") from None
    return out


def _find_modified(model: Any, ft_path: Path, base_path: Path, copies_device: str | None = None) -> tuple[dict[str, ModifiedTensor], int]:
    """Stream both checkpoints; return the tensors that differ (with copies) and the shared count."""
    import torch
    from safetensors import safe_open

    ft_files, base_files = weight_files(ft_path), weight_files(base_path)
    if set(ft_files) != set(base_files):
        only_ft = sorted(set(ft_files) - set(base_files))
        only_base = sorted(set(base_files) - set(ft_files))
        raise ArchitectureMismatch(
            f"{ft_path} and {base_path} hold different tensors: only in fine-tune {only_ft[:5]}, only in base {only_base[:5]}"
        )
    live = model.state_dict(keep_vars=True)
    modified: dict[str, ModifiedTensor] = {}
    shared = 0
    handles = {f: safe_open(f, framework="pt") for f in set(ft_files.values()) | set(base_files.values())}
    for name in sorted(ft_files):
        a, b = handles[ft_files[name]].get_tensor(name), handles[base_files[name]].get_tensor(name)
        if a.shape != b.shape:
            raise ArchitectureMismatch(f"tensor {name}: shape {tuple(a.shape)} in {ft_path} vs {tuple(b.shape)} in {base_path}")
        if torch.equal(a, b if b.dtype == a.dtype else b.to(a.dtype)):  # a base saved in another dtype
            shared += 1
            continue
        param = live.get(name)
        if param is None:
            raise CheckpointError(f"{ft_path}: modified tensor {name} has no counterpart in the loaded model")
        if param.device.type == "meta":
            raise DormantError(f"modified tensor {name} is offloaded to disk by device_map; give it a device")
        if copies_device == "disk":
            base_copy, ft_copy = OnDisk(base_files[name], name, param.dtype), OnDisk(ft_files[name], name, param.dtype)
        else:
            where = copies_device or param.device
            base_copy = b.to(device=where, dtype=param.dtype)
            ft_copy = param.detach().to(where, copy=True)
        modified[name] = ModifiedTensor(name=name, param=param, base=base_copy, ft=ft_copy)
    return modified, shared
