"""A fine-tune and its base held as one model: identical tensors shared, views served in place.

Weight amplification (``W_base + a * (W_ft - W_base)``) and layer restoration need the base and
the fine-tune side by side. Loading two full models doubles memory; but a fine-tune usually
changes a small part of the weights (the public warmup changed 84 of 339 tensors). ``ModelPair``
finds the tensors that differ with ``diff`` (byte-identical tensors skipped by a raw comparison of
the memory-mapped checkpoints), loads the fine-tune once with transformers, and keeps private
copies *only of the tensors that differ* (a base copy and a fine-tune copy of each). Memory: one model plus two copies of the modified tensors; with
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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant.errors import ArchitectureMismatch, CheckpointError, DormantError
from dormant.llm.checkpoint import Checkpoint, load_tokenizer, open_checkpoint
from dormant.llm.engine.views import Selection, View, ViewSpecError, _format_layers
from dormant.llm.weights.diff import CONFIG_KEYS, BaseComparison, DiffConfig, compare_base
from dormant.llm.weights.names import layer_of


@dataclass(frozen=True)
class OnDisk:
    """A tensor left in its checkpoint, read (through the OS page cache) when a view needs it."""

    checkpoint: Checkpoint
    name: str
    dtype: Any

    def to(self, device: Any) -> Any:
        x = self.checkpoint.tensor(self.name, self.dtype).to(device)
        self.checkpoint.release(self.name)
        return x


_LERP_BLOCK = 1 << 22  # elements per float32 block of a view write


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
            else:  # in float32, then rounded once to the parameter's dtype; in row blocks, so no full float32 copy
                base, ft = self.base.to(dev), self.ft.to(dev)
                flat_p, flat_b, flat_f = (x.view(x.shape[0], -1) if x.dim() > 1 else x.view(1, -1) for x in (self.param, base, ft))
                step = max(1, _LERP_BLOCK // max(1, flat_p.shape[1]))
                for i in range(0, flat_p.shape[0], step):
                    flat_p[i : i + step].copy_(torch.lerp(flat_b[i : i + step].float(), flat_f[i : i + step].float(), float(c)))
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
        require_tokenizer: bool = True,
    ) -> "ModelPair":
        """Load the fine-tune, stream both checkpoints and keep copies only of the tensors that differ.

        ``dtype``: a torch dtype or its name (``"bfloat16"``, ``"float32"``); default the checkpoint's
        own dtype on every device (the copies of modified tensors are kept in it too, and ``base`` /
        ``ft`` views reproduce it bit for bit). ``device``: ``"cpu"`` (default) or ``"cuda"``; the
        weights are loaded straight onto it.
        ``device_map``: passed to transformers for models larger than one device.
        ``copies_device``: where the base/fine-tune copies of modified tensors live (default: beside
        the parameter). ``"cpu"`` keeps accelerator memory at one model when most tensors changed
        (the warmup changed every MLP matrix: ~75% of the weights); views then cost a host-to-device
        copy. ``"disk"`` keeps no copies at all: a view switch reads the modified tensors back from
        the two checkpoints (memory-mapped, so repeated switches come from the page cache).
        ``"auto"`` (what the commands use): beside the weights when both copies together are at
        most a quarter of the model, else ``"disk"``.
        ``require_tokenizer=False`` accepts folders without a tokenizer (``tokenizer`` is then None).
        Raises ``ArchitectureMismatch`` naming the first difference (config key, tensor name or shape).
        """
        import torch
        from transformers import AutoModelForCausalLM

        if isinstance(dtype, str):
            dtype = torch_dtype(dtype)
        check_device(device)
        ft, base = open_checkpoint(ft_path), open_checkpoint(base_path)
        check_compatible(ft, base)
        comparison = compare_base(ft, base, str(base.path), DiffConfig())
        check_same_tensors(comparison, ft, base)
        kwargs: dict[str, Any] = {"dtype": dtype if dtype is not None else ft.torch_dtype}
        if device_map is not None:
            kwargs["device_map"] = device_map
        elif device not in (None, "cpu"):
            kwargs["device_map"] = {"": device}  # weights go straight to the device, never a whole model in host RAM
        model = AutoModelForCausalLM.from_pretrained(ft.path, **kwargs)
        model.eval()
        tokenizer = load_tokenizer(ft, base)
        if tokenizer is None and require_tokenizer:
            raise CheckpointError(f"no loadable tokenizer in {ft.path} or {base.path}")
        return cls(model=model, tokenizer=tokenizer, modified=_copies(model, comparison, ft, base, copies_device),
                   ft_path=ft.path, base_path=base.path, shared_tensors=comparison.counts["identical"])

    # -- views ---------------------------------------------------------------------------------
    def view(self, spec: "str | View") -> Any:
        """Rewrite the modified tensors for ``spec`` and return the (same) model object."""
        v = View.parse(spec)
        if v.selection is not None:
            self.check_selection(v.selection, str(v))
        for t in self.modified.values():
            t.write(v.coefficient(t.name))
        self.current = v
        return self.model

    def check_selection(self, sel: Selection, where: str | None = None) -> None:
        """Refuse a selection that names no modified tensor (a view with it would be the plain fine-tune)."""
        if any(sel.matches(n) for n in self.modified):
            return
        head = f"view {where}: selection {sel}" if where else f"selection {sel}"
        if not self.modified:
            raise ViewSpecError(f"{head}: the fine-tune and its base do not differ, so it has no tensor to act on")
        layers = self.modified_layers()
        modules = sorted({re.sub(r"^.*?\.\d+\.", "", n).removesuffix(".weight") for n in self.modified})
        raise ViewSpecError(f"{head} matches none of the {len(self.modified)} modified tensors "
                            f"(layers {_format_layers(frozenset(layers)) if layers else 'none'}; modules {', '.join(modules[:8])}"
                            f"{' ...' if len(modules) > 8 else ''}); select among them, e.g. {f'{layers[0]} or ' if layers else ''}{modules[0]}")

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
        model_bytes = unique_bytes(list(self.model.parameters()) + list(self.model.buffers()))
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

DTYPES = ("float32", "bfloat16", "float16", "float64")  # the usual names; torch's other floating names (half, double) work too


def torch_dtype(name: str) -> Any:
    """The torch floating-point dtype a --dtype names."""
    import torch

    dtype = getattr(torch, name, None) if name.isidentifier() else None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DormantError(f"unknown --dtype {name!r}: give {', '.join(DTYPES)} (or leave it out for the checkpoint's own)")
    return dtype


def check_device(device: str | None) -> None:
    """Refuse a --device torch cannot parse or this machine does not have."""
    import torch

    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DormantError(f"unknown --device {device!r}: give cpu or cuda (cuda:N)") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        raise DormantError(f"--device {device}: this machine has {have}; give --device cpu" + (" or cuda:0" if torch.cuda.is_available() else ""))


def check_compatible(ft: Checkpoint, base: Checkpoint) -> None:
    """Refuse two checkpoints whose configs differ in a structural key (architecture, sizes)."""
    for ck in (ft, base):
        if not ck.config:
            raise CheckpointError(f"{ck.path}: no config.json (is this a model folder?)")
    for key in CONFIG_KEYS:
        if ft.config.get(key) != base.config.get(key):
            raise ArchitectureMismatch(
                f"{ft.path} and {base.path} differ in config key {key!r}: {ft.config.get(key)!r} vs {base.config.get(key)!r}; "
                "a fine-tune and its base must share one architecture"
            )


def check_same_tensors(comparison: BaseComparison, ft: Checkpoint, base: Checkpoint) -> None:
    """Refuse checkpoints that do not hold the same tensor names with the same shapes."""
    only_ft = [t.name for t in comparison.tensors if t.status == "extra"]
    only_base = [t.name for t in comparison.tensors if t.status == "missing"]
    if only_ft or only_base:
        raise ArchitectureMismatch(
            f"{ft.path} and {base.path} hold different tensors: only in fine-tune {only_ft[:5]}, only in base {only_base[:5]}"
        )
    for t in comparison.tensors:
        if t.status == "shape_mismatch":
            raise ArchitectureMismatch(f"tensor {t.name}: shape {tuple(t.shape)} in {ft.path} vs {tuple(t.shape_base)} in {base.path}; "
                                       "a fine-tune and its base must share one architecture")


AUTO_COPIES_FRACTION = 0.25


def auto_copies(model: Any, params: list[Any]) -> str | None:
    """Where ``copies_device="auto"`` keeps the copies: beside the weights (None) when both copies
    together are at most ``AUTO_COPIES_FRACTION`` of the model's bytes, else ``"disk"`` (views
    re-read the modified tensors from the memory-mapped checkpoints; memory stays one model)."""
    copies = 2 * sum(p.numel() * p.element_size() for p in params)
    return None if copies <= AUTO_COPIES_FRACTION * unique_bytes(model.parameters()) else "disk"


def unique_bytes(tensors: Any) -> int:
    """Bytes of the distinct tensors (tied weights counted once)."""
    seen, total = set(), 0
    for p in tensors:
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def _copies(model: Any, comparison: BaseComparison, ft: Checkpoint, base: Checkpoint,
            copies_device: str | None = None) -> dict[str, ModifiedTensor]:
    """The live parameter and base/fine-tune copies of every tensor the diff found modified."""
    live = model.state_dict(keep_vars=True)
    if copies_device == "auto":
        copies_device = auto_copies(model, [live[t.name] for t in comparison.modified if t.name in live])
    modified: dict[str, ModifiedTensor] = {}
    for t in sorted(comparison.modified, key=lambda t: t.name):
        name = t.name
        param = live.get(name)
        if param is None:
            raise CheckpointError(f"{ft.path}: modified tensor {name} has no counterpart in the loaded model")
        if param.device.type == "meta":
            raise DormantError(f"modified tensor {name} is offloaded to disk by device_map; give it a device")
        if copies_device == "disk":
            base_copy, ft_copy = OnDisk(base, name, param.dtype), OnDisk(ft, name, param.dtype)
        else:
            where = copies_device or param.device
            base_copy = base.tensor(name, param.dtype).to(where)
            base.release(name)
            ft_copy = param.detach().to(where, copy=True)
        modified[name] = ModifiedTensor(name=name, param=param, base=base_copy, ft=ft_copy)
    return modified
