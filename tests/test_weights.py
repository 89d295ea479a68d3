"""Checkpoint loading: files, folders, the hub (through a local fake), strict keys, clear errors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import rmbg_core
from rmbg_core import CheckpointError, HubAccessError, load_model
from rmbg_core.model.weights import build_network, locate_checkpoint, read_state_dict

from conftest import REPO, SMALL_INPUT, random_state_dict
from fake_hub import COMMIT, FakeHub, point_hub_at, serve


@pytest.fixture(scope="module")
def state():
    return random_state_dict(0)


def outputs_equal(a, b) -> bool:
    x = torch.rand(1, 40, 40, 3)
    return torch.equal(a.predict(x, input_size=SMALL_INPUT), b.predict(x, input_size=SMALL_INPUT))


def test_safetensors_file_loads_strictly(checkpoint_file, state):
    model = load_model(checkpoint_file, device="cpu")
    assert model.network.state_dict().keys() == state.keys()
    original = read_state_dict(model.checkpoint)
    assert all(torch.equal(original[k], state[k]) for k in state)
    # conv_in has no BatchNorm after it, so folding leaves it exactly as loaded
    assert torch.equal(model.network.conv_in.weight, state["conv_in.weight"])
    assert model.dtype == torch.float32 and model.device == torch.device("cpu")


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_pickled_checkpoints_load(tmp_path, state, suffix, random_model):
    path = tmp_path / f"weights{suffix}"
    torch.save(state, path)
    assert outputs_equal(load_model(path, device="cpu"), random_model)


def test_folder_with_model_pth_loads(tmp_path, state, random_model):
    torch.save(state, tmp_path / "model.pth")
    assert outputs_equal(load_model(tmp_path, device="cpu"), random_model)


def test_fp16_checkpoint_loads_as_float32(tmp_path, state):
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(tmp_path / "half.safetensors"))
    model = load_model(tmp_path / "half.safetensors", device="cpu", dtype="float32")
    weight = model.network.conv_in.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, state["conv_in.weight"].half().float())


def test_wrapped_and_prefixed_state_dicts_are_unwrapped(tmp_path, state):
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pth")
    assert read_state_dict(tmp_path / "wrapped.pth").keys() == state.keys()


def test_missing_num_batches_tracked_is_tolerated(state):
    trimmed = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    network = build_network(trimmed)
    assert torch.equal(network.conv_in.weight, state["conv_in.weight"])


def test_missing_and_unexpected_keys_are_named(state):
    broken = dict(state)
    del broken["stage3.rebnconv2.conv_s1.weight"]
    broken["extra.head.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        build_network(broken, source="ckpt")
    message = str(info.value)
    assert "1 missing: stage3.rebnconv2.conv_s1.weight" in message
    assert "1 unexpected: extra.head.weight" in message


def test_wrong_shapes_are_named(state):
    broken = dict(state)
    broken["side1.weight"] = torch.zeros(2, 64, 3, 3)
    with pytest.raises(CheckpointError, match=r"wrong shape: side1.weight \(2, 64, 3, 3\) \(expected \(1, 64, 3, 3\)\)"):
        build_network(broken)


def test_other_architecture_lists_first_keys_and_count(tmp_path):
    other = {f"layer{i}.weight": torch.zeros(3) for i in range(9)}
    save_file(other, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match=r"not an RMBG-1.4 .*9 unexpected: layer0.weight.* and 4 more"):
        load_model(tmp_path / "other.safetensors", device="cpu")


@pytest.mark.parametrize("name,content,reason", [
    ("empty.safetensors", b"", "empty"),
    ("text.safetensors", b"this is not a checkpoint", "not a valid safetensors file"),
    ("junk.pth", b"\x00\x01garbage" * 10, "not a checkpoint \\(unrecognised binary data\\)"),
    ("passwd.pth", b"root:x:0:0:root:/root:/bin/bash\n" * 3, "not a checkpoint \\(looks like a text file\\)"),
    ("config.pth", b'{"model_type": "rmbg"}', "not a checkpoint \\(looks like JSON\\)"),
    ("photo.pth", b"\x89PNG\r\n\x1a\n" + bytes(64), "not a checkpoint \\(a PNG image\\)"),
    ("photo.jpg", b"\xff\xd8\xff\xe0" + bytes(64), "not a checkpoint \\(a JPEG image\\)"),
    ("pickled.pth", pickle.dumps([1, 2, 3], protocol=2), "not a readable PyTorch checkpoint"),
    ("truncated.pth", b"PK\x03\x04" + bytes(100), "not a readable PyTorch checkpoint"),
])
def test_broken_files_give_clear_errors(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_model(tmp_path / name, device="cpu")
    assert name in str(info.value) and "\n" not in str(info.value)
    assert "weights_only" not in str(info.value), "never torch's advice to load with weights_only=False"


def test_images_and_json_as_model_give_one_error_line(tmp_path, fixture_dir, capsys):
    """``--model photo.png`` / ``--model config.json``: one ``rmbg: error:`` line naming the file, exit 2."""
    from rmbg_core.cli.main import main

    (tmp_path / "config.json").write_text('{"architectures": ["RMBGForSegmentation"]}\n')
    photo = fixture_dir / "astronaut.png"
    for model in (photo, tmp_path / "config.json", "/etc/passwd"):
        assert main(["remove", str(photo), "-o", str(tmp_path / "out"), "--model", str(model),
                     "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rmbg: error: {model}: not a checkpoint (") and err.count("\n") == 1, err
        assert "weights_only" not in err


def small_checkpoints(tmp_path):
    """A small state dict saved as safetensors, torch zip and legacy torch pickle: real files to damage."""
    small = {"conv_in.weight": torch.rand(4, 3, 3, 3), "conv_in.bias": torch.rand(4),
             "stage1.rebnconvin.bn_s1.num_batches_tracked": torch.tensor(7)}
    save_file(small, str(tmp_path / "small.safetensors"))
    torch.save(small, tmp_path / "small.pth")
    torch.save(small, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    return [tmp_path / "small.safetensors", tmp_path / "small.pth", tmp_path / "legacy.pth"]


def damaged_files(tmp_path):
    """Random bytes (with and without a zip, pickle or safetensors start) and damaged real checkpoints."""
    import numpy as np

    rng = np.random.default_rng(2024)
    prefixes = {"raw": b"", "zip": b"PK\x03\x04", "pickle": b"\x80\x02", "pickle4": b"\x80\x04\x95",
                "safetensors": (40).to_bytes(8, "little") + b'{"a'}
    for label, prefix in prefixes.items():
        for size in (1, 9, 100, 5000):
            for suffix in (".pth", ".safetensors"):
                path = tmp_path / f"random-{label}-{size}{suffix}"
                path.write_bytes(prefix + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
                yield path
    for original in small_checkpoints(tmp_path):
        data = original.read_bytes()
        for cut in (1, 8, 9, 30, len(data) // 2, len(data) - 30, len(data) - 1):
            path = tmp_path / f"cut{cut}-{original.name}"
            path.write_bytes(data[:cut])
            yield path
        for flip in range(3):
            damaged = bytearray(data)
            for position in rng.integers(0, len(data), 8):
                damaged[position] ^= 0xFF
            path = tmp_path / f"flip{flip}-{original.name}"
            path.write_bytes(bytes(damaged))
            yield path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_fuzzed_checkpoints_only_ever_raise_checkpoint_error(tmp_path):
    """Whatever the bytes, reading and building a checkpoint fails with a one-line CheckpointError."""
    cases = 0
    for path in damaged_files(tmp_path):
        with pytest.raises(CheckpointError) as info:
            build_network(read_state_dict(path), source=str(path))
        message = str(info.value)
        assert path.name in message and "\n" not in message and "weights_only" not in message, message
        cases += 1
    assert cases > 50


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.complex64, torch.bool])
def test_non_float_weights_are_refused_at_load(tmp_path, state, dtype):
    """A quantized (int8) or otherwise non-float checkpoint with the right keys fails at load, not in forward."""
    converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "converted.pth"
    torch.save(converted, path)
    with pytest.raises(CheckpointError, match=rf"converted.pth: \d+ weights are {dtype} \(e.g. conv_in.weight\); "
                                              "RMBG-1.4 needs dense floating-point weights"):
        load_model(path, device="cpu")


def test_int8_safetensors_is_refused_at_load(tmp_path, state):
    path = tmp_path / "int8.safetensors"
    save_file({k: v.to(torch.int8) if v.is_floating_point() else v for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match="weights are torch.int8"):
        load_model(path, device="cpu")


def test_sparse_meta_and_non_string_keys_are_refused(tmp_path, state):
    sparse = dict(state, **{"side1.weight": state["side1.weight"].to_sparse()})
    with pytest.raises(CheckpointError, match="1 weights are torch.sparse_coo tensors .e.g. side1.weight"):
        build_network(sparse)
    meta = dict(state, **{"side1.weight": torch.empty(1, 64, 3, 3, device="meta")})
    with pytest.raises(CheckpointError, match="meta tensors"):
        build_network(meta)
    torch.save({1: torch.zeros(2)}, tmp_path / "int_keys.pth")
    with pytest.raises(CheckpointError, match="int_keys.pth: checkpoint entries are not tensors: 1"):
        read_state_dict(tmp_path / "int_keys.pth")


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv_in.weight": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="only tensors"):
        load_model(path, device="cpu")


def test_missing_path_and_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        locate_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        locate_checkpoint("weights/rmbg.pth")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        locate_checkpoint(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(b"x")
    (tmp_path / "b.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="several checkpoints"):
        locate_checkpoint(tmp_path)


def test_loads_share_weights_per_source_device_dtype(checkpoint_file, checkpoint_dir, tmp_path, state):
    first = load_model(checkpoint_file, device="cpu")
    again = load_model(checkpoint_dir, device="cpu")
    assert again is not first and again.network is not first.network, "each load is a model of its own"
    assert again.network.conv_in.weight.data_ptr() == first.network.conv_in.weight.data_ptr(), "weights held once"
    half = load_model(checkpoint_file, device="cpu", dtype="bfloat16")
    assert half.network.conv_in.weight.data_ptr() != first.network.conv_in.weight.data_ptr()
    other_state = random_state_dict(1)
    save_file(other_state, str(tmp_path / "other.safetensors"))
    other = load_model(tmp_path / "other.safetensors", device="cpu")
    assert other.network.conv_in.weight.data_ptr() != first.network.conv_in.weight.data_ptr()
    assert not outputs_equal(other, first)
    assert torch.equal(first.network.conv_in.weight, state["conv_in.weight"])


def test_model_moves_between_dtypes_and_back(checkpoint_file, state):
    model = load_model(checkpoint_file, device="cpu", dtype="float32")
    moved = model.to("cpu", dtype="bfloat16")
    assert moved is model and model.network.conv_in.weight.dtype == torch.bfloat16
    model.to(dtype="float32")
    assert model.network.conv_in.weight.dtype == torch.float32
    # A later load does not take the round trip's rounded weights: it shares none of the moved model's.
    fresh = load_model(checkpoint_file, device="cpu", dtype="float32")
    assert fresh.network.conv_in.weight.data_ptr() != model.network.conv_in.weight.data_ptr()
    assert torch.equal(fresh.network.conv_in.weight, state["conv_in.weight"])


# ---- Hugging Face Hub: cache layout, revisions, tokens, gated repos, offline mode -------------------------

@pytest.fixture
def online(monkeypatch):
    """Lift the suite's offline guard and point huggingface_hub at a fake hub on 127.0.0.1."""
    hub = FakeHub()
    with serve(hub):
        point_hub_at(monkeypatch, hub.url)
        yield hub


