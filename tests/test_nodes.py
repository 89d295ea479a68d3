"""The ComfyUI nodes as plain callables on tensors, outside ComfyUI (the comfy glue falls back).

The real-server behaviour (object_info, workflows, offloading, Cancel) is in test_comfyui_integration.py.
"""

import inspect
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import rmbg_core.cpu.buffer_pool as buffer_pool
from conftest import REPO, SMALL_INPUT, random_state_dict
from pack_import import import_pack

NODE_NAMES = {
    "RMBGLoadModel": "Load RMBG",
    "RMBGRemoveBackground": "Remove Background (RMBG)",
    "RMBGApplyMask": "Apply Mask (RMBG)",
    "RMBGRefineMask": "Refine Mask (RMBG)",
}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def frames(count, height=36, width=28, channels=3, seed=0):
    return torch.rand(count, height, width, channels, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def managed(pack, random_model):
    """Random-weight IS-Net at a small working size: plumbing, fast."""
    return pack.nodes.model_management.ManagedModel(random_model, input_size=SMALL_INPUT)


@pytest.fixture(scope="module")
def remove(pack):
    return pack.NODE_CLASS_MAPPINGS["RMBGRemoveBackground"]().remove


@pytest.fixture(scope="module")
def apply(pack):
    return pack.NODE_CLASS_MAPPINGS["RMBGApplyMask"]().apply


@pytest.fixture(scope="module")
def refine(pack):
    return pack.NODE_CLASS_MAPPINGS["RMBGRefineMask"]().refine


# ---------------------------------------------------------------------------------------------- declarations

def test_mappings(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(NODE_NAMES)
    assert pack.NODE_DISPLAY_NAME_MAPPINGS == NODE_NAMES


@pytest.mark.parametrize("key", sorted(NODE_NAMES))
def test_input_types_are_valid(pack, key):
    node = pack.NODE_CLASS_MAPPINGS[key]
    declared = node.INPUT_TYPES()
    assert set(declared) <= {"required", "optional", "hidden"} and declared["required"]
    inputs = {**declared["required"], **declared.get("optional", {})}
    for name, spec in inputs.items():
        kind, options = spec
        assert options.get("tooltip"), f"{key}.{name} has no tooltip"
        if isinstance(kind, list):
            assert kind and all(isinstance(choice, str) for choice in kind)
            assert options.get("default", kind[0]) in kind, f"{key}.{name}: default not a choice"
        elif kind in ("INT", "FLOAT"):
            assert options["min"] <= options["default"] <= options["max"]
        else:
            assert isinstance(kind, str) and kind.isupper()
    parameters = inspect.signature(getattr(node, node.FUNCTION)).parameters
    assert list(parameters)[1:] == list(inputs), "the function takes exactly the declared inputs, in order"
    for name in declared.get("optional", {}):
        assert parameters[name].default == inputs[name][1]["default"], f"{key}.{name}: defaults disagree"
    assert isinstance(node.RETURN_TYPES, tuple)
    assert len(node.RETURN_NAMES) == len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES)
    assert node.DESCRIPTION and node.CATEGORY


@pytest.mark.parametrize("key", sorted(NODE_NAMES))
def test_widgets_read_like_core_nodes(pack, key):
    """Tooltips start like sentences (a capital, a number or a quoted value such as 'auto', never a
    lower-case word); switches show words (label_on/label_off), not ComfyUI's bare true/false."""
    node = pack.NODE_CLASS_MAPPINGS[key]
    declared = node.INPUT_TYPES()
    inputs = {**declared["required"], **declared.get("optional", {})}
    texts = {f"input {name}": options["tooltip"] for name, (_, options) in inputs.items()}
    texts.update({f"output {index}": text for index, text in enumerate(node.OUTPUT_TOOLTIPS)})
    texts["DESCRIPTION"] = node.DESCRIPTION
    for where, text in texts.items():
        assert not text[0].islower(), f"{key} {where}: {text!r} does not start a sentence"
    for name, (kind, options) in inputs.items():
        if kind == "BOOLEAN":
            assert options.get("label_on") and options.get("label_off"), f"{key}.{name} shows true/false"


def test_model_socket_type_is_shared(pack):
    loader, remover = pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"], pack.NODE_CLASS_MAPPINGS["RMBGRemoveBackground"]
    assert loader.RETURN_TYPES == (remover.INPUT_TYPES()["required"]["rmbg_model"][0],)


# ---------------------------------------------------------------------------------------------- Remove Background

@pytest.mark.parametrize("count", [1, 16])
def test_remove_background_shapes_dtypes_ranges(managed, remove, count):
    batch = frames(count)
    image, mask = remove(managed, batch, batch_size=4)
    assert image.shape == (count, 36, 28, 4) and mask.shape == (count, 36, 28)
    assert image.dtype == mask.dtype == torch.float32
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    assert torch.equal(image[..., :3], batch), "the cutout keeps the input colours"
    assert torch.equal(image[..., 3], mask), "the cutout's alpha is the mask"


def test_results_do_not_depend_on_batch_size(managed, remove):
    batch = frames(16, seed=1)
    chunked, whole = (remove(managed, batch, batch_size=size)[1] for size in (3, 16))
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_network_sees_at_most_batch_size_frames(managed, remove):
    """What bounds memory: a 16-frame batch reaches the network 4 frames at a time."""
    seen = []
    handle = managed.model.network.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        remove(managed, frames(16, seed=2), batch_size=4)
    finally:
        handle.remove()
    assert seen == [4, 4, 4, 4]


def test_remove_background_gives_the_cpu_buffers_back(managed, remove, monkeypatch):
    """ComfyUI runs other models between runs: activation buffers are reused across the chunks of
    one run and do not outlive it."""
    monkeypatch.setattr(buffer_pool, "MIN_POOLED_BYTES", 0)  # the small test size pools too
    pool = managed.model.network.buffer_pool
    held = []
    handle = managed.model.network.register_forward_hook(lambda *args: held.append(pool.nbytes))
    try:
        remove(managed, frames(8, seed=5), batch_size=4)
    finally:
        handle.remove()
    assert held[0] > 0 and held[1] == held[0]
    assert pool.nbytes == 0


def test_color_background(managed, remove):
    batch = frames(2, seed=3)
    image, mask = remove(managed, batch, batch_size=2, background="color", background_color="#00FF00")
    assert image.shape == (2, 36, 28, 3)
    green = torch.tensor([0.0, 1.0, 0.0])
    torch.testing.assert_close(image, batch * mask[..., None] + green * (1 - mask[..., None]))


def test_rgba_input_keeps_its_alpha(managed, remove):
    batch = frames(1, channels=4, seed=4)
    image, mask = remove(managed, batch)
    torch.testing.assert_close(image[..., 3], mask * batch[..., 3])
    torch.testing.assert_close(mask, remove(managed, batch[..., :3])[1])


def test_bad_color_fails_before_inference(managed, remove):
    def fail(*args):
        raise AssertionError("the network ran")

    handle = managed.model.network.register_forward_pre_hook(fail)
    try:
        with pytest.raises(ValueError, match="not a hex colour like '#RRGGBB'"):
            remove(managed, frames(1), background="color", background_color="green")
    finally:
        handle.remove()


def test_bad_color_is_a_validation_error(pack):
    for key in ("RMBGRemoveBackground", "RMBGApplyMask"):
        validate = pack.NODE_CLASS_MAPPINGS[key].VALIDATE_INPUTS
        assert validate(background_color="#12ab3C") is True
        assert validate(background_color=None) is True, "a linked colour is checked when it runs"
        assert "not a hex colour" in validate(background_color="#1234")


def test_masks_match_the_reference_with_real_weights(pack, real_model, fixture_dir, remove):
    """The node path (IMAGE float in, MASK out, SaveImage's truncation) reproduces the model card."""
    managed = pack.nodes.model_management.ManagedModel(real_model)
    pixels = np.asarray(Image.open(fixture_dir / "chelsea.png").convert("RGB"))
    _, mask = remove(managed, torch.from_numpy(pixels.astype(np.float32) / 255.0)[None])
    saved = (mask[0].numpy() * 255).clip(0, 255).astype(np.uint8).astype(int)
    expected = np.asarray(Image.open(fixture_dir / "chelsea.mask.png")).astype(int)
    assert np.abs(saved - expected).max() <= 1


# ---------------------------------------------------------------------------------------------- Apply Mask

def test_apply_mask_broadcasts_one_mask(apply):
    batch, mask = frames(5), torch.rand(1, 36, 28)
    (out,) = apply(batch, mask)
    assert out.shape == (5, 36, 28, 4)
    assert all(torch.equal(alpha, mask[0]) for alpha in out[..., 3])


def test_apply_mask_resizes_the_mask(apply):
    (out,) = apply(frames(2), torch.ones(1, 9, 7), "color", "#000000")
    assert out.shape == (2, 36, 28, 3)
    torch.testing.assert_close(out, frames(2))


def test_apply_mask_mismatched_batches(apply):
    with pytest.raises(ValueError, match="mask batch of 2 does not match image batch of 3"):
        apply(frames(3), torch.rand(2, 36, 28))


def test_apply_mask_invert_and_color(apply):
    batch, mask = frames(2), torch.rand(2, 36, 28)
    (kept,) = apply(batch, mask, "alpha", "#FFFFFF", True)
    torch.testing.assert_close(kept[..., 3], 1 - mask)
    (white,) = apply(batch, mask, "color", "#FFFFFF", False)
    torch.testing.assert_close(white, batch * mask[..., None] + (1 - mask[..., None]))


def test_apply_mask_accepts_loadimage_style_mask(apply):
    """LoadImage gives MASK = 1 - alpha: with invert, Apply Mask restores the file's own alpha."""
    alpha = torch.rand(1, 36, 28)
    (out,) = apply(frames(1), 1.0 - alpha, "alpha", "#FFFFFF", True)
    torch.testing.assert_close(out[..., 3], alpha)


def test_apply_mask_estimate_foreground(pack, apply):
    batch, mask = frames(3, seed=5), torch.rand(3, 36, 28)
    (plain,) = apply(batch, mask, "color", "#FF00FF", False)
    (clean,) = apply(batch, mask, "color", "#FF00FF", False, True)
    expected = pack.rmbg_core.edges.compose.apply_mask(batch, mask, background="#FF00FF", estimate_foreground=True)
    torch.testing.assert_close(clean, expected, atol=0, rtol=0)
    assert not torch.allclose(clean, plain), "the colours are the estimate, not the photo's"
    (cut,) = apply(batch, mask[:1], "alpha", "#FFFFFF", False, True)
    colors = pack.rmbg_core.estimate_foreground(batch, mask[:1].expand(3, -1, -1))
    torch.testing.assert_close(cut[..., :3], colors, atol=0, rtol=0)
    assert all(torch.equal(alpha, mask[0]) for alpha in cut[..., 3]), "one mask for the batch; alpha unchanged"


def test_remove_background_estimate_foreground(pack, managed, remove):
    batch = frames(4, seed=6)
    image, mask = remove(managed, batch, 4, "alpha", "#FFFFFF", True)
    assert torch.equal(mask, remove(managed, batch, 4)[1]), "the mask is not changed"
    torch.testing.assert_close(image[..., :3], pack.rmbg_core.estimate_foreground(batch, mask), atol=0, rtol=0)
    torch.testing.assert_close(image[..., 3], mask, atol=0, rtol=0)
    flat, _ = remove(managed, batch, 4, "color", "#00FF00", True)
    expected = pack.rmbg_core.edges.compose.apply_mask(batch, mask, background="#00FF00", estimate_foreground=True)
    torch.testing.assert_close(flat, expected, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------- Refine Mask

def blobs(count=3, height=40, width=30, seed=0):
    """Soft masks with a big blob, a small speck and a hole: something for every refinement."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(float(height)), torch.arange(float(width)), indexing="ij")
    masks = []
    for _ in range(count):
        cy, cx = (torch.rand(2, generator=generator) * 6 + torch.tensor([height / 2 - 3, width / 2 - 3])).tolist()
        blob = (1.0 - (((ys - cy) ** 2 + (xs - cx) ** 2).sqrt() - 9) / 3).clamp(0, 1)
        blob[int(cy) - 1:int(cy) + 2, int(cx) - 1:int(cx) + 2] = 0.0
        blob[2:5, 2:5] = 0.8
        masks.append(blob)
    return torch.stack(masks)


def test_refine_mask_options_are_the_core_options(pack):
    """Same names, the core's help as tooltips, the core's limits as widget limits; the order of use, except
    that options added after the node was published (levels) come last, as saved workflows hold widget
    values by position."""
    refine_module = pack.rmbg_core.edges.refine
    optional = pack.NODE_CLASS_MAPPINGS["RMBGRefineMask"].INPUT_TYPES()["optional"]
    published = ("threshold", "fill_holes", "keep_largest", "min_area", "grow", "feather", "invert")
    assert tuple(optional)[:len(published)] == published
    assert sorted(optional) == sorted(refine_module.option_names())
    for name, text in refine_module.option_help().items():
        assert optional[name][1]["tooltip"].startswith(text[:1].upper() + text[1:])
    assert (optional["grow"][1]["min"], optional["grow"][1]["max"]) == (-refine_module.MAX_GROW, refine_module.MAX_GROW)
    assert optional["feather"][1]["max"] == refine_module.MAX_FEATHER
    limits = {name: spec[1]["max"] for name, spec in optional.items() if spec[0] in ("INT", "FLOAT")}
    refine_module.Refinement.from_options(limits)  # the largest values a widget allows are valid in the core
    assert pack.nodes.options.refinement_from_widgets(
        **{name: spec[1]["default"] for name, spec in optional.items()}).is_identity, "defaults change nothing"


def test_refine_mask_defaults_pass_the_mask_through(refine):
    masks = blobs()
    (out,) = refine(masks)
    assert torch.equal(out, masks)


@pytest.mark.parametrize("options", [
    {"threshold": 0.5, "keep_largest": True},
    {"fill_holes": True, "min_area": 0.05, "grow": 2},
    {"grow": -1, "feather": 1.5, "invert": True},
    {"threshold": 0.3, "fill_holes": True, "keep_largest": True, "grow": 1, "feather": 0.8},
    {"levels": "0.05, 0.95"}, {"levels": "0.1,0.6", "keep_largest": True, "feather": 1.0},
], ids=lambda options: ",".join(options))
def test_refine_mask_is_apply_refinement_on_each_mask(pack, refine, options):
    masks = blobs(seed=len(options))
    (out,) = refine(masks, **options)
    refinement = pack.rmbg_core.Refinement.from_options(options)
    assert out.shape == masks.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, pack.rmbg_core.apply_refinement(masks, refinement), atol=0, rtol=0)
    for frame, single in zip(out, masks):  # each mask on its own (the blur may round differently in a batch)
        torch.testing.assert_close(frame, pack.rmbg_core.apply_refinement(single, refinement), atol=1e-6, rtol=0)
    assert not torch.equal(out, masks)


def test_refine_mask_threshold_zero_means_not_set(pack, refine):
    masks = blobs(1)
    assert torch.equal(refine(masks, threshold=0.0, keep_largest=True)[0],
                       pack.rmbg_core.apply_refinement(masks, pack.rmbg_core.Refinement(keep_largest=True)))
    binary = refine(masks, threshold=0.5)[0]
    assert set(binary.unique().tolist()) == {0.0, 1.0}


def test_refine_mask_levels_widget_is_the_core_levels(pack, refine):
    """'LOW, HIGH' text gives the core's levels (a solid subject); the default '0, 1' is off."""
    masks = blobs(2)
    assert pack.NODE_CLASS_MAPPINGS["RMBGRefineMask"].INPUT_TYPES()["optional"]["levels"][0] == "STRING"
    assert refine(masks, levels="0, 1")[0] is masks
    out = refine(masks, levels="0.05, 0.7")[0]
    expected = pack.rmbg_core.apply_refinement(masks, pack.rmbg_core.Refinement(levels=(0.05, 0.7)))
    assert torch.equal(out, expected) and bool((out[masks >= 0.7] == 1.0).all())
    with pytest.raises(ValueError, match="levels must be two numbers LOW,HIGH"):
        refine(masks, levels="0.9, 0.1")


def test_refine_mask_single_mask_and_bad_linked_value(pack, refine):
    mask = blobs(1)[0]
    assert refine(mask, fill_holes=True)[0].shape == mask.shape
    with pytest.raises(ValueError, match="feather must be"):
        refine(mask, feather=-1.0)  # a value arriving through a link is checked by the core


# ---------------------------------------------------------------------------------------------- Load RMBG

class FolderPaths:
    """The three ``folder_paths`` functions the loader calls, over one folder (ComfyUI's real module
    is exercised by test_comfyui_integration.py)."""

    def __init__(self, folder):
        self.folder = folder

    def get_folder_paths(self, name):
        assert name == "rmbg"
        return [str(self.folder)]

    def get_filename_list(self, name):
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*.safetensors"))

    def get_full_path(self, name, filename):
        path = self.folder / filename
        return str(path) if path.is_file() else None


@pytest.fixture
def models_dir(pack, tmp_path, monkeypatch):
    monkeypatch.setattr(pack.nodes.model_folder, "folder_paths", FolderPaths(tmp_path))
    return tmp_path


def test_loader_lists_the_folder_and_the_hub_model(pack, models_dir, checkpoint_file):
    (models_dir / "mine.safetensors").symlink_to(checkpoint_file)
    choices = pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"].INPUT_TYPES()["required"]["model"][0]
    assert choices == ["briaai/RMBG-1.4", "mine.safetensors"]


@pytest.mark.parametrize("dtype,expected", [("auto", torch.float32), ("bfloat16", torch.bfloat16)])
def test_loader_loads_a_checkpoint_from_the_folder(pack, models_dir, checkpoint_file, dtype, expected):
    (models_dir / "mine.safetensors").symlink_to(checkpoint_file)
    (loaded,) = pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]().load("mine.safetensors", "cpu", dtype)
    assert loaded.model.device == torch.device("cpu") and loaded.model.dtype == expected
    assert loaded.patcher is None, "outside ComfyUI nothing manages the weights"
    assert loaded.input_size == (1024, 1024)


def test_loader_keeps_one_model_per_checkpoint_device_and_dtype(pack, models_dir, checkpoint_file):
    """Two loaders naming the same checkpoint share one model (so one ModelPatcher in ComfyUI), which owns
    its weights: ComfyUI moves them itself."""
    (models_dir / "mine.safetensors").symlink_to(checkpoint_file)
    loader = pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]()
    (first,) = loader.load("mine.safetensors", "cpu", "float32")
    (second,) = loader.load("mine.safetensors", "cpu", "float32")
    (other,) = loader.load("mine.safetensors", "cpu", "bfloat16")
    assert first is second and first is not other
    elsewhere = pack.rmbg_core.load_model(checkpoint_file, device="cpu", dtype="float32")
    assert elsewhere.network.conv_in.weight.data_ptr() != first.model.network.conv_in.weight.data_ptr(), \
        "its tensors are its own, not shared with other loads of the checkpoint"


