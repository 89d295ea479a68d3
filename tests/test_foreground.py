"""Blur-fusion foreground estimation: recovers known colours, follows the paper's algorithm, batches."""

import math

import pytest
import torch
import torch.nn.functional as F

import rmbg_core.edges.foreground as foreground
from rmbg_core import InputError, estimate_foreground
from rmbg_core.edges.compose import composite, cutout

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def synthetic(height=96, width=128, seed=0):
    """A photo built as alpha*F + (1-alpha)*B with known smooth F and B and a wide, hairy soft band."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    fg = torch.stack((0.85 - 0.2 * ys + 0 * xs, 0.55 + 0.2 * xs + 0 * ys, 0.15 + 0.1 * ys * xs), dim=-1)
    bg = torch.stack((0.1 + 0 * ys * xs, 0.35 + 0.3 * ys + 0 * xs, 0.9 - 0.2 * xs + 0 * ys), dim=-1)
    distance = ((ys - 0.5) ** 2 + ((xs - 0.5) * width / height) ** 2).sqrt()
    alpha = ((0.38 - distance) / 0.12).clamp(0, 1)                      # a disc with a soft rim
    strands = 0.5 + 0.5 * torch.sin(xs * 90 + torch.rand(1, width, generator=generator) * 2)
    alpha = torch.where((alpha > 0) & (alpha < 1), alpha * strands, alpha)  # hair-like detail in the rim
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image, alpha, fg, bg


def exact_blur_fusion(image, alpha, sizes=(90, 6)):
    """The paper's two passes at full resolution, float64, centred odd boxes: a plain transcription."""
    image, a = image.double(), alpha.double()[..., None]

    def box(values, radius):
        padded = F.pad(values.cumsum(0).cumsum(1), (0, 0, 1, 0, 1, 0))
        rows, cols = torch.arange(values.shape[0]), torch.arange(values.shape[1])
        top, bottom = (rows - radius).clamp(min=0), (rows + radius + 1).clamp(max=values.shape[0])
        left, right = (cols - radius).clamp(min=0), (cols + radius + 1).clamp(max=values.shape[1])
        return (padded[bottom][:, right] - padded[top][:, right] - padded[bottom][:, left] + padded[top][:, left])

    fg = bg = image
    for size in sizes:
        radius = size // 2
        count = box(torch.ones_like(a), radius)
        weight = box(a, radius)
        fg_mean = box(fg * a, radius) / (weight + 1e-5 * count)
        bg_mean = box(bg * (1 - a), radius) / (count - weight + 1e-5 * count)
        fg = (fg_mean + a * (image - a * fg_mean - (1 - a) * bg_mean)).clamp(0, 1)
        bg = bg_mean
    return fg.float()


def test_recovers_known_foreground_much_better_than_the_photo():
    image, alpha, fg, _ = synthetic()
    estimate = estimate_foreground(image, alpha)
    band = (alpha > 0.05) & (alpha < 0.95)
    assert band.sum() > 1000
    # What a viewer sees: alpha times the colour error, in the soft band.
    photo_error = (alpha[..., None] * (image - fg)).abs()[band].mean()
    estimate_error = (alpha[..., None] * (estimate - fg)).abs()[band].mean()
    assert estimate_error < 0.25 * photo_error, (float(estimate_error), float(photo_error))


def test_follows_the_exact_algorithm_closely():
    image, alpha, _, _ = synthetic(120, 160, seed=3)
    ours, exact = estimate_foreground(image, alpha), exact_blur_fusion(image, alpha)
    visible = (alpha[..., None] * (ours - exact)).abs().amax(dim=-1) * 255
    assert float(visible.mean()) < 0.5
    assert float(visible.quantile(0.99)) < 2.0


def test_opaque_pixels_keep_their_color_exactly():
    image, alpha, _, _ = synthetic()
    estimate = estimate_foreground(image, alpha)
    opaque = alpha == 1
    assert opaque.sum() > 100
    assert torch.equal(estimate[opaque], image[opaque])


