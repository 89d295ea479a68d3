"""rmbg_core.edges.compose.fit_mask / apply_mask: batch broadcast, resizing, inversion, cutout vs composite."""

import pytest
import torch

from rmbg_core import InputError
from rmbg_core.edges.compose import apply_mask, composite, fit_mask


def images(count, height=6, width=5, channels=3, seed=0):
    return torch.rand(count, height, width, channels, generator=torch.Generator().manual_seed(seed))


def masks(count, height=6, width=5, seed=1):
    return torch.rand(count, height, width, generator=torch.Generator().manual_seed(seed))


def test_one_mask_broadcasts_to_every_image():
    image, mask = fit_mask(images(4), masks(1))
    assert image.shape == (4, 6, 5, 3) and mask.shape == (4, 6, 5)
    assert all(torch.equal(m, mask[0]) for m in mask)


def test_one_image_broadcasts_to_every_mask():
    image, mask = fit_mask(images(1), masks(3))
    assert image.shape == (3, 6, 5, 3) and mask.shape == (3, 6, 5)
    assert torch.equal(mask, masks(3))


def test_two_dimensional_mask_is_one_mask():
    _, mask = fit_mask(images(2), masks(1)[0])
    assert mask.shape == (2, 6, 5)


def test_mask_of_another_size_is_resized_bilinearly():
    small = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    _, mask = fit_mask(images(1, height=4, width=8), small)
    assert mask.shape == (1, 4, 8)
    assert torch.equal(mask[0, :, 0], torch.zeros(4)) and torch.equal(mask[0, :, -1], torch.ones(4))
    assert bool((mask[0, 0, 1:] >= mask[0, 0, :-1]).all()), "a left-to-right ramp stays monotonic"


def test_mask_follows_the_image_device():
    """ComfyUI with --gpu-only hands IMAGEs on the GPU; a CPU mask must follow (meta stands in here)."""
    out = apply_mask(torch.empty(2, 6, 5, 3, device="meta"), masks(1, height=3), background="#fff")
    assert out.device.type == "meta" and out.shape == (2, 6, 5, 3)


def test_mask_values_are_clamped():
    _, mask = fit_mask(images(1), torch.full((1, 6, 5), 1.5))
    assert float(mask.max()) == 1.0


def test_incompatible_batches_are_explained():
    with pytest.raises(InputError, match="mask batch of 2 does not match image batch of 3"):
        fit_mask(images(3), masks(2))


@pytest.mark.parametrize("shape", [(6, 5, 1, 1), (6,)])
def test_bad_mask_shape(shape):
    with pytest.raises(InputError, match="mask: expected"):
        fit_mask(images(1), torch.rand(shape))


def test_cutout_alpha_is_the_mask_and_colors_are_kept():
    image, mask = images(2), masks(2)
    out = apply_mask(image, mask)
    assert out.shape == (2, 6, 5, 4) and out.dtype == torch.float32
    assert torch.equal(out[..., :3], image) and torch.equal(out[..., 3], mask)


def test_input_alpha_is_multiplied_in():
    rgba = images(1, channels=4)
    out = apply_mask(rgba, masks(1))
    torch.testing.assert_close(out[..., 3], masks(1) * rgba[..., 3])


def test_composite_blends_on_the_color():
    image, mask = images(2), masks(2)
    out = apply_mask(image, mask, background="#ff0080")
    color = torch.tensor([1.0, 0.0, 128 / 255])
    expected = image * mask[..., None] + color * (1 - mask[..., None])
    assert out.shape == (2, 6, 5, 3)
    torch.testing.assert_close(out, expected)


def test_invert_keeps_the_background():
    image, mask = images(1), masks(1)
    torch.testing.assert_close(apply_mask(image, mask, invert=True)[..., 3], 1 - mask)


def test_gray_images_become_rgb():
    out = apply_mask(images(1, channels=1), masks(1), background="#000")
    assert out.shape == (1, 6, 5, 3)


def test_bad_color_fails_before_any_work():
    with pytest.raises(InputError, match="not a hex colour"):
        apply_mask(images(1), masks(2), background="green")


def test_composite_does_not_modify_its_inputs():
    image, mask = images(1), masks(1)
    before = image.clone()
    composite(image, mask, "#123456")
    assert torch.equal(image, before)
