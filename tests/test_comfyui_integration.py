"""The nodes in a real ComfyUI server (127.0.0.1 only), with the real-weights fixture in models/rmbg.

Runs when COMFYUI_DIR points to a ComfyUI checkout (COMFYUI_PYTHON: the Python that runs it, default
the venv-comfy next to it; see tests/comfyui_server.py and ../shared/tools/README.md); skips with
the reason otherwise. Takes a few minutes on a CPU: every image goes through IS-Net at 1024x1024.
"""

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_server import PACK_NAME, ComfyUIServer, PromptRejected, events, locate_comfyui
from comfyui_workflows import to_api
from conftest import FIXTURE_PHOTOS, REPO

FIXTURE_MODEL = "isnet-real.safetensors"
OURS = {"RMBGLoadModel": "Load RMBG", "RMBGRemoveBackground": "Remove Background (RMBG)",
        "RMBGApplyMask": "Apply Mask (RMBG)", "RMBGRefineMask": "Refine Mask (RMBG)"}
INPAINT_CHECKPOINT = "512-inpainting-ema.safetensors"


@pytest.fixture(scope="module")
def comfyui():
    found = locate_comfyui()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def server(comfyui, fixture_dir, tmp_path_factory):
    checkout, python = comfyui
    base = tmp_path_factory.mktemp("comfyui")
    (base / "models" / "rmbg").mkdir(parents=True)
    (base / "models" / "rmbg" / "README.md").write_text("not a checkpoint: must not be offered")
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / INPAINT_CHECKPOINT).write_bytes(b"")  # a name for validation only
    inputs = [fixture_dir / f"{name}.png" for name in FIXTURE_PHOTOS] + [fixture_dir / "chelsea.mask.png"]
    with ComfyUIServer(checkout, python, base, models={FIXTURE_MODEL: fixture_dir / "model.safetensors"},
                       inputs=inputs) as running:
        yield running


def loader() -> dict:
    return {"class_type": "RMBGLoadModel", "inputs": {"model": FIXTURE_MODEL, "device": "auto", "dtype": "auto"}}


def remover(image: list, batch_size: int = 1, background: str = "alpha", color: str = "#FFFFFF",
            estimate_foreground: bool | None = None) -> dict:
    """Remove Background; ``estimate_foreground`` None leaves the optional input out (old prompts)."""
    inputs = {"rmbg_model": ["1", 0], "image": image, "batch_size": batch_size, "background": background,
              "background_color": color}
    if estimate_foreground is not None:
        inputs["estimate_foreground"] = estimate_foreground
    return {"class_type": "RMBGRemoveBackground", "inputs": inputs}


