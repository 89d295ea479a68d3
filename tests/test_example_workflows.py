"""example_workflows/*.json load in ComfyUI's frontend: schema-valid UI format, and our nodes' widget
values line up with their inputs. (With a real ComfyUI, test_comfyui_integration.py also checks every
core node and queues them.)"""

import json
from pathlib import Path

import pytest

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
