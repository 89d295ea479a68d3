"""remove_background: output kinds, alpha handling, compositing, and its error messages.

Random weights at a small network input (``input_size=SMALL_INPUT``): these check plumbing, which does
not depend on the network's input size; the default 1024x1024 is checked to reach the network, and
real-weight masks at 1024 are checked in test_fixture.py.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_INPUT
from rmbg_core import InputError, remove_background
from rmbg_core.edges.compose import composite, cutout, parse_color
from rmbg_core.model.processing import MODEL_INPUT_SIZE

SMALL = {"input_size": SMALL_INPUT}


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))


def test_mask_cutout_and_composite_shapes(random_model, photo):
    mask = remove_background(photo, model=random_model, return_mask=True, **SMALL)
    assert mask.mode == "L" and mask.size == photo.size
    cut = remove_background(photo, model=random_model, **SMALL)
    assert cut.mode == "RGBA" and cut.size == photo.size
    rgba = np.asarray(cut)
    assert np.array_equal(rgba[..., 3], np.asarray(mask)), "cutout alpha must be the returned mask"
    assert np.array_equal(rgba[..., :3], np.asarray(photo)), "cutout keeps the input colours (straight alpha)"
    flat = remove_background(photo, model=random_model, background="#00ff00", **SMALL)
    assert flat.mode == "RGB" and flat.size == photo.size


def test_composite_blends_by_mask(random_model, photo):
    mask = np.asarray(remove_background(photo, model=random_model, return_mask=True, **SMALL)).astype(np.float64) / 255
    out = np.asarray(remove_background(photo, model=random_model, background=(10, 200, 30), **SMALL)).astype(np.float64)
    expected = np.asarray(photo) * mask[..., None] + np.array([10, 200, 30]) * (1 - mask[..., None])
    assert np.abs(out - expected).max() <= 0.5 + 1e-6


def test_input_alpha_multiplies_mask(random_model, photo):
    alpha = np.zeros((37, 53), np.uint8)
    alpha[:, 20:] = 255
    alpha[:, 40:] = 128
    rgba_in = Image.fromarray(np.dstack([np.asarray(photo), alpha]))
    mask = np.asarray(remove_background(rgba_in, model=random_model, return_mask=True, **SMALL)).astype(np.int32)
    out_alpha = np.asarray(remove_background(rgba_in, model=random_model, **SMALL))[..., 3].astype(np.int32)
    assert (out_alpha[:, :20] == 0).all()
    assert np.array_equal(out_alpha[:, 20:40], mask[:, 20:40])
    assert np.abs(out_alpha[:, 40:] - np.round(mask[:, 40:] * 128 / 255)).max() <= 1


def test_sixteen_bit_input_is_not_white(random_model, tmp_path):
    """The reference divides 16-bit data by 255 (all white); we scale it, so it matches its 8-bit twin."""
    eight = np.random.default_rng(1).integers(0, 256, (40, 40), dtype=np.uint8)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    deep = remove_background(tmp_path / "deep.png", model=random_model, return_mask=True, **SMALL)
    flat = remove_background(Image.fromarray(eight), model=random_model, return_mask=True, **SMALL)
    deep_mask, flat_mask = np.asarray(deep).astype(int), np.asarray(flat).astype(int)
    assert np.abs(deep_mask - flat_mask).max() <= 1


def test_model_can_be_a_path(checkpoint_file, photo):
    mask = remove_background(photo, model=checkpoint_file, return_mask=True, **SMALL)
    assert mask.size == photo.size


def test_default_network_input_is_the_model_cards(random_model, photo, monkeypatch):
    sizes = []
    monkeypatch.setattr(random_model, "predict", lambda images, input_size: sizes.append(input_size)
                        or torch.zeros(images.shape[:3]))
    remove_background(photo, model=random_model)
    remove_background(photo, model=random_model, input_size=320)
    assert sizes == [MODEL_INPUT_SIZE, (320, 320)] and MODEL_INPUT_SIZE == (1024, 1024)


def test_input_size_reaches_the_network(random_model, photo):
    seen = []
    handle = random_model.network.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    try:
        remove_background(photo, model=random_model, input_size=(48, 80))
    finally:
        handle.remove()
    assert seen == [(1, 3, 48, 80)]


@pytest.mark.parametrize("size", [0, (64,), (64.0, 64), "big"])
def test_bad_input_size_fails_before_reading(random_model, size):
    with pytest.raises(InputError, match="input_size must"):
        remove_background("not/read.png", model=random_model, input_size=size)


def test_bad_color_fails_before_inference(random_model, photo):
    with pytest.raises(InputError, match="not a hex colour"):
        remove_background(photo, model=random_model, background="green-ish")


@pytest.mark.parametrize("color,expected", [("#ff8000", (255, 128, 0)), ("0f0", (0, 255, 0)), ((1, 2, 3), (1, 2, 3))])
def test_parse_color(color, expected):
    assert parse_color(color) == expected


@pytest.mark.parametrize("bad", ["#12345", (1, 2), (0, 0, 300), "red"])
def test_parse_color_errors(bad):
    with pytest.raises(InputError):
        parse_color(bad)


def test_compose_works_on_batches():
    image = torch.rand(4, 6, 5, 3)
    mask = torch.rand(4, 6, 5)
    assert cutout(image, mask).shape == (4, 6, 5, 4)
    out = composite(image, mask, "#000000")
    torch.testing.assert_close(out, image * mask[..., None])
