"""write_atomic: complete files or nothing, temp files cleaned up on errors, interrupts and reruns."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from rmbg_core.files import PART_SUFFIX, STALE_AFTER_SECONDS, write_atomic


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


def dead_pid():
    """The pid of a process that has exited (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.name != "posix", reason="asks POSIX whether the writing process runs")
def test_only_provably_stale_parts_are_removed_by_the_next_write(tmp_path):
    """A part whose writer is dead, or that is older than the bound, goes; a live writer's part stays."""
    target = tmp_path / "out.png"
    dead = tmp_path / f".out.png.{dead_pid()}-1a2b3c4d{PART_SUFFIX}"
    live = tmp_path / f".out.png.{os.getpid()}-1a2b3c4d{PART_SUFFIX}"
    old = tmp_path / f".out.png.{os.getpid()}-5e6f7a8b{PART_SUFFIX}"
    unowned = tmp_path / f".out.png.1a2b3c4d{PART_SUFFIX}"  # no pid in the name: only age tells
    other = tmp_path / f".other.png.{dead_pid()}-1a2b3c4d{PART_SUFFIX}"
    for part in (dead, live, old, unowned, other):
        part.write_bytes(b"cut")
    hours_ago = time.time() - STALE_AFTER_SECONDS - 60
    os.utime(old, (hours_ago, hours_ago))
    write_atomic(target, lambda handle: handle.write(b"full"))
    assert not dead.exists() and not old.exists()
    assert live.exists() and unowned.exists() and other.exists()
    assert target.read_bytes() == b"full"
    os.utime(unowned, (hours_ago, hours_ago))
    write_atomic(target, lambda handle: handle.write(b"again"))
    assert not unowned.exists() and live.exists()


def test_temp_names_carry_the_writer_pid(tmp_path):
    seen = []
    write_atomic(tmp_path / "out.png", lambda handle: seen.extend(leftovers(tmp_path)))
    assert len(seen) == 1 and seen[0].startswith(f".out.png.{os.getpid()}-") and seen[0].endswith(PART_SUFFIX)


def test_permissions_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_atomic(tmp_path / "out.png", lambda handle: handle.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o640
