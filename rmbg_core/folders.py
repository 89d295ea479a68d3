"""Write a whole folder atomically: it is built beside its target, then renamed into place.

After :func:`write_folder_atomic` the target either holds everything that was written (and the entries
asked to be kept from the folder it replaced) or is exactly as it was before: a full disk, a read-only
parent, an error in the writer or Ctrl-C leave no half-written folder and no temporary one behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Callable

from .files import _sync_folder

NEW_SUFFIX = ".rmbg-new"
OLD_SUFFIX = ".rmbg-old"


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
