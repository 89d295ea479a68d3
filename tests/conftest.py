"""Shared fixtures: checkpoints the tests make themselves, and the real-weights fixture in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

# No test may reach the Hub: offline mode is on before huggingface_hub is first imported. Tests of
# the download path switch it off explicitly and talk to a local fake hub on 127.0.0.1 only.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch
from safetensors.torch import save_file

from pack_import import import_pack
from rmbg_core.model.network import ISNet

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO.parent / "shared" / "fixtures" / "isnet-real"
FIXTURE_PHOTOS = ("astronaut", "chelsea", "coffee")
# Small network input: random-weight tests check plumbing, not masks, and run fast at this size.
SMALL_INPUT = (64, 64)


def random_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """The state dict of a freshly initialised ISNet (real shapes and keys, random weights)."""
    torch.manual_seed(seed)
    network = ISNet().eval()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return {key: value.clone().contiguous() for key, value in network.state_dict().items()}


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    """A folder with ``model.safetensors`` holding random weights (seed 0), made once per session."""
    folder = tmp_path_factory.mktemp("checkpoint")
    save_file(random_state_dict(0), str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def checkpoint_file(checkpoint_dir) -> Path:
    return checkpoint_dir / "model.safetensors"


@pytest.fixture(scope="session")
def random_model(checkpoint_file):
    from rmbg_core import load_model

    return load_model(checkpoint_file, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The real-weights fixture; tests using it skip with a reason when ../shared is absent."""
    if not (FIXTURE_DIR / "model.safetensors").is_file():
        pytest.skip(f"real-weights fixture not found at {FIXTURE_DIR} (needs the ../shared checkout)")
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def real_model(fixture_dir):
    from rmbg_core import load_model

    return load_model(fixture_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def pack():
    """The ComfyUI node pack (outside ComfyUI: the comfy glue falls back to plain torch)."""
    return import_pack()


@pytest.fixture
def fast_model(random_model, monkeypatch):
    """``random_model``, with every model predicting at ``SMALL_INPUT`` whatever size callers ask for, for
    plumbing tests.

    The CLI and the batch iterator always ask for the real 1024 input; this test-only patch keeps them
    fast. It patches the class, so the model ``rmbg --model <checkpoint_dir>`` loads in this process
    (its own, sharing ``random_model``'s weights) predicts small too; subprocess tests run at the real size.
    """
    from rmbg_core import RMBGModel

    original = RMBGModel.predict

    def predict(self, images, *, batch_size=1, input_size=None, callback=None, keep_buffers=True):
        return original(self, images, batch_size=batch_size, input_size=SMALL_INPUT, callback=callback,
                        keep_buffers=keep_buffers)

    monkeypatch.setattr(RMBGModel, "predict", predict)
    return random_model
