"""Mask refinements on synthetic masks with known answers; connected components against a plain BFS."""

from collections import deque

import numpy as np
import pytest
import torch

from rmbg_core import OptionError, Refinement, apply_refinement
from rmbg_core.edges.components import label_components
from rmbg_core.edges.refine import option_help, option_names

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def canvas(height=32, width=32):
    return torch.zeros(height, width)


def square(mask, top, left, size, value=1.0):
    mask[top:top + size, left:left + size] = value
    return mask


def bfs_partition(binary: np.ndarray, connectivity: int) -> np.ndarray:
    """Reference labels by breadth-first search (component ids in order of discovery, -1 off the mask)."""
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    labels = np.full(binary.shape, -1)
    count = 0
    for start in zip(*np.nonzero(binary)):
        if labels[start] >= 0:
            continue
        labels[start] = count
        queue = deque([start])
        while queue:
            y, x = queue.popleft()
            for dy, dx in steps:
                ny, nx = y + dy, x + dx
                if 0 <= ny < binary.shape[0] and 0 <= nx < binary.shape[1] and binary[ny, nx] and labels[ny, nx] < 0:
                    labels[ny, nx] = count
                    queue.append((ny, nx))
        count += 1
    return labels


def same_partition(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Two labellings describe the same components (a one-to-one map between label values)."""
    if not np.array_equal(ours < 0, reference < 0):
        return False
    pairs = set(zip(ours[ours >= 0].tolist(), reference[reference >= 0].tolist()))
    return len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


# ---------------------------------------------------------------- options object


def test_default_is_identity_and_returns_the_same_tensor():
    masks = torch.rand(2, 9, 7)
    assert Refinement().is_identity
    assert apply_refinement(masks, Refinement()) is masks
    assert apply_refinement(masks, None) is masks
    assert not Refinement(invert=True).is_identity


@pytest.mark.parametrize("kwargs,fragment", [
    ({"threshold": 1.0}, "threshold"), ({"threshold": -0.1}, "threshold"), ({"threshold": float("nan")}, "threshold"),
    ({"feather": -1.0}, "feather"), ({"feather": 1e4}, "feather"), ({"grow": 2.5}, "grow"), ({"grow": True}, "grow"), ({"grow": 10_000}, "grow"),
    ({"min_area": 1.5}, "min_area"), ({"fill_holes": "maybe"}, "fill_holes"), ({"invert": 1}, "invert"),
    ({"levels": (0.9, 0.1)}, "levels"), ({"levels": (0.5, 0.5)}, "levels"), ({"levels": (0.5,)}, "levels"),
    ({"levels": (-0.1, 0.9)}, "levels"), ({"levels": (0.1, float("nan"))}, "levels"), ({"levels": (False, 1)}, "levels"),
    ({"levels": 0.5}, "levels"), ({"levels": "0.1;0.9"}, "levels"),
])
@pytest.mark.parametrize("build", [lambda kwargs: Refinement(**kwargs), Refinement.from_options])
def test_invalid_values_raise_option_error_naming_the_option(kwargs, fragment, build):
    with pytest.raises(OptionError, match=fragment):
        build(kwargs)


def test_from_options_converts_and_ignores_unset():
    built = Refinement.from_options({"threshold": "0.5", "grow": "-3", "fill_holes": "true", "feather": None,
                                     "input": "photo.jpg"}, ignore_unknown=True, invert=np.bool_(True),
                                    min_area=np.float32(0.25))
    assert built == Refinement(threshold=0.5, grow=-3, fill_holes=True, invert=True, min_area=0.25)
    assert Refinement.from_options(grow=4.0).grow == 4
    with pytest.raises(OptionError, match="unknown refinement option.*blur"):
        Refinement.from_options(blur=3)
    with pytest.raises(OptionError, match="grow must be a whole number"):
        Refinement.from_options(grow="2.5")


def test_option_names_and_help_cover_every_field():
    assert option_names() == ("levels", "threshold", "fill_holes", "keep_largest", "min_area", "grow", "feather", "invert")
    assert set(option_help()) == set(option_names()) and all(option_help().values())


# ---------------------------------------------------------------- single steps


def test_levels_maps_low_high_to_0_1_and_clips():
    mask = torch.tensor([[0.0, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0]])
    out = apply_refinement(mask, Refinement(levels=(0.2, 0.8)))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]]), rtol=0, atol=1e-6)
    eight_bit = apply_refinement(torch.tensor([[0, 13, 242, 255]], dtype=torch.uint8), Refinement(levels=(0.05, 0.95)))
    assert eight_bit[0, 0] == 0 and eight_bit[0, 3] == 1 and 0 < eight_bit[0, 1] < 0.01 and 0.99 < eight_bit[0, 2] < 1


def test_levels_identity_is_off_and_spellings_convert():
    assert Refinement(levels=(0, 1)) == Refinement() and Refinement(levels=[0.0, 1.0]).is_identity
    masks = torch.rand(1, 5, 5)
    assert apply_refinement(masks, Refinement.from_options(levels="0, 1")) is masks
    for spelling in ("0.05,0.95", " 0.05, 0.95 ", "0.05 0.95", [0.05, 0.95], np.array([0.05, 0.95]),
                     (np.float64(0.05), 0.95)):
        assert Refinement.from_options(levels=spelling).levels == (0.05, 0.95), spelling


def test_threshold_binarises_strictly_above():
    mask = torch.tensor([[0.0, 0.3, 0.5, 0.50001, 1.0]])
    out = apply_refinement(mask, Refinement(threshold=0.5))
    assert out.tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]
    assert out.dtype == torch.float32


def test_invert():
    mask = torch.rand(3, 5, 6)
    torch.testing.assert_close(apply_refinement(mask, Refinement(invert=True)), 1.0 - mask)


def test_uint8_masks_are_read_as_0_to_255():
    mask = torch.tensor([[0, 100, 200, 255]], dtype=torch.uint8)
    out = apply_refinement(mask, Refinement(threshold=0.5))
    assert out.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_keep_largest_keeps_the_bigger_blob_with_its_soft_edge():
    mask = canvas(40, 40)
    square(mask, 3, 3, 14, 0.3)      # soft edge of the big blob
    square(mask, 5, 5, 10)            # big blob: 100 px
    square(mask, 24, 24, 9, 0.3)      # soft edge of the small blob
    square(mask, 26, 26, 5)           # small blob: 25 px
    out = apply_refinement(mask, Refinement(keep_largest=True))
    expected = mask.clone()
    expected[20:, 20:] = 0.0
    assert torch.equal(out, expected)


def test_keep_largest_tie_and_diagonal_connectivity():
    mask = canvas()
    square(mask, 2, 2, 4)
    square(mask, 6, 6, 4)             # touches the first square only diagonally: one 32 px component
    square(mask, 20, 20, 5)           # 25 px
    out = apply_refinement(mask, Refinement(keep_largest=True))
    assert out.sum() == 32 and out[20:, 20:].sum() == 0


def test_keep_largest_removes_edges_nearer_to_removed_blobs():
    """A faint bridge joins two blobs: the half nearer the small blob goes with it."""
    mask = canvas(12, 40)
    square(mask, 2, 2, 8)             # 64 px
    mask[5, 10:30] = 0.2              # bridge, 20 px
    square(mask, 4, 30, 3)            # 9 px
    out = apply_refinement(mask, Refinement(keep_largest=True))
    assert out[2:10, 2:10].sum() == 64 and out[4:7, 30:33].sum() == 0
    bridge = out[5, 10:30]
    assert torch.all(bridge[:10] == 0.2) and torch.all(bridge[-9:] == 0.0)


def test_min_area_fraction():
    mask = canvas()                   # 1024 px
    square(mask, 1, 1, 10)            # 100 px
    square(mask, 15, 15, 5)           # 25 px
    square(mask, 28, 28, 2)           # 4 px
    def areas(**kwargs):
        return float(apply_refinement(mask, Refinement(**kwargs)).sum())
    assert areas(min_area=0.02) == 125
    assert areas(min_area=25 / 1024) == 125          # a component exactly at the limit stays
    assert areas(min_area=0.05) == 100
    assert areas(min_area=0.5) == 0
    assert areas(min_area=0.001, keep_largest=True) == 100
    assert areas(min_area=0.2, keep_largest=True) == 0   # both filters must pass


def test_fill_holes_fills_a_ring():
    mask = square(canvas(), 5, 5, 20)
    mask[10:20, 10:20] = 0.0
    out = apply_refinement(mask, Refinement(fill_holes=True))
    assert torch.equal(out, square(canvas(), 5, 5, 20))


def test_fill_holes_leaves_a_hole_open_to_the_border():
    mask = square(canvas(), 0, 5, 20)
    mask[0:15, 10:20] = 0.0          # a pocket reaching the top border: not a hole
    assert torch.equal(apply_refinement(mask, Refinement(fill_holes=True)), mask)


def test_fill_holes_closes_a_diagonal_outline():
    mask = canvas(15, 15)
    for i in range(6):                # a diamond |dy| + |dx| = 5 drawn with one-pixel diagonal steps
        mask[2 + i, 7 + i] = mask[2 + i, 7 - i] = mask[12 - i, 7 + i] = mask[12 - i, 7 - i] = 1.0
    out = apply_refinement(mask, Refinement(fill_holes=True))
    assert out[7, 7] == 1.0 and out[4, 7] == 1.0 and out[0, 0] == 0.0
    assert out.sum() == mask.sum() + 41   # the enclosed pixels, |dy| + |dx| <= 4


def test_grow_square_by_3_px_has_exact_area_and_shape():
    mask = square(canvas(40, 40), 10, 10, 20)
    grown = apply_refinement(mask, Refinement(grow=3))
    disc = 29                          # offsets with dy^2 + dx^2 <= 9
    assert grown.sum() == 19 ** 2 + 2 * 19 * 7 + disc == 656
    brute = np.zeros((40, 40), bool)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            if dy * dy + dx * dx <= 9:
                brute |= np.roll(np.roll(mask.numpy() > 0, dy, 0), dx, 1)
    assert np.array_equal(grown.numpy() > 0, brute)


def test_shrink_square_by_3_px():
    mask = square(canvas(40, 40), 10, 10, 20)
    shrunk = apply_refinement(mask, Refinement(grow=-3))
    assert torch.equal(shrunk, square(canvas(40, 40), 13, 13, 14))


def test_grow_on_soft_masks_is_a_max_over_the_disc():
    torch.manual_seed(0)
    mask = torch.rand(1, 17, 23)
    for radius in (1, 2, 4):
        expected = mask.clone()
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if dy * dy + dx * dx <= radius * radius:
                    shifted = torch.full_like(mask, -1.0)
                    ys, xs = slice(max(0, dy), 17 + min(0, dy)), slice(max(0, dx), 23 + min(0, dx))
                    yt, xt = slice(max(0, -dy), 17 + min(0, -dy)), slice(max(0, -dx), 23 + min(0, -dx))
                    shifted[:, yt, xt] = mask[:, ys, xs]
                    expected = torch.maximum(expected, shifted)
        assert torch.equal(apply_refinement(mask, Refinement(grow=radius)), expected)
        eroded = 1.0 - apply_refinement(1.0 - mask, Refinement(grow=radius))
        torch.testing.assert_close(apply_refinement(mask, Refinement(grow=-radius)), eroded)


def test_shrink_ignores_outside_the_image():
    full = torch.ones(1, 10, 12)
    assert torch.equal(apply_refinement(full, Refinement(grow=-3)), full)


def test_feather_keeps_mass_and_is_smooth():
    mask = square(canvas(64, 64), 16, 16, 32)
    sigma = 2.5
    soft = apply_refinement(mask, Refinement(feather=sigma))
    assert abs(float(soft.sum()) - float(mask.sum())) < 1e-2
    steepest = 1.0 / (sigma * (2 * np.pi) ** 0.5)    # slope of a blurred step at its centre
    assert float((soft[:, 1:] - soft[:, :-1]).abs().max()) <= steepest + 1e-3
    assert 0.45 < float(soft[32, 16]) < 0.6 and float(soft[32, 32]) > 0.999
    solid = torch.ones(1, 8, 8)
    torch.testing.assert_close(apply_refinement(solid, Refinement(feather=3.0)), solid)


# ---------------------------------------------------------------- batches, order, devices


@pytest.mark.parametrize("device", DEVICES)
def test_batch_members_are_refined_independently(device):
    torch.manual_seed(1)
    first = square(canvas(), 2, 2, 12)
    first[5:9, 5:9] = 0.0
    square(first, 25, 25, 3)
    second = square(canvas(), 20, 1, 10, 0.8)
    third = torch.rand(32, 32)
    batch = torch.stack((first, second, third)).to(device)
    refinement = Refinement(fill_holes=True, keep_largest=True, min_area=0.001, grow=2, feather=1.0)
    together = apply_refinement(batch, refinement)
    assert together.device.type == device and together.shape == batch.shape
    for i in range(3):
        torch.testing.assert_close(together[i], apply_refinement(batch[i], refinement), rtol=0, atol=1e-6)


def test_levels_run_first_so_threshold_and_feather_see_the_levelled_mask():
    mask = torch.zeros(1, 20, 20)
    mask[:, 5:15, 5:15] = 0.5
    # levels first: 0.5 becomes 1 on (0.25, 0.5), then "> 0.6" holds; threshold first would drop the square.
    assert apply_refinement(mask, Refinement(levels=(0.25, 0.5), threshold=0.6)).sum() == 100
    # feather after levels keeps its soft ramp (levels after the blur would clip it back to a hard edge).
    soft = apply_refinement(mask, Refinement(levels=(0.25, 0.5), feather=2.0))
    assert torch.equal(soft, apply_refinement(torch.where(mask > 0, 1.0, 0.0), Refinement(feather=2.0)))
    assert bool(((soft > 0.05) & (soft < 0.95)).any())


def test_order_threshold_then_holes_then_components_then_grow_feather_invert():
    mask = square(canvas(), 4, 4, 12, 0.7)
    mask[8:12, 8:12] = 0.4                 # a hole once thresholded at 0.5
    square(mask, 24, 24, 3, 0.9)           # small blob, dropped by keep_largest
    out = apply_refinement(mask, Refinement(threshold=0.5, fill_holes=True, keep_largest=True, grow=1,
                                            invert=True))
    expected = 1.0 - apply_refinement(square(canvas(), 4, 4, 12), Refinement(grow=1))
    assert torch.equal(out, expected)


# ---------------------------------------------------------------- connected components


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("density", [0.3, 0.55, 0.7])
def test_labels_match_breadth_first_search(connectivity, density):
    generator = torch.Generator().manual_seed(int(density * 100) + connectivity)
    binary = torch.rand(3, 29, 31, generator=generator) < density
    labels = label_components(binary, connectivity)
    for i in range(3):
        assert same_partition(labels[i].numpy(), bfs_partition(binary[i].numpy(), connectivity))


def test_one_pixel_wide_spiral_is_one_component():
    size = 101
    binary = torch.zeros(1, size, size, dtype=torch.bool)
    low, high = 0, size - 1
    while high - low > 4:                  # concentric walls joined at one corner: a single long path
        binary[0, low, low:high + 1] = binary[0, low:high + 1, high] = binary[0, high, low:high + 1] = True
        binary[0, low + 2:high + 1, low] = True
        binary[0, low + 2, low:low + 3] = True
        low, high = low + 2, high - 2
    labels = label_components(binary)
    assert labels[binary].unique().numel() == 1
    assert same_partition(labels[0].numpy(), bfs_partition(binary[0].numpy(), 8))
