"""How outputs are encoded: PNG's zlib setting (``--png-compression``, run-length by default), always lossless,
and the cutout's uint8 path, equal to the float one."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from rmbg_core.api import render
from rmbg_core.cli.main import main
from rmbg_core.edges.compose import cutout, to_pil
from rmbg_core.model.images import RGBImage
from rmbg_core.formats import OUTPUT_FORMATS, PNG_COMPRESSIONS, png_format


def smooth_photo(path, height=40, width=56):
    """A photo-like picture (gradients and a disc), which zlib's settings compress differently."""
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([rows * 255 // height, cols * 255 // width, ((rows - 20) ** 2 + (cols - 28) ** 2 < 150) * 200],
                      axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def cutout_image(height=48, width=64, seed=0):
    """An RGBA cutout with smooth colours and a soft alpha."""
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = np.stack([rows * 5, cols * 4, (rows + cols) * 2], axis=-1) % 256
    alpha = np.clip((cols - 16) * 8, 0, 255)
    alpha[np.random.default_rng(seed).random((height, width)) < 0.05] = 128
    return Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8), "RGBA")


def test_default_png_is_zlib_run_length():
    assert OUTPUT_FORMATS["png"].options == {"compress_level": 1, "compress_type": 3}
    assert png_format().options == OUTPUT_FORMATS["png"].options


@pytest.mark.parametrize("compression", PNG_COMPRESSIONS)
def test_every_png_compression_is_lossless(compression):
    image = cutout_image()
    decoded = Image.open(io.BytesIO(png_format(compression).encode(image)))
    assert decoded.mode == "RGBA" and np.array_equal(np.asarray(decoded), np.asarray(image))


def test_png_compression_settings_give_different_streams():
    image = cutout_image()
    sizes = {setting: len(png_format(setting).encode(image)) for setting in ("0", "1", "rle", "9")}
    assert sizes["0"] > max(sizes["1"], sizes["rle"], sizes["9"])  # level 0 stores
    assert len(set(png_format(setting).encode(image) for setting in ("1", "rle", "9"))) == 3
    with pytest.raises(ValueError, match="one of rle, 0, 1"):
        png_format("fast")


@pytest.fixture
def run_cli(fast_model, checkpoint_dir, capsys):
    def invoke(*args):
        code = main(["remove", *map(str, args), "--model", str(checkpoint_dir), "--device", "cpu",
                     "--dtype", "float32"])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, err

    return invoke


def test_png_compression_option_reaches_the_encoder(run_cli, tmp_path):
    source = smooth_photo(tmp_path / "in" / "a.png")
    written = {}
    for setting in (None, "0", "9"):
        out = tmp_path / f"out-{setting}"
        assert run_cli(source, "-o", out, *(["--png-compression", setting] if setting else []))[0] == 0
        written[setting] = (out / "a.png").read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(written[None])))
    for setting, data in written.items():
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels), "every setting is lossless"
        assert data == png_format(setting or "rle").encode(Image.fromarray(pixels))
    assert len(written["0"]) > len(written[None]) and written["9"] != written[None]


def test_png_compression_needs_png(run_cli, tmp_path):
    code, err = run_cli(smooth_photo(tmp_path / "a.png"), "-o", tmp_path / "out", "--format", "webp",
                        "--png-compression", "9")
    assert code == 2 and "--png-compression applies to --format png, not webp" in err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shape", [(7, 5), (33, 48), (1, 1)])
def test_uint8_cutout_equals_the_float_cutout(shape):
    generator = torch.Generator().manual_seed(shape[0])
    pixels = torch.randint(0, 256, (*shape, 3), dtype=torch.uint8, generator=generator)
    mask = torch.rand(shape, generator=generator)
    mask[0, 0], mask[-1, -1] = 0.0, 1.0
    picture = RGBImage(pixels, None, "picture")
    expected = to_pil(cutout(pixels, torch.from_numpy(np.array(render(picture, mask, return_mask=True)))))
    got = render(picture, mask)
    assert got.mode == "RGBA" and np.array_equal(np.asarray(got), np.asarray(expected))
