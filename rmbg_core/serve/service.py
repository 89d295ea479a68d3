"""The removal pipeline behind the HTTP routes: load the model, admit requests, decode, batch, render, encode.

Everything here is the core's: ``images.read_image`` decodes (via :mod:`.uploads`), ``RMBGModel.predict``
runs in the :class:`BatchWorker`, ``api.render`` builds the output and ``formats.OUTPUT_FORMATS`` encodes it.
Decoding and encoding run in a small thread pool, never on the event loop. Admission is bounded
(``ServeSettings.admitted_limit`` for the model's device), so memory is too; a full service answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator

from ..api import render
from ..errors import RMBGError
from ..model.images import RGBImage
from ..model.model import RMBGModel, load_model
from .batching import BatchWorker, WorkerStopped, is_out_of_memory
from .options import RemoveOptions
from .problems import Problem
from .settings import ServeSettings
from .uploads import Upload, decode_upload

logger = logging.getLogger("rmbg_core.serve")
Receive = Callable[[], Awaitable[dict]]


class RemovalService:
    """One model and its limits; ``start`` loads it in a thread, ``remove`` serves one request."""

    def __init__(self, model: RMBGModel | str | os.PathLike | None, settings: ServeSettings) -> None:
        self.source = model
        self.settings = settings
        self.model: RMBGModel | None = model if isinstance(model, RMBGModel) else None
        self.worker: BatchWorker | None = None
        self.max_batch = settings.max_batch or 1  # settled for the model's device once it has loaded
        self.load_error: str | None = None
        self.on_fatal: Callable[[str], None] | None = None
        self.admitted = 0
        self.refused_busy = 0
        self.disconnected = 0
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="rmbg-serve")

    def start(self) -> None:
        """Load the model and start the model thread, in the background (``/healthz`` says when ready)."""
        threading.Thread(target=self._load, name="rmbg-load", daemon=True).start()

    def _load(self) -> None:
        try:
            model = self.model
            if model is None:
                source = {} if self.source is None else {"source": self.source}
                model = load_model(**source, device=self.settings.device, dtype=self.settings.dtype)
            self.model = model
            self.max_batch = self.settings.batch_limit(model.device)
            self.worker = BatchWorker(model, input_size=self.settings.input_size, max_batch=self.max_batch,
                                      max_wait_s=self.settings.max_wait_ms / 1000.0)
        except RMBGError as exc:
            self._fail(str(exc))
        except Exception as exc:  # anything else is a bug or a broken install: log it whole, stop serving
            logger.exception("loading the model failed")
            self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, message: str) -> None:
        self.load_error = message
        logger.error("cannot serve: %s", message)
        if self.on_fatal is not None:
            self.on_fatal(message)

    @property
    def ready(self) -> bool:
        return self.worker is not None

    def close(self) -> None:
        """Stop the model thread (after what is queued) and the decode/encode threads."""
        if self.worker is not None:
            self.worker.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the ``admitted_limit`` places for a removal request, or raise 503."""
        if not self.ready:
            reason = f"model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise Problem(503, reason, {"Retry-After": "2"})
        if self.admitted >= self.max_batch + self.settings.queue:
            self.refused_busy += 1
            raise Problem(503, f"server busy: {self.admitted} requests in progress; retry later",
                          {"Retry-After": str(self.retry_after())})
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on: the passes needed for what is admitted."""
        stats = self.worker.stats if self.worker is not None else None
        per_pass = stats.seconds_per_pass if stats is not None else 0.0
        return max(1, math.ceil(per_pass * math.ceil(self.admitted / self.max_batch)))

    async def remove(self, upload: Upload, options: RemoveOptions, receive: Receive) -> bytes | None:
        """Decode, predict (batched), render and encode one upload; None if the client left meanwhile.

        ``receive`` is the request's ASGI receive, whose body is already read: its next message is the
        disconnect. A departed client's image is dropped from its batch if the pass has not started,
        and nothing is rendered or encoded for it.
        """
        work = asyncio.ensure_future(self._remove(upload, options))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        self.disconnected += 1
        await asyncio.gather(work, return_exceptions=True)  # let the cancelled work unwind
        return None

    async def _remove(self, upload: Upload, options: RemoveOptions) -> bytes:
        picture = await self._in_pool(decode_upload, upload, self.settings.max_pixels)
        try:
            mask = await asyncio.wrap_future(self.worker.submit(picture))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = prediction_problem(exc)
            if problem is None:
                raise
            raise problem from None
        return await self._in_pool(_render_and_encode, picture, mask, options)

    async def _in_pool(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        except MemoryError:
            raise Problem(503, "not enough memory for this image right now; retry later",
                          {"Retry-After": str(self.retry_after())}) from None

    def info(self) -> dict[str, Any]:
        """Model, limits and counters for ``/v1/info``."""
        settings, model = self.settings, self.model
        stats = self.worker.stats if self.worker is not None else None
        return {
            "state": "ready" if self.ready else ("failed" if self.load_error else "loading"),
            "model": None if model is None else {"source": model.source, "device": str(model.device),
                                                  "dtype": str(model.dtype).replace("torch.", "")},
            "input_size": list(settings.input_size),
            "limits": {"max_batch": self.max_batch if self.ready else settings.max_batch,
                       "max_wait_ms": settings.max_wait_ms, "queue": settings.queue,
                       "max_upload_mb": settings.max_upload_mb, "max_megapixels": settings.max_megapixels,
                       "allow_urls": settings.allow_urls, "token_required": settings.token is not None},
            "stats": {"in_progress": self.admitted, "refused_busy": self.refused_busy,
                      "disconnected": self.disconnected, "queued": self.worker.waiting if self.worker else 0,
                      **({} if stats is None else {
                          "forward_passes": stats.forward_passes, "images": stats.images,
                          "largest_batch": stats.largest_batch, "dropped_before_pass": stats.abandoned,
                          "failed_passes": stats.failed})},
        }


def prediction_problem(exc: BaseException) -> Problem | None:
    """The HTTP answer for a failed prediction that is not a bug (None: let it be logged as one)."""
    if is_out_of_memory(exc):
        return Problem(503, "not enough memory for this image right now; retry later", {"Retry-After": "5"})
    if isinstance(exc, WorkerStopped):
        return Problem(503, "the server is shutting down", {"Retry-After": "5"})
    if isinstance(exc, RMBGError):
        return Problem(400, str(exc))
    return None


def _render_and_encode(picture: RGBImage, mask: Any, options: RemoveOptions) -> bytes:
    return options.encoder.encode(render(picture, mask, **options.render_options()))


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
