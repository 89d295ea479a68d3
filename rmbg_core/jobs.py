"""A files-to-folder removal job, what ``rmbg remove`` runs: plan outputs, skip existing ones, run the
batch iterator, encode and write atomically in worker threads, and keep a summary.

A rerun of an interrupted job resumes: outputs are only ever complete files, and existing ones are
skipped unless ``overwrite`` is set.
"""

from __future__ import annotations

import io
import os
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Hashable, Iterable, Protocol, Sequence, Union

from PIL import Image

from .batch import iter_remove_background, make_executor
from .refine import RefinementLike
from .compose import Color
from .files import write_atomic
from .inputs import Discovery, FoundImage, find_images
from .model import RMBGModel
from .processing import MODEL_INPUT_SIZE


@dataclass(frozen=True)
class OutputFormat:
    """How outputs are encoded: Pillow format name, file suffix, save options."""

    pil_format: str
    suffix: str
    options: dict = field(default_factory=dict)

    def encode(self, image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=self.pil_format, **self.options)
        return buffer.getvalue()


# PNG's zlib setting: "rle" is zlib's run-length strategy (Z_RLE; any level 1-9 then gives the same stream),
# which on photos' filtered rows comes within about 5% of the default level 6's size (masks and composites
# smaller) in a quarter of its time; 0-9 are zlib levels with its default strategy. All are lossless.
PNG_COMPRESSIONS = ("rle", *map(str, range(10)))
_Z_RLE = 3


def png_format(compression: str = "rle") -> OutputFormat:
    """The PNG output format with ``compression``, one of :data:`PNG_COMPRESSIONS`."""
    if compression not in PNG_COMPRESSIONS:
        raise ValueError(f"PNG compression must be one of {', '.join(PNG_COMPRESSIONS)}, got {compression!r}")
    if compression == "rle":
        return OutputFormat("PNG", ".png", {"compress_level": 1, "compress_type": _Z_RLE})
    return OutputFormat("PNG", ".png", {"compress_level": int(compression)})


# WebP is lossless and exact (keeps colours under zero alpha), so it equals PNG; JPEG (no alpha) is for composites.
OUTPUT_FORMATS = {
    "png": png_format(),
    "webp": OutputFormat("WEBP", ".webp", {"lossless": True, "exact": True}),
    "jpg": OutputFormat("JPEG", ".jpg", {"quality": 95}),
}


# A file of a job: a local Path, or a URI string on a remote store (see Storage).
Location = Union[Path, str]


@dataclass(frozen=True)
class Task:
    """One image to process and the file its output goes to."""

    source: Location
    output: Location


@dataclass(frozen=True)
class Failure:
    """An input that produced no output, and why (a one-line message naming the file)."""

    input: str
    error: str


