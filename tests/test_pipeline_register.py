"""register(): the opt-in "background-removal" task, and exported folders without trust_remote_code."""

import numpy as np
import pytest
from transformers import pipeline

from conftest import SMALL_INPUT
from modeling_rmbg import RMBGForSegmentation
from pipeline_rmbg import RMBGPipeline, load_pipeline, register
from rmbg_core.hub.export import export_model


@pytest.fixture(scope="module")
def registered():
    register()


def test_background_removal_task_with_a_model_instance(registered, checkpoint_dir):
    model = load_pipeline(checkpoint_dir, device="cpu", dtype="float32").model
    pipe = pipeline("background-removal", model=model, device="cpu")
    assert type(pipe) is RMBGPipeline and pipe.task == "background-removal"
    mask = pipe(np.zeros((30, 20, 3), np.uint8), return_mask=True, model_input_size=SMALL_INPUT)
    assert mask.mode == "L" and mask.size == (20, 30)


def test_exported_folder_loads_in_process_without_remote_code(registered, checkpoint_dir, tmp_path):
    export_model(checkpoint_dir, tmp_path / "exported")
    pipe = pipeline("background-removal", model=str(tmp_path / "exported"), device="cpu")
    assert type(pipe) is RMBGPipeline and type(pipe.model) is RMBGForSegmentation
    assert pipe(np.zeros((8, 8, 3), np.uint8), model_input_size=SMALL_INPUT).mode == "RGBA"


def test_register_twice_is_harmless(registered):
    """A second call changes nothing (transformers would log "Overwriting pipeline" otherwise)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    entry = PIPELINE_REGISTRY.supported_tasks["background-removal"]
    register()
    assert PIPELINE_REGISTRY.supported_tasks["background-removal"] is entry
    assert entry["impl"] is RMBGPipeline
