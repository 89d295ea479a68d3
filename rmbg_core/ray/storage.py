"""Where a Ray job's files live: local paths, or URIs on any file system pyarrow reads (``s3://``, ``gs://``,
``abfs://``, ``file://``, ...), with discovery, reading and atomic writing for both.

A local path must name the same file on every node of the cluster (one machine, or a shared mount). On a
remote store a location is its URI without the query (``s3://bucket/photos/a.jpg``); the store's file
system object, made once from the URI with its options, travels to the workers with the job.

Atomic writes: local paths (and ``file://``) use :func:`rmbg_core.files.write_atomic` (temp file, fsync,
rename). Object stores (S3, GCS, Azure) rely on the store's atomic PUT: the output is uploaded from memory
in one request (or one multipart upload, completed at the end) and appears only once complete. Other file
systems (e.g. HDFS) get a hidden temp file beside the output, moved onto it when complete.
"""

from __future__ import annotations

import glob
from pathlib import Path, PurePath, PurePosixPath
from typing import Hashable, Iterable, Sequence
from urllib.parse import urlsplit

import pyarrow
from pyarrow import fs

from ..cli.inputs import Discovery, FoundImage, is_image_file
from ..cli.jobs import LOCAL_FILES, Location
from ..errors import InputError, first_line
from ..files import part_name, write_atomic

OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
# What pyarrow raises for a store that cannot be reached, a bad URI or a missing file system library.
STORE_ERRORS = (OSError, ValueError, pyarrow.ArrowException)


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` (a URI for pyarrow), False for a local path (Windows drives included)."""
    scheme, separator, _ = text.partition("://")
    return bool(separator) and len(scheme) > 1 and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


class RemoteStore:
    """One pyarrow file system, its locations spelled as URIs: a :class:`rmbg_core.cli.jobs.Storage`."""

    def __init__(self, filesystem: fs.FileSystem, prefix: str) -> None:
        self.filesystem = filesystem
        self.prefix = prefix

    @classmethod
    def open(cls, uri: str) -> tuple["RemoteStore", str]:
        """The store ``uri`` is on, and its location there; an :class:`InputError` if pyarrow cannot open it."""
        try:
            filesystem, path = fs.FileSystem.from_uri(uri)
        except STORE_ERRORS as exc:
            raise InputError(f"{uri}: cannot open this file system ({first_line(exc)})") from None
        parts = urlsplit(uri)
        # s3://bucket/key -> path "bucket/key"; file:///x and hdfs://host/x -> path "/x" below the host.
        prefix = f"{parts.scheme}://{parts.netloc}" if path.startswith("/") else f"{parts.scheme}://"
        store = cls(filesystem, prefix)
        return store, store.location(path.rstrip("/") or path)

    def __repr__(self) -> str:
        return f"RemoteStore({self.prefix!r}, {self.filesystem.type_name})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RemoteStore) and self.prefix == other.prefix
                and self.filesystem.equals(other.filesystem))

    __hash__ = None  # type: ignore[assignment]

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, fs.LocalFileSystem)

    def path(self, location: Location) -> str:
        """The file system's own path of ``location``."""
        return str(location)[len(self.prefix):]

    def location(self, path: str) -> str:
        return self.prefix + path

    def join(self, folder: Location, relative: PurePath) -> str:
        return str(folder).rstrip("/") + "/" + relative.as_posix()

    def exists(self, location: Location) -> bool:
        return self._kind(location) != fs.FileType.NotFound

    def is_file(self, location: Location) -> bool:
        return self._kind(location) == fs.FileType.File

    def _kind(self, location: Location) -> fs.FileType:
        try:
            return self.filesystem.get_file_info(self.path(location)).type
        except STORE_ERRORS as exc:
            raise InputError(f"{location}: cannot look it up ({first_line(exc)})") from None

    def keys(self, location: Location) -> list[Hashable]:
        if self.is_local:  # file:// names the same files as local paths do
            return LOCAL_FILES.keys(self.path(location))
        return [("uri", self.filesystem.type_name, self.path(location))]


def find_uri_images(locations: Sequence[tuple[str, str]], store: RemoteStore, *, recursive: bool = False,
                    exclude: str | None = None) -> Discovery:
    """The images that (argument, location) pairs on ``store`` name: files, and folders (prefixes) listed
    as :func:`rmbg_core.cli.inputs.find_images` lists local ones (image extensions, no dot-names, sorted).

    ``exclude`` is a location never scanned (the output folder). Glob patterns are local only.
    """
    found = Discovery()
    seen: set[Hashable] = set()
    for argument, location in locations:
        path = store.path(location)
        if glob.has_magic(path):
            found.problems.append((argument, "glob patterns work on local paths only; name the folder instead"))
            continue
        try:
            info = store.filesystem.get_file_info(path)
            if info.type == fs.FileType.Directory:
                images = list(_scan(store, path, recursive, exclude and store.path(exclude)))
                if not images:
                    found.empty_folders.append(argument)
            elif info.type == fs.FileType.File:
                images = [FoundImage(location, PurePosixPath(info.base_name))]
            else:
                found.problems.append((argument, "no such file or folder"))
                continue
        except STORE_ERRORS as exc:
            found.problems.append((argument, f"cannot list it ({first_line(exc)})"))
            continue
        for image in images:
            key = store.keys(image.path)[0]
            if key not in seen:
                seen.add(key)
                found.images.append(image)
    return found


def _scan(store: RemoteStore, folder: str, recursive: bool, excluded: str | None) -> Iterable[FoundImage]:
    infos = store.filesystem.get_file_info(fs.FileSelector(folder, recursive=recursive))
    for info in sorted(infos, key=lambda info: info.path):
        if info.type != fs.FileType.File or (excluded and info.path.startswith(excluded.rstrip("/") + "/")):
            continue
        relative = PurePosixPath(info.path).relative_to(folder)
        if is_image_file(relative) and not any(part.startswith(".") for part in relative.parts):
            yield FoundImage(store.location(info.path), relative if recursive else PurePosixPath(relative.name))


def read_bytes(store: RemoteStore | None, location: Location) -> bytes:
    """The content of the file at ``location`` (local when ``store`` is None); ``OSError`` and pyarrow's on failure."""
    if store is None:
        return Path(location).read_bytes()
    with store.filesystem.open_input_stream(store.path(location)) as stream:
        return stream.read()


def write_bytes(store: RemoteStore | None, location: Location, data: bytes) -> None:
    """Write ``data`` to ``location`` atomically (see the module documentation for how, per kind of store)."""
    if store is None or store.is_local:
        write_atomic(location if store is None else store.path(location), lambda handle: handle.write(data))
        return
    target = PurePosixPath(store.path(location))
    filesystem = store.filesystem
    if filesystem.type_name in OBJECT_STORES:
        stream = filesystem.open_output_stream(str(target))
        stream.write(data)
        stream.close()
        return
    filesystem.create_dir(str(target.parent), recursive=True)
    temp = str(target.with_name(part_name(target.name)))
    try:
        with filesystem.open_output_stream(temp) as stream:
            stream.write(data)
        filesystem.move(temp, str(target))
    except BaseException:
        try:
            filesystem.delete_file(temp)
        except STORE_ERRORS:
            pass
        raise