@dataclass
class Summary:
    """Counts, failures and timing of a job (wall time since the summary was made)."""

    written: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def finish(self) -> "Summary":
        self.seconds = time.perf_counter() - self.started
        return self

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` schema."""
        return {
            "written": self.written,
            "skipped": self.skipped,
            "failed": [{"input": failure.input, "error": failure.error} for failure in self.failures],
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 6),
            "images_per_second": round(self.images_per_second, 6),
        }

    def line(self) -> str:
        """A one-line human summary."""
        parts = [f"{self.written} written"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (output exists; --overwrite to redo)")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        text = ", ".join(parts) + f" in {self.seconds:.1f} s ({self.images_per_second:.2f} images/s)"
        return text + ("; interrupted: rerun the same command to resume" if self.interrupted else "")


@dataclass
class Plan:
    """Inputs split into work to do, outputs that already exist, inputs that cannot be done, and notes."""

    tasks: list[Task] = field(default_factory=list)
    skipped: list[Task] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Storage(Protocol):
    """Where a job's files live, as the planner sees them: :data:`LOCAL_FILES`, or a remote store
    (``rmbg_core.ray`` adds URIs read through pyarrow's file systems)."""

    def join(self, folder: Location, relative: PurePath) -> Location:
        """The location ``relative`` below ``folder``."""

    def exists(self, location: Location) -> bool:
        """Whether something is stored at ``location``."""

    def keys(self, location: Location) -> list[Hashable]:
        """Keys that are equal for two locations of the same file (comparable across stores)."""


class LocalFiles:
    """The local file system: one file under several names (symlinks, ``..``, hard links) shares a key."""

    def join(self, folder: Location, relative: PurePath) -> Path:
        return Path(folder) / relative

    def exists(self, location: Location) -> bool:
        return Path(location).exists()

    def keys(self, location: Location) -> list[Hashable]:
        identity = _file_identity(location)
        return [("path", _real_path(location))] + ([("inode", identity)] if identity is not None else [])


LOCAL_FILES = LocalFiles()


def plan_job(arguments: Sequence[str], out_dir: str | os.PathLike, *, suffix: str, recursive: bool = False,
             overwrite: bool = False) -> Plan:
    """Find the images ``arguments`` name (see :func:`inputs.find_images`) and plan their outputs."""
    found = find_images(arguments, recursive=recursive, exclude=out_dir)
    return plan_found(found, out_dir, suffix=suffix, recursive=recursive, overwrite=overwrite)


def plan_found(found: Discovery, out_dir: Location, *, suffix: str, recursive: bool = False,
               overwrite: bool = False, input_store: Storage = LOCAL_FILES,
               output_store: Storage = LOCAL_FILES) -> Plan:
    """Plan the outputs of the images found (see :func:`plan_outputs`).

    Arguments that named nothing become failures; folders without images become notes.
    """
    plan = plan_outputs(found.images, out_dir, suffix, overwrite=overwrite, input_store=input_store,
                        output_store=output_store)
    plan.failures[:0] = [Failure(argument, f"{argument}: {reason}") for argument, reason in found.problems]
    hint = "" if recursive else " (--recursive looks in subfolders)"
    plan.notes.extend(f"{folder}: no image files in this folder{hint}" for folder in found.empty_folders)
    return plan


def plan_outputs(images: Sequence[FoundImage], out_dir: Location, suffix: str, *,
                 overwrite: bool = False, input_store: Storage = LOCAL_FILES,
                 output_store: Storage = LOCAL_FILES) -> Plan:
    """Give every image its output ``out_dir/<relative folder>/<stem><suffix>`` and decide what to do.

    Two inputs with one output name (``a.jpg`` and ``a.png``) would overwrite each other: the later is a
    failure. An output that is any input of the job (itself or another; through symlinks, ``..`` or a
    hard link) is a failure too, whatever ``overwrite`` says: inputs are never replaced. The stores
    say where inputs and outputs live (local files by default).
    """
    plan = Plan()
    inputs = InputFiles((image.path for image in images), input_store)
    claimed: dict[Hashable, Location] = {}
    for image in images:
        output = output_store.join(out_dir, image.relative.with_name(image.relative.stem + suffix))
        keys = output_store.keys(output)
        if keys[0] in claimed:
            plan.failures.append(Failure(str(image.path), f"{image.path}: output {output} is already the output "
                                         f"of {claimed[keys[0]]}; rename one (or use --recursive for nested folders)"))
            continue
        claimed[keys[0]] = image.path
        replaced = inputs.find(keys)
        if replaced is not None:
            which = "itself" if replaced == image.path else str(replaced)
            plan.failures.append(Failure(str(image.path), f"{image.path}: the output {output} would replace the "
                                         f"input {which}; choose another output folder"))
        elif not overwrite and output_store.exists(output):
            plan.skipped.append(Task(image.path, output))
        else:
            plan.tasks.append(Task(image.path, output))
    return plan


ItemDone = Callable[[Task, "str | None"], None]


def run_tasks(tasks: Sequence[Task], summary: Summary, *, model: RMBGModel, output_format: OutputFormat,
              return_mask: bool = False, background: Color | None = None, refine: RefinementLike = None,
              estimate_foreground: bool = False, batch_size: int = 1, workers: int = 2,
              input_size: int | tuple[int, int] = MODEL_INPUT_SIZE, on_done: ItemDone | None = None) -> Summary:
    """Process ``tasks`` into ``summary``; ``on_done(task, error_or_None)`` runs as each one settles.

    Ctrl-C (KeyboardInterrupt) stops the job cleanly: writes in flight complete, queued ones are
    dropped, and ``summary.interrupted`` is set.
    """
    writer = make_executor(workers, name="rmbg-write")
    pending: deque[tuple[Task, Future]] = deque()
    max_pending = 2 * max(workers, 1)

    def settle(block: bool) -> None:
        while pending and (block or pending[0][1].done() or len(pending) > max_pending):
            task, future = pending.popleft()
            _record(summary, task, future.result(), on_done)

    results = iter_remove_background([task.source for task in tasks], model=model, return_mask=return_mask,
                                     background=background, refine=refine, estimate_foreground=estimate_foreground,
                                     batch_size=batch_size, workers=workers, input_size=input_size)
    try:
        for task, result in zip(tasks, results):
            if result.error is not None:
                _record(summary, task, result.error, on_done)
            else:
                pending.append((task, writer.submit(_write, result.image, task.output, output_format)))
            settle(block=False)
        settle(block=True)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        results.close()
        writer.shutdown(wait=True, cancel_futures=True)
        for task, future in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                _record(summary, task, future.result(), on_done)
    return summary


def _record(summary: Summary, task: Task, error: str | None, on_done: ItemDone | None) -> None:
    if error is None:
        summary.written += 1
    else:
        summary.failures.append(Failure(str(task.source), error))
    if on_done is not None:
        on_done(task, error)


def _write(image: Image.Image, output: Path, output_format: OutputFormat) -> str | None:
    """Encode and write one output atomically; the reason on failure (disk full, no permission...)."""
    try:
        data = output_format.encode(image)
    except (OSError, ValueError) as exc:
        return f"{output}: cannot encode as {output_format.pil_format} ({exc})"
    try:
        write_atomic(output, lambda handle: handle.write(data))
    except OSError as exc:
        return f"{output}: cannot write ({exc.strerror or exc})"
    return None


class InputFiles:
    """The input files of a job, found by any of their store's keys (for local files: real path or identity)."""

    def __init__(self, locations: Iterable[Location], store: Storage = LOCAL_FILES) -> None:
        self.by_key: dict[Hashable, Location] = {}
        for location in locations:
            for key in store.keys(location):
                self.by_key.setdefault(key, location)

    def find(self, keys: Iterable[Hashable]) -> Location | None:
        """The input that has one of ``keys`` (the same file under any name), or None."""
        return next((self.by_key[key] for key in keys if key in self.by_key), None)


def _real_path(path: Location) -> str:
    return os.path.normcase(os.path.realpath(path))


def _file_identity(path: Location) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
