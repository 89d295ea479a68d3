"""Input declarations shared by the nodes, so each option has one name, one wording and one check."""

from __future__ import annotations

from ..rmbg_core.edges.compose import parse_color
from ..rmbg_core.edges.refine import MAX_FEATHER, MAX_GROW, Refinement, option_help
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


ESTIMATE_FOREGROUND = ("BOOLEAN", {
    "default": False, "label_on": "estimated foreground", "label_off": "photo colours",
    "tooltip": "Colours of the result: the photo's own (default), or the foreground estimated under the mask "
               "(blur-fusion), which takes the old background's colour out of hair and soft edges (no halo). "
               "The mask is not changed.",
})


# Refine Mask's widgets: the core's options, in its order of use except that options added after the node
# was published come last, since saved workflows hold widget values by position.
WIDGET_ORDER = ("threshold", "fill_holes", "keep_largest", "min_area", "grow", "feather", "invert", "levels")


def refinement_inputs() -> dict[str, tuple]:
    """Refine Mask's widgets: rmbg_core's refinement options, same names (order: ``WIDGET_ORDER``), their
    help as tooltips.

    Every default is the core's own "off", except that a widget cannot be empty: ``threshold`` 0 stands
    for the core's ``None`` (not set); a threshold of exactly 0 would make every non-zero pixel foreground.
    ``levels`` is text ("LOW, HIGH", read by the core as the CLI's ``--levels``); "0, 1" is the core's identity.
    """
    text = {name: help_text[:1].upper() + help_text[1:] for name, help_text in option_help().items()}
    widgets = {
        "threshold": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.99, "step": 0.01,
                                "tooltip": f"{text['threshold']}. 0 = off."}),
        "fill_holes": ("BOOLEAN", {"default": False, "label_on": "fill holes", "label_off": "keep holes",
                                   "tooltip": f"{text['fill_holes']}."}),
        "keep_largest": ("BOOLEAN", {"default": False, "label_on": "largest only", "label_off": "all parts",
                                     "tooltip": f"{text['keep_largest']}."}),
        "min_area": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                               "tooltip": f"{text['min_area']}. 0 = off."}),
        "grow": ("INT", {"default": 0, "min": -MAX_GROW, "max": MAX_GROW, "step": 1,
                         "tooltip": f"{text['grow']}. 0 = off."}),
        "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_FEATHER, "step": 0.1,
                              "tooltip": f"{text['feather']}. 0 = off."}),
        "invert": ("BOOLEAN", {"default": False, "label_on": "inverted", "label_off": "as is",
                               "tooltip": f"{text['invert']}."}),
        "levels": ("STRING", {"default": "0, 1",
                              "tooltip": f"{text['levels']}. Two numbers LOW, HIGH; '0, 1' = off. Runs first."}),
    }
    return {name: widgets[name] for name in WIDGET_ORDER}


def refinement_from_widgets(**values: object) -> Refinement:
    """The :class:`Refinement` for Refine Mask's widget values (``threshold`` 0 = not set)."""
    if values.get("threshold") == 0:
        values["threshold"] = None
    return Refinement.from_options(values)


def background_for(mode: str, color: str) -> str | None:
    """The ``background`` argument of ``rmbg_core.edges.compose.apply_mask``: None for a cutout."""
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
