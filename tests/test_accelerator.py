"""The CPU accelerator: one call on, one call off, one switch for every front end, and a self-check that
turns it off (with one warning) when a private torch op misbehaves."""

import threading
import warnings

import pytest
import torch

from rmbg_core import load_model
from rmbg_core.cpu import self_check
from rmbg_core.cpu.accelerator import accelerate, is_accelerated, restore_plain
from rmbg_core.cpu.private_ops import PrivateOps
from rmbg_core.model.weights import build_network

from conftest import SMALL_INPUT, random_state_dict


def images(seed=0):
    return torch.rand(2, 48, 40, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def plain_masks(checkpoint_file):
    model = load_model(checkpoint_file, device="cpu", dtype="float32", accelerate=False)
    assert not is_accelerated(model.network)
    return model.predict(images(), input_size=SMALL_INPUT)


@pytest.fixture
def fresh_self_check(monkeypatch):
    """The self-check as if this process had not run it yet (restored afterwards)."""
    monkeypatch.setattr(self_check, "_STATUS", {})
    monkeypatch.setattr(self_check, "_WARNED", [])


def test_installed_and_removed_by_one_call_each_without_changing_names_or_weights():
    network = build_network(random_state_dict(0))
    names, keys = [name for name, _ in network.named_modules()], list(network.state_dict())
    x = torch.rand(1, 3, *SMALL_INPUT, generator=torch.Generator().manual_seed(1)) - 0.5
    with torch.inference_mode():
        expected = network(x)
        assert accelerate(network) is network and is_accelerated(network)
        assert [name for name, _ in network.named_modules()] == names and list(network.state_dict()) == keys
        assert network.buffer_pool is not None and network.winograd is True
        torch.testing.assert_close(network(x), expected, atol=1e-5, rtol=1e-5)
        assert restore_plain(network) is network and not is_accelerated(network)
        assert not hasattr(network, "buffer_pool")
        assert not any(name.startswith("_onednn") for module in network.modules() for name in vars(module))
        torch.testing.assert_close(network(x), expected, atol=1e-5, rtol=1e-5)


def test_a_network_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval"):
        accelerate(build_network(random_state_dict(0)).train())


def test_load_model_switch_and_environment_default(checkpoint_file, plain_masks, monkeypatch):
    assert is_accelerated(load_model(checkpoint_file, device="cpu", dtype="float32").network)
    monkeypatch.setenv("RMBG_ACCELERATE", "0")
    plain = load_model(checkpoint_file, device="cpu", dtype="float32")
    assert plain.accelerate is False and not is_accelerated(plain.network)
    assert torch.equal(plain.predict(images(), input_size=SMALL_INPUT), plain_masks)
    assert is_accelerated(load_model(checkpoint_file, device="cpu", dtype="float32", accelerate=True).network)


def test_pipeline_switch_and_environment_default(checkpoint_file, monkeypatch):
    from pipeline_rmbg import load_pipeline

    assert is_accelerated(load_pipeline(checkpoint_file, device="cpu", dtype="float32").model.net)
    assert not is_accelerated(load_pipeline(checkpoint_file, device="cpu", dtype="float32", accelerate=False).model.net)
    monkeypatch.setenv("RMBG_ACCELERATE", "off")
    assert not is_accelerated(load_pipeline(checkpoint_file, device="cpu", dtype="float32").model.net)


def test_cli_no_accelerate_flag(fast_model, checkpoint_dir, tmp_path, monkeypatch):
    from PIL import Image

    from rmbg_core import RMBGModel
    from rmbg_core.cli.main import main

    seen = []
    predict = RMBGModel.predict

    def recording(self, *args, **kwargs):
        seen.append(is_accelerated(self.network))
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(RMBGModel, "predict", recording)
    Image.new("RGB", (24, 16), (200, 30, 30)).save(tmp_path / "photo.png")
    common = [str(tmp_path / "photo.png"), "--model", str(checkpoint_dir), "--device", "cpu", "--dtype", "float32"]
    assert main(["remove", *common, "-o", str(tmp_path / "fast")]) == 0
    assert main(["remove", *common, "-o", str(tmp_path / "plain"), "--no-accelerate"]) == 0
    assert seen == [True, False]


def raising(*args, **kwargs):
    raise RuntimeError("unexpected argument (a changed signature)")


def doubled(original):
    return lambda *args, **kwargs: original(*args, **kwargs) * 2


def not_written(out, *args, **kwargs):
    return out


@pytest.mark.parametrize("op,broken,named", [
    ("convolution", lambda original: raising, "_convolution_pointwise raised RuntimeError"),
    ("convolution", doubled, "_convolution_pointwise gave a wrong result"),
    ("convolution_add_", lambda original: not_written, "_convolution_pointwise_.binary gave a wrong result"),
    ("reorder_weight", lambda original: raising, "_reorder_convolution_weight raised RuntimeError"),
    ("storage_use_count", lambda original: lambda tensor: 1, "_storage_Use_Count counts 1, 1, 1"),
], ids=["conv-raises", "conv-wrong", "binary-add-no-write", "reorder-raises", "use-count-wrong"])
def test_a_broken_private_op_leaves_the_network_plain_with_one_warning(checkpoint_file, plain_masks, fresh_self_check,
                                                                       monkeypatch, op, broken, named):
    calls = []
    replacement = broken(getattr(PrivateOps, op))
    monkeypatch.setattr(PrivateOps, op, staticmethod(lambda *a, **k: calls.append(op) or replacement(*a, **k)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(checkpoint_file, device="cpu", dtype="float32")
        load_model(checkpoint_file, device="cpu", dtype="bfloat16")  # another load, another dtype: no more warnings
        masks = model.predict(images(), input_size=SMALL_INPUT)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert calls, "the self-check ran the op"
    assert len(messages) == 1 and "\n" not in messages[0], messages
    assert f"torch {torch.__version__}" in messages[0] and named in messages[0]
    assert not is_accelerated(model.network)
    torch.testing.assert_close(masks, plain_masks, atol=1e-5, rtol=0)


def test_the_self_check_runs_once_however_many_threads_ask(fresh_self_check, monkeypatch):
    runs = []
    for name in ("_check_common", "_check_kernels"):
        check = getattr(self_check, name)
        monkeypatch.setattr(self_check, name, lambda *args, check=check, name=name: runs.append(name) or check(*args))
    start = threading.Barrier(6)
    answers = []

    def ask():
        start.wait()
        answers.append(self_check.kernels_ready(torch.float32))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 6 and sorted(runs) == ["_check_common", "_check_kernels"]
    self_check.kernels_ready(torch.float32)
    assert len(runs) == 2


def test_hooks_on_a_blocks_own_modules_make_that_block_take_the_plain_path(random_model):
    network = random_model.network
    block = network.stage2.rebnconv1
    x = torch.rand(1, 3, *SMALL_INPUT, generator=torch.Generator().manual_seed(2)) - 0.5
    seen = []
    with torch.inference_mode():
        expected = network(x)
        handle = block.bn_s1.register_forward_hook(lambda module, args, output: seen.append(output.shape))
        try:
            got = network(x)
        finally:
            handle.remove()
    assert len(seen) == 1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