def save(images: list, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def saved_as(values: torch.Tensor) -> np.ndarray:
    """What SaveImage writes for float values in [0, 1]: ``clip(255 * x)`` truncated to uint8."""
    return np.clip(255.0 * values.numpy(), 0, 255).astype(np.uint8).astype(int)


def succeeded(entry: dict) -> dict:
    assert entry["status"]["status_str"] == "success", json.dumps(events(entry), indent=1)[:3000]
    return entry


# ---------------------------------------------------------------------------------------------- loading

def test_pack_loads_and_object_info_lists_the_nodes(server):
    failures = [line for line in server.log().splitlines()
                if f"custom_nodes/{PACK_NAME}" in line and ("IMPORT FAILED" in line or "Cannot import" in line)]
    assert failures == []
    assert "Unable to parse pyproject.toml" not in server.log(), "ComfyUI reads our [tool.comfy]"
    info = server.object_info()
    ours = {key: entry for key, entry in info.items() if entry.get("python_module") == f"custom_nodes.{PACK_NAME}"}
    assert {key: entry["display_name"] for key, entry in ours.items()} == OURS
    for entry in ours.values():
        for part in entry["input"].values():
            for name, spec in part.items():
                assert spec[1].get("tooltip"), f"{entry['name']}.{name} has no tooltip"
    choices = ours["RMBGLoadModel"]["input"]["required"]["model"][0]
    assert choices[0] == "briaai/RMBG-1.4"
    # The checkout's own extra_model_paths.yaml (always read) may map more rmbg folders: judge ours only.
    folder = server.base / "models" / "rmbg"
    assert [name for name in choices if (folder / name).exists()] == [FIXTURE_MODEL], "checkpoints only, no README.md"
    assert [name for name in server.get_json("/models/rmbg") if (folder / name).exists()] == [FIXTURE_MODEL]


def test_comfy_glue_in_process(comfyui, tmp_path):
    """Model management, progress hook and Cancel, against ComfyUI's own modules (ComfyUI's Python)."""
    from safetensors.torch import save_file

    from conftest import random_state_dict

    checkout, python = comfyui
    folder = tmp_path / "models" / "rmbg"
    folder.mkdir(parents=True)
    save_file(random_state_dict(5), str(folder / "model.safetensors"))
    done = subprocess.run([str(python), str(REPO / "tests" / "comfyui_glue_check.py"), str(checkout), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["rmbg_folders"] == [str(folder)], "only the check's own models/rmbg, never the checkout's"
    assert "README.md" not in seen["choices"], "only checkpoint files are offered"
    assert seen["choices"] == ["briaai/RMBG-1.4", "model.safetensors"]
    assert seen["rmbg_extensions"] == [".pt", ".pth", ".safetensors"]
    assert seen["one_patcher_per_model"]
    assert (seen["device"], seen["dtype"]) == ("cpu", "torch.float32"), "ComfyUI --cpu: its device, float32"
    assert seen["progress"] == [[2, 5], [4, 5], [5, 5]], "the progress bar advances per chunk"
    assert seen["shapes"] == [[5, 40, 30, 4], [5, 40, 30]]
    assert seen["loaded_after_run"] == ["RMBG"], "ComfyUI manages the weights (its log: 'Requested to load RMBG')"
    assert seen["loaded_after_unload"] == [] and seen["loaded_after_rerun"] == ["RMBG"]
    assert seen["rerun_max_diff"] < 1e-5
    assert seen["cancel"] == "raised" and seen["progress_before_cancel"] == [[2, 5]], "Cancel stops between chunks"


# ---------------------------------------------------------------------------------------------- workflows

def test_workflow_masks_match_the_reference(server, fixture_dir):
    """LoadImage -> Load RMBG -> Remove Background -> SaveImage, and MASK -> MaskToImage -> SaveImage."""
    prompt = {"1": loader()}
    for index, name in enumerate(FIXTURE_PHOTOS, start=1):
        b = 10 * index
        prompt.update({
            str(b): {"class_type": "LoadImage", "inputs": {"image": f"{name}.png"}},
            str(b + 1): remover([str(b), 0]),
            str(b + 2): save([str(b + 1), 0], f"cutout_{name}"),
            str(b + 3): {"class_type": "MaskToImage", "inputs": {"mask": [str(b + 1), 1]}},
            str(b + 4): save([str(b + 3), 0], f"mask_{name}"),
        })
    entry = succeeded(server.run(prompt))
    for index, name in enumerate(FIXTURE_PHOTOS, start=1):
        (cutout_file,), (mask_file,) = server.outputs(entry, str(10 * index + 2)), server.outputs(entry, str(10 * index + 4))
        mask, cutout = pixels(mask_file), pixels(cutout_file)
        expected = pixels(fixture_dir / f"{name}.mask.png")
        assert mask.shape == expected.shape + (3,)
        assert np.abs(mask[..., 0] - expected).max() <= 1, f"{name}: mask differs from the reference"
        assert cutout.shape == expected.shape + (4,)
        assert np.array_equal(cutout[..., 3], mask[..., 0]), "the cutout's alpha is the mask"
        assert np.array_equal(cutout[..., :3], pixels(fixture_dir / f"{name}.png")), "colours are kept"


def test_video_batch_in_chunks_with_progress(server, fixture_dir):
    """Five frames, four at a time (a 4 + 1 split): every frame equals the single-image result."""
    prompt = {
        "1": loader(),
        "2": {"class_type": "LoadImage", "inputs": {"image": "chelsea.png"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": 5}},
        "4": remover(["3", 0], batch_size=4, background="color", color="#00FF00"),
        "5": save(["4", 0], "frames"),
        "6": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 1]}},
        "7": save(["6", 0], "frame_masks"),
    }
    prompt_id = server.queue(prompt)
    entry = succeeded(server.wait(prompt_id))
    masks, frames = server.outputs(entry, "7"), server.outputs(entry, "5")
    assert len(masks) == len(frames) == 5
    expected = pixels(fixture_dir / "chelsea.mask.png")
    photo = pixels(fixture_dir / "chelsea.png").astype(float)
    for mask_file, frame_file in zip(masks, frames):
        mask = pixels(mask_file)[..., 0]
        assert np.abs(mask - expected).max() <= 1
        weight = mask[..., None] / 255.0
        on_green = photo * weight + np.array([0, 255, 0]) * (1 - weight)
        # Both files are truncated to 8 bits: the saved mask by up to 1 level, the frame by up to 1 more.
        assert np.abs(pixels(frame_file) - on_green).max() <= 2
    assert server.events.progress(prompt_id, "4") == [(4, 5), (5, 5)]


def test_cancel_is_honored_between_chunks(server):
    prompt = {
        "1": loader(),
        "2": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": 30}},
        "4": remover(["3", 0], batch_size=1),
        "5": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 1]}},
        "6": save(["5", 0], "cancelled"),
    }
    prompt_id = server.queue(prompt)
    deadline = time.monotonic() + 300
    while not server.events.progress(prompt_id, "4") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.events.progress(prompt_id, "4"), "no progress from Remove Background"
    server.interrupt(prompt_id)
    entry = server.wait(prompt_id, timeout=120)
    interrupted = events(entry).get("execution_interrupted")
    assert interrupted and interrupted["node_type"] == "RMBGRemoveBackground", events(entry)
    assert len(server.events.progress(prompt_id, "4")) < 30, "it stopped before the end of the batch"
    assert server.outputs(entry, "6") == []


