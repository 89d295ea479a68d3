"""Atomic file writing: an output is either absent or complete, never truncated (Ctrl-C, crash, full disk).

Data goes to a hidden temp file in the target's folder (``.<name>.<pid>-<random>.rmbg-part``, ``pid`` the
writer's process id), is fsynced, then ``os.replace``-d onto the target. The temp file is removed on any
error or interrupt; one left behind by a hard kill (SIGKILL, power loss) is never taken for an output, and
is removed by the next write of the same target once it is provably stale: its writer is no longer
running, or it is older than :data:`STALE_AFTER_SECONDS`. A live writer's temp file (another run writing
the same folder at the same time) is never touched.

Whole folders (``rmbg export``) are written the same way by :func:`write_folder_atomic`: built beside the
target, then renamed into place, so the target holds everything written or is exactly as it was before.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import secrets
import shutil
import time
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Callable

PART_SUFFIX = ".rmbg-part"
# A temp file untouched this long is stale whoever wrote it (a reused pid, or a writer on another machine);
# one output is written in seconds, so this is generous.
STALE_AFTER_SECONDS = 3600.0
NEW_SUFFIX = ".rmbg-new"
OLD_SUFFIX = ".rmbg-old"
_PART_OWNER = re.compile(r"\.(\d+)-[0-9a-f]+" + re.escape(PART_SUFFIX) + r"$")


def part_pattern(target: Path) -> str:
    """Glob pattern of the temp files :func:`write_atomic` uses for ``target``."""
    return os.path.join(glob.escape(os.fspath(target.parent)), f".{glob.escape(target.name)}.*{PART_SUFFIX}")


def remove_stale_parts(target: Path) -> None:
    """Delete the temp files of ``target`` that a killed writer left (see :func:`is_stale_part`)."""
    for part in glob.glob(part_pattern(target)):
        if is_stale_part(Path(part)):
            with suppress(FileNotFoundError):
                os.unlink(part)


def is_stale_part(part: Path, now: float | None = None) -> bool:
    """True when no live writer can own ``part``: its pid (in the name) is not running, or it is old."""
    try:
        age = (time.time() if now is None else now) - part.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_AFTER_SECONDS:
        return True
    owner = _PART_OWNER.search(part.name)
    return owner is not None and not process_exists(int(owner.group(1)))


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; assumed so where that cannot be asked (Windows)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and belongs to another user
        return True
    return True


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


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Raise ``OSError`` unless files can be written in ``folder``, or ``folder`` can be created.

    Permission bits do not tell (root, ACLs, read-only mounts), so a probe file is really created and removed:
    in ``folder``, or, if it does not exist yet, in its nearest existing parent, where it would be made.
    Leaves nothing behind (no folder is created).
    """
    existing = Path(os.path.abspath(folder))
    while True:
        try:
            os.stat(existing)
            break
        except FileNotFoundError:
            existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(existing))
    probe, handle = _create_part(existing / ".rmbg-write-check")
    handle.close()
    os.unlink(probe)


def part_name(name: str) -> str:
    """A fresh hidden temp-file name for an output called ``name``, naming this process (see the module doc)."""
    return f".{name}.{os.getpid()}-{secrets.token_hex(4)}{PART_SUFFIX}"


def _create_part(target: Path) -> tuple[Path, BinaryIO]:
    """A new, exclusively created temp file next to ``target`` (mode 0o666 minus umask), named for this process."""
    while True:
        temp = target.parent / part_name(target.name)
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


def write_folder_atomic(target: Path, write: Callable[[Path], None],
                        keep: Callable[[Path], bool] = lambda entry: False) -> None:
    """Make ``target`` the folder that ``write(folder)`` fills, replacing any folder already there.

    ``write`` fills a new hidden folder beside ``target`` (``.<name>.<random>.rmbg-new``). Entries of
    the old folder for which ``keep(entry)`` is true (e.g. ``.git``) are moved into the new one; then the
    old folder is moved aside, the new one renamed to ``target``, and the old one deleted. Any error
    (``OSError`` from the file system or whatever ``write`` raises) is re-raised after everything is
    put back as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _new_folder_beside(target, NEW_SUFFIX)
    try:
        write(staging)
        _sync_files(staging)
        _swap_in(staging, target, keep)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync_folder(target.parent)


def _swap_in(staging: Path, target: Path, keep: Callable[[Path], bool]) -> None:
    """Move the kept entries of ``target`` into ``staging``, then put ``staging`` in ``target``'s place."""
    if not target.exists():
        os.rename(staging, target)
        return
    carried: list[str] = []
    aside = None
    try:
        for entry in sorted(target.iterdir()):
            if keep(entry):
                os.rename(entry, staging / entry.name)
                carried.append(entry.name)
        aside = _unused_name_beside(target, OLD_SUFFIX)
        os.rename(target, aside)
        os.rename(staging, target)
    except BaseException:
        if aside is not None and aside.exists() and not target.exists():
            os.rename(aside, target)
        for name in carried:
            with suppress(OSError):
                os.rename(staging / name, target / name)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _new_folder_beside(target: Path, suffix: str) -> Path:
    """A new, empty hidden folder next to ``target`` (permissions from the umask, as ``mkdir`` gives)."""
    while True:
        folder = _unused_name_beside(target, suffix)
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        return folder


def _unused_name_beside(target: Path, suffix: str) -> Path:
    while True:
        path = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        if not os.path.lexists(path):
            return path


def _sync_files(folder: Path) -> None:
    """Flush every file written into ``folder`` to disk, so the renamed folder survives a power cut."""
    for path in folder.iterdir():
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    _sync_folder(folder)
