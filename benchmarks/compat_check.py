"""One row of benchmarks/compat.sh: rmbg_core and an exported hub folder on the torch / transformers installed.

    python benchmarks/compat_check.py FIXTURE_DIR WORK_DIR

Runs with whatever Python it is started with (compat.sh starts it in throwaway venvs). Checks, on the
fixture photos at 1024x1024 on the CPU in float32: ``rmbg_core`` with the accelerator and without it
(masks within 1 grey level of the reference masks), then ``rmbg export`` of the fixture into WORK_DIR
and that folder through transformers' remote code alone (tests/remote_code_child.py: its masks, batched
cutouts, AutoModel loading, bfloat16). Prints one JSON object; exits 1 if a check failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(REPO))
PHOTOS = ("astronaut", "chelsea", "coffee")


def max_diff(model, fixture: Path) -> int:
    import numpy as np
    from PIL import Image

    from rmbg_core import remove_background

    worst = 0
    for name in PHOTOS:
        mask = np.asarray(remove_background(fixture / f"{name}.png", model=model, return_mask=True)).astype(int)
        expected = np.asarray(Image.open(fixture / f"{name}.mask.png")).astype(int)
        worst = max(worst, int(np.abs(mask - expected).max()))
    return worst


def main(fixture: Path, work: Path) -> dict:
    import numpy
    import torch
    import transformers

    from rmbg_core import load_model
    from rmbg_core.cpu.accelerator import is_accelerated
    from rmbg_core.hub.export import export_model

    row = {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": numpy.__version__,
           "python": sys.version.split()[0]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accelerated = load_model(fixture, device="cpu", dtype="float32")
        row["core_accelerated"] = is_accelerated(accelerated.network)
        row["core_max_diff"] = max_diff(accelerated, fixture)
    row["self_check_warnings"] = [str(w.message) for w in caught if "accelerator" in str(w.message)]
    row["plain_max_diff"] = max_diff(load_model(fixture, device="cpu", dtype="float32", accelerate=False), fixture)
    folder = work / "rmbg_hub"  # no dots or dashes: transformers 4.46 needs a module-like folder name
    export_model(fixture, folder, overwrite=True)
    spec = {"model_dir": os.fspath(folder), "images": [os.fspath(fixture / f"{n}.png") for n in PHOTOS],
            "expected_masks": [os.fspath(fixture / f"{n}.mask.png") for n in PHOTOS],
            "reference_checkpoint": os.fspath(fixture / "model.safetensors"), "model_input_size": None, "variants": []}
    (work / "spec.json").write_text(json.dumps(spec))
    (work / "cwd").mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=os.fspath(work / "modules"), HF_HOME=os.fspath(work / "hf_home"))
    child = subprocess.run([sys.executable, "-I", os.fspath(REPO / "tests" / "remote_code_child.py"),
                            os.fspath(work / "spec.json")], cwd=work / "cwd", env=env, capture_output=True, text=True)
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"failures": [f"crashed: {child.stderr.strip()[-500:]}"]}
    row["hub_max_diff"] = max(report.get("mask_max_diff") or [-1])
    row["hub_accelerated"] = report.get("accelerated")
    row["hub_failures"] = report["failures"]
    row["ok"] = (row["core_max_diff"] <= 1 and row["plain_max_diff"] <= 1 and not report["failures"]
                 and child.returncode == 0)
    return row


if __name__ == "__main__":
    result = main(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)