def test_hub_download_uses_cache_revision_and_token(online, checkpoint_file, tmp_path):
    data = checkpoint_file.read_bytes()
    online.files[("acme/rmbg", "v1", "model.safetensors")] = data
    cache = tmp_path / "cache"
    model = load_model("acme/rmbg", device="cpu", revision="v1", token="secret-token", cache_dir=cache)
    assert (cache / "models--acme--rmbg" / "snapshots" / COMMIT / "model.safetensors").read_bytes() == data
    assert ("GET", "/acme/rmbg/resolve/v1/model.safetensors", "Bearer secret-token") in online.requests
    assert isinstance(model, rmbg_core.RMBGModel)
    online.requests.clear()
    path = locate_checkpoint("acme/rmbg", revision="v1", cache_dir=cache, local_files_only=True)
    assert path.read_bytes() == data and online.requests == []


def test_hub_falls_back_to_model_pth(online, state, tmp_path):
    buffer = tmp_path / "model.pth"
    torch.save(state, buffer)
    online.files[("acme/old", "main", "model.pth")] = buffer.read_bytes()
    path = locate_checkpoint("acme/old", cache_dir=tmp_path / "cache")
    assert path.name == "model.pth"


def test_gated_repo_says_accept_license_and_log_in(online, tmp_path):
    online.gated.add("briaai/RMBG-1.4")
    with pytest.raises(HubAccessError) as info:
        load_model("briaai/RMBG-1.4", device="cpu", cache_dir=tmp_path)
    message = str(info.value)
    assert "gated" in message and "https://huggingface.co/briaai/RMBG-1.4" in message
    assert "hf auth login" in message and "HF_TOKEN" in message