def test_weights_come_back_after_comfyui_unloads_them(server, fixture_dir):
    def run(photo: str) -> None:
        prompt = {"1": loader(), "2": {"class_type": "LoadImage", "inputs": {"image": photo}},
                  "3": remover(["2", 0]), "4": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 1]}},
                  "5": save(["4", 0], f"reload_{photo}")}
        entry = succeeded(server.run(prompt))
        expected = pixels(fixture_dir / photo.replace(".png", ".mask.png"))
        assert np.abs(pixels(server.outputs(entry, "5")[0])[..., 0] - expected).max() <= 1

    def loads() -> int:
        """ComfyUI's log lines for loading our weights, which name the model as a user knows it."""
        return len(re.findall(r"^Requested to load RMBG$", server.log(), flags=re.MULTILINE))

    run("astronaut.png")
    before = loads()
    assert before >= 1, "the weights go through ComfyUI's model management"
    assert server.request("POST", "/free", {"unload_models": True})[0] == 200
    time.sleep(3)
    run("coffee.png")
    assert loads() == before + 1, "reloaded after the unload"


# ---------------------------------------------------------------------------------------------- edge options

REFINE = {"threshold": 0.5, "keep_largest": True}
REFINE_WIDGETS = {"threshold": 0.0, "fill_holes": False, "keep_largest": False, "min_area": 0.0, "grow": 0,
                  "feather": 0.0, "invert": False, "levels": "0, 1"}


def refiner(mask: list, **options) -> dict:
    return {"class_type": "RMBGRefineMask", "inputs": {"mask": mask, **REFINE_WIDGETS, **options}}


