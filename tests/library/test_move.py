"""Moving the models folder: files and partial downloads move, the library follows, failures undo."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.settings import load_settings, models_dir
from quantdesk.library import move as models_move
from quantdesk.library.index import Library, sha256_file
from quantdesk.library.move import MoveCancelled, move_models_dir


@pytest.fixture
def stocked(tiny_model, tmp_path):
    """A library with a downloaded model, a quantized one, an imported file outside the folder and a
    partial download; returns the old folder and the library."""
    root = models_dir()
    library = Library()
    for rel, source in (("org/Tiny-GGUF/tiny-F16.gguf", "downloaded"), ("quantized/tiny-Q8_0.gguf", "quantized")):
        path = root / rel
        path.parent.mkdir(parents=True)
        shutil.copyfile(tiny_model, path)
        library.add(files=[{"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}],
                    source=source, repo="org/Tiny-GGUF")
    outside = tmp_path / "mine" / "own-F16.gguf"
    outside.parent.mkdir()
    shutil.copyfile(tiny_model, outside)
    library.import_file(outside)
    partial = root / ".partial" / "org" / "Big-GGUF" / "big-F16.gguf.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 1000)
    return root, library


def snapshot(library: Library) -> dict[str, list[str]]:
    return {m.name: [f["path"] for f in m.files] for m in library.models()}


def all_verify(library: Library) -> bool:
    return all(not library.verify(m.name)[1] for m in library.models())


def assert_untouched(old: Path, new: Path, library: Library, before: dict) -> None:
    assert snapshot(library) == before and all_verify(library)
    assert load_settings().models_dir is None and models_dir() == old
    assert (old / ".partial" / "org" / "Big-GGUF" / "big-F16.gguf.part").stat().st_size == 1000
    assert not new.exists() or not [p for p in new.rglob("*") if p.is_file()]


@pytest.mark.parametrize("same_fs", [True, False], ids=["rename", "copy"])
def test_move_takes_files_and_partials_and_the_library_follows(stocked, tmp_path, monkeypatch, same_fs):
    old, library = stocked
    monkeypatch.setattr(models_move, "_same_filesystem", lambda a, b: same_fs)
    imported = next(m for m in library.models() if m.source == "imported").path
    new = tmp_path / "bigger-disk" / "models"
    seen = []
    result = move_models_dir(new, progress=seen.append)
    assert result.folder == new and result.files == 3 and result.models == 2 and result.renamed is same_fs
    assert load_settings().models_dir == str(new) and models_dir() == new
    assert all_verify(library)
    paths = {m.source: m.path for m in library.models()}
    assert paths["downloaded"] == str(new / "org/Tiny-GGUF/tiny-F16.gguf")
    assert paths["quantized"] == str(new / "quantized/tiny-Q8_0.gguf")
    assert paths["imported"] == imported  # the user's own file stays where it is
    assert (new / ".partial/org/Big-GGUF/big-F16.gguf.part").stat().st_size == 1000
    assert not old.exists()
    assert seen[-1].done_bytes == seen[-1].total_bytes == result.bytes and seen[-1].files_done == 3
    assert [p.done_bytes for p in seen] == sorted(p.done_bytes for p in seen)


def test_moving_back_to_the_default_folder_clears_the_setting(stocked, tmp_path):
    old, library = stocked
    move_models_dir(tmp_path / "elsewhere")
    move_models_dir(old)
    assert load_settings().models_dir is None and models_dir() == old and all_verify(library)


def test_a_copy_failing_midway_puts_everything_back(stocked, tmp_path, monkeypatch):
    old, library = stocked
    before = snapshot(library)
    monkeypatch.setattr(models_move, "_same_filesystem", lambda a, b: False)
    real_copy, calls = models_move._copy_file, []

    def disk_full(n):
        raise OSError(errno.ENOSPC, "No space left on device")

    def copy_then_fill_the_disk(src, dst, cancel, on_bytes):
        calls.append(src)  # the second file fails after its first chunk is written
        real_copy(src, dst, cancel, disk_full if len(calls) == 2 else on_bytes)

    monkeypatch.setattr(models_move, "_copy_file", copy_then_fill_the_disk)
    new = tmp_path / "new"
    with pytest.raises(OSError, match="No space"):
        move_models_dir(new)
    assert_untouched(old, new, library, before)
    assert not new.exists()  # created by the move, removed by its undo


def test_a_rename_failing_midway_puts_everything_back(stocked, tmp_path, monkeypatch):
    old, library = stocked
    before = snapshot(library)
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(models_move.os, "rename", rename)
    new = tmp_path / "new"
    new.mkdir()  # the user's own empty folder: kept after the undo
    with pytest.raises(PermissionError):
        move_models_dir(new)
    assert_untouched(old, new, library, before)
    assert new.is_dir()


def test_a_library_that_cannot_be_updated_undoes_the_move(stocked, tmp_path, monkeypatch):
    old, library = stocked
    before = snapshot(library)

    def broken(self, moved):
        raise OSError("database is locked")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="locked"):
        patch.setattr(Library, "relocate", broken)
        move_models_dir(tmp_path / "new", library=library)
    assert_untouched(old, tmp_path / "new", library, before)


def test_cancel_midway_puts_everything_back(stocked, tmp_path, monkeypatch):
    old, library = stocked
    before = snapshot(library)
    monkeypatch.setattr(models_move, "_same_filesystem", lambda a, b: False)
    cancel = threading.Event()

    def progress(p):
        if p.files_done == 1:
            cancel.set()

    with pytest.raises(MoveCancelled, match="cancelled"):
        move_models_dir(tmp_path / "new", progress=progress, cancel=cancel)
    assert_untouched(old, tmp_path / "new", library, before)


def test_refusals_change_nothing(stocked, tmp_path, monkeypatch):
    old, library = stocked
    before = snapshot(library)
    with pytest.raises(QuantDeskError, match="downloads are running"):
        move_models_dir(tmp_path / "new", downloads_running=True)
    with pytest.raises(QuantDeskError, match="contain one another"):
        move_models_dir(old / "quantized" / "inside")
    with pytest.raises(QuantDeskError, match="contain one another"):
        move_models_dir(old.parent)
    with pytest.raises(QuantDeskError, match="already"):
        move_models_dir(old)
    taken = tmp_path / "taken"
    (taken / "quantized").mkdir(parents=True)
    (taken / "quantized" / "tiny-Q8_0.gguf").write_bytes(b"someone else's")
    with pytest.raises(QuantDeskError, match="already has quantized/tiny-Q8_0.gguf"):
        move_models_dir(taken)
    monkeypatch.setattr(models_move, "_same_filesystem", lambda a, b: False)
    monkeypatch.setattr(models_move.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1 << 20))
    with pytest.raises(QuantDeskError, match="free but the models need"):
        move_models_dir(tmp_path / "small-disk")
    assert_untouched(old, tmp_path / "new", library, before)
    assert not (tmp_path / "small-disk").exists()


def test_settings_that_cannot_be_saved_undo_the_library_too(stocked, tmp_path, monkeypatch):
    old, library = stocked
    before = snapshot(library)

    def unwritable(settings):
        raise PermissionError(errno.EACCES, "Permission denied", "settings.json")

    monkeypatch.setattr(models_move, "save_settings", unwritable)
    with pytest.raises(PermissionError):
        move_models_dir(tmp_path / "new", library=library)
    assert_untouched(old, tmp_path / "new", library, before)
