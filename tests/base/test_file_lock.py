"""One holder at a time, in this process or another; a dead holder leaves no stale lock."""

from __future__ import annotations

import subprocess
import sys

import pytest

from quantdesk.base.file_lock import FileLock, LockBusy


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path):
    path = tmp_path / "a" / "model.lock"
    with FileLock(path, "a download of M"):
        with pytest.raises(LockBusy, match="a download of M is already in progress"):
            FileLock(path, "a download of M").acquire()
    with FileLock(path, "a download of M"):  # free again
        pass


def test_a_killed_holder_releases_the_lock(tmp_path):
    path = tmp_path / "model.lock"
    code = ("import sys, time; from pathlib import Path; from quantdesk.base.file_lock import FileLock;"
            f"FileLock(Path({str(path)!r}), 'x').acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            FileLock(path, "x").acquire()
    finally:
        holder.kill()
        holder.wait()
    with FileLock(path, "x"):
        pass
