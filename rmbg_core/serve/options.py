"""Request options of the removal endpoints, parsed into what ``api.render`` and the encoders take.

``/v1/remove`` uses the Python API's names (``output``, ``background``, ``format``,
``estimate_foreground`` and every :class:`Refinement` option); ``/api/remove`` takes rembg's names and
maps them onto the same options. Every problem is an :class:`OptionError` naming the option (HTTP 422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from PIL import Image

from ..formats import OUTPUT_FORMATS, OutputFormat
from ..edges.compose import parse_color
from ..edges.refine import Refinement, option_help, option_names, parse_flag
from ..errors import OptionError, RMBGError

OUTPUTS = ("cutout", "mask")
GENERAL_HELP = {
    "output": "cutout (RGBA, default) or mask (greyscale)",
    "background": "composite onto this colour (#RRGGBB) instead of a transparent cutout",
    "format": "png (default), webp (lossless) or jpg (needs background, or output=mask)",
    "estimate_foreground": "estimate the foreground colours of soft edges (removes the old background's halo)",
}
# rembg's post_process_mask (opening, blur, threshold) gives a clean binary edge: the nearest refinement.
REMBG_PPM = {"threshold": 0.5, "feather": 1.0}
REMBG_HELP = {
    "om": "only mask: return the mask (output=mask)",
    "bgc": "background colour r,g,b or r,g,b,255 (or #RRGGBB); r,g,b,0 means none",
    "dc": "decontaminate edges: estimate_foreground",
    "ppm": "post-process the mask: threshold=0.5 then feather=1 (a clean, anti-aliased edge)",
    "model": "accepted and ignored: this server runs its one model",
    "af": "alpha matting foreground threshold: accepted and ignored (alpha matting is not offered)",
    "ab": "alpha matting background threshold: accepted and ignored",
    "ae": "alpha matting erosion size: accepted and ignored",
    "a": "alpha matting: false accepted; true is refused (422), use dc",
    "vm": "ViTMatte refinement: false accepted; true is refused (422)",
    "extras": "rembg session keywords: empty or {} accepted; anything else is refused (422)",
}


@dataclass(frozen=True)
class RemoveOptions:
    """One request's output: mask or cutout, background, encoding and edge options."""

    output: str = "cutout"
    background: str | tuple[int, int, int] | None = None
    format: str = "png"
    estimate_foreground: bool = False
    refine: Refinement | None = None

    @property
    def encoder(self) -> OutputFormat:
        return OUTPUT_FORMATS[self.format]

    @property
    def media_type(self) -> str:
        Image.init()  # every format plugin registered, so MIME knows WEBP too
        return Image.MIME[self.encoder.pil_format]

    def render_options(self) -> dict[str, Any]:
        """The keyword options of ``api.render``."""
        return {"return_mask": self.output == "mask", "background": self.background, "refine": self.refine,
                "estimate_foreground": self.estimate_foreground}


def single_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Query and form fields as one dict; a name given twice is an error, an empty value means not given."""
    values: dict[str, str] = {}
    for name, value in items:
        if name in values:
            raise OptionError(f"option {name} is given more than once")
        if value.strip():
            values[name] = value
    return values


def parse_options(values: Mapping[str, str]) -> RemoveOptions:
    """``/v1/remove`` options (the Python API's names) from text values."""
    _refuse_unknown(values, (*GENERAL_HELP, *option_names()))
    output = values.get("output", "cutout").strip().lower()
    if output not in OUTPUTS:
        raise OptionError(f"output must be cutout or mask, got {values['output']!r}")
    background = values.get("background")
    if background is not None:
        if output == "mask":
            raise OptionError("background cannot be combined with output=mask (a mask has no background)")
        _check_color(background)
    refine = Refinement.from_options({name: values[name] for name in option_names() if name in values})
    return _checked(RemoveOptions(output=output, background=background, format=values.get("format", "png").strip().lower(),
                                  estimate_foreground=parse_flag("estimate_foreground",
                                                                 values.get("estimate_foreground", "false")),
                                  refine=None if refine.is_identity else refine))


def parse_rembg_options(values: Mapping[str, str]) -> RemoveOptions:
    """``/api/remove`` options (rembg's names, see ``REMBG_HELP``) onto the same outputs; always PNG."""
    _refuse_unknown(values, REMBG_HELP)
    for name in ("a", "vm"):
        if parse_flag(name, values.get(name, "false")):
            what = "alpha matting (a)" if name == "a" else "ViTMatte refinement (vm)"
            raise OptionError(f"{what} is not offered by this server; dc=true estimates the foreground colours")
    if values.get("extras", "{}").replace(" ", "") != "{}":
        raise OptionError("extras (rembg session keywords) are not supported by this server")
    mask = parse_flag("om", values.get("om", "false"))
    background = None if mask or "bgc" not in values else rembg_color(values["bgc"])
    refine = Refinement(**REMBG_PPM) if parse_flag("ppm", values.get("ppm", "false")) else None
    return _checked(RemoveOptions(output="mask" if mask else "cutout", background=background, refine=refine,
                                  estimate_foreground=parse_flag("dc", values.get("dc", "false"))))


def rembg_color(text: str) -> tuple[int, int, int] | None:
    """rembg's ``bgc``: "r,g,b" or "r,g,b,a" with a 255 (opaque) or 0 (no background); or "#RRGGBB"."""
    if "," not in text:
        return _check_color(text)
    try:
        parts = [int(part) for part in text.split(",")]
    except ValueError:
        raise OptionError(f"bgc must be r,g,b or r,g,b,a integers, got {text!r}") from None
    if len(parts) == 4:
        if parts[3] == 0:
            return None
        if parts[3] != 255:
            raise OptionError(f"bgc alpha must be 255 (opaque) or 0 (none), got {parts[3]}")
        parts = parts[:3]
    return _check_color(tuple(parts), "bgc")


def _check_color(color: Any, name: str = "background") -> Any:
    try:
        parse_color(color)
    except RMBGError as exc:
        raise OptionError(f"{name}: {exc}") from None
    return color


def _checked(options: RemoveOptions) -> RemoveOptions:
    if options.format not in OUTPUT_FORMATS:
        raise OptionError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {options.format!r}")
    if options.format == "jpg" and options.output == "cutout" and options.background is None:
        raise OptionError("format=jpg needs a background (JPEG has no transparency), or output=mask")
    return options


def _refuse_unknown(values: Mapping[str, str], known: Iterable[str]) -> None:
    known = tuple(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise OptionError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(known)}")


def option_docs() -> dict[str, str]:
    """One line per ``/v1/remove`` option, for the OpenAPI description and ``/v1/info``."""
    return {**GENERAL_HELP, **option_help()}
