"""Find the image files a command line names: files, folders (top level or recursive) and glob patterns.

Every image comes with the relative path its output takes below the output folder: its name alone, or,
with ``recursive``, its path below the folder (or a glob's fixed prefix) it was found under. Folders and
globs yield image files only (by extension) and skip hidden entries (dot-names: temp files, ``.git``);
a file named explicitly is always taken, whatever its name, so a bad one is reported rather than ignored.
A subfolder that cannot be listed (no permission) is a problem of its own; its siblings are still found.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff",
    ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".jp2", ".j2k", ".avif",
})


@dataclass(frozen=True)
class FoundImage:
    """An input file (``path`` as the user spelled it; a URI string on a remote store) and where its output
    goes below the output folder."""

    path: Union[Path, str]
    relative: Path


@dataclass
class Discovery:
    """What the arguments named: images in order, (argument or folder, reason) for those that named nothing
    or could not be listed, and image-less folders."""

    images: list[FoundImage] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(arguments: Sequence[str | os.PathLike], *, recursive: bool = False,
                exclude: str | os.PathLike | None = None) -> Discovery:
    """Expand ``arguments`` (files, folders, globs) into image files, each once, in a stable order.

    ``exclude`` is a folder never scanned (the output folder, so a rerun does not eat its own outputs).
    """
    excluded = os.path.realpath(exclude) if exclude is not None else None
    found = Discovery()
    seen: set[str] = set()
    for argument in arguments:
        text = os.fspath(argument)
        path = Path(text)
        problems_before = len(found.problems)
        try:
            if path.is_dir():
                images = list(_scan_folder(path, path, recursive, excluded, found.problems))
                if not images and len(found.problems) == problems_before:
                    found.empty_folders.append(text)
            elif path.exists():
                images = [FoundImage(path, Path(path.name))]
            elif glob.has_magic(text):
                images = list(_expand_glob(text, recursive, excluded, found.problems))
                if not images and len(found.problems) == problems_before:
                    found.problems.append((text, "no image files match this pattern"))
            else:
                found.problems.append((text, "no such file or folder"))
                continue
        except OSError as exc:
            found.problems.append((text, f"cannot list it ({exc.strerror or exc})"))
            continue
        for image in images:
            key = os.path.realpath(image.path)
            if key not in seen:
                seen.add(key)
                found.images.append(image)
    return found


def _scan_folder(folder: Path, base: Path, recursive: bool, excluded: str | None,
                 problems: list[tuple[str, str]]) -> Iterable[FoundImage]:
    """Image files in ``folder`` (and below, if ``recursive``), sorted, with paths relative to ``base``.

    A folder that cannot be listed (``folder`` or one below) is added to ``problems`` and the rest goes on.
    """

    def skip_unlistable(error: OSError) -> None:
        problems.append((os.fspath(error.filename or folder), f"cannot list it ({error.strerror or error})"))

    if not recursive:
        try:
            entries = sorted(folder.iterdir())
        except OSError as error:
            skip_unlistable(error)
            return
        for entry in entries:
            if entry.is_file() and is_image_file(entry):
                yield FoundImage(entry, Path(entry.name))
        return

    for root, folders, files in os.walk(folder, onerror=skip_unlistable):
        folders[:] = sorted(name for name in folders
                            if not name.startswith(".") and os.path.realpath(os.path.join(root, name)) != excluded)
        for name in sorted(files):
            entry = Path(root, name)
            if is_image_file(entry) and entry.is_file():
                yield FoundImage(entry, entry.relative_to(base))


def _expand_glob(pattern: str, recursive: bool, excluded: str | None,
                 problems: list[tuple[str, str]]) -> Iterable[FoundImage]:
    """Image files matching ``pattern`` (``**`` spans folders); matched folders are scanned like arguments."""
    base = _fixed_prefix(pattern)
    for match in sorted(glob.glob(pattern, recursive=True)):
        path = Path(match)
        if excluded is not None and _is_within(path, excluded):
            continue
        if path.is_dir():
            yield from _scan_folder(path, base, recursive, excluded, problems)
        elif path.is_file() and is_image_file(path):
            yield FoundImage(path, path.relative_to(base) if recursive else Path(path.name))


def _fixed_prefix(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: ``shoots/2024/*/a?.jpg`` -> ``shoots/2024``."""
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _is_within(path: Path, folder: str) -> bool:
    real = os.path.realpath(path)
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)
