"""Input discovery (files, folders, globs, --recursive) and output planning (names, skips, collisions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmbg_core.cli.inputs import find_images
from rmbg_core.cli.jobs import plan_outputs


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """photos/{a.jpg, B.PNG, notes.txt, .hidden.png, sub/c.webp, sub/deep/d.tif, .cache/e.png, out/o.png}."""
    monkeypatch.chdir(tmp_path)
    for name in ["a.jpg", "B.PNG", "notes.txt", ".hidden.png", "sub/c.webp", "sub/deep/d.tif",
                 ".cache/e.png", "out/o.png"]:
        path = tmp_path / "photos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return Path("photos")


def listing(found):
    return [(str(image.path), str(image.relative)) for image in found.images]


def test_a_folder_gives_its_visible_image_files(tree):
    found = find_images([tree])
    assert listing(found) == [("photos/B.PNG", "B.PNG"), ("photos/a.jpg", "a.jpg")]
    assert found.problems == [] and found.empty_folders == []


def test_recursive_keeps_the_layout_and_skips_hidden_and_excluded_folders(tree):
    found = find_images([tree], recursive=True, exclude="photos/out")
    assert listing(found) == [("photos/B.PNG", "B.PNG"), ("photos/a.jpg", "a.jpg"),
                              ("photos/sub/c.webp", "sub/c.webp"), ("photos/sub/deep/d.tif", "sub/deep/d.tif")]


def test_globs_filter_images_and_keep_layout_below_their_fixed_part(tree):
    assert listing(find_images(["photos/*"])) == [("photos/B.PNG", "B.PNG"), ("photos/a.jpg", "a.jpg"),
                                                  ("photos/out/o.png", "o.png"), ("photos/sub/c.webp", "c.webp")]
    found = find_images(["photos/**/*.tif", "photos/*.jpg"], recursive=True)
    assert listing(found) == [("photos/sub/deep/d.tif", "sub/deep/d.tif"), ("photos/a.jpg", "a.jpg")]
    assert listing(find_images(["photos/*"], exclude="photos/out"))[2:] == [("photos/sub/c.webp", "c.webp")]


def test_explicit_files_are_taken_whatever_their_name_and_only_once(tree):
    found = find_images(["photos/notes.txt", "photos/a.jpg", "photos", "./photos/a.jpg"])
    assert listing(found) == [("photos/notes.txt", "notes.txt"), ("photos/a.jpg", "a.jpg"), ("photos/B.PNG", "B.PNG")]


def test_arguments_that_name_nothing_are_problems_and_empty_folders_notes(tree):
    os.mkdir("empty")
    found = find_images(["missing.jpg", "photos/*.gif", "empty"])
    assert found.images == []
    assert found.problems == [("missing.jpg", "no such file or folder"),
                              ("photos/*.gif", "no image files match this pattern")]
    assert found.empty_folders == ["empty"]


def test_plan_names_outputs_skips_existing_and_refuses_collisions(tree):
    found = find_images([tree, "photos/sub/c.webp", "photos/out/o.png"], recursive=False)
    (Path("out")).mkdir()
    Path("out/a.png").write_bytes(b"done before")
    plan = plan_outputs(found.images, "out", ".png")
    assert [(str(t.source), str(t.output)) for t in plan.tasks] == [("photos/B.PNG", "out/B.png"),
                                                                     ("photos/sub/c.webp", "out/c.png"),
                                                                     ("photos/out/o.png", "out/o.png")]
    assert [str(t.output) for t in plan.skipped] == ["out/a.png"]
    again = plan_outputs(found.images, "out", ".png", overwrite=True)
    assert [str(t.output) for t in again.tasks] == ["out/B.png", "out/a.png", "out/c.png", "out/o.png"]

    Path("photos/a.png").write_bytes(b"x")
    twins = plan_outputs(find_images(["photos/a.jpg", "photos/a.png"]).images, "elsewhere", ".png")
    assert [str(t.source) for t in twins.tasks] == ["photos/a.jpg"]
    assert len(twins.failures) == 1 and "photos/a.png: output elsewhere/a.png is already the output of " \
        "photos/a.jpg" in twins.failures[0].error


def test_plan_never_replaces_an_input_with_its_output(tree):
    plan = plan_outputs(find_images(["photos/out/o.png"]).images, "photos/out", ".png", overwrite=True)
    assert plan.tasks == [] and "would replace the input itself" in plan.failures[0].error
