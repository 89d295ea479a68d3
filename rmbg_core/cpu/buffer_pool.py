"""Activation buffers a CPU network reuses from one forward pass to the next, instead of fresh memory.

A forward pass writes gigabytes of activations at larger batches. Allocated anew each time, every page
is faulted in and zeroed by the kernel again, and on virtual machines that hand freed memory back to
the host (free page reporting, ballooning) each fault also goes to the host, which can cost a large
share of the forward pass (measurements: benchmarks/README.md). A :class:`BufferPool` keeps the buffers
of the largest input shape seen: the accelerator's kernels write into them (:mod:`rmbg_core.cpu.kernels`),
so a repeated shape, or a smaller one (a last partial batch, a service's batches of varying size),
touches no new memory.

A buffer is handed out as a new tensor sharing its storage; it is free again once no tensor but the
pool's own references that storage (views and results of in-place ops included), so an activation
can never be reused while anything still reads it, a forward hook's copy included. The pool holds at
most what one forward pass of that largest shape needed at once (a smaller shape's pass keeps nothing it
had to add); :meth:`BufferPool.clear` gives it back, as does a larger input or another dtype.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import threading
from typing import Iterator

import torch

from .private_ops import PrivateOps

# Smaller tensors are left to the C allocator: its heap reuses them without page faults, and the
# pooled path costs an extra fill pass and op calls that do not pay off for them.
MIN_POOLED_BYTES = 1 << 20
# Results smaller than this do not make the pool give memory back (see BufferPool.release).
RELEASE_MIN_BYTES = 64 << 20
_ACTIVE: contextvars.ContextVar["BufferPool | None"] = contextvars.ContextVar("rmbg_buffer_pool", default=None)
# False during a pass smaller than the pool's shape: buffers it must add are not kept.
_KEEP_NEW: contextvars.ContextVar[bool] = contextvars.ContextVar("rmbg_buffer_pool_keep_new", default=True)


@functools.lru_cache(maxsize=None)
def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _storage_use_count(tensor: torch.Tensor) -> int:
    return PrivateOps.storage_use_count(tensor)


class BufferPool:
    """CPU buffers reused by later requests of at most their size once nothing references them."""

    def __init__(self) -> None:
        # (flat uint8 buffer, its storage's use count when nothing else references it)
        self._buffers: list[tuple[torch.Tensor, int]] = []
        self._input_key: tuple | None = None
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple:
        # A copied or pickled network starts with an empty pool of its own (a lock cannot be copied).
        return (BufferPool, ())

    @property
    def nbytes(self) -> int:
        """Bytes held by the pool (in use or free)."""
        with self._lock:
            return sum(buffer.numel() for buffer, _ in self._buffers)

    def clear(self) -> None:
        """Drop every buffer (those still in use live on until their last reader lets go)."""
        with self._lock:
            self._buffers.clear()
            self._input_key = None

    def release(self, nbytes: int) -> int:
        """Give back free buffers totalling at least ``nbytes`` (or all free ones); returns the bytes dropped.

        Called before a large result is written (e.g. a 24 MP photo's mask), so that it takes the
        pool's memory instead of adding to it: peak memory stays that of the forward pass. Requests
        under ``RELEASE_MIN_BYTES`` do nothing: so small a result fits in what the forward pass's own
        temporaries gave back, and a dropped buffer costs fresh pages in the next pass. The pool only
        ever holds CPU buffers, so for a network on another device there is nothing to give back.
        """
        if nbytes < RELEASE_MIN_BYTES:
            return 0
        with self._lock:
            # self._buffers is smallest first: the smallest free buffer that is enough, else the largest ones.
            free = [entry for entry in self._buffers if _storage_use_count(entry[0]) == entry[1]]
            dropped = next(([entry] for entry in free if entry[0].numel() >= nbytes), [])
            for entry in ([] if dropped else reversed(free)):
                dropped.append(entry)
                if sum(buffer.numel() for buffer, _ in dropped) >= nbytes:
                    break
            gone = {id(entry) for entry in dropped}
            self._buffers = [entry for entry in self._buffers if id(entry) not in gone]
            return sum(buffer.numel() for buffer, _ in dropped)

    @contextlib.contextmanager
    def active(self, network_input: torch.Tensor) -> Iterator[None]:
        """Serve :func:`pooled_empty` from this pool while the block runs (this thread or task only).

        Only for CPU inputs. An input larger than the pool's shape (more elements) or of another dtype
        first drops the old buffers; a smaller one reuses them and keeps nothing it adds, so the pool
        holds what its largest shape needs, not the sum over shapes. Callers check
        :func:`rmbg_core.cpu.self_check.pool_ready` first (the use count it rests on is private to torch).
        """
        if network_input.device.type != "cpu":
            yield
            return
        key = (tuple(network_input.shape), network_input.dtype)
        with self._lock:
            if (self._input_key is None or key[1] != self._input_key[1]
                    or math.prod(key[0]) > math.prod(self._input_key[0])):
                self._buffers.clear()
                self._input_key = key
            keep_new = key == self._input_key
        token, keep_token = _ACTIVE.set(self), _KEEP_NEW.set(keep_new)
        try:
            yield
        finally:
            _KEEP_NEW.reset(keep_token)
            _ACTIVE.reset(token)

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool = True) -> torch.Tensor:
        """A (B, C, H, W) tensor of garbage, channels-last or contiguous: a view of the smallest free
        buffer large enough, or of a new one."""
        nbytes = math.prod(shape) * _element_size(dtype)
        with self._lock:
            # Buffers are kept smallest first, so the first free one large enough fits best.
            chosen = next((buffer for buffer, free_count in self._buffers
                           if buffer.numel() >= nbytes and _storage_use_count(buffer) == free_count), None)
            if chosen is None:
                # A normal tensor, not an inference one: the pool serves inference_mode and no_grad alike.
                with torch.inference_mode(False):
                    chosen = torch.empty(nbytes, dtype=torch.uint8)
                if _KEEP_NEW.get():
                    self._buffers.append((chosen, _storage_use_count(chosen)))
                    self._buffers.sort(key=lambda entry: entry[0].numel())
            flat = chosen[:nbytes].view(dtype)
        return flat.as_strided(shape, _strides(tuple(shape), channels_last))


@functools.lru_cache(maxsize=4096)
def _strides(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, device="meta", memory_format=layout).stride()


def pooled_empty(shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool = True) -> torch.Tensor | None:
    """A buffer from the pool active in this context (see :meth:`BufferPool.take`), or None when there is
    none or the tensor is small (the C allocator reuses small blocks without new pages)."""
    pool = _ACTIVE.get()
    if pool is None or math.prod(shape) * _element_size(dtype) < MIN_POOLED_BYTES:
        return None
    return pool.take(shape, dtype, channels_last)


def empty(shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool = True) -> torch.Tensor:
    """A CPU buffer from the active pool, or a new CPU tensor when no pool is active."""
    out = pooled_empty(shape, dtype, channels_last)
    if out is None:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        out = torch.empty(shape, dtype=dtype, memory_format=layout)
    return out
