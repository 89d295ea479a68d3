"""example_workflows/*.json load in ComfyUI's frontend: schema-valid UI format, and our nodes' widget
values line up with their inputs. (With a real ComfyUI, test_comfyui_integration.py also checks every
core node and queues them.)"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_workflows import object_info_entry, structure_problems, value_problems, widget_values
from conftest import REPO

EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))


def test_there_is_an_example_for_each_typical_use():
    assert [path.stem for path in EXAMPLES] == ["rmbg_cutout", "rmbg_mask_to_inpaint", "rmbg_video_frames"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_is_schema_valid(path: Path):
    assert structure_problems(json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_our_nodes_widget_values_fit(pack, path: Path):
    workflow = json.loads(path.read_text())
    ours = [node for node in workflow["nodes"] if node["type"] in pack.NODE_CLASS_MAPPINGS]
    assert {node["type"] for node in ours} >= {"RMBGLoadModel", "RMBGRemoveBackground"}
    for node in ours:
        entry = object_info_entry(pack.NODE_CLASS_MAPPINGS[node["type"]])
        specs = {**entry["input"]["required"], **entry["input"]["optional"]}
        for name, value in widget_values(node, entry).items():
            kind, options = specs[name]
            assert value_problems(name, value, kind, options) == [], f"node {node['id']}"
        assert node["properties"]["cnr_id"] == "rmbg-kit"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_links_are_consistent(path: Path):
    workflow = json.loads(path.read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] == max(nodes)
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        output = nodes[origin]["outputs"][origin_slot]
        slot = nodes[target]["inputs"][target_slot]
        assert link_id in output["links"] and slot["link"] == link_id
        assert output["type"] == slot["type"] == kind


# ---------------------------------------------------------------------------------------------- how they open
# Measured in ComfyUI 0.8's frontend (1.35) in Chromium: a node's title bar is 30 units tall above its
# pos, a pack's source badge ("rmbg-kit") sits in 20 units above that, titles are cut with "..." when
# wider than the node less 60, and a title is at most 8 units per character.

TITLE_BAR, BADGE, TITLE_MARGIN, TITLE_CHAR = 30, 20, 60, 8
# Nodes that grow downwards with what they show (the video's aspect ratio) after loading or a run.
GROWS_WITH_CONTENT = {"LoadVideo", "SaveVideo"}


def box(node: dict) -> tuple[float, float, float, float]:
    """What a node covers on the canvas: its body, its title bar and the badge strip above it."""
    (x, y), (width, height) = node["pos"], node["size"]
    return x, y - TITLE_BAR - BADGE, x + width, y + height


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_opens_fitted_to_the_window(path: Path):
    """A saved view (extra.ds) opens at that offset and zoom on every screen, hiding the left nodes and
    the top row's titles under the UI bars; without one the frontend fits the graph to the window."""
    assert "ds" not in json.loads(path.read_text()).get("extra", {})


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_nodes_do_not_overlap(path: Path):
    nodes = json.loads(path.read_text())["nodes"]
    for index, first in enumerate(nodes):
        for second in nodes[index + 1:]:
            (x0, y0, x1, y1), (u0, v0, u1, v1) = box(first), box(second)
            assert not (x0 < u1 and u0 < x1 and y0 < v1 and v0 < y1), f"nodes {first['id']} and {second['id']} overlap"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_nothing_below_a_node_that_grows(path: Path):
    """A video node grows downwards when its video is shown: nothing may stand below it."""
    nodes = json.loads(path.read_text())["nodes"]
    for growing in (node for node in nodes if node["type"] in GROWS_WITH_CONTENT):
        x0, _, x1, bottom = box(growing)
        below = [node["id"] for node in nodes if node is not growing and box(node)[0] < x1 and x0 < box(node)[2]
                 and box(node)[1] >= bottom]
        assert below == [], f"node {growing['id']} ({growing['type']}) would grow over {below}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_titles_are_not_cut(pack, path: Path):
    for node in json.loads(path.read_text())["nodes"]:
        title = node.get("title") or pack.NODE_DISPLAY_NAME_MAPPINGS.get(node["type"])
        if title:
            assert len(title) * TITLE_CHAR + TITLE_MARGIN <= node["size"][0], f"{title!r} is cut with '...'"


def test_each_example_has_a_real_thumbnail():
    """The Templates dialog shows <name>.jpg beside <name>.json (a generic gradient and a 404 without):
    a square JPEG screenshot (node text and outlines make sharp edges), not a flat or gradient placeholder."""
    assert sorted(path.stem for path in (REPO / "example_workflows").glob("*.jpg")) == [path.stem for path in EXAMPLES]
    for path in EXAMPLES:
        with Image.open(path.with_suffix(".jpg")) as thumbnail:
            assert thumbnail.format == "JPEG" and thumbnail.width == thumbnail.height >= 256, path.stem
            gray = np.asarray(thumbnail.convert("L"), dtype=np.int16)
        sharp = (np.abs(np.diff(gray, axis=1)) > 40).mean()
        assert sharp > 0.005, f"{path.stem}.jpg has no sharp edges ({sharp:.4f}): not a screenshot"
