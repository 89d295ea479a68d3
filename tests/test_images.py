"""Reading every kind of input into RGB(+alpha): PIL modes, EXIF, 16-bit, numpy, tensors, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from rmbg_core import InputError
from rmbg_core.model.images import describe, read_image

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
def test_wide_gray_modes(mode, scale):
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


def packed_float_field():
    """A float32 field of a packed record array: strides (5,) are not a multiple of the item size."""
    records = np.zeros((2, 3), dtype=[("flag", "u1"), ("value", "<f4")])
    records["value"] = RGB[..., 0] / 255.0
    return records["value"]


@pytest.mark.parametrize("make", [
    lambda: RGB[..., ::-1],                        # BGR -> RGB, the OpenCV idiom
    lambda: np.fliplr(RGB),
    lambda: np.flipud(RGB),
    lambda: RGB[::-1, ::-2],
    lambda: (RGB.astype(">u2") * 257)[:, ::-1],    # big-endian and flipped
    packed_float_field,
], ids=["bgr", "fliplr", "flipud", "step", "big-endian-flipped", "packed-field"])
def test_numpy_views_torch_cannot_wrap_read_like_their_copies(make):
    view = make()
    image, copy = read_image(view), read_image(np.ascontiguousarray(view, dtype=view.dtype.newbyteorder("=")))
    assert torch.equal(image.pixels, copy.pixels)
    assert image.alpha is None and copy.alpha is None


def test_flipped_array_gives_the_mask_of_its_copy(random_model):
    from conftest import SMALL_INPUT
    from rmbg_core import remove_background

    bgr = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for view in (bgr[..., ::-1], np.fliplr(bgr), np.flipud(bgr)):
        masks = [np.asarray(remove_background(image, model=random_model, return_mask=True, input_size=SMALL_INPUT))
                 for image in (view, np.ascontiguousarray(view))]
        assert np.array_equal(masks[0], masks[1])


def sparse_csr():
    with pytest.warns(UserWarning, match="beta"):
        return torch.zeros(4, 4).to_sparse_csr()


def quantized():
    with pytest.warns(UserWarning):
        return torch.quantize_per_tensor(torch.rand(4, 4, 3), 0.1, 0, torch.quint8)


def nested():
    return torch.nested.nested_tensor([torch.zeros(4, 4, 3), torch.zeros(5, 4, 3)], layout=torch.jagged)


@pytest.mark.parametrize("make,reason", [
    (lambda: RGB.astype(object), "unsupported dtype object"),
    (lambda: np.zeros((4, 4), dtype=[("r", "u1"), ("g", "u1")]), r"unsupported dtype \[\('r'"),
    (lambda: RGB.astype(np.complex64), "unsupported dtype complex64"),
    (lambda: np.full((4, 4, 3), "a"), "unsupported dtype <U1"),
    (lambda: np.zeros((4, 4), "datetime64[s]"), "unsupported dtype datetime64"),
    (lambda: RGB.astype(np.longdouble), "unsupported dtype float128|unsupported dtype longdouble"),
    (lambda: RGB.astype(np.int16), "unsupported dtype int16"),
    (lambda: torch.empty(4, 4, 3, device="meta"), "meta device holds no data"),
    (lambda: torch.zeros(4, 4, 3).to_sparse(), "sparse_coo tensors are not supported"),
    (sparse_csr, "sparse_csr tensors are not supported"),
    (nested, "nested tensors are not supported"),
    (quantized, "unsupported dtype torch.quint8"),
    (lambda: torch.zeros(4, 4, 3, dtype=torch.complex64), "unsupported dtype torch.complex64"),
    (lambda: Image.new("RGB", (0, 5)), "zero size"),
    (lambda: Image.new("F", (5, 0)), "zero size"),
    (lambda: "x" * 5000 + ".png", "cannot read .File name too long"),
], ids=["object", "structured", "complex", "str", "datetime", "longdouble", "int16", "meta", "sparse-coo",
        "sparse-csr", "nested", "quantized", "complex-tensor", "empty-pil", "empty-pil-f", "long-path"])
def test_unsupported_inputs_are_input_errors_naming_the_input(make, reason):
    data = make()
    with pytest.raises(InputError, match=reason) as info:
        read_image(data)
    assert str(info.value).startswith(describe(data) + ": ") and "\n" not in str(info.value)


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
