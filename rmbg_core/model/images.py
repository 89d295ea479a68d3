"""Read any image a user may pass (path, bytes, PIL of any mode, numpy, torch) into one RGB(+alpha) form.

The network sees RGB only. 8-bit data stays uint8 so the reference arithmetic is reproduced exactly;
16-bit and float data become float32 in [0, 1] (scaled, never clipped to white as the reference does).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, torch.Tensor]

# Float inputs are expected in [0, 1]; small overshoots (from resamplers) are clamped, anything beyond
# this slack is almost surely 0-255 data and is refused rather than silently saturated.
FLOAT_SLACK = 0.5
DTYPE_HINT = "use uint8, uint16, bool or float in [0, 1]"
EIGHT_BIT_MODES = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
# Elements per band when quantizing masks to uint8 (one reused float buffer of this size).
QUANTIZE_BAND_ELEMENTS = 1 << 20


@dataclass
class RGBImage:
    """One image ready for the network: ``pixels`` (H, W, 3) and optional ``alpha`` (H, W).

    Both are uint8 for 8-bit sources and float32 in [0, 1] otherwise; ``name`` is used in messages.
    """

    pixels: torch.Tensor
    alpha: torch.Tensor | None
    name: str

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def describe(image: Any) -> str:
    """A short name for ``image`` in error messages: the path (or file object name) for files, else the type."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, Image.Image):
        filename = getattr(image, "filename", "")
        return filename or f"<PIL image mode={image.mode} size={image.size[0]}x{image.size[1]}>"
    if isinstance(image, np.ndarray):
        return f"<numpy array shape={tuple(image.shape)} dtype={image.dtype}>"
    if isinstance(image, torch.Tensor):
        shape = "nested" if image.is_nested else tuple(image.shape)  # a nested tensor has no single shape
        return f"<tensor shape={shape} dtype={image.dtype}>"
    if isinstance(image, (bytes, bytearray)):
        return f"<{len(image)} bytes>"
    if hasattr(image, "read") and getattr(image, "name", None):
        return str(image.name)
    return f"<{type(image).__name__}>"


def read_image(image: ImageInput, name: str | None = None) -> RGBImage:
    """Turn one image of any supported kind into an :class:`RGBImage`, or raise :class:`InputError`."""
    name = name or describe(image)
    if isinstance(image, (str, os.PathLike, bytes, bytearray)) or hasattr(image, "read"):
        return _from_pil(open_image(image, name), name)
    if isinstance(image, Image.Image):
        return _from_pil(exif_transpose(image), name)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        tensor = as_tensor(image, name)
        if tensor.dim() == 4:
            if tensor.shape[0] != 1:
                raise InputError(f"{name}: a batch of {tensor.shape[0]} images was given where one image "
                                 "is expected; use RMBGModel.predict for batches")
            tensor = tensor[0]
        return _from_array(tensor.cpu(), name)
    raise InputError(f"{name}: unsupported input type {type(image).__name__}; pass a file path, bytes, "
                     "a PIL image, a numpy array (H, W[, C]) or a torch tensor ([1,] H, W, C)")


