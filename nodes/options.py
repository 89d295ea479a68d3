"""Input declarations shared by the nodes, so each option has one name, one wording and one check."""

from __future__ import annotations

from ..rmbg_core.compose import parse_color
from ..rmbg_core.errors import InputError

CATEGORY = "image/background removal"
MODEL_TYPE = "RMBG_MODEL"
BACKGROUND_MODES = ["alpha", "color"]

MASK_CONVENTION = ("MASK is 1 = foreground (subject), 0 = background. Core JoinImageWithAlpha and "
                   "LoadImage's MASK mean the opposite (1 = transparent): put an InvertMask in between.")

BACKGROUND_COLOR = ("STRING", {
    "default": "#FFFFFF",
    "tooltip": "Background colour for mode 'color', as '#RRGGBB' (or '#RGB'). Ignored for 'alpha'.",
})


BACKGROUND_MODE = (BACKGROUND_MODES, {
    "default": "alpha",
    "tooltip": "'alpha' gives an RGBA cutout (a 4-channel IMAGE; SaveImage writes a transparent PNG), "
               "'color' an RGB image composited on background_color.",
})


def background_for(mode: str, color: str) -> str | None:
    """The ``background`` argument of ``rmbg_core.compose.apply_mask``: None for a cutout."""
    if mode not in BACKGROUND_MODES:
        raise InputError(f"background mode {mode!r} is not one of {', '.join(BACKGROUND_MODES)}")
    if mode == "alpha":
        return None
    parse_color(color)
    return color


def check_color(background_color: object) -> bool | str:
    """``VALIDATE_INPUTS`` helper: True, or the reason a typed-in colour is unusable (shown by
    ComfyUI before anything runs). A colour arriving through a link is checked at run time."""
    if not isinstance(background_color, str):
        return True
    try:
        parse_color(background_color)
    except InputError as exc:
        return str(exc)
    return True
