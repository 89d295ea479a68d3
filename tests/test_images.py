"""Reading every kind of input into RGB(+alpha): PIL modes, EXIF, 16-bit, numpy, tensors, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from rmbg_core import InputError
from rmbg_core.images import read_image

RGB = np.array([[[10, 20, 30], [40, 50, 60], [70, 80, 90]],
                [[100, 110, 120], [130, 140, 150], [160, 170, 180]]], dtype=np.uint8)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"])
def test_eight_bit_modes_become_rgb_uint8(mode):
    source = Image.fromarray(RGB).convert(mode)
    image = read_image(source)
    assert image.pixels.dtype == torch.uint8 and image.pixels.shape == (2, 3, 3) and image.alpha is None
    expected = np.asarray(source.convert("RGB"))
    assert np.array_equal(image.pixels.numpy(), expected)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "La", "RGBa"])
def test_alpha_modes_keep_alpha(mode):
    rgba = np.dstack([RGB, np.array([[0, 128, 255], [255, 64, 32]], dtype=np.uint8)])
    source = Image.fromarray(rgba).convert(mode)
    image = read_image(source)
    assert image.alpha is not None and image.alpha.shape == (2, 3)
    unpremultiplied = source.convert("LA" if mode == "La" else "RGBA")
    assert np.array_equal(image.alpha.numpy(), np.asarray(unpremultiplied)[..., -1])


def test_palette_with_transparency_gets_alpha():
    source = Image.new("P", (4, 4), 1)
    source.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    source.info["transparency"] = 1
    image = read_image(source)
    assert image.alpha is not None and int(image.alpha.max()) == 0


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.pixels.dtype == torch.float32
    np.testing.assert_allclose(image.pixels[0, :, 0].numpy(), values[0] / 65535.0, atol=1e-6)
    assert torch.equal(image.pixels[..., 0], image.pixels[..., 2])


@pytest.mark.parametrize("mode,scale", [("I", 65535.0), ("F", 255.0), ("I;16B", 65535.0)])
def test_wide_grey_modes(mode, scale):
    raw = np.array([[0, 100, 200]])
    if mode == "I;16B":
        source = Image.frombytes("I;16B", (3, 1), raw.astype(">u2").tobytes())
    else:
        source = Image.fromarray(raw.astype(np.int32 if mode == "I" else np.float32))
    assert source.mode == mode
    image = read_image(source)
    np.testing.assert_allclose(image.pixels[0, :, 1].numpy(), raw[0] / scale, atol=1e-6)


@pytest.mark.parametrize("opened", [False, True], ids=["path", "pil_image"])
def test_exif_orientation_is_applied(tmp_path, opened):
    photo = Image.new("RGB", (40, 20), (255, 0, 0))
    photo.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    source = Image.open(io.BytesIO((tmp_path / "rotated.jpg").read_bytes())) if opened else tmp_path / "rotated.jpg"
    image = read_image(source)
    assert image.size == (40, 20)  # (height, width) after rotation
    top = image.pixels[2, 10].tolist()
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top
    if opened:
        assert source.size == (40, 20), "the caller's PIL image is not rotated in place"


def test_bytes_and_file_objects(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format="PNG")
    assert np.array_equal(read_image(buffer.getvalue()).pixels.numpy(), RGB)
    buffer.seek(0)
    assert np.array_equal(read_image(buffer).pixels.numpy(), RGB)


@pytest.mark.parametrize("array,dtype", [
    (RGB, torch.uint8),
    (RGB[..., 0], torch.uint8),
    (RGB.astype(np.uint16) * 257, torch.float32),
    (RGB.astype(np.float64) / 255, torch.float32),
])
def test_numpy_inputs(array, dtype):
    image = read_image(array)
    assert image.pixels.shape == (2, 3, 3) and image.pixels.dtype == dtype
    if dtype == torch.float32:
        np.testing.assert_allclose(image.pixels[..., 0].numpy(), RGB[..., 0] / 255.0, atol=1e-6)


def test_comfyui_tensor_and_rgba_array():
    tensor = torch.rand(1, 5, 6, 3)
    image = read_image(tensor)
    assert torch.equal(image.pixels, tensor[0])
    rgba = np.dstack([RGB, np.full((2, 3), 7, np.uint8)])
    assert int(read_image(rgba).alpha[0, 0]) == 7


@pytest.mark.parametrize("data,reason", [
    (np.zeros((3, 8, 8), np.uint8), "channels first"),
    (np.zeros((8, 8, 5), np.uint8), "C in 1-4"),
    (np.zeros((0, 8, 3), np.uint8), "zero size"),
    (np.full((4, 4, 3), 200.0), r"values in \[0, 1\].*divide 0-255 data by 255"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4, 3), np.int64), "unsupported dtype"),
    (torch.rand(2, 4, 4, 3), "batch of 2"),
    ([1, 2, 3], "unsupported input type list"),
])
def test_bad_arrays_are_explained(data, reason):
    with pytest.raises(InputError, match=reason):
        read_image(data)


def test_slight_float_overshoot_is_clamped():
    image = read_image(np.full((2, 2, 3), 1.02, np.float32))
    assert float(image.pixels.max()) == 1.0


def broken_jpeg(folder):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = folder / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def written(name, data):
    def make(folder):
        (folder / name).write_bytes(data)
        return folder / name
    return make


@pytest.mark.parametrize("make,reason", [
    (lambda p: p / "missing.png", "no such file"),
    (written("empty.png", b""), "empty file"),
    (written("notes.txt", b"hello"), "not an image file"),
    (broken_jpeg, "corrupt or truncated"),
    (lambda p: p, "is a folder"),
])
def test_bad_files_name_the_file(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(InputError, match=reason) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match="too large"):
        read_image(tmp_path / "big.png")
