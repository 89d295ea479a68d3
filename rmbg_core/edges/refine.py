"""Mask refinements shared by every front end: one options object, one function, one fixed order.

``apply_refinement(masks, Refinement(...))`` works on (B, H, W) or (H, W) masks in [0, 1] on any device,
each mask of a batch on its own. Steps run in this order (each only when enabled):

1. ``levels=(low, high)``: ``(mask - low) / (high - low)`` clipped to [0, 1], so values at or below
   ``low`` become 0 and at or above ``high`` become 1 (a solid subject and a clean background: the
   model card's min-max normalisation leaves most of a subject at 249-254 of 255). It runs first, on the
   network's own values, so the steps below see the levelled mask (their 0.5 level and ``threshold``
   included) and ``feather``'s blur, later, is not clipped away. ``(0, 1)`` is the identity (off).
2. ``threshold``: binarise, ``mask > threshold`` -> 1, else 0.
3. ``fill_holes``: set to 1 every hole: a 4-connected region of ``mask <= 0.5`` that does not touch the
   image border (the mask counts as 8-connected, the background as 4-connected, so a diagonal
   one-pixel outline closes a hole).
4. ``keep_largest`` / ``min_area``: components are the 8-connected regions of ``mask > 0.5``;
   ``keep_largest`` keeps the biggest (ties: the one ending first in raster order), ``min_area`` keeps
   those of at least that fraction of the image's pixels; with both, a component must pass both. A
   kept component keeps its soft edge, the visible (>= 1/255) pixels at or below 0.5 connected to it
   through such pixels, except those within 16 steps of a removed component and nearer to that one
   (steps are 8-connected, through edge pixels; ties go to the kept side). Everything else becomes 0.
5. ``grow``: N > 0 dilates, N < 0 erodes, by a disc of radius |N| px (all offsets with
   dy^2 + dx^2 <= N^2): each pixel becomes the max (min) of the mask over that disc, pixels outside the
   image ignored. For a binary mask that is "every pixel within N px of the mask" (erosion: "whose whole
   disc lies in it"); an s x s square grows to area (s-1)^2 + 2(s-1)(2N+1) + |disc| and shrinks to
   (s-2N)^2.
6. ``feather``: Gaussian blur of standard deviation ``feather`` px (kernel truncated at 3 sigma,
   renormalised; the border is extended by replication, so a mask touching the edge stays solid there).
7. ``invert``: ``1 - mask``.

The default ``Refinement()`` is the identity: ``apply_refinement`` then returns its input untouched,
so default outputs stay bit-identical to the reference masks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, OptionError
from ..model.images import to_unit_float
from .components import component_sizes, label_components

# Level splitting a soft mask into object and background for holes and components.
OBJECT_LEVEL = 0.5
# Soft-edge pixels below this are invisible in 8-bit output and never tie components together.
VISIBLE_LEVEL = 1.0 / 255.0
# Soft edge within this many steps of objects goes to the nearest one (kept or removed).
CONTESTED_STEPS = 16
# Limits that keep a typo from running for minutes (both cost time in proportion to the size).
MAX_GROW = 512
MAX_FEATHER = 256.0
IDENTITY_LEVELS = (0.0, 1.0)
LEVELS_FORMAT = "two numbers LOW,HIGH with 0 <= LOW < HIGH <= 1"
GAUSSIAN_TRUNCATE = 3.0


def _option(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class Refinement:
    """How to refine a predicted mask; every front end builds one of these (fields in order of use).

    All off by default. See the module documentation for the exact semantics of each step.
    """

    levels: tuple[float, float] | None = _option(
        None, "map the mask's LOW..HIGH (0-1) to 0..1, clipping outside: e.g. 0.05,0.95 gives a solid subject "
              "and a clean background")
    threshold: float | None = _option(None, "binarise the mask: values above this (0-1) become 1, the rest 0")
    fill_holes: bool = _option(False, "fill holes: background regions enclosed by the mask become mask")
    keep_largest: bool = _option(False, "keep only the largest connected component (with its soft edge)")
    min_area: float = _option(0.0, "drop components smaller than this fraction (0-1) of the image")
    grow: int = _option(0, "grow (N > 0) or shrink (N < 0) the mask by N pixels (disc)")
    feather: float = _option(0.0, "soften the edge: Gaussian blur with this sigma in pixels")
    invert: bool = _option(False, "invert the mask (1 - mask), last")

    def __post_init__(self) -> None:
        if self.levels is not None:
            levels = _checked_levels(self.levels)
            object.__setattr__(self, "levels", None if levels == IDENTITY_LEVELS else levels)
        if self.threshold is not None:
            _check_number("threshold", self.threshold, 0.0, 1.0, "in [0, 1)")
            if self.threshold >= 1.0:
                raise OptionError(f"threshold must be in [0, 1), got {self.threshold!r}")
        _check_number("feather", self.feather, 0.0, MAX_FEATHER, f"a sigma in pixels, 0 to {MAX_FEATHER:g}")
        _check_number("min_area", self.min_area, 0.0, 1.0, "a fraction of the image in [0, 1]")
        if isinstance(self.grow, bool) or not isinstance(self.grow, int):
            raise OptionError(f"grow must be a whole number of pixels, got {self.grow!r}")
        if abs(self.grow) > MAX_GROW:
            raise OptionError(f"grow must be between -{MAX_GROW} and {MAX_GROW} pixels, got {self.grow}")
        for name in ("fill_holes", "keep_largest", "invert"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def is_identity(self) -> bool:
        """True when no step is enabled (the mask passes through untouched)."""
        return self == Refinement()

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, *, ignore_unknown: bool = False,
                     **kwargs: Any) -> "Refinement":
        """Build from a mapping and/or keywords (e.g. ``vars(cli_args)``, node inputs, pipeline keywords).

        ``None`` values mean "not given" (the default). Numbers given as strings or numpy scalars are
        converted; unknown names raise :class:`OptionError` unless ``ignore_unknown``.
        """
        given = {**(options or {}), **kwargs}
        names = option_names()
        unknown = sorted(set(given) - set(names))
        if unknown and not ignore_unknown:
            raise OptionError(f"unknown refinement option(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        values = {name: _coerce(name, given[name]) for name in names if given.get(name) is not None}
        return cls(**values)


RefinementLike = Optional[Union[Refinement, Mapping[str, Any]]]


def as_refinement(value: RefinementLike) -> Refinement | None:
    """Accept a :class:`Refinement`, a mapping of its options (see ``from_options``) or None."""
    if value is None or isinstance(value, Refinement):
        return value
    if isinstance(value, Mapping):
        return Refinement.from_options(value)
    raise OptionError(f"refine must be a Refinement or a dict of its options, got {type(value).__name__}")


def option_names() -> tuple[str, ...]:
    """The refinement option names, in order of use: the same keyword in every front end."""
    return tuple(item.name for item in fields(Refinement))


def option_help() -> dict[str, str]:
    """One-line help per option, for CLI flags, node tooltips and docstrings."""
    return {item.name: item.metadata["help"] for item in fields(Refinement)}


def option_kinds() -> dict[str, type]:
    """The Python type of each option (``bool``, ``int``, ``float``, or ``tuple`` for ``levels``), for front
    ends that build inputs from the list (the CLI's flags)."""
    return dict(_KINDS)


def apply_refinement(masks: torch.Tensor, refinement: Refinement | None) -> torch.Tensor:
    """Refine (B, H, W) or (H, W) masks in [0, 1] (float or uint8 0-255) on their device.

    Returns float32 masks in [0, 1] of the same shape; with no refinement (``None`` or the identity)
    returns ``masks`` itself, unchanged.
    """
    if refinement is None or refinement.is_identity:
        return masks
    if masks.dim() not in (2, 3):
        raise InputError(f"refinement: expected (H, W) or (B, H, W) masks, got shape {tuple(masks.shape)}")
    single = masks.dim() == 2
    mask = masks[None] if single else masks
    mask = to_unit_float(mask).clamp(0.0, 1.0)
    if refinement.levels is not None:
        low, high = refinement.levels
        mask = ((mask - low) / (high - low)).clamp_(0.0, 1.0)
    if refinement.threshold is not None:
        mask = (mask > refinement.threshold).to(torch.float32)
    if refinement.fill_holes:
        mask = fill_holes(mask)
    if refinement.keep_largest or refinement.min_area > 0.0:
        mask = keep_components(mask, largest=refinement.keep_largest, min_area=refinement.min_area)
    if refinement.grow:
        mask = grow(mask, refinement.grow)
    if refinement.feather > 0.0:
        mask = feather(mask, refinement.feather)
    if refinement.invert:
        mask = 1.0 - mask
    return mask[0] if single else mask


def fill_holes(masks: torch.Tensor) -> torch.Tensor:
    """Set to 1 the 4-connected regions of ``mask <= 0.5`` that do not touch the border (B, H, W)."""
    background = masks <= OBJECT_LEVEL
    labels = label_components(background, connectivity=4).reshape(-1)
    border = torch.zeros_like(background)
    border[:, 0], border[:, -1], border[:, :, 0], border[:, :, -1] = True, True, True, True
    touching = torch.zeros(labels.numel(), dtype=torch.bool, device=masks.device)
    touching[labels.view(background.shape)[border & background]] = True
    holes = background.reshape(-1) & ~touching[labels.clamp(min=0)]
    return masks.masked_fill(holes.view(masks.shape), 1.0)


def keep_components(masks: torch.Tensor, *, largest: bool = False, min_area: float = 0.0) -> torch.Tensor:
    """Keep the largest component and/or those of at least ``min_area`` of the image, with soft edges."""
    batch, height, width = masks.shape
    objects = masks > OBJECT_LEVEL
    labels = label_components(objects)
    sizes = component_sizes(labels)
    kept = objects.clone()
    if min_area > 0.0:
        kept &= sizes >= min_area * height * width
    if largest:
        biggest = sizes.reshape(batch, -1).amax(dim=1).view(batch, 1, 1)
        tied = torch.where(objects & (sizes == biggest), labels, torch.full_like(labels, labels.numel()))
        kept &= labels == tied.reshape(batch, -1).amin(dim=1).view(batch, 1, 1)
    edge = (masks >= VISIBLE_LEVEL) & ~objects
    removed = objects & ~kept
    return torch.where(kept | _soft_edge(kept, removed, edge), masks, torch.zeros_like(masks))


def _soft_edge(kept: torch.Tensor, removed: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """The ``edge`` pixels that go with ``kept``: within CONTESTED_STEPS steps of the objects, those
    nearer (8-connected steps through edge pixels) to kept than to removed ones (ties kept); beyond,
    those connected through edge pixels to what the kept side holds."""
    if not bool(edge.any()):
        return edge
    near_kept, free = kept, edge
    if bool(removed.any()):
        near_removed = removed
        for _ in range(CONTESTED_STEPS):
            to_kept = _dilate_once(near_kept) & free
            to_removed = _dilate_once(near_removed) & free & ~to_kept
            if not bool((to_kept | to_removed).any()):
                break
            near_kept, near_removed = near_kept | to_kept, near_removed | to_removed
            free = free & ~(to_kept | to_removed)
    labels = label_components(near_kept | free).reshape(-1)
    anchored = torch.zeros(labels.numel(), dtype=torch.bool, device=kept.device)
    anchored[labels[near_kept.reshape(-1)]] = True
    attached = free & anchored[labels.clamp(min=0)].view(free.shape)
    return (near_kept & edge) | attached


def _dilate_once(binary: torch.Tensor) -> torch.Tensor:
    """3x3 dilation of (B, H, W) bool masks."""
    rows = binary.clone()
    rows[:, :, 1:] |= binary[:, :, :-1]
    rows[:, :, :-1] |= binary[:, :, 1:]
    out = rows.clone()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def grow(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (``pixels`` > 0) or erode (< 0) (B, H, W) masks by a disc of radius |pixels|."""
    radius = abs(pixels)
    pick = torch.maximum if pixels > 0 else torch.minimum
    out = masks.clone()
    across = masks.clone()  # running max/min over |dx| <= reach, grown as dy shrinks
    reach = 0
    for dy in range(radius, -1, -1):
        half_width = math.isqrt(radius * radius - dy * dy)
        while reach < half_width:
            reach += 1
            _combine_shifted(across, masks, reach, dim=2, pick=pick)
        if dy == 0:
            out = pick(out, across)
        else:
            _combine_shifted(out, across, dy, dim=1, pick=pick)
    return out


def _combine_shifted(target: torch.Tensor, source: torch.Tensor, shift: int, dim: int, pick) -> None:
    """target[i] = pick(target[i], source[i - shift], source[i + shift]) along ``dim``, in place."""
    length = target.shape[dim]
    if shift >= length:
        return
    ahead, behind = target.narrow(dim, shift, length - shift), target.narrow(dim, 0, length - shift)
    ahead.copy_(pick(ahead, source.narrow(dim, 0, length - shift)))
    behind.copy_(pick(behind, source.narrow(dim, shift, length - shift)))


def feather(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, H, W) masks, separable, border replicated."""
    radius = max(1, math.ceil(GAUSSIAN_TRUNCATE * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=masks.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    planes = F.pad(masks[:, None], (radius, radius, radius, radius), mode="replicate")
    planes = F.conv2d(planes, kernel.view(1, 1, 1, -1))
    planes = F.conv2d(planes, kernel.view(1, 1, -1, 1))
    return planes[:, 0].clamp_(0.0, 1.0)


def _checked_levels(value: Any) -> tuple[float, float]:
    """``levels`` as a (low, high) tuple of floats, or an :class:`OptionError` saying what is expected."""
    pair = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    pair = tuple(item.item() if isinstance(item, np.generic) else item for item in pair)
    if len(pair) != 2 or not all(map(_is_real, pair)) or not 0.0 <= pair[0] < pair[1] <= 1.0:
        raise OptionError(f"levels must be {LEVELS_FORMAT}, got {value!r}")
    return float(pair[0]), float(pair[1])


def _is_real(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_number(name: str, value: Any, low: float, high: float, expected: str) -> None:
    if not _is_real(value) or not low <= value <= high:
        raise OptionError(f"{name} must be {expected}, got {value!r}")


_KINDS = {"levels": tuple, "threshold": float, "feather": float, "min_area": float, "grow": int,
          "fill_holes": bool, "keep_largest": bool, "invert": bool}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_flag(name: str, value: str | bool) -> bool:
    """A yes/no option given as text ("true"/"false", "yes"/"no", "on"/"off", "1"/"0") or a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise OptionError(f"{name} must be true or false, got {value!r}")


def _coerce(name: str, value: Any) -> Any:
    """Strings ("0.5", "true") and numpy scalars to the option's Python type; the rest is validated later."""
    if isinstance(value, np.generic):
        value = value.item()
    kind = _KINDS[name]
    if kind is tuple:
        return _coerce_pair(name, value)
    if isinstance(value, str):
        if kind is bool:
            return parse_flag(name, value)
        text = value.strip().lower()
        try:
            value = float(text)
        except ValueError:
            raise OptionError(f"{name} must be a number, got {value!r}") from None
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _coerce_pair(name: str, value: Any) -> Any:
    """"0.05,0.95" (or "0.05 0.95"), a list or an array to a tuple of two numbers; the rest is validated later."""
    if isinstance(value, str):
        parts = [part for part in re.split(r"[,\s]+", value.strip()) if part]
        try:
            if len(parts) == 2:
                return float(parts[0]), float(parts[1])
        except ValueError:
            pass
        raise OptionError(f"{name} must be {LEVELS_FORMAT}, got {value!r}")
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return tuple(value.tolist()) if value.ndim == 1 else value
    return tuple(value) if isinstance(value, list) else value
