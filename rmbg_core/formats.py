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


# WebP is lossless and exact (keeps colours under zero alpha), so it equals PNG; JPEG (no alpha) is for composites.
OUTPUT_FORMATS = {
    "png": OutputFormat("PNG", ".png"),
    "webp": OutputFormat("WEBP", ".webp", {"lossless": True, "exact": True}),
    "jpg": OutputFormat("JPEG", ".jpg", {"quality": 95}),
}
