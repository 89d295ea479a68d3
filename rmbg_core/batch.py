"""Remove the backgrounds of many images, in order, one result (or one error) per input.

Decoding (``images.read_image``) and building the outputs (``api.render``) run in worker threads a few
images ahead of and behind the model, so the network is not left idle waiting on file I/O; the model
itself runs in the calling thread, one ``RMBGModel.predict`` call per batch.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Union

import numpy as np
import torch
from PIL import Image

from .api import render, resolve_model
from .edges.compose import Color, parse_color
from .edges.refine import RefinementLike, as_refinement
from .errors import InputError, RMBGError
from .model.images import ImageInput, RGBImage, describe, read_image
from .model.model import RMBGModel
from .model.processing import MODEL_INPUT_SIZE, check_input_size
from .options import check_count

# Inputs that are one image although Python could iterate them (a path string letter by letter).
SINGLE_INPUTS = (str, bytes, bytearray, os.PathLike, Image.Image)
# Failures that belong to one image, not to the run: a bad image, or one too big for the memory left.
ITEM_ERRORS: tuple[type[BaseException], ...] = (RMBGError, MemoryError, torch.cuda.OutOfMemoryError)


@dataclass
class RemovalResult:
    """The outcome for one input: ``image`` (PIL) on success, else ``error`` (a one-line message)."""

    source: Any
    image: Image.Image | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class InlineExecutor(Executor):
    """Runs each task at once in the calling thread: ``workers=0``, the sequential baseline."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future


def make_executor(workers: int, name: str = "rmbg-io") -> Executor:
    """A pool of ``workers`` threads, or an :class:`InlineExecutor` for ``workers=0``."""
    workers = check_count(workers, "workers", 0)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) if workers else InlineExecutor()


def iter_remove_background(images: ImageInput | Iterable[ImageInput], *,
                           model: RMBGModel | str | os.PathLike | None = None, return_mask: bool = False,
                           background: Color | None = None, refine: RefinementLike = None,
                           estimate_foreground: bool = False, batch_size: int = 1, workers: int = 2,
                           input_size: int | tuple[int, int] = MODEL_INPUT_SIZE) -> Iterator[RemovalResult]:
    """Yield a :class:`RemovalResult` per input of ``images`` (paths, bytes, PIL, arrays...), in input order.

    Outputs are those of :func:`remove_background` (mask, cutout or composite, with the same ``refine``
    and ``estimate_foreground`` options). A bad input gives a
    result with ``error`` set and the rest go on. ``images`` is consumed lazily, a few items ahead;
    one image (a path, bytes, a PIL image, an array) is one input, a (B, H, W, C) array or tensor is B.
    If iterating ``images`` raises, the results of the inputs read before are yielded, then the error.
    ``batch_size`` images share a forward pass; ``workers`` threads decode and render (0: none);
    ``input_size`` is the network input, as in :func:`remove_background`. The model, options and colour are checked here, before the first result is asked for
    (:class:`OptionError`, :class:`InputError`, :class:`CheckpointError`).
    """
    batch_size = check_count(batch_size, "batch_size", 1)
    check_count(workers, "workers", 0)
    size = check_input_size(input_size)
    sources = as_sources(images)
    if background is not None and not return_mask:
        parse_color(background)
    outputs = {"return_mask": return_mask, "background": background, "refine": as_refinement(refine),
               "estimate_foreground": estimate_foreground}
    session = resolve_model(model)
    return _results(sources, session, outputs, batch_size, workers, size)


def as_sources(images: ImageInput | Iterable[ImageInput]) -> Iterator[ImageInput]:
    """The inputs of ``images``: one image is one input (a path string is not iterated letter by letter)."""
    if isinstance(images, SINGLE_INPUTS) or hasattr(images, "read"):
        return iter([images])
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim != 4:
        return iter([images])
    try:
        return iter(images)
    except TypeError:
        raise InputError(f"images must be an image or an iterable of images, got {type(images).__name__}") from None


Decoded = Union[RGBImage, str]
_END = object()


def _results(sources: Iterator[ImageInput], model: RMBGModel, outputs: dict[str, Any], batch_size: int,
             workers: int, input_size: tuple[int, int]) -> Iterator[RemovalResult]:
    pool = make_executor(workers)
    ahead = batch_size + max(workers, 1)  # images decoded ahead: the next batch while this one runs
    decoding: deque[tuple[Any, Future]] = deque()
    finishing: deque[Future] = deque()
    source_error: list[Exception] = []  # what iterating the inputs raised: re-raised after the results before it

    def fill() -> None:
        while len(decoding) < ahead and not source_error:
            try:
                source = next(sources, _END)
            except Exception as exc:
                source_error.append(exc)
                return
            if source is _END:
                return
            decoding.append((source, pool.submit(_decode, source)))

    try:
        fill()
        while decoding:
            taken: list[tuple[Any, Decoded]] = []  # in input order, decoding failures included
            pictures = 0
            while decoding and pictures < batch_size:
                source, future = decoding.popleft()
                fill()
                item = future.result()
                pictures += not isinstance(item, str)
                taken.append((source, item))
            masks = iter(_predict(model, [item for _, item in taken if not isinstance(item, str)], input_size))
            for source, item in taken:
                outcome = item if isinstance(item, str) else next(masks)
                if isinstance(outcome, str):
                    finishing.append(_finished(RemovalResult(source, error=outcome)))
                else:
                    finishing.append(pool.submit(_render, source, item, outcome, outputs))
            while finishing and (finishing[0].done() or len(finishing) > ahead):
                yield finishing.popleft().result()
        while finishing:
            yield finishing.popleft().result()
        if source_error:
            raise source_error[0]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode(source: ImageInput) -> Decoded:
    """The decoded image, or the one-line reason it cannot be used (never raises for a bad file)."""
    try:
        return read_image(source)
    except RMBGError as exc:
        return str(exc)
    except MemoryError:
        return f"{describe(source)}: not enough memory to decode this image"
    except Exception as exc:  # a malformed file can trip any decoder internals; it is still one bad file
        return f"{describe(source)}: cannot decode ({type(exc).__name__}: {exc})"


def _predict(model: RMBGModel, pictures: list[RGBImage], input_size: tuple[int, int]) -> list[torch.Tensor | str]:
    """Masks for ``pictures`` in one call; if that fails, one at a time, so only the culprit fails."""
    if not pictures:
        return []
    try:
        return list(model.predict([picture.pixels for picture in pictures], batch_size=len(pictures),
                                  input_size=input_size))
    except ITEM_ERRORS as exc:
        if len(pictures) > 1:
            return [mask for picture in pictures for mask in _predict(model, [picture], input_size)]
        return [f"{pictures[0].name}: {_reason(exc)}"]


def _render(source: Any, picture: RGBImage, mask: torch.Tensor, outputs: dict[str, Any]) -> RemovalResult:
    """Build one output with ``api.render`` (``outputs`` holds its keyword options)."""
    try:
        return RemovalResult(source, image=render(picture, mask, **outputs))
    except ITEM_ERRORS as exc:
        return RemovalResult(source, error=f"{picture.name}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return "not enough memory for this image (try a smaller batch size, or the CPU)"
    return str(exc)


def _finished(result: RemovalResult) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future