def test_loader_auto_device_outside_comfyui_is_rmbg_core_auto(pack, models_dir, checkpoint_file, monkeypatch):
    """With a (faked) GPU present, "auto" must pick it, so the choice shows on a CPU-only machine too;
    the load itself is recorded and done on the CPU."""
    assert not pack.nodes.comfy_runtime.in_comfyui()
    (models_dir / "mine.safetensors").symlink_to(checkpoint_file)
    loader = sys.modules[f"{pack.__name__}.nodes.load_model"]
    load_managed, requested = loader.load_managed, []

    def recording_load(path, device, dtype):
        requested.append((device, dtype))
        return load_managed(path, torch.device("cpu"), "float32")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loader, "load_managed", recording_load)
    (loaded,) = pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]().load("mine.safetensors", "auto", "auto")
    assert pack.rmbg_core.model.runtime.resolve_device("auto") == torch.device("cuda")
    assert requested == [(torch.device("cuda"), torch.float16)]
    assert loaded.model.source == str(models_dir / "mine.safetensors")


def test_loader_missing_file_names_the_folder(pack, models_dir):
    with pytest.raises(pack.rmbg_core.CheckpointError, match=re.escape(f"'gone.safetensors' not found in {models_dir}")):
        pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]().load("gone.safetensors", "cpu", "auto")


