"""Check UI-format workflows (what ComfyUI's frontend saves and loads, version 0.4) and turn them into
API-format prompts, the way the frontend does when it queues one.

The structural rules mirror the frontend's zod schema (``workflowSchema.ts``: required fields and
their types); the semantic ones need node definitions in ``/object_info`` form: every node type is
known, every link joins an output and an input of the same type, and ``widgets_values`` holds one
value per widget input, in declaration order (plus the frontend's extra values: the upload button
after an upload combo, the "control after generate" choice after a seed).
"""

from __future__ import annotations

import re

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_CNR_ID = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_vector(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)


def structure_problems(workflow: dict) -> list[str]:
    """Where ``workflow`` breaks the frontend's version 0.4 schema (empty when it loads)."""
    problems = []
    if workflow.get("version") != 0.4:
        problems.append(f"version is {workflow.get('version')!r}, expected 0.4")
    if "id" in workflow and not (isinstance(workflow["id"], str) and _UUID.match(workflow["id"])):
        problems.append("id is not a UUID")
    for key in ("last_node_id", "last_link_id"):
        if not _is_number(workflow.get(key)):
            problems.append(f"{key} missing or not a number")
    if not isinstance(workflow.get("nodes"), list) or not isinstance(workflow.get("links"), list):
        return problems + ["nodes and links must be lists"]
    for node in workflow["nodes"]:
        where = f"node {node.get('id')}"
        if not isinstance(node.get("id"), int) or not isinstance(node.get("type"), str):
            problems.append(f"{where}: id must be an int and type a string")
        for key in ("pos", "size"):
            if not _is_vector(node.get(key)):
                problems.append(f"{where}: {key} must be [x, y]")
        if not isinstance(node.get("flags"), dict):
            problems.append(f"{where}: flags must be an object")
        for key in ("order", "mode"):
            if not _is_number(node.get(key)):
                problems.append(f"{where}: {key} must be a number")
        for slot in node.get("inputs", []):
            if not isinstance(slot.get("name"), str) or "type" not in slot or not (
                    slot.get("link") is None or isinstance(slot.get("link"), int)):
                problems.append(f"{where}: bad input slot {slot}")
        for slot in node.get("outputs", []):
            if not isinstance(slot.get("name"), str) or "type" not in slot or not (
                    slot.get("links") is None or all(isinstance(i, int) for i in slot["links"])):
                problems.append(f"{where}: bad output slot {slot}")
        properties = node.get("properties")
        if not isinstance(properties, dict):
            problems.append(f"{where}: properties must be an object")
        elif "cnr_id" in properties and not _CNR_ID.match(str(properties["cnr_id"])):
            problems.append(f"{where}: cnr_id {properties['cnr_id']!r} is not a registry id")
        if not isinstance(node.get("widgets_values", []), (list, dict)):
            problems.append(f"{where}: widgets_values must be a list")
    for link in workflow["links"]:
        if not (isinstance(link, list) and len(link) == 6 and all(isinstance(v, int) for v in link[:5])):
            problems.append(f"link {link}: expected [id, origin, slot, target, slot, type]")
    return problems


def _spec(entry: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of every input, in the order the frontend lays out widgets."""
    order = entry.get("input_order") or {part: list(entry["input"].get(part, {})) for part in ("required", "optional")}
    specs = []
    for part in ("required", "optional"):
        for name in order.get(part, []):
            declared = entry["input"][part][name]
            kind = declared[0]
            options = declared[1] if len(declared) > 1 and isinstance(declared[1], dict) else {}
            specs.append((name, kind, options))
    return specs


def _is_widget(kind: object) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def widget_values(node: dict, entry: dict) -> dict[str, object]:
    """Map a node's ``widgets_values`` onto its widget inputs; ValueError if they do not line up."""
    values = list(node.get("widgets_values") or [])
    mapped = {}
    for name, kind, options in _spec(entry):
        if not _is_widget(kind):
            continue
        if not values:
            raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {name!r}")
        mapped[name] = values.pop(0)
        if options.get("control_after_generate") or name in ("seed", "noise_seed"):
            values.pop(0)
        if options.get("image_upload") or options.get("video_upload") or options.get("audio_upload"):
            values.pop(0)
    if values:
        raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget value(s) too many: {values}")
    return mapped


def value_problems(name: str, value: object, kind: object, options: dict) -> list[str]:
    """Why ``value`` is not acceptable for a widget of this type (ComfyUI's own checks)."""
    choices = kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
    if choices is not None and value not in choices:
        return [f"{name}: {value!r} not in {choices}"]
    if kind in ("INT", "FLOAT"):
        if not _is_number(value) or (kind == "INT" and value != int(value)):
            return [f"{name}: {value!r} is not {kind}"]
        if value < options.get("min", value) or value > options.get("max", value):
            return [f"{name}: {value} outside [{options.get('min')}, {options.get('max')}]"]
    if kind == "STRING" and not isinstance(value, str):
        return [f"{name}: {value!r} is not a string"]
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return [f"{name}: {value!r} is not a boolean"]
    return []


def to_api(workflow: dict, object_info: dict) -> dict:
    """The API-format prompt for a UI-format workflow; ValueError on any inconsistency."""
    problems = structure_problems(workflow)
    if problems:
        raise ValueError("; ".join(problems))
    links = {link[0]: link for link in workflow["links"]}
    nodes = {node["id"]: node for node in workflow["nodes"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] not in object_info:
            raise ValueError(f"node {node['id']}: unknown node type {node['type']!r}")
        if node.get("mode", 0) in (2, 4):  # muted or bypassed: not sent
            continue
        entry = object_info[node["type"]]
        declared = {name: kind for name, kind, _ in _spec(entry)}
        inputs = dict(widget_values(node, entry))
        for slot_index, slot in enumerate(node.get("inputs", [])):
            if slot["name"] not in declared:
                raise ValueError(f"node {node['id']}: no input named {slot['name']!r}")
            if slot.get("link") is None:
                continue
            link_id, origin, origin_slot, target, target_slot, kind = links[slot["link"]]
            output = nodes[origin]["outputs"][origin_slot]
            expected = declared[slot["name"]]
            expected = "COMBO" if isinstance(expected, list) else expected
            if (target, target_slot) != (node["id"], slot_index) or link_id not in (output.get("links") or []):
                raise ValueError(f"link {link_id} does not join node {origin} slot {origin_slot} to node "
                                 f"{node['id']} input {slot['name']!r}")
            if not (kind == output["type"] == object_info[nodes[origin]["type"]]["output"][origin_slot]
                    and kind in (expected, "*")):
                raise ValueError(f"link {link_id} carries {kind}, output is {output['type']}, input "
                                 f"{slot['name']!r} of node {node['id']} wants {expected}")
            inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def object_info_entry(node_class: type) -> dict:
    """The ``/object_info`` entry ComfyUI builds for a V1 node class (the fields used here)."""
    declared = node_class.INPUT_TYPES()
    return {
        "input": {part: declared.get(part, {}) for part in ("required", "optional")},
        "input_order": {part: list(declared.get(part, {})) for part in ("required", "optional")},
        "output": list(node_class.RETURN_TYPES),
    }
