"""RMBGModel.predict: batches equal singles, chunking independence, mixed sizes, progress."""

import numpy as np
import pytest
import torch
from PIL import Image

from rmbg_core import InputError, OptionError

from conftest import SMALL_INPUT


def frames(count, height=48, width=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, height, width, 3, generator=generator)


def test_batch_equals_one_at_a_time(random_model):
    batch = frames(5)
    together = random_model.predict(batch, batch_size=5, input_size=SMALL_INPUT)
    assert together.shape == (5, 48, 40) and together.dtype == torch.float32
    for i in range(5):
        single = random_model.predict(batch[i:i + 1], input_size=SMALL_INPUT)
        torch.testing.assert_close(together[i], single[0], atol=1e-5, rtol=0)


def test_results_do_not_depend_on_batch_size(random_model):
    batch = frames(7, seed=1)
    results = [random_model.predict(batch, batch_size=size, input_size=SMALL_INPUT) for size in (1, 2, 3, 7)]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], atol=1e-5, rtol=0)


def test_each_mask_is_normalized_on_its_own(random_model):
    masks = random_model.predict(frames(3, seed=2), batch_size=3, input_size=SMALL_INPUT)
    for mask in masks:
        assert float(mask.min()) == 0.0 and float(mask.max()) == 1.0


def test_uint8_and_float_inputs_agree(random_model):
    pixels = torch.randint(0, 256, (2, 30, 50, 3), dtype=torch.uint8)
    from_uint8 = random_model.predict(pixels, input_size=SMALL_INPUT)
    from_float = random_model.predict(pixels.float() / 255.0, input_size=SMALL_INPUT)
    torch.testing.assert_close(from_uint8, from_float, atol=1e-4, rtol=0)


def test_gray_and_rgba_channels(random_model):
    rgb = frames(1, seed=3)
    gray = rgb[..., :1]
    rgba = torch.cat([rgb, torch.rand(1, 48, 40, 1)], dim=-1)
    torch.testing.assert_close(random_model.predict(rgba, input_size=SMALL_INPUT),
                               random_model.predict(rgb, input_size=SMALL_INPUT))
    assert random_model.predict(gray, input_size=SMALL_INPUT).shape == (1, 48, 40)


def test_mixed_sizes_list(random_model):
    items = [frames(1, 30, 20)[0], frames(1, 64, 90, seed=4)[0], frames(1, 17, 17, seed=5)[0]]
    masks = random_model.predict(items, batch_size=2, input_size=SMALL_INPUT)
    assert [tuple(m.shape) for m in masks] == [(30, 20), (64, 90), (17, 17)]
    for item, mask in zip(items, masks):
        torch.testing.assert_close(mask, random_model.predict(item[None], input_size=SMALL_INPUT)[0], atol=1e-5, rtol=0)


def test_callback_reports_each_chunk_and_can_cancel(random_model):
    seen = []
    random_model.predict(frames(5), batch_size=2, input_size=SMALL_INPUT, callback=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 5), (4, 5), (5, 5)]

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        random_model.predict(frames(4), batch_size=2, input_size=SMALL_INPUT, callback=cancel)


@pytest.mark.parametrize("bad,reason", [
    (torch.rand(4, 4, 3), r"\(B, H, W, C\)"),
    (torch.rand(1, 3, 8, 8), "C in 1-4"),
    (torch.rand(1, 0, 8, 3), "zero size"),
    (torch.full((1, 8, 8, 3), 255.0), r"values in \[0, 1\]"),
])
def test_bad_batches_are_explained(random_model, bad, reason):
    with pytest.raises(InputError, match=reason):
        random_model.predict(bad, input_size=SMALL_INPUT)


@pytest.mark.parametrize("bad", [0, -1, "2", 1.5, True, None])
def test_bad_batch_size_is_an_option_error(random_model, bad):
    with pytest.raises(OptionError, match="batch_size must be"):
        random_model.predict(frames(1), batch_size=bad)


def test_numpy_batches_and_lists_equal_tensors(random_model):
    """numpy in, as everywhere else: a (B, H, W, C) array, a flipped view, a list of differently sized arrays."""
    pixels = torch.randint(0, 256, (2, 30, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(6))
    expected = random_model.predict(pixels, input_size=SMALL_INPUT)
    assert torch.equal(random_model.predict(pixels.numpy(), batch_size=2, input_size=SMALL_INPUT), expected)
    flipped = pixels.numpy()[..., ::-1]
    assert torch.equal(random_model.predict(flipped, input_size=SMALL_INPUT),
                       random_model.predict(torch.from_numpy(flipped.copy()), input_size=SMALL_INPUT))
    items = [pixels[0].numpy(), frames(1, 17, 23, seed=7)[0].numpy(), pixels[1]]
    masks = random_model.predict(items, batch_size=2, input_size=SMALL_INPUT)
    assert [tuple(m.shape) for m in masks] == [(30, 50), (17, 23), (30, 50)]
    torch.testing.assert_close(masks[0], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(masks[2], expected[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad,reason", [
    ("photo.png", "got str; files and PIL images go through remove_background"),
    (Image.new("RGB", (8, 8)), "got Image; files and PIL images go through remove_background"),
    (["photo.png"], "image 0: expected an .H, W, C. tensor or array, got str"),
    ([np.zeros((8, 8, 3), np.uint8), Image.new("RGB", (8, 8))], "image 1: .* got Image"),
    (7, "got int"),
    (np.zeros((1, 8, 8, 3), object), "image batch: unsupported dtype object"),
    ([np.zeros((8, 8, 3), np.int32)], "image 0: unsupported dtype int32"),
    (torch.zeros(1, 8, 8, 3).to_sparse(), "image batch: sparse_coo tensors are not supported"),
    (np.zeros((8, 8, 3), np.uint8), r"expected a \(B, H, W, C\) image batch"),
], ids=["path", "pil", "list-of-paths", "list-with-pil", "int", "object", "int32-item", "sparse", "3d-array"])
def test_what_predict_cannot_take_is_an_input_error(random_model, bad, reason):
    with pytest.raises(InputError, match=reason):
        random_model.predict(bad, input_size=SMALL_INPUT)


def test_loads_are_independent_models_over_shared_weights(checkpoint_file):
    from rmbg_core import load_model

    first = load_model(checkpoint_file, device="cpu", dtype="float32")
    second = load_model(checkpoint_file, device="cpu", dtype="float32")
    assert first is not second and first.network is not second.network
    shared = [(a.data_ptr() == b.data_ptr()) for a, b in zip(first.network.state_dict().values(),
                                                               second.network.state_dict().values())]
    assert all(shared), "the weights are held once"
    batch = frames(2, seed=9)
    expected = second.predict(batch, input_size=SMALL_INPUT)
    first.to(dtype="bfloat16")
    assert first.network.conv_in.weight.dtype == torch.bfloat16 and first.dtype == torch.bfloat16
    assert second.dtype == torch.float32 and all(
        value.dtype == torch.float32 for value in second.network.state_dict().values() if value.is_floating_point())
    assert torch.equal(second.predict(batch, input_size=SMALL_INPUT), expected)
    hook = first.network.stage1.register_forward_hook(lambda *args: pytest.fail("a hook reached another model"))
    try:
        third = load_model(checkpoint_file, device="cpu", dtype="float32")
        assert torch.equal(third.predict(batch, input_size=SMALL_INPUT), expected)
        assert third.network.conv_in.weight.data_ptr() == second.network.conv_in.weight.data_ptr()
    finally:
        hook.remove()
    assert first.predict(batch, input_size=SMALL_INPUT).shape == expected.shape
