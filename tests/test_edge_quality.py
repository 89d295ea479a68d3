"""Edge bleed: the measure itself on a synthetic photo, foreground estimation on the benchmark's synthetic
scene (true foreground known) and on the fixture photos; the README picture is the script's."""

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from rmbg_core import estimate_foreground
from benchmarks.quality import edge_bleed

from conftest import FIXTURE_PHOTOS, REPO

PICTURE = REPO / "docs" / "edge_quality.png"


@pytest.fixture(scope="module")
def edge_script():
    spec = importlib.util.spec_from_file_location("edge_quality_benchmark", REPO / "benchmarks" / "edge_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scene(edge_script):
    return edge_script.synthetic_scene()


def two_color_photo(size=80):
    """Orange foreground on blue, soft vertical edge: alpha ramps from 1 to 0 over about 11 columns."""
    fg, bg = torch.tensor([0.9, 0.5, 0.1]), torch.tensor([0.1, 0.2, 0.9])
    alpha = torch.linspace(4.0, -3.0, size).clamp(0, 1)[None, :].expand(size, size)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image, alpha, fg, bg


def test_bleed_of_the_photo_colors_is_alpha_times_one_minus_alpha_times_contrast():
    image, alpha, fg, bg = two_color_photo()
    measured = edge_bleed(image, alpha, image)
    band = (alpha > 0.05) & (alpha < 0.95)
    expected = float((alpha * (1 - alpha))[band].mean()) * float((bg - fg).norm()) * 255
    assert measured.pixels == int(band.sum())
    # The local colours are means of pixels with alpha above 0.95 / below 0.05: a little mixed themselves.
    assert measured.levels == pytest.approx(expected, rel=0.02)
    assert measured.share == pytest.approx(float((alpha * (1 - alpha))[band].mean()), rel=0.02)


def test_true_foreground_colors_do_not_bleed():
    image, alpha, fg, _ = two_color_photo()
    assert abs(edge_bleed(image, alpha, fg.expand_as(image)).levels) < 1.0


def test_no_edge_band_gives_zero():
    image = torch.rand(20, 20, 3)
    assert edge_bleed(image, torch.ones(20, 20), image).pixels == 0


@pytest.mark.parametrize("name", FIXTURE_PHOTOS)
def test_foreground_estimation_reduces_bleed_on_fixture_photos(fixture_dir, name):
    """The fixture's reference masks are the network's output for these photos (see its README)."""
    photo = torch.from_numpy(np.asarray(Image.open(fixture_dir / f"{name}.png").convert("RGB")).copy())
    alpha = torch.from_numpy(np.asarray(Image.open(fixture_dir / f"{name}.mask.png")).copy())
    before = edge_bleed(photo, alpha, photo)
    after = edge_bleed(photo, alpha, estimate_foreground(photo, alpha))
    assert before.pixels > 500, "the photo has a real soft edge"
    assert before.levels > 5.0, "keeping the photo's colours visibly bleeds the old background"
    assert after.levels < 0.6 * before.levels, (name, before, after)


def test_synthetic_scene_is_a_true_composite(scene):
    alpha = scene.alpha.float()[..., None] / 255
    rebuilt = alpha * scene.foreground * 255 + (1 - alpha) * scene.photo.float()  # B is the photo where a = 0
    soft = ((scene.alpha > 12) & (scene.alpha < 243)).sum()
    assert soft > 3000, "plenty of sub-pixel hair"
    assert np.abs((rebuilt - scene.photo.float()).numpy())[scene.alpha.numpy() == 255].max() <= 1.0


def test_estimation_on_the_synthetic_scene_approaches_the_truth(edge_script, scene):
    estimated = estimate_foreground(scene.photo, scene.alpha)
    photo_bleed = edge_bleed(scene.photo, scene.alpha, scene.photo)
    estimated_bleed = edge_bleed(scene.photo, scene.alpha, estimated)
    assert abs(edge_bleed(scene.photo, scene.alpha, scene.foreground).levels) < 0.5, "the measure sees no bleed in F"
    assert estimated_bleed.levels < photo_bleed.levels / 3, (photo_bleed, estimated_bleed)
    assert edge_script.visible_error(scene, estimated) < 0.6 * edge_script.visible_error(scene, scene.photo)


def test_committed_picture_is_the_synthetic_one(edge_script, scene):
    """docs/edge_quality.png is what ``edge_quality.py --picture`` draws (no fixture-derived content), up to
    float rounding on other CPUs; and it stays small."""
    drawn = np.asarray(edge_script.picture(scene, estimate_foreground(scene.photo, scene.alpha))).astype(int)
    committed = np.asarray(Image.open(PICTURE).convert("RGB")).astype(int)
    assert committed.shape == drawn.shape
    difference = np.abs(committed - drawn)
    assert difference.max() <= 2 and (difference > 0).mean() < 0.005
    assert PICTURE.stat().st_size < 300 * 1024
