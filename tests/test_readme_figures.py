"""README's before/after picture is what docs/before_after.py draws, and its levels table holds."""

from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

PICTURE = REPO / "docs" / "before_after.jpg"


def load_script(relative: str):
    """Import a script by path (registered, as dataclasses need their module in sys.modules)."""
    name = relative.replace("/", "_")[:-3]
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_picture_is_near_the_top_of_readme_and_small():
    head = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:12])
    assert "(docs/before_after.jpg)" in head
    assert PICTURE.stat().st_size < 150 * 1024


def test_the_committed_picture_is_what_the_script_draws(fixture_dir):
    script = load_script("docs/before_after.py")
    with Image.open(fixture_dir / "astronaut.png") as photo, Image.open(fixture_dir / "astronaut.mask.png") as mask:
        drawn = script.before_after(photo, mask)
    encoded = io.BytesIO()
    drawn.save(encoded, format="JPEG", quality=script.QUALITY, optimize=True)
    with Image.open(PICTURE) as committed:
        assert committed.size == drawn.size == (2 * script.SIDE + script.GAP, script.SIDE)
        # The same JPEG encoder gives the same file; another libjpeg may round a little differently.
        difference = np.abs(np.asarray(committed, dtype=int) - np.asarray(Image.open(encoded), dtype=int))
    assert difference.mean() < 0.5


def test_levels_make_the_subject_solid_and_the_background_clear(fixture_dir):
    script = load_script("benchmarks/levels.py")
    mask = np.asarray(Image.open(fixture_dir / "astronaut.mask.png").convert("L"))
    default, levelled = script.measure(mask, (0.05, 0.95))
    assert default.opaque_subject < 0.01 and levelled.opaque_subject > 0.95
    assert levelled.clear_background > default.clear_background
    assert levelled.see_through < default.see_through / 2