def test_hub_model_uses_the_copy_in_models_rmbg(pack, models_dir):
    (models_dir / "RMBG-1.4").mkdir()
    save_file(random_state_dict(3), str(models_dir / "RMBG-1.4" / "model.safetensors"))
    (loaded,) = pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]().load("briaai/RMBG-1.4", "cpu", "float32")
    assert loaded.model.source == str(models_dir / "RMBG-1.4" / "model.safetensors")


def test_hub_model_offline_says_what_to_do_in_comfyui(pack, models_dir):
    """Tests run with HF_HUB_OFFLINE=1: one line in ComfyUI's terms (the real folder to put the file
    into, or the licence and a log-in), not the Python API's; ComfyUI's report names the error by its
    class's module, which must not be the pack's path on disk; the attempt leaves no folder behind."""
    with pytest.raises(pack.rmbg_core.HubAccessError) as caught:
        pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]().load("briaai/RMBG-1.4", "cpu", "auto")
    message = str(caught.value)
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message
    assert f"is not in {models_dir / 'RMBG-1.4'} and" in message and "Put model.safetensors from" in message
    assert "accept the model's licence" in message and "hf auth login" in message
    assert "pass a local checkpoint" not in message and "local_files_only" not in message
    error_type = type(caught.value)
    assert f"{error_type.__module__}.{error_type.__qualname__}" == "rmbg-kit.HubModelUnavailable"
    assert list(models_dir.iterdir()) == [], "no RMBG-1.4/.cache/huggingface lock files are left"