def test_refine_mask_workflow_equals_apply_refinement(server, fixture_dir):
    """Refine Mask in the server equals rmbg_core.apply_refinement within one grey level, on a batch of
    two different masks (the fixture's chelsea mask, and the same flipped upside down), each on its own.

    The fixture's mask is loaded as it is (LoadImage, red channel), so both sides refine the same values."""
    from rmbg_core import Refinement, apply_refinement
    from rmbg_core.model.images import mask_to_uint8

    options = {**REFINE, "fill_holes": True, "grow": -2, "feather": 1.5, "levels": "0.05, 0.95"}
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "chelsea.mask.png"}},
        "2": {"class_type": "ImageFlip", "inputs": {"image": ["1", 0], "flip_method": "x-axis: vertically"}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}},
        "5": refiner(["4", 0], **REFINE),
        "6": {"class_type": "MaskToImage", "inputs": {"mask": ["5", 0]}},
        "7": save(["6", 0], "refined"),
        "8": refiner(["4", 0], **options),
        "9": {"class_type": "MaskToImage", "inputs": {"mask": ["8", 0]}},
        "10": save(["9", 0], "refined_more"),
    }
    entry = succeeded(server.run(prompt))
    reference = torch.from_numpy(pixels(fixture_dir / "chelsea.mask.png")).to(torch.float32) / 255.0
    batch = torch.stack((reference, reference.flip(0)))
    for node, chosen in (("7", REFINE), ("10", options)):
        expected = mask_to_uint8(apply_refinement(batch, Refinement.from_options(chosen))).numpy().astype(int)
        saved = server.outputs(entry, node)
        assert len(saved) == 2, "one mask per frame of the batch"
        for frame, path in enumerate(saved):
            assert np.abs(pixels(path)[..., 0] - expected[frame]).max() <= 1, (chosen, frame)
    assert set(np.unique(pixels(server.outputs(entry, "7")[0])[..., 0])) == {0, 255}, "thresholded"


def test_refine_and_foreground_after_remove_background(server, fixture_dir, real_model):
    """The chain a user builds: Remove Background (estimate_foreground on) -> Refine Mask, and Apply Mask with
    estimate_foreground on the fixture's mask. Each output equals rmbg_core run here on the same float
    input (the server's masks may differ by float rounding: a pixel at the threshold may flip), and the
    estimated colours really take the old background out of the edge."""
    from rmbg_core import Refinement, apply_refinement
    from rmbg_core.edges.compose import apply_mask
    from rmbg_core.model.images import mask_to_uint8
    from benchmarks.quality import edge_bleed

    prompt = {
        "1": loader(),
        "2": {"class_type": "LoadImage", "inputs": {"image": "chelsea.png"}},
        "3": remover(["2", 0], estimate_foreground=True),
        "4": save(["3", 0], "clean_cutout"),
        "5": refiner(["3", 1], **REFINE),
        "6": {"class_type": "MaskToImage", "inputs": {"mask": ["5", 0]}},
        "7": save(["6", 0], "refined_prediction"),
        "8": {"class_type": "LoadImageMask", "inputs": {"image": "chelsea.mask.png", "channel": "red"}},
        "9": {"class_type": "RMBGApplyMask", "inputs": {"image": ["2", 0], "mask": ["8", 0], "mode": "color",
                                                        "background_color": "#FF00FF", "invert": False,
                                                        "estimate_foreground": True}},
        "10": save(["9", 0], "clean_composite"),
    }
    entry = succeeded(server.run(prompt))
    photo8 = pixels(fixture_dir / "chelsea.png")
    photo = torch.from_numpy(photo8).to(torch.float32)[None] / 255.0
    predicted = real_model.predict(photo)[0]

    refined = pixels(server.outputs(entry, "7")[0])[..., 0]
    expected = mask_to_uint8(apply_refinement(predicted, Refinement(**REFINE))).numpy().astype(int)
    flipped = np.abs(refined - expected) > 1
    assert np.all(np.abs(predicted.numpy()[flipped] - REFINE["threshold"]) < 1e-3), "only pixels at the threshold"

    cutout = pixels(server.outputs(entry, "4")[0])
    expected_cutout = saved_as(apply_mask(photo, predicted[None], estimate_foreground=True)[0])
    assert np.abs(cutout - expected_cutout).max() <= 1
    image, alpha, colors = (torch.from_numpy(a.astype(np.uint8)) for a in (photo8, cutout[..., 3], cutout[..., :3]))
    before, after = edge_bleed(image, alpha, image), edge_bleed(image, alpha, colors)
    assert after.levels < 0.6 * before.levels, (before, after)

    reference = torch.from_numpy(pixels(fixture_dir / "chelsea.mask.png")).to(torch.float32) / 255.0
    composite = pixels(server.outputs(entry, "10")[0])
    expected_composite = saved_as(apply_mask(photo, reference[None], background="#FF00FF", estimate_foreground=True)[0])
    assert np.abs(composite - expected_composite).max() <= 1


# ---------------------------------------------------------------------------------------------- wrong inputs

