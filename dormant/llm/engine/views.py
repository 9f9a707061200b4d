"""The view grammar: which weights a model pair carries, as a spec string.

A *view* assigns each modified tensor a coefficient ``c``; the pair writes ``base + c * (ft - base)``
into the live parameter (see ``dormant.llm.engine.pair``). Specs (every command's ``--view``/``--views``)::

    base                 the base model                       (c = 0 everywhere)
    ft                   the fine-tune                        (c = 1 everywhere)
    amp:A                amplification by A (any real number)  (c = A everywhere)
    amp:A@SEL            amplify only the selected tensors     (c = A on SEL, 1 elsewhere)
    restore:SEL          fine-tune with SEL set back to base   (c = 0 on SEL, 1 elsewhere)
    amp:A/restore:SEL    amplified by A with SEL set to base   (c = 0 on SEL, A elsewhere)

    SEL := LAYERS | MODULE | MODULE@LAYERS | all
    LAYERS := N | N-M, joined with '+'       e.g. 19-23, 27, 3+5+19-23
    MODULE := a substring of the tensor name  e.g. mlp, self_attn, down_proj, mlp.down_proj

Examples: ``amp:3``, ``amp:-1``, ``amp:5@mlp@27``, ``restore:19-23``, ``restore:mlp@27``,
``restore:all``, ``amp:4/restore:2-3``. ``amp:1`` equals ``ft`` and ``amp:0`` equals ``base`` exactly;
``amp:1/restore:SEL`` is ``restore:SEL``. The last form localises a payload that shows only under
amplification (no trigger known): restore a layer set while the rest stays amplified.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dormant.errors import DormantError
from dormant.llm.weights.names import layer_of

_LAYERS_SPEC_RE = re.compile(r"^\d+(-\d+)?(\+\d+(-\d+)?)*$")
_LAYERISH_RE = re.compile(r"^[\d+-]+$")  # digits, '-' and '+' only: a malformed layer list, never a tensor name


class ViewSpecError(DormantError):
    """A view spec string that does not follow the grammar (see this module's docstring)."""


@dataclass(frozen=True)
class Selection:
    """A set of tensors: by block index, by a substring of the name, or both (``None`` = any)."""

    module: str | None = None
    layers: frozenset[int] | None = None

    @classmethod
    def parse(cls, spec: str) -> "Selection":
        spec = spec.strip()
        if spec in ("", "all", "*"):
            return cls()
        module, _, layers = spec.rpartition("@") if "@" in spec else ("", "", spec)
        if not _LAYERS_SPEC_RE.match(layers):
            if module or _LAYERISH_RE.match(layers):
                raise ViewSpecError(f"bad layer list {layers!r} in selection {spec!r}: use N, N-M or N+M-K")
            module, layers = layers, ""
        return cls(module=module or None, layers=_parse_layers(layers) if layers else None)

    def matches(self, name: str) -> bool:
        if self.module is not None and self.module not in name:
            return False
        if self.layers is not None:
            layer = layer_of(name)
            return layer is not None and layer in self.layers
        return True

    def __str__(self) -> str:
        if self.module is None and self.layers is None:
            return "all"
        layers = _format_layers(self.layers) if self.layers is not None else ""
        if self.module and layers:
            return f"{self.module}@{layers}"
        return self.module or layers


def _parse_layers(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split("+"):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise ViewSpecError(f"bad layer range {part!r}: end before start")
        out.update(range(a, b + 1))
    return frozenset(out)


def _format_layers(layers: frozenset[int]) -> str:
    xs = sorted(layers)
    parts, start = [], None
    for i, x in enumerate(xs):
        if start is None:
            start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            parts.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return "+".join(parts)


@dataclass(frozen=True)
class View:
    """Which weights the model carries: ``base``, ``ft``, ``amp`` (by ``alpha``) or ``restore`` (the
    selection at base, the rest at ``alpha``: 1 for the fine-tune, A for an amplified one)."""

    kind: str
    alpha: float = 1.0
    selection: Selection | None = None
    rest_alpha: float = 1.0  # restore: the coefficient of the tensors outside the selection

    @classmethod
    def parse(cls, spec: "str | View") -> "View":
        if isinstance(spec, View):
            return spec
        s = spec.strip()
        if s in ("base", "ft"):
            return cls(s, 0.0 if s == "base" else 1.0)
        if s.startswith("amp:") and "/restore:" in s:
            amp, _, restore = s.partition("/")
            a, r = cls.parse(amp), cls.parse(restore)
            if a.selection is not None:
                raise ViewSpecError(f"view {spec!r}: amplify everything with the selection restored, e.g. amp:4/restore:2-3 (no @ in the amp part)")
            return cls("restore", 0.0, r.selection, rest_alpha=a.alpha)
        kind, sep, rest = s.partition(":")
        if sep and kind == "amp":
            a, _, sel = rest.partition("@")
            try:
                alpha = float(a)
            except ValueError:
                raise ViewSpecError(f"bad amplification factor {a!r} in view {spec!r}: expected a number, e.g. amp:3") from None
            if not math.isfinite(alpha):
                raise ViewSpecError(f"amplification factor {a!r} in view {spec!r} is not a finite number: give one such as amp:3")
            return cls("amp", alpha, Selection.parse(sel) if sel else None)
        if sep and kind == "restore":
            if not rest:
                raise ViewSpecError(f"view {spec!r} names nothing to restore: e.g. restore:19-23, restore:mlp@27, restore:all")
            return cls("restore", 0.0, Selection.parse(rest))
        raise ViewSpecError(
            f"unknown view {spec!r}: expected base, ft, amp:A[@SEL], restore:SEL or amp:A/restore:SEL (e.g. amp:3, restore:19-23, restore:mlp@27, amp:4/restore:2-3)"
        )

    def coefficient(self, name: str) -> float:
        """The ``c`` of ``base + c * (ft - base)`` this view gives tensor ``name``."""
        if self.kind in ("base", "ft"):
            return self.alpha
        selected = self.selection is None or self.selection.matches(name)
        if self.kind == "amp":
            return self.alpha if selected else 1.0
        return 0.0 if selected else self.rest_alpha

    def __str__(self) -> str:
        if self.kind in ("base", "ft"):
            return self.kind
        if self.kind == "amp":
            a = f"{self.alpha:g}"
            return f"amp:{a}" + (f"@{self.selection}" if self.selection is not None else "")
        return f"restore:{self.selection}" if self.rest_alpha == 1.0 else f"amp:{self.rest_alpha:g}/restore:{self.selection}"


def parse_views(specs: str | list[str]) -> list[View]:
    """Parse a comma-separated list (``"base,ft,amp:3"``) or a list of view specs."""
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    return [View.parse(s) for s in items if str(s).strip()]