def test_output_is_float32_in_unit_range_and_uint8_matches_float():
    image, alpha, _, _ = synthetic(40, 50)
    image8 = (image * 255).round().to(torch.uint8)
    alpha8 = (alpha * 255).round().to(torch.uint8)
    from_uint8 = estimate_foreground(image8, alpha8)
    from_float = estimate_foreground(image8.float() / 255, alpha8.float() / 255)
    assert from_uint8.dtype == torch.float32 and from_uint8.shape == (40, 50, 3)
    assert float(from_uint8.min()) >= 0.0 and float(from_uint8.max()) <= 1.0
    torch.testing.assert_close(from_uint8, from_float, rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_batches_equal_one_at_a_time_and_chunks(device, monkeypatch):
    pairs = [synthetic(48, 64, seed) for seed in range(3)]
    images = torch.stack([p[0] for p in pairs]).to(device)
    alphas = torch.stack([p[1] for p in pairs]).to(device)
    together = estimate_foreground(images, alphas)
    assert together.device.type == device and together.shape == images.shape
    for i in range(3):
        torch.testing.assert_close(together[i], estimate_foreground(images[i], alphas[i]), rtol=0, atol=1e-6)
    monkeypatch.setattr(foreground, "CHUNK_PIXELS", 1)      # one image per chunk
    torch.testing.assert_close(estimate_foreground(images, alphas), together, rtol=0, atol=1e-6)


@pytest.mark.parametrize("height,width", [(1, 1), (3, 2), (7, 5), (33, 17)])
def test_odd_and_tiny_sizes(height, width):
    torch.manual_seed(0)
    image, alpha = torch.rand(height, width, 3), torch.rand(height, width)
    estimate = estimate_foreground(image, alpha)
    assert estimate.shape == (height, width, 3) and torch.isfinite(estimate).all()


def test_bad_shapes_are_input_errors():
    with pytest.raises(InputError, match="RGB images"):
        estimate_foreground(torch.rand(2, 8, 8, 4), torch.rand(2, 8, 8))
    with pytest.raises(InputError, match="do not match"):
        estimate_foreground(torch.rand(2, 8, 8, 3), torch.rand(2, 8, 9))


def test_compose_uses_the_estimate_when_asked():
    image, alpha, _, _ = synthetic(40, 50)
    batch_image, batch_alpha = image[None].repeat(2, 1, 1, 1), alpha[None].repeat(2, 1, 1)
    estimate = estimate_foreground(batch_image, batch_alpha)
    cut = cutout(batch_image, batch_alpha, estimate_foreground=True)
    torch.testing.assert_close(cut[..., :3], estimate)
    torch.testing.assert_close(cut[..., 3], batch_alpha)
    assert torch.equal(cutout(batch_image, batch_alpha)[..., :3], batch_image)
    flat = composite(batch_image, batch_alpha, "#ff00ff", estimate_foreground=True)
    magenta = torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(flat, estimate * batch_alpha[..., None] + magenta * (1 - batch_alpha[..., None]))
    # The input's own alpha multiplies in before estimating; a mask broadcasts over the batch.
    input_alpha = torch.full_like(batch_alpha, 0.5)
    torch.testing.assert_close(cutout(batch_image, alpha, input_alpha, estimate_foreground=True)[..., :3],
                               estimate_foreground(batch_image, batch_alpha * 0.5))


def test_box_sum_equals_a_convolution():
    values = torch.rand(2, 3, 13, 17)
    for radius in (0, 1, 3, 4, 11):
        ones = torch.ones(3, 1, 2 * radius + 1, 2 * radius + 1)
        expected = F.conv2d(F.pad(values, (radius,) * 4), ones, groups=3)
        torch.testing.assert_close(foreground.box_sum(values, radius), expected, rtol=0, atol=1e-4)
    assert math.isclose(float(foreground.box_sum(torch.ones(1, 1, 5, 5), 1)[0, 0, 0, 0]), 4.0)