def test_unknown_repo_and_missing_files(online, tmp_path):
    with pytest.raises(HubAccessError, match="no such model"):
        locate_checkpoint("nobody/nothing", cache_dir=tmp_path)
    online.files[("acme/empty", "main", "README.md")] = b"hi"
    with pytest.raises(HubAccessError, match="neither model.safetensors nor model.pth"):
        locate_checkpoint("acme/empty", cache_dir=tmp_path)


def test_offline_without_cache_is_one_clear_message(tmp_path):
    with pytest.raises(HubAccessError, match="offline mode is on .* no copy is cached"):
        load_model("briaai/RMBG-1.4", device="cpu", cache_dir=tmp_path)


def test_hf_hub_offline_env_is_honored_end_to_end(tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1: the default source fails fast with the offline message."""
    code = "import rmbg_core; rmbg_core.load_model()"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode != 0
    assert "HubAccessError: briaai/RMBG-1.4: offline mode is on" in result.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc to list memory maps")
def test_loaded_weights_do_not_keep_the_file_mapped(tmp_path, state):
    path = tmp_path / "mapped.safetensors"
    save_file(state, str(path))
    model = load_model(path, device="cpu")
    with open("/proc/self/maps") as maps:
        assert os.fspath(path) not in maps.read(), "the checkpoint file is still memory-mapped"
    assert model.network.stage1.rebnconvin.bn_s1.num_batches_tracked.dtype == torch.int64
