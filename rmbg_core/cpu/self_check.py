"""Check the private torch ops of :class:`~rmbg_core.cpu.private_ops.PrivateOps` once per process, so a
torch upgrade degrades to slow, never to broken.

Each op runs once on a tiny input against its public equivalent: the fused convolution (+ bias, + ReLU)
with a plain and with a reordered weight, its in-place "add" form as the kernels use it (into a zeroed
buffer, and accumulating a second input), the Winograd convolution against ``F.conv2d``, the storage
use count the buffer pool relies on, the version counter the weight caches rely on, and the hook test
the processors rely on. Any exception or mismatch turns the accelerator off for the process with one
warning naming torch's version and the op; a build without oneDNN (or a CPU without native bfloat16)
simply has no accelerator for that dtype, silently. Thread-safe; each part runs at most once.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .private_ops import PrivateOps
from .winograd import band_rows, transform_weights, winograd_conv_relu

OK, UNAVAILABLE, FAILED = "ok", "unavailable", "failed"
# Results so far: "common" (the dtype-independent parts), then one entry per dtype name.
_STATUS: dict[str, str] = {}
_WARNED: list[str] = []
_LOCK = threading.RLock()
_TOLERANCE = {torch.float32: (1e-4, 1e-4), torch.bfloat16: (5e-2, 2e-2)}  # (atol, rtol) against float32


class CheckFailed(Exception):
    """A private op raised or did not do what the accelerator relies on."""


def pool_ready() -> bool:
    """True when the storage use count, the version counter and the hook test passed (the dtype-independent parts)."""
    return _status("common", _check_common) == OK


def kernels_ready(dtype: torch.dtype) -> bool:
    """True when the fused kernels can run in ``dtype`` on this build and CPU and passed their check."""
    if dtype not in _TOLERANCE or not pool_ready():
        return False
    return _status(str(dtype).removeprefix("torch."), lambda: _check_kernels(dtype)) == OK


def nothing_failed() -> bool:
    """False once any check has failed in this process (the accelerator then stays off)."""
    pool_ready()
    return FAILED not in _STATUS.values()


def _status(key: str, check: Callable[[], bool]) -> str:
    status = _STATUS.get(key)
    if status is not None:
        return status
    with _LOCK:
        if key not in _STATUS:
            _STATUS[key] = _run(check)
        return _STATUS[key]


def _run(check: Callable[[], bool]) -> str:
    try:
        with torch.inference_mode(False), torch.no_grad():
            return OK if check() else UNAVAILABLE
    except CheckFailed as failure:
        if not _WARNED:
            _WARNED.append(f"rmbg_core: CPU accelerator off: torch {torch.__version__}: {failure}; "
                           "running plain PyTorch instead (same masks, slower)")
            warnings.warn(_WARNED[0], RuntimeWarning, stacklevel=5)
        return FAILED


@contextlib.contextmanager
def _checking(op: str) -> Iterator[None]:
    """Turn anything ``op`` raises into a :class:`CheckFailed` naming it."""
    try:
        yield
    except CheckFailed:
        raise
    except Exception as exc:  # whatever a changed private op raises: surviving it is the point
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckFailed(f"{op} raised {type(exc).__name__}{': ' + detail if detail else ''}") from exc


def _expect(condition: bool, op: str, what: str) -> None:
    if not condition:
        raise CheckFailed(f"{op} {what}")


def _close(got: torch.Tensor, expected: torch.Tensor, op: str) -> None:
    atol, rtol = _TOLERANCE.get(got.dtype, _TOLERANCE[torch.float32])
    _expect(tuple(got.shape) == tuple(expected.shape), op,
            f"gave shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    _expect(torch.allclose(got.float(), expected.float(), atol=atol, rtol=rtol), op, "gave a wrong result")


def _check_common() -> bool:
    op = "torch._C._storage_Use_Count"
    with _checking(op):
        base = torch.zeros(256, dtype=torch.uint8)
        alone = PrivateOps.storage_use_count(base)
        view = base[:64].view(torch.float32).as_strided((1, 4, 2, 2), (16, 1, 8, 4))
        with_view = PrivateOps.storage_use_count(base)
        del view
        after = PrivateOps.storage_use_count(base)
    _expect(with_view > alone and after == alone, op, f"counts {alone}, {with_view}, {after} "
                                                      "for a tensor, then with a view, then without")
    op = "Tensor._version"
    with _checking(op):
        before = PrivateOps.version(base)
        base.add_(1)
        written = PrivateOps.version(base)
        with torch.inference_mode():
            inference = PrivateOps.version(torch.zeros(1))
    _expect(before is not None and written == before + 1 and inference is None, op,
            "does not count in-place writes (or claims one for an inference tensor)")
    op = "Module._forward_hooks"
    with _checking(op):
        module = nn.Identity()
        unhooked = PrivateOps.has_forward_hooks(module)
        handle = module.register_forward_hook(lambda *args: None)
        hooked = PrivateOps.has_forward_hooks(module)
        handle.remove()
        removed = PrivateOps.has_forward_hooks(module)
    _expect(hooked and removed == unhooked, op, "does not show a forward hook being added and removed")
    return True


def _check_kernels(dtype: torch.dtype) -> bool:
    with _checking("torch.backends.mkldnn / torch.ops.mkldnn._is_mkldnn_bf16_supported"):
        if not PrivateOps.onednn_built():
            return False
        if dtype == torch.bfloat16 and not PrivateOps.onednn_bfloat16_supported():
            return False
    generator = torch.Generator().manual_seed(0)  # never the global generator: callers' seeds stay theirs

    def tensor(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(dtype)

    first, second = tensor(2, 3, 6, 8), tensor(2, 2, 6, 8)
    weight, bias = tensor(4, 5, 3, 3) / 4, tensor(4)
    joined = torch.cat((first, second), 1)

    def reference(padding: int, stride: int, dilation: int, relu: bool) -> torch.Tensor:
        out = F.conv2d(joined.float(), weight.float(), bias.float(), stride, padding, dilation)
        return F.relu(out) if relu else out

    op = "torch.ops.mkldnn._convolution_pointwise"
    with _checking(op):
        got = PrivateOps.convolution(joined, weight, bias, (2, 2), (1, 1), (2, 2), "relu")
    _close(got, reference(2, 1, 2, True), op)
    op = "torch.ops.mkldnn._reorder_convolution_weight"
    with _checking(op):
        blocked = PrivateOps.reorder_weight(weight, (1, 1), (2, 2), (1, 1), joined.shape)
        got = PrivateOps.convolution(joined, blocked, bias, (1, 1), (2, 2), (1, 1), None)
    _close(got, reference(1, 2, 1, False), op)
    op = "torch.ops.mkldnn._convolution_pointwise_.binary"
    expected = reference(1, 1, 1, True)
    with _checking(op):
        out = torch.zeros(expected.shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
        written = PrivateOps.convolution_add_(out, joined, weight, bias, (1, 1), (1, 1), (1, 1), "relu")
    _expect(written.data_ptr() == out.data_ptr(), op, "did not write into its output")
    _close(out, expected, op)
    with _checking(op):
        parts = [PrivateOps.reorder_weight(weight[:, :3].contiguous(), (1, 1), (1, 1), (1, 1), first.shape),
                 PrivateOps.reorder_weight(weight[:, 3:].contiguous(), (1, 1), (1, 1), (1, 1), second.shape)]
        partial = PrivateOps.convolution(first, parts[0], bias, (1, 1), (1, 1), (1, 1), None)
        got = PrivateOps.convolution_add_(partial, second, parts[1], None, (1, 1), (1, 1), (1, 1), "relu")
    _close(got, expected, op)
    if dtype == torch.float32:
        op = "Winograd F(2x2, 3x3) (mkldnn 1x1 convolutions)"
        with _checking(op):
            tiles = band_rows(5, 4, 6, 8, first.element_size()) * (8 // 2)
            got = winograd_conv_relu((first, second), transform_weights(weight, tiles), bias)
        _close(got, expected, op)
    return True
