"""Refinement and foreground estimation reach the outputs through api.render / remove_background."""

import numpy as np
import pytest
import torch
from PIL import Image

from rmbg_core import OptionError, Refinement, apply_refinement, estimate_foreground, remove_background
from rmbg_core.api import render
from rmbg_core.model.images import read_image
from rmbg_core.model.images import mask_to_uint8, to_uint8


@pytest.fixture
def picture():
    rng = np.random.default_rng(0)
    return read_image(Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)))


@pytest.fixture
def mask():
    """A soft blob plus a speck: something for every refinement to act on."""
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(60.0), indexing="ij")
    blob = (1.0 - (((ys - 20) ** 2 + (xs - 25) ** 2).sqrt() - 10) / 4).clamp(0, 1)
    blob[35:38, 52:55] = 0.9
    return blob


def test_defaults_are_bit_identical_to_the_reference_mask(picture, mask):
    out = np.asarray(render(picture, mask, return_mask=True))
    assert np.array_equal(out, mask_to_uint8(mask).numpy())
    same = np.asarray(render(picture, mask, return_mask=True, refine=Refinement(), estimate_foreground=False))
    assert np.array_equal(same, out)


def test_refinement_applies_before_quantization(picture, mask):
    refinement = Refinement(threshold=0.3, keep_largest=True, grow=1)
    out = np.asarray(render(picture, mask, return_mask=True, refine=refinement))
    assert np.array_equal(out, mask_to_uint8(apply_refinement(mask, refinement)).numpy())
    assert set(np.unique(out)) == {0, 255} and out[35:38, 52:55].max() == 0
    as_dict = np.asarray(render(picture, mask, return_mask=True, refine={"threshold": 0.3, "keep_largest": True,
                                                                          "grow": 1}))
    assert np.array_equal(as_dict, out)


def test_cutout_colors_are_the_estimate_under_the_final_alpha(picture, mask):
    cut = np.asarray(render(picture, mask, estimate_foreground=True, refine=Refinement(feather=1.0)))
    mask8 = mask_to_uint8(apply_refinement(mask, Refinement(feather=1.0)))
    expected = to_uint8(estimate_foreground(picture.pixels, mask8.float() / 255)).numpy()
    assert np.array_equal(cut[..., 3], mask8.numpy())
    assert np.array_equal(cut[..., :3], expected)
    plain = np.asarray(render(picture, mask))
    assert np.array_equal(plain[..., :3], picture.pixels.numpy()), "without estimation the colours are the input's"


def test_composite_with_estimate(picture, mask):
    flat = np.asarray(render(picture, mask, background="#00ff00", estimate_foreground=True)).astype(float)
    alpha = mask_to_uint8(mask).float() / 255
    colors = estimate_foreground(picture.pixels, alpha)
    expected = colors * alpha[..., None] + torch.tensor([0.0, 1.0, 0.0]) * (1 - alpha[..., None])
    assert np.abs(flat - expected.numpy() * 255).max() <= 0.5 + 1e-4


def test_remove_background_passes_options_through(random_model, monkeypatch, mask):
    calls = []
    monkeypatch.setattr(random_model, "predict",
                        lambda images, **options: calls.append(images.shape) or mask[None].clone())
    photo = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    out = remove_background(photo, model=random_model, return_mask=True, refine={"invert": True})
    assert np.array_equal(np.asarray(out), mask_to_uint8(1.0 - mask).numpy())
    cut = remove_background(photo, model=random_model, refine=Refinement(threshold=0.5), estimate_foreground=True)
    assert cut.mode == "RGBA" and len(calls) == 2


def test_bad_options_fail_before_the_forward_pass(random_model, monkeypatch):
    monkeypatch.setattr(random_model, "predict", lambda images, **options: pytest.fail("predict must not run"))
    photo = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(OptionError, match="feather"):
        remove_background(photo, model=random_model, refine={"feather": -2})
    with pytest.raises(OptionError, match="unknown refinement option"):
        remove_background(photo, model=random_model, refine={"blur": 2})
    with pytest.raises(OptionError, match="Refinement or a dict"):
        remove_background(photo, model=random_model, refine=0.5)
