"""Pre/post-processing arithmetic against the model card's operations."""

import pytest
import torch
import torch.nn.functional as F

from rmbg_core.model.images import mask_to_uint8
from rmbg_core.model.processing import postprocess, preprocess, resize_bilinear


@pytest.mark.parametrize("height,width", [(300, 451), (1024, 1024), (7, 5), (1, 1), (2100, 333), (64, 3000)])
def test_resize_equals_f_interpolate(height, width, monkeypatch):
    monkeypatch.setattr("rmbg_core.model.processing.RESIZE_BAND_ELEMENTS", 50_000)  # force many bands
    images = torch.randint(0, 256, (2, height, width, 3), dtype=torch.uint8)
    reference = F.interpolate(images.permute(0, 3, 1, 2).float(), size=[256, 320], mode="bilinear")
    ours = resize_bilinear(images, (256, 320)).permute(0, 3, 1, 2)
    # torch's own kernels differ from each other by this much (channels-last vs contiguous paths).
    torch.testing.assert_close(ours, reference, atol=1e-3, rtol=0)


def test_preprocess_matches_model_card():
    image = torch.randint(0, 256, (1, 90, 120, 3), dtype=torch.uint8)
    reference = F.interpolate(image.permute(0, 3, 1, 2).float(), size=[64, 64], mode="bilinear") / 255.0 - 0.5
    ours = preprocess(image, (64, 64))
    assert ours.shape == (1, 3, 64, 64) and ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(preprocess(image.float() / 255.0, (64, 64)), reference, atol=1e-5, rtol=0)


def test_postprocess_min_max_per_image_never_across_batch():
    prediction = torch.stack([torch.rand(1, 16, 16) * 0.1, torch.rand(1, 16, 16) * 0.5 + 0.5])
    masks = postprocess(prediction, (20, 30))
    assert masks.shape == (2, 20, 30)
    for i in range(2):
        up = F.interpolate(prediction[i:i + 1], size=(20, 30), mode="bilinear")[0, 0]
        torch.testing.assert_close(masks[i], (up - up.min()) / (up.max() - up.min()))
        assert float(masks[i].min()) == 0.0 and float(masks[i].max()) == 1.0


def test_constant_prediction_gives_zero_mask_not_nan():
    prediction = torch.stack([torch.full((1, 8, 8), 0.7), torch.rand(1, 8, 8)])
    masks = postprocess(prediction, (5, 7))
    assert torch.equal(masks[0], torch.zeros(5, 7))
    assert float(masks[1].max()) == 1.0


def test_mask_to_uint8_truncates_like_numpy_astype():
    values = torch.tensor([0.0, 0.5, 0.999, 1.0, 0.00392])
    assert mask_to_uint8(values).tolist() == [0, 127, 254, 255, 0]


def test_postprocess_writes_into_the_given_buffer():
    prediction = torch.rand(2, 1, 16, 16)
    out = torch.empty(2, 40, 30)
    result = postprocess(prediction, (40, 30), out=out)
    assert result is out
    torch.testing.assert_close(out, postprocess(prediction, (40, 30)))
    upsampled = F.interpolate(prediction, size=(40, 30), mode="bilinear", align_corners=False)[:, 0]
    low = upsampled.amin(dim=(1, 2), keepdim=True)
    expected = (upsampled - low) / (upsampled.amax(dim=(1, 2), keepdim=True) - low)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_mask_to_uint8_in_bands_equals_one_pass(monkeypatch):
    monkeypatch.setattr("rmbg_core.model.processing.RESIZE_BAND_ELEMENTS", 1000)
    masks = torch.rand(3, 47, 59)
    masks[0, 0, 0], masks[1, 0, 0] = 1.0, 0.0
    assert torch.equal(mask_to_uint8(masks), (masks * 255).to(torch.uint8))


def test_same_size_resize_is_exact_and_leaves_the_input_alone():
    images = torch.rand(1, 32, 48, 3)
    before = images.clone()
    resized = resize_bilinear(images, (32, 48), scale=255.0)
    assert torch.equal(images, before)
    assert torch.equal(resized, F.interpolate(images.permute(0, 3, 1, 2) * 255.0, size=(32, 48),
                                              mode="bilinear").permute(0, 2, 3, 1))
