"""Atomic file writing: an output is either absent or complete, never truncated (Ctrl-C, crash, full disk).

Data goes to a hidden temp file in the target's folder (``.<name>.<random>.rmbg-part``), is fsynced, then
``os.replace``-d onto the target. The temp file is removed on any error or interrupt; one left behind by
a hard kill (SIGKILL, power loss) is never taken for an output, and is removed by the next write of the
same target.
"""

from __future__ import annotations

import glob
import os
import secrets
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Callable

PART_SUFFIX = ".rmbg-part"


def part_pattern(target: Path) -> str:
    """Glob pattern of the temp files :func:`write_atomic` uses for ``target``."""
    return os.path.join(glob.escape(os.fspath(target.parent)), f".{glob.escape(target.name)}.*{PART_SUFFIX}")


def remove_stale_parts(target: Path) -> None:
    """Delete temp files left for ``target`` by an earlier run that was killed mid-write."""
    for stale in glob.glob(part_pattern(target)):
        with suppress(FileNotFoundError):
            os.unlink(stale)


def write_atomic(target: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``target`` with what ``write(file)`` writes, atomically.

    The parent folder is created if needed. The temp file honours the umask like a plain ``open``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(target)
    temp, handle = _create_part(target)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    _sync_folder(target.parent)


def _create_part(target: Path) -> tuple[Path, BinaryIO]:
    """A new, exclusively created temp file next to ``target`` (mode 0o666 minus umask)."""
    while True:
        temp = target.parent / f".{target.name}.{secrets.token_hex(4)}{PART_SUFFIX}"
        try:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return temp, os.fdopen(descriptor, "wb")


def _sync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows it (POSIX); a no-op elsewhere."""
    if os.name != "posix":
        return
    with suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