def test_failed_hub_download_keeps_what_the_user_made(pack, models_dir):
    """A RMBG-1.4 folder the user made (with a note in it) stays; only the Hub client's .cache goes."""
    (models_dir / "RMBG-1.4").mkdir()
    (models_dir / "RMBG-1.4" / "where-from.txt").write_text("huggingface.co/briaai/RMBG-1.4")
    with pytest.raises(pack.rmbg_core.HubAccessError):
        pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]().load("briaai/RMBG-1.4", "cpu", "auto")
    assert sorted(path.name for path in models_dir.rglob("*")) == ["RMBG-1.4", "where-from.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_is_explained(pack, models_dir, checkpoint_file):
    (models_dir / "mine.safetensors").symlink_to(checkpoint_file)
    with pytest.raises(pack.rmbg_core.DeviceError, match="CUDA is not available"):
        pack.NODE_CLASS_MAPPINGS["RMBGLoadModel"]().load("mine.safetensors", "cuda", "auto")


# ---------------------------------------------------------------------------------------------- the package

def test_missing_dependency_costs_one_log_line_not_the_startup(caplog):
    name = "rmbg_kit_broken_pack"
    sys.modules[f"{name}.nodes"] = None  # makes `from .nodes import ...` raise ImportError
    try:
        with caplog.at_level(logging.ERROR):
            broken = import_pack(name)
    finally:
        del sys.modules[f"{name}.nodes"]
        sys.modules.pop(name, None)
    assert broken.NODE_CLASS_MAPPINGS == {} and broken.NODE_DISPLAY_NAME_MAPPINGS == {}
    lines = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(lines) == 1 and "RMBG nodes not loaded" in lines[0].getMessage()


def test_import_has_no_side_effects(tmp_path):
    """Importing the pack loads no model, contacts no hub, touches no GPU and writes nothing."""
    script = (
        f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "import torch\n"
        "from pack_import import import_pack\n"
        "assert len(import_pack().NODE_CLASS_MAPPINGS) == 4\n"
        "assert 'huggingface_hub' not in sys.modules, 'hub client imported'\n"
        "assert not torch.cuda.is_initialized(), 'CUDA initialised'\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert list(tmp_path.iterdir()) == []
