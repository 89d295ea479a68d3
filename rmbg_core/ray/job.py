"""A removal job on Ray Data: planned tasks in, outputs written by the workers, a summary back.

The dataset is three stages: workers read each input's bytes (tasks), :class:`RemoveBackground` actors
decode, run the model one batch per forward pass and encode (one model per actor, on a GPU when asked),
and workers write each output atomically (tasks). Only each row's index and error come back to the
driver, which keeps the summary and our progress display (Ray Data's own is switched off).
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import ray
from ray.util.debug import log_once

from ..cli.jobs import Failure, ItemDone, Location, Summary, Task
from ..errors import RMBGError, first_line
from .predictor import Batch, RemoveBackground
from .storage import STORE_ERRORS, RemoteStore, read_bytes, write_bytes

PACKAGE_DIR = Path(__file__).resolve().parents[1]
MAX_BLOCKS = 10_000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RMBG_ERROR = re.compile(r"^rmbg_core\.errors\.\w+: ")  # Ray's report ends with "module.Class: message"


class JobFailed(RMBGError):
    """The Ray job itself failed (a worker could not start or died), not one image; outputs written are kept."""


@dataclass(frozen=True)
class Cluster:
    """Where and how wide a job runs: Ray's ``address`` (None: ``RAY_ADDRESS``, else the cluster ``ray start``
    runs on this machine, else a new local one), the number of model actors (None: as many as the cluster's CPUs or GPUs allow), each one's GPUs and CPUs,
    and the rows per forward pass."""

    address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = 1

    def actors(self) -> int:
        """``num_workers``, or as many actors as the connected cluster has room for (at least one)."""
        if self.num_workers is not None:
            return self.num_workers
        resources = ray.cluster_resources()
        if self.gpus_per_worker > 0:
            return max(1, int(resources.get("GPU", 0) // self.gpus_per_worker))
        return max(1, int(resources.get("CPU", 1) // self.cpus_per_worker))


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or start a local one) unless this process already has; True if joined here.

    The workers get this driver's copy of rmbg_core (``py_modules``), so a cluster runs the code the
    driver planned with. The workers' logs stay in Ray's session folder (``/tmp/ray/session_latest/logs``
    on each node) rather than on this terminal: failures come back as rows, or as :class:`JobFailed`.
    """
    if ray.is_initialized():
        return False
    with quiet_logs(logging.WARNING), kept_signal_handlers():  # quiet: e.g. a throwaway cluster's token warning
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env={"py_modules": [str(PACKAGE_DIR)]})
    return True


@contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """Put this process's SIGINT and SIGTERM handlers back after the block: Ray's core installs its own when
    it starts, and the ``rmbg`` command's (a clean stop, exit 130) must stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)


@contextmanager
def quiet_logs(level: int = logging.INFO) -> Iterator[None]:
    """Drop Python log records at ``level`` and below while the block runs (Ray Data's start, finish and
    progress lines are INFO), then restore the process's setting."""
    previous = logging.root.manager.disable
    logging.disable(max(level, previous))
    try:
        yield
    finally:
        logging.disable(previous)


def hide_data_progress() -> None:
    """Ray Data without its progress bars: the job front end shows its own."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # Ray's key for its "Progress bars disabled" warning


def build_dataset(tasks: Sequence[Task], predictor: dict[str, Any], cluster: Cluster,
                  input_store: RemoteStore | None = None, output_store: RemoteStore | None = None) -> ray.data.Dataset:
    """The job's dataset: one row per task, ``{"index", "error"}`` out once its output is written (or not)."""
    rows = [{"index": index, "path": str(task.source), "source": _absolute(task.source, input_store),
             "output_path": str(task.output), "target": _absolute(task.output, output_store)}
            for index, task in enumerate(tasks)]
    # Blocks of one batch each, so every actor gets work even in a small job (fewer, larger ones past MAX_BLOCKS).
    per_block = max(cluster.batch_size, math.ceil(len(rows) / MAX_BLOCKS))
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / per_block)))
    dataset = dataset.map_batches(read_sources, fn_kwargs={"store": input_store}, batch_format="numpy", num_cpus=0)
    dataset = dataset.map_batches(
        RemoveBackground, fn_constructor_kwargs=predictor, batch_size=cluster.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cluster.actors()), num_cpus=cluster.cpus_per_worker,
        num_gpus=cluster.gpus_per_worker or None)
    return dataset.map_batches(write_outputs, fn_kwargs={"store": output_store}, batch_format="numpy", num_cpus=0)


def run_on_ray(tasks: Sequence[Task], summary: Summary, *, predictor: dict[str, Any], cluster: Cluster,
               input_store: RemoteStore | None = None, output_store: RemoteStore | None = None,
               on_done: ItemDone | None = None) -> Summary:
    """Run ``tasks`` on the cluster Ray is connected to, into ``summary``; ``on_done(task, error)`` per task.

    ``predictor`` holds :class:`RemoveBackground`'s keyword options. Ctrl-C stops the job: outputs
    written so far are complete files, and ``summary.interrupted`` is set.
    """
    hide_data_progress()
    failures: list[tuple[int, Failure]] = []
    try:
        with quiet_logs():
            for row in build_dataset(tasks, predictor, cluster, input_store, output_store).iter_rows():
                task, error = tasks[row["index"]], row["error"] or None
                if error is None:
                    summary.written += 1
                else:
                    failures.append((row["index"], Failure(str(task.source), error)))
                if on_done is not None:
                    on_done(task, error)
    except KeyboardInterrupt:
        summary.interrupted = True
    except ray.exceptions.RayError as exc:
        raise JobFailed(f"the Ray job failed: {root_cause(exc)}") from None
    finally:
        summary.failures.extend(failure for _, failure in sorted(failures, key=lambda item: item[0]))
    return summary


def read_sources(batch: Batch, store: RemoteStore | None) -> Batch:
    """Add each row's file content as ``bytes``; a file that cannot be read gets ``error`` instead."""
    count = len(batch["source"])
    contents = np.full(count, b"", dtype=object)
    errors = np.full(count, "", dtype=object)
    for row, (source, name) in enumerate(zip(batch["source"], batch["path"])):
        try:
            contents[row] = read_bytes(store, source)
        except STORE_ERRORS as exc:
            errors[row] = f"{name}: cannot read ({_reason(exc)})"
    return {**batch, "bytes": contents, "error": errors}


def write_outputs(batch: Batch, store: RemoteStore | None) -> Batch:
    """Write each row's ``output`` to its ``target`` atomically; keep only ``index`` and ``error``."""
    errors = np.array(batch["error"], dtype=object)
    for row, (data, target, name) in enumerate(zip(batch["output"], batch["target"], batch["output_path"])):
        if errors[row]:
            continue
        try:
            write_bytes(store, target, data)
        except STORE_ERRORS as exc:
            errors[row] = f"{name}: cannot write ({_reason(exc)})"
    return {"index": batch["index"], "error": errors}


def root_cause(exc: BaseException) -> str:
    """One line for a Ray failure: the rmbg error raised in a worker (a model that cannot be loaded...) if
    there is one, else the last line of Ray's report, which names the original exception."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RMBGError):
            return str(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return _RMBG_ERROR.sub("", lines[-1]) if lines else type(exc).__name__


def _absolute(location: Location, store: RemoteStore | None) -> str:
    """A location every worker can use: absolute for a local path (workers run in another folder)."""
    return os.path.abspath(location) if store is None else str(location)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or first_line(exc)
