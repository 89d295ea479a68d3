"""Runs in a separate, isolated interpreter: uses an exported folder through transformers' remote code only.

Started by tests/test_export.py as ``python -I remote_code_child.py SPEC.json`` from an empty working
folder with ``HF_HUB_OFFLINE=1`` and a private ``HF_MODULES_CACHE``. The project's modules are
blocked on top of that (they may be installed, e.g. by run.sh), so any import of them by the
exported code fails. Prints one JSON object with what it measured; exits 1 if a check failed.
"""

import importlib
import importlib.abc
import json
import sys

PROJECT_MODULES = ("rmbg_core", "pipeline_rmbg", "modeling_rmbg", "configuration_rmbg")


class BlockProject(importlib.abc.MetaPathFinder):
    """Make the project's own modules unimportable, whatever is installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PROJECT_MODULES:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: the exported folder must not need it)")
        return None


sys.meta_path.insert(0, BlockProject())
report = {"failures": []}


def check(condition, what):
    if not condition:
        report["failures"].append(what)


def importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


report["project_importable"] = [name for name in PROJECT_MODULES if importable(name)]
check(not report["project_importable"], "project modules importable in the child")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForImageSegmentation, pipeline  # noqa: E402

spec = json.loads(open(sys.argv[1]).read())
model_dir = spec["model_dir"]
size = {"model_input_size": spec["model_input_size"]} if spec.get("model_input_size") else {}
images = spec["images"]
expected = [np.asarray(Image.open(path)).astype(int) for path in spec["expected_masks"]]
reference = load_file(spec["reference_checkpoint"])


def max_diff(image, target):
    return int(np.abs(np.asarray(image).astype(int) - target).max())


def differing_tensors(model):
    """Names of checkpoint tensors the loaded model does not hold exactly (as float32)."""
    state = model.state_dict()
    bad = [key for key, value in reference.items()
           if not torch.equal(state["net." + key].float(), value.float() if value.is_floating_point() else value)]
    extra = sorted(set(state) - {"net." + key for key in reference})
    return bad + extra


pipe = pipeline("image-segmentation", model=model_dir, trust_remote_code=True, device="cpu")
report["pipeline"] = f"{type(pipe).__module__}.{type(pipe).__name__}"
report["accelerated"] = bool(getattr(pipe.model.net.processor, "rmbg_accelerated", False))
check(type(pipe).__name__ == "RMBGPipeline" and type(pipe).__module__.startswith("transformers_modules."),
      "pipeline class is not the exported RMBGPipeline")
# The pipeline installs the CPU accelerator and folds BatchNorm into the convolutions (as load_model does),
# so only its keys are the checkpoint's; the AutoModel load below must hold the tensors exactly.
check(sorted(pipe.model.state_dict()) == sorted("net." + key for key in reference),
      "pipeline model keys differ from the checkpoint")

masks = pipe(images, return_mask=True, **size)
check(isinstance(masks, list) and len(masks) == len(images), "list input did not give a list")
report["mask_modes"] = [mask.mode for mask in masks]
report["mask_max_diff"] = [max_diff(mask, target) for mask, target in zip(masks, expected)]
check(all(mode == "L" for mode in report["mask_modes"]), "return_mask=True did not give mode L")
check(max(report["mask_max_diff"]) <= 1, "masks differ from the expected ones by more than 1 grey level")

cutouts = pipe(images, batch_size=2, **size)
check(isinstance(cutouts, list) and len(cutouts) == len(images), "batch_size=2 did not give one cutout per image")
alphas = [np.asarray(cutout)[..., 3].astype(int) for cutout in cutouts]
report["cutout_modes"] = [cutout.mode for cutout in cutouts]
report["batched_alpha_vs_expected_max_diff"] = [int(np.abs(a - t).max()) for a, t in zip(alphas, expected)]
report["batched_alpha_vs_unbatched_mask"] = [
    {"max_diff": max_diff(mask, a), "pixels_differing": int((np.asarray(mask).astype(int) != a).sum())}
    for mask, a in zip(masks, alphas)]
check(all(mode == "RGBA" for mode in report["cutout_modes"]), "cutouts are not RGBA")
check(max(report["batched_alpha_vs_expected_max_diff"]) <= 1, "batch_size=2 cutout alpha differs from expected")
check(all(d["max_diff"] <= 1 and d["pixels_differing"] <= 0.001 * a.size
          for d, a in zip(report["batched_alpha_vs_unbatched_mask"], alphas)),
      "batch_size=2 masks differ from unbatched ones beyond float rounding")

single = pipe(images[0], **size)
report["single_cutout_alpha_equals_mask"] = bool(np.array_equal(np.asarray(single)[..., 3], np.asarray(masks[0])))
check(report["single_cutout_alpha_equals_mask"], "single cutout alpha is not the mask")
check(np.array_equal(np.asarray(single)[..., :3], np.asarray(Image.open(images[0]).convert("RGB"))),
      "cutout colours are not the input's")

array = np.asarray(Image.open(images[-1]).convert("RGB"))
from_array = pipe(array, return_mask=True, model_input_size=[64, 64])
check(from_array.mode == "L" and from_array.size == (array.shape[1], array.shape[0]), "numpy input failed")

# Edge keywords (refinements by rmbg_core's option names, estimate_foreground): outputs equal the ones the
# parent computed with the project's own code, exactly; bad values fail with the core's OptionError.
report["variant_max_diff"] = {}
for variant in spec.get("variants", []):
    outputs = pipe(images, **variant["keywords"], **size)
    expected_outputs = [np.asarray(Image.open(path)).astype(int) for path in variant["expected"]]
    report["variant_max_diff"][variant["name"]] = [max_diff(output, target)
                                                   for output, target in zip(outputs, expected_outputs)]
    check(max(report["variant_max_diff"][variant["name"]]) == 0, f"{variant['name']}: differs from the project's")
if spec.get("variants"):
    try:
        pipe(images[0], feather=-1.0, **size)
        report["bad_option"] = "accepted"
    except Exception as exc:  # the exported copy of rmbg_core's OptionError
        report["bad_option"] = f"{type(exc).__name__}: {exc}"
    check(report["bad_option"].startswith("OptionError: feather must be"), "a bad refinement value is not refused")

# Errors a user can cause come from the folder's own copy of rmbg_core/errors.py (not rmbg_core's
# classes): each must be caught by `except ValueError`, and be the copy's class, found as README says.
errors = importlib.import_module(type(pipe).__module__.rpartition(".")[0] + ".errors")
pipeline_module = sys.modules[type(pipe).__module__]
with open("notes.pth", "w") as handle:
    handle.write("not a checkpoint\n")
user_mistakes = {
    "missing_image": lambda: pipe("no_such_photo.png"),
    "object_array": lambda: pipe(np.zeros((4, 4, 3), object)),
    "bad_option": lambda: pipe(images[0], feather=-1.0, **size),
    "bad_checkpoint": lambda: pipeline_module.load_pipeline("notes.pth", device="cpu"),
    "hub_offline": lambda: pipeline_module.load_pipeline("nobody/no-such-model", device="cpu"),
}
report["user_errors"] = {}
for label, mistake in user_mistakes.items():
    try:
        mistake()
        report["user_errors"][label] = "accepted"
    except ValueError as exc:
        report["user_errors"][label] = type(exc).__name__ if isinstance(exc, errors.RMBGError) else repr(exc)
    except Exception as exc:
        report["user_errors"][label] = f"not a ValueError: {type(exc).__name__}: {exc}"
check(report["user_errors"] == {"missing_image": "InputError", "object_array": "InputError",
                                "bad_option": "OptionError", "bad_checkpoint": "CheckpointError",
                                "hub_offline": "HubAccessError"},
      "user errors are not the exported ValueError subclasses")

model, info = AutoModelForImageSegmentation.from_pretrained(model_dir, trust_remote_code=True,
                                                            output_loading_info=True)
report["automodel"] = f"{type(model).__module__}.{type(model).__name__}"
report["missing_keys"] = sorted(info["missing_keys"])
report["unexpected_keys"] = sorted(info["unexpected_keys"])
report["tensors_differing"] = differing_tensors(model)[:5]
check(not report["missing_keys"] and not report["unexpected_keys"], "missing or unexpected keys")
check(not report["tensors_differing"], "from_pretrained did not load the checkpoint's exact weights")
check(model.dtype == torch.float32, "default dtype is not float32")

major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
dtype_keyword = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
half = pipeline("image-segmentation", model=model_dir, trust_remote_code=True, device="cpu",
                **{dtype_keyword: torch.bfloat16})
report["bfloat16_model_dtype"] = str(half.model.dtype)
check(half.model.dtype == torch.bfloat16, "dtype=bfloat16 not honoured")
check(half(array, return_mask=True, model_input_size=[64, 64]).mode == "L", "bfloat16 pipeline failed")

report["project_modules_loaded"] = sorted(name for name in sys.modules if name.split(".")[0] in PROJECT_MODULES)
check(not report["project_modules_loaded"], "project modules were imported")
report["transformers"] = transformers.__version__
print(json.dumps(report))
sys.exit(1 if report["failures"] else 0)
