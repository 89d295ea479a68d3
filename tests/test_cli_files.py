"""write_atomic: complete files or nothing, temp files cleaned up on errors, interrupts and reruns."""

from __future__ import annotations

import os
import stat

import pytest

from rmbg_core.files import PART_SUFFIX, write_atomic


def leftovers(folder):
    return sorted(path.name for path in folder.rglob(f"*{PART_SUFFIX}"))


def test_writes_the_file_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.png"
    write_atomic(target, lambda handle: handle.write(b"data"))
    assert target.read_bytes() == b"data"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_nothing_behind(tmp_path, error):
    target = tmp_path / "out.png"

    def half_then_fail(handle):
        handle.write(b"half of the ")
        raise error

    with pytest.raises(type(error)):
        write_atomic(target, half_then_fail)
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_a_failed_rewrite_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old and complete")

    def fail(handle):
        handle.write(b"new but cut")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, fail)
    assert target.read_bytes() == b"old and complete"
    assert leftovers(tmp_path) == []


def test_a_part_left_by_a_killed_run_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out.png"
    stale = tmp_path / f".out.png.1a2b3c4d{PART_SUFFIX}"
    stale.write_bytes(b"cut")
    other = tmp_path / f".other.png.1a2b3c4d{PART_SUFFIX}"
    other.write_bytes(b"belongs to another output")
    write_atomic(target, lambda handle: handle.write(b"full"))
    assert not stale.exists() and other.exists()
    assert target.read_bytes() == b"full"


def test_permissions_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_atomic(tmp_path / "out.png", lambda handle: handle.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o640
