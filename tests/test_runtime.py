"""Device and dtype selection logic."""

import pytest
import torch

from rmbg_core import DeviceError
from rmbg_core.model import runtime
from rmbg_core.model.runtime import resolve_device, resolve_dtype


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "mps_available", lambda: True)
    assert resolve_device(None) == torch.device("mps")
    monkeypatch.setattr(runtime, "mps_available", lambda: False)
    assert resolve_device("AUTO") == torch.device("cpu")


def test_auto_dtype_is_half_on_cuda_float_elsewhere():
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("mps")) == torch.float32


@pytest.mark.parametrize("name,dtype", [("float32", torch.float32), ("fp16", torch.float16),
                                        ("bfloat16", torch.bfloat16), ("torch.float16", torch.float16),
                                        (torch.bfloat16, torch.bfloat16)])
def test_explicit_dtypes(name, dtype):
    assert resolve_dtype(name, torch.device("cpu")) == dtype


@pytest.mark.parametrize("bad", ["int8", "float64", torch.float64])
def test_unknown_dtypes_are_refused(bad):
    with pytest.raises(DeviceError, match="dtype"):
        resolve_dtype(bad, torch.device("cpu"))


def test_unavailable_or_unknown_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"CUDA is not available .*; use device 'cpu' or 'auto'$"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"^unknown device 'gpu0'; use device 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'$"):
        resolve_device("gpu0")
    monkeypatch.setattr(runtime, "mps_available", lambda: False)
    with pytest.raises(DeviceError, match="MPS backend is not available; use device 'cpu' or 'auto'$"):
        resolve_device("mps")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_device_messages_name_no_front_ends_syntax(monkeypatch):
    """The core words the way out neutrally and keeps its parts, so each front end can spell it (the CLI:
    ``--device cpu``); Python's ``device='cpu'`` would be wrong in the CLI and in ComfyUI."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda")
    assert "=" not in str(info.value) and "--" not in str(info.value)
    assert (info.value.option, info.value.choices) == ("device", ("cpu", "auto"))
    assert info.value.problem.endswith("(no NVIDIA GPU, or a CPU-only torch build)")
    with pytest.raises(DeviceError) as info:
        resolve_dtype("int8", torch.device("cpu"))
    assert (info.value.option, info.value.choices) == ("dtype", ("auto", "float32", "float16", "bfloat16"))