def test_bad_color_is_refused_before_running(server):
    prompt = {"1": loader(), "2": {"class_type": "LoadImage", "inputs": {"image": "chelsea.png"}},
              "3": remover(["2", 0], background="color", color="green-ish"), "4": save(["3", 0], "never")}
    with pytest.raises(PromptRejected) as rejected:
        server.queue(prompt)
    error = rejected.value.body["node_errors"]["3"]
    assert error["class_type"] == "RMBGRemoveBackground"
    assert "background colour 'green-ish' is not a hex colour like '#RRGGBB'" in error["errors"][0]["details"]


def test_mismatched_mask_batch_is_a_node_error(server):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "chelsea.png"}},
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 3}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 2}},
        "4": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}},
        "5": {"class_type": "RMBGApplyMask", "inputs": {"image": ["2", 0], "mask": ["4", 0], "mode": "alpha",
                                                        "background_color": "#FFFFFF", "invert": False}},
        "6": save(["5", 0], "never"),
    }
    entry = server.run(prompt)
    error = events(entry)["execution_error"]
    assert error["node_type"] == "RMBGApplyMask"
    assert error["exception_message"].strip() == ("mask batch of 2 does not match image batch of 3: give one mask "
                                                  "for all images, or one mask per image")


def test_hub_model_offline_is_a_node_error(server):
    prompt = {"1": {"class_type": "RMBGLoadModel", "inputs": {"model": "briaai/RMBG-1.4", "device": "auto",
                                                              "dtype": "auto"}},
              "2": {"class_type": "LoadImage", "inputs": {"image": "chelsea.png"}},
              "3": remover(["2", 0]), "4": save(["3", 0], "never")}
    error = events(server.run(prompt))["execution_error"]
    assert error["node_type"] == "RMBGLoadModel"
    assert error["exception_type"] == "rmbg-kit.HubModelUnavailable", "not the pack's path on disk"
    message = error["exception_message"].strip()
    # The first rmbg folder: ours, unless the checkout's extra_model_paths.yaml maps one (it comes first).
    named = re.match(r"briaai/RMBG-1\.4 is not in (/\S+/RMBG-1\.4) and cannot be downloaded: ComfyUI runs offline "
                     r"\(HF_HUB_OFFLINE=1\)\. Put model\.safetensors from \S+ into that folder, or accept", message)
    assert named and "\n" not in message, message
    assert not Path(named.group(1)).exists(), "the failed attempt leaves no RMBG-1.4/.cache/huggingface behind"


# ---------------------------------------------------------------------------------------------- examples

def make_video(server) -> str:
    """A three-frame MP4 in input/, made by ComfyUI's own video nodes."""
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "chelsea.png"}},
              "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                           "width": 224, "height": 160, "crop": "disabled"}},
              "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": 3}},
              "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": 10.0}},
              "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "clip",
                                                          "format": "auto", "codec": "auto"}}}
    (video,) = server.outputs(succeeded(server.run(prompt)), "5")
    (server.base / "input" / "clip.mp4").write_bytes(video.read_bytes())
    return "clip.mp4"


@pytest.mark.parametrize("name", ["rmbg_cutout", "rmbg_mask_to_inpaint", "rmbg_video_frames"])
def test_example_workflow_loads_and_runs(server, name):
    """Converted as the frontend does (node types, links, widget values checked against /object_info),
    accepted by /prompt; the cutout and video examples also run (with the fixture weights)."""
    workflow = json.loads((REPO / "example_workflows" / f"{name}.json").read_text())
    prompt = to_api(workflow, server.object_info())
    for node in prompt.values():
        if node["class_type"] == "RMBGLoadModel":
            node["inputs"]["model"] = FIXTURE_MODEL
        elif node["class_type"] == "LoadImage":
            node["inputs"]["image"] = "chelsea.png"
        elif node["class_type"] == "LoadVideo":
            node["inputs"]["file"] = make_video(server)
    entry = server.run(prompt)
    if name == "rmbg_mask_to_inpaint":  # no diffusion model here: only the checkpoint may fail
        error = events(entry).get("execution_error")
        assert error is None or error["node_type"] == "CheckpointLoaderSimple", error
        return
    succeeded(entry)
    saved = [node_id for node_id, node in prompt.items() if node["class_type"] in ("SaveImage", "SaveVideo")]
    assert saved and all(server.outputs(entry, node_id) for node_id in saved)