def as_tensor(data: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Image data as a plain (dense, detached) tensor, sharing the array's memory where torch can.

    numpy views torch cannot wrap (negative strides from ``img[..., ::-1]`` or ``np.fliplr``, strides
    that are not a multiple of the item size, big-endian or read-only data) are copied; dtypes no image has (object,
    structured, complex, strings, signed ints...) and tensors without plain data (sparse, nested, meta)
    are an :class:`InputError`.
    """
    if isinstance(data, np.ndarray):
        dtype = data.dtype
        if not (dtype.kind == "b" or (dtype.kind == "u" and dtype.itemsize <= 2)
                or (dtype.kind == "f" and dtype.itemsize <= 8)):
            raise InputError(f"{name}: unsupported dtype {dtype}; {DTYPE_HINT}")
        data = _native_byte_order(data)
        if not data.flags.writeable or any(stride < 0 or stride % data.itemsize for stride in data.strides):
            data = np.array(data, order="C")  # torch warns on read-only memory (np.asarray of a PIL image)
        return torch.from_numpy(data)
    if data.is_nested:
        raise InputError(f"{name}: nested tensors are not supported; pass one tensor per image")
    if data.layout != torch.strided:
        raise InputError(f"{name}: {str(data.layout).replace('torch.', '')} tensors are not supported; "
                         "pass a dense tensor (tensor.to_dense())")
    if data.is_meta:
        raise InputError(f"{name}: a tensor on the meta device holds no data")
    return data.detach()


def open_image(source: str | os.PathLike | bytes | Any, name: str | None = None) -> Image.Image:
    """Open and fully decode an image file (or bytes / binary file object), EXIF orientation applied."""
    name = name or describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            if not path.exists():
                raise InputError(f"{name}: no such file")
            if path.is_dir():
                raise InputError(f"{name}: is a folder, not an image file")
            if path.stat().st_size == 0:
                raise InputError(f"{name}: empty file")
        except OSError as exc:  # a name too long, a loop of symbolic links...
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise InputError(f"{name}: empty data")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                opened.load()
                exif_transpose(opened, in_place=True)
                return opened
    except Image.DecompressionBombError as exc:
        raise InputError(f"{name}: image too large to decode safely ({exc}); raise "
                         "PIL.Image.MAX_IMAGE_PIXELS if you trust this file") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name}: corrupt or truncated image ({exc})") from None


def exif_transpose(image: Image.Image, in_place: bool = False) -> Image.Image:
    """Apply the EXIF orientation tag (as transformers' ``load_image`` does); a broken tag is ignored.

    Returns the rotated image, or ``image`` itself when there is nothing to do (never a needless copy).
    """
    try:
        orientation = image.getexif().get(0x0112, 1)
        if orientation in (None, 1):
            return image
        if in_place:
            ImageOps.exif_transpose(image, in_place=True)
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not make an otherwise good photo unreadable
        return image


def _native_byte_order(array: np.ndarray) -> np.ndarray:
    """torch cannot wrap big-endian arrays (e.g. from PIL's I;16B); swap them to native order."""
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not np.little_endian):
        return array.astype(array.dtype.newbyteorder("="))
    return array


def _from_pil(image: Image.Image, name: str) -> RGBImage:
    mode = image.mode
    if 0 in image.size:
        raise InputError(f"{name}: image has zero size {image.size[1]}x{image.size[0]}")
    try:
        if mode == "P" and "transparency" in image.info:
            image, mode = image.convert("RGBA"), "RGBA"
        if mode.startswith("I") or mode == "F":
            return _from_array(_deep_gray(image), name)
        if mode in ALPHA_MODES:
            if mode == "La":  # Pillow converts premultiplied La only to LA
                image = image.convert("LA")
            rgba = np.asarray(image.convert("RGBA"))
            return RGBImage(torch.from_numpy(rgba[..., :3].copy()), torch.from_numpy(rgba[..., 3].copy()), name)
        if mode in EIGHT_BIT_MODES:
            rgb = image if mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image
            return RGBImage(torch.from_numpy(np.asarray(rgb).copy()), None, name)
    except InputError:
        raise
    except (ValueError, OSError) as exc:
        raise InputError(f"{name}: cannot convert PIL mode {mode!r} to RGB ({exc})") from None
    raise InputError(f"{name}: unsupported PIL image mode {mode!r}")


def _deep_gray(image: Image.Image) -> torch.Tensor:
    """16/32-bit integer or float grey PIL image as float32 in [0, 1]: I;16 and I use the 16-bit range,
    F uses Pillow's own 0-255 convention (what ``convert("L")`` assumes)."""
    array = _native_byte_order(np.asarray(image)).astype(np.float32)
    scale = 255.0 if image.mode == "F" else 65535.0
    return torch.from_numpy(np.clip(array / scale, 0.0, 1.0))


def _from_array(data: torch.Tensor, name: str) -> RGBImage:
    """(H, W) or (H, W, C) array with C in 1..4 (grey, grey+alpha, RGB, RGBA) into an RGBImage."""
    if data.dim() == 2:
        data = data[..., None]
    if data.dim() != 3 or data.shape[-1] not in (1, 2, 3, 4):
        hint = " (channels first? use channels last: H, W, C)" if data.dim() == 3 and data.shape[0] in (1, 3, 4) else ""
        raise InputError(f"{name}: expected shape (H, W) or (H, W, C) with C in 1-4, got {tuple(data.shape)}{hint}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise InputError(f"{name}: image has zero size {tuple(data.shape[:2])}")
    data = normalize_values(data, name)
    pixels, alpha = split_channels(data)
    return RGBImage(pixels, alpha, name)


def normalize_values(data: torch.Tensor, name: str) -> torch.Tensor:
    """Keep uint8 as is; scale uint16 and bool to float32 [0, 1]; check and clamp float data to [0, 1]."""
    if data.dtype == torch.uint8:
        return data
    if data.dtype == torch.bool:
        return data.to(torch.float32)
    if data.dtype == torch.uint16:
        return data.to(torch.float32) / 65535.0
    if not data.is_floating_point():
        raise InputError(f"{name}: unsupported dtype {data.dtype}; {DTYPE_HINT}")
    data = data.to(torch.float32)
    if data.numel():
        low, high = float(data.min()), float(data.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise InputError(f"{name}: image contains NaN or infinite values")
        if low < -FLOAT_SLACK or high > 1.0 + FLOAT_SLACK:
            raise InputError(f"{name}: float images must hold values in [0, 1], got [{low:g}, {high:g}] "
                             "(divide 0-255 data by 255)")
        if low < 0.0 or high > 1.0:
            data = data.clamp(0.0, 1.0)
    return data


def split_channels(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split (..., C) data into RGB (..., 3) and alpha (...) or None; grey is repeated to three channels."""
    channels = data.shape[-1]
    alpha = data[..., -1] if channels in (2, 4) else None
    color = data[..., :3] if channels >= 3 else data[..., :1].expand(*data.shape[:-1], 3)
    return color, alpha


# uint8 <-> float [0, 1]: the one family of conversions. Two rounding rules on purpose: colours round to
# the nearest level, masks truncate as the model card's ``(m * 255).astype(uint8)`` does.

def to_unit_float(data: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 0-255 to float32 0-1; float data as float32, values unchanged. Into ``out`` when given."""
    if out is None:
        return data.to(torch.float32) / 255.0 if data.dtype == torch.uint8 else data.to(torch.float32)
    if data.dtype == torch.uint8:
        return torch.div(data, 255.0, out=out)
    return out.copy_(data)


def to_uint8(data: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] to uint8 by rounding (for colors; masks truncate, see :func:`mask_to_uint8`)."""
    return (data.clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)


def mask_to_uint8(masks: torch.Tensor) -> torch.Tensor:
    """Masks in [0, 1] to uint8 by truncation, exactly as the reference's ``(m * 255).astype(uint8)``.

    Works a band of elements at a time, so a 24 MP mask needs no second full-size float buffer.
    """
    flat = masks.reshape(-1)
    out = torch.empty(flat.shape, dtype=torch.uint8, device=masks.device)
    scaled = torch.empty(min(flat.numel(), QUANTIZE_BAND_ELEMENTS), dtype=flat.dtype, device=masks.device)
    for start in range(0, flat.numel(), QUANTIZE_BAND_ELEMENTS):
        band = flat[start:start + QUANTIZE_BAND_ELEMENTS]
        out[start:start + len(band)] = torch.mul(band, 255, out=scaled[:len(band)])
    return out.reshape(masks.shape)
