"""Receiving an image: the request body (raw or multipart) read under a size limit, then decoded.

The limit is enforced while the body streams in (a declared Content-Length over it is refused before
reading anything), so an oversized upload never sits in memory. Decoding is the core's
``read_image``, after a header-only look at the pixel count that refuses decompression bombs before
any pixel is decoded.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from ..errors import InputError
from ..model.images import RGBImage, read_image
from .problems import Problem

# Raw bodies with these types are taken as image data (besides image/*); curl's -T sends none.
RAW_TYPES = ("application/octet-stream", "")
FORM_FIELDS = 64
RAW_BODY = "request body"  # the name of an image sent as the whole body, in messages
NAME_CHARS = 80


@dataclass(frozen=True)
class Upload:
    """Image bytes as received, a name for messages, and the declared Content-Type (lower case, no params)."""

    data: bytes
    name: str
    content_type: str = ""


def declared_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


async def read_upload(request: Request, field: str, max_bytes: int) -> tuple[Upload, list[tuple[str, str]]]:
    """The image (multipart ``field`` or the raw body) and the other form fields, within ``max_bytes``.

    Raises :class:`Problem` (413 too large, 415 not an image type, 400 no image) and
    ``starlette.requests.ClientDisconnect`` when the client goes away mid-upload.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large(int(length), max_bytes)
    kind = declared_type(request.headers.get("content-type"))
    if not (kind == "multipart/form-data" or kind.startswith("image/") or kind in RAW_TYPES):
        raise Problem(415, f"Content-Type {kind} is not an image: send the image as multipart field {field!r} "
                           "or as the raw body with an image/* Content-Type")
    limited = Request(request.scope, receive=_limited_receive(request.receive, max_bytes))
    try:
        if kind == "multipart/form-data":
            return await _read_form(limited, field)
        return Upload(await limited.body(), RAW_BODY, kind), []
    except UploadTooLarge as exc:
        raise too_large(exc.args[0], max_bytes) from None


async def _read_form(request: Request, field: str) -> tuple[Upload, list[tuple[str, str]]]:
    form = await request.form(max_files=1, max_fields=FORM_FIELDS)
    try:
        fields: list[tuple[str, str]] = []
        image: Any = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != field:
                    raise Problem(400, f"the image goes in multipart field {field!r}, got a file in {name!r}")
                image = value
            elif name == field:
                raise Problem(400, f"multipart field {field!r} must be a file (curl -F '{field}=@photo.jpg')")
            else:
                fields.append((name, value))
        if image is None:
            raise Problem(400, f"no image: send it as multipart field {field!r} or as the raw request body")
        data = await image.read()
        return Upload(data, clean_name(image.filename), declared_type(image.content_type)), fields
    finally:
        await form.close()


def clean_name(filename: str | None) -> str:
    """The client's file name, as a short printable base name for messages."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    name = "".join(char for char in name if char.isprintable())[:NAME_CHARS]
    return name or "upload"


class UploadTooLarge(Exception):
    """Raised from inside the body stream once more than the limit has arrived."""


def _limited_receive(receive: Receive, max_bytes: int) -> Receive:
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise UploadTooLarge(received)
        return message

    return limited


def too_large(size: int, max_bytes: int) -> Problem:
    return Problem(413, f"upload of {size:,} bytes or more is over this server's limit of {max_bytes:,} bytes")


def readable_types() -> frozenset[str]:
    """The MIME types of the formats Pillow can open here."""
    Image.init()
    return frozenset({Image.MIME[format] for format in Image.OPEN if format in Image.MIME} | {"image/jpg"})


def decode_upload(upload: Upload, max_pixels: int) -> RGBImage:
    """The core's decoding of ``upload`` (runs in a worker thread), after the pixel-count check.

    400 for empty, corrupt or non-image data, 413 for more than ``max_pixels`` (read from the header,
    before decoding), 415 for a declared image type Pillow cannot read (e.g. image/svg+xml).
    """
    if not upload.data:
        raise Problem(400, f"{upload.name}: empty upload")
    try:
        with Image.open(io.BytesIO(upload.data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError:
        raise Problem(413, f"{upload.name}: image has far too many pixels to decode safely") from None
    except UnidentifiedImageError:
        kind = upload.content_type
        if kind.startswith("image/") and kind not in readable_types():
            raise Problem(415, f"{upload.name}: {kind} is not a supported image type "
                               "(send PNG, JPEG, WebP, TIFF, BMP, GIF...)") from None
    except Exception:  # a broken header: read_image below names the problem
        pass
    else:
        if width * height > max_pixels:
            raise Problem(413, f"{upload.name}: image is {width}x{height} ({width * height / 1e6:.1f} MP); "
                               f"this server takes at most {max_pixels / 1e6:g} MP")
    try:
        return read_image(upload.data, name=upload.name)
    except InputError as exc:
        raise Problem(400, str(exc)) from None
