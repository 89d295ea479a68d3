"""Cross-request batching: one thread owns the model and runs one forward pass per collected batch.

Requests hand in decoded images with :meth:`BatchWorker.submit` and get a ``concurrent.futures.Future``
of the (H, W) float mask. The worker takes the first waiting image, then waits up to ``max_wait_s``
for more (at most ``max_batch``), and predicts them together with ``RMBGModel.predict`` (images of
different sizes share the pass; each mask is normalised on its own, so it equals the one-at-a-time
mask). A request whose client has gone cancels its future: if the pass has not started, its image is
dropped from the batch. If a batch fails (e.g. out of memory), its images are retried one at a time,
so only the culprit fails.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from ..model.images import RGBImage
from ..model.model import RMBGModel

# Weight of the newest pass in the running mean of pass durations (for Retry-After estimates).
DURATION_SMOOTHING = 0.2


@dataclass
class BatchStats:
    """What the worker has done; read by ``/v1/info`` (and the tests: fewer passes than requests)."""

    forward_passes: int = 0
    images: int = 0
    largest_batch: int = 0
    abandoned: int = 0
    failed: int = 0
    seconds_per_pass: float = 0.0

    def record(self, batch: int, seconds: float) -> None:
        self.forward_passes += 1
        self.images += batch
        self.largest_batch = max(self.largest_batch, batch)
        previous = self.seconds_per_pass or seconds
        self.seconds_per_pass = previous + DURATION_SMOOTHING * (seconds - previous)


class WorkerStopped(RuntimeError):
    """``submit`` after ``close``: the service is shutting down."""


@dataclass
class Job:
    picture: RGBImage
    future: Future = field(default_factory=Future)


class BatchWorker:
    """The model thread of one service: ``submit`` images from any thread, ``close`` to stop."""

    def __init__(self, model: RMBGModel, *, input_size: tuple[int, int], max_batch: int, max_wait_s: float) -> None:
        self.model = model
        self.input_size = input_size
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._jobs: deque[Job] = deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="rmbg-model", daemon=True)
        self._thread.start()

    def submit(self, picture: RGBImage) -> Future:
        """Queue one image; the future gives its mask (cancel it to drop the image if not yet started)."""
        job = Job(picture)
        with self._wakeup:
            if self._closed:
                raise WorkerStopped("the model worker has stopped")
            self._jobs.append(job)
            self._wakeup.notify()
        return job.future

    @property
    def waiting(self) -> int:
        """Images queued and not yet taken into a pass."""
        return len(self._jobs)

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued (cancelled images are dropped), then stop the thread."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            self.stats.abandoned += len(batch) - len(live)
            if live:
                self._forward(live)

    def _collect(self) -> list[Job] | None:
        """Block for the first image, gather more for up to ``max_wait_s``; None once closed and empty."""
        with self._wakeup:
            while not self._jobs and not self._closed:
                self._wakeup.wait()
            if not self._jobs:
                return None
            deadline = time.monotonic() + self.max_wait_s
            while not self._closed and self._live() < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
            batch: list[Job] = []
            while self._jobs and len(batch) < self.max_batch:
                job = self._jobs.popleft()
                if job.future.cancelled():
                    self.stats.abandoned += 1
                else:
                    batch.append(job)
            return batch

    def _live(self) -> int:
        return sum(not job.future.cancelled() for job in self._jobs)

    def _forward(self, jobs: list[Job]) -> None:
        """One pass for ``jobs`` (futures already running); on failure, one pass per image."""
        started = time.perf_counter()
        try:
            masks = self.model.predict([job.picture.pixels for job in jobs], batch_size=len(jobs),
                                       input_size=self.input_size)
        except Exception as exc:  # handed to the requests; a failed batch is retried image by image
            if len(jobs) > 1:
                for job in jobs:
                    self._forward([job])
                return
            self.stats.failed += 1
            jobs[0].future.set_exception(exc)
            return
        self.stats.record(len(jobs), time.perf_counter() - started)
        for job, mask in zip(jobs, masks):
            job.future.set_result(mask)


def is_out_of_memory(exc: BaseException) -> bool:
    """A failure that is the load's fault rather than the image's (worth a 503 and a retry)."""
    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError))
