"""Output image formats: how a cutout is encoded to bytes, shared by the CLI, ``rmbg serve`` and Ray jobs."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class OutputFormat:
    """How outputs are encoded: Pillow format name, file suffix, save options."""

    pil_format: str
    suffix: str
    options: dict = field(default_factory=dict)

    def encode(self, image: Image.Image) -> bytes:
        """``image`` encoded in this format."""
        buffer = io.BytesIO()
        image.save(buffer, format=self.pil_format, **self.options)
        return buffer.getvalue()


# PNG's zlib setting: "rle" is zlib's run-length strategy (Z_RLE; any level 1-9 then gives the same stream),
# which on photos' filtered rows comes within about 5% of the default level 6's size (masks and composites
# smaller) in a quarter of its time; 0-9 are zlib levels with its default strategy. All are lossless.
PNG_COMPRESSIONS = ("rle", *map(str, range(10)))
_Z_RLE = 3


def png_format(compression: str = "rle") -> OutputFormat:
    """The PNG output format with ``compression``, one of :data:`PNG_COMPRESSIONS`."""
    if compression not in PNG_COMPRESSIONS:
        raise ValueError(f"PNG compression must be one of {', '.join(PNG_COMPRESSIONS)}, got {compression!r}")
    if compression == "rle":
        return OutputFormat("PNG", ".png", {"compress_level": 1, "compress_type": _Z_RLE})
    return OutputFormat("PNG", ".png", {"compress_level": int(compression)})


# WebP is lossless and exact (keeps colours under zero alpha), so it equals PNG; JPEG (no alpha) is for composites.
OUTPUT_FORMATS = {
    "png": png_format(),
    "webp": OutputFormat("WEBP", ".webp", {"lossless": True, "exact": True}),
    "jpg": OutputFormat("JPEG", ".jpg", {"quality": 95}),
}
