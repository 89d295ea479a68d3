"""The nodes' ComfyUI glue, in-process, against ComfyUI's real model management, progress hook and
interrupt flag. Run by tests/test_comfyui_integration.py with ComfyUI's own Python:

    python comfyui_glue_check.py COMFYUI_DIR BASE_DIR

BASE_DIR is ComfyUI's base directory for this check (as ``--base-directory`` sets it), so the checkout's
own models folder is never looked at; ``BASE_DIR/models/rmbg/model.safetensors`` holds any
RMBG-1.4-shaped weights. Prints one JSON object of observations; the test makes the assertions.
"""

import dataclasses
import json
import sys
from pathlib import Path

from pack_import import import_pack


def main(comfyui_dir: str, base_dir: str) -> dict:
    sys.path.insert(0, comfyui_dir)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management: this machine may have no GPU
    comfy.cli_args.args.base_directory = base_dir  # before folder_paths, which reads it on import
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths
    import torch

    nodes = import_pack().NODE_CLASS_MAPPINGS
    seen = {}

    (Path(base_dir) / "models" / "rmbg" / "README.md").write_text("not a checkpoint")
    seen["rmbg_folders"] = folder_paths.get_folder_paths("rmbg")
    seen["choices"] = nodes["RMBGLoadModel"].INPUT_TYPES()["required"]["model"][0]
    seen["rmbg_extensions"] = sorted(folder_paths.folder_names_and_paths["rmbg"][1])

    loader = nodes["RMBGLoadModel"]()
    (first,) = loader.load("model.safetensors", "auto", "auto")
    (second,) = loader.load("model.safetensors", "auto", "auto")
    seen["one_patcher_per_model"] = first.patcher is second.patcher and first.patcher is not None
    seen["device"], seen["dtype"] = str(first.model.device), str(first.model.dtype)
    small = dataclasses.replace(first, input_size=(64, 64))

    calls = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: calls.append([value, total]))
    frames = torch.rand(5, 40, 30, 3, generator=torch.Generator().manual_seed(0))
    remover = nodes["RMBGRemoveBackground"]()
    image, mask = remover.remove(small, frames, batch_size=2)
    seen["progress"] = calls[:]
    seen["shapes"] = [list(image.shape), list(mask.shape)]
    seen["loaded_after_run"] = [type(m.model).__name__ for m in mm.loaded_models()]

    mm.unload_all_models()
    seen["loaded_after_unload"] = [type(m.model).__name__ for m in mm.loaded_models()]
    _, again = remover.remove(small, frames, batch_size=5)
    seen["loaded_after_rerun"] = [type(m.model).__name__ for m in mm.loaded_models()]
    seen["rerun_max_diff"] = float((again - mask).abs().max())

    calls.clear()

    def cancel_on_first_update(value, total, preview, node_id=None):
        calls.append([value, total])
        mm.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(cancel_on_first_update)
    try:
        remover.remove(small, frames, batch_size=2)
        seen["cancel"] = "not raised"
    except mm.InterruptProcessingException:
        seen["cancel"] = "raised"
    seen["progress_before_cancel"] = calls[:]
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
