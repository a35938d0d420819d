"""Moving the models folder: every file under it goes to the new folder, and the library follows.

On one filesystem each file is renamed (instant). Across filesystems each is copied and its size
checked; the old copies are deleted only after the library and Settings point at the new folder.
A failure or a cancel before that switch puts every file back, so the library never records a
path whose file is elsewhere. Partial downloads (``.partial/``) move with the rest; the move is
refused while a download is writing to one.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.paths import data_dir
from quantdesk.base.settings import load_settings, models_dir, save_settings
from quantdesk.base.units import fmt_bytes
from quantdesk.library.index import Library

CHUNK = 8 << 20
SPACE_MARGIN_MIN, SPACE_MARGIN_FRACTION = 64 << 20, 0.01


class MoveCancelled(QuantDeskError):
    """The user cancelled; everything is back in the old folder."""

    next_step = "The models folder was not changed."


@dataclass(frozen=True)
class MoveProgress:
    done_bytes: int
    total_bytes: int
    files_done: int
    files_total: int
    current: str  # the file being moved, relative to the folder


@dataclass(frozen=True)
class MoveResult:
    folder: Path
    files: int
    bytes: int
    renamed: bool  # same filesystem: renamed, not copied
    models: int  # library models whose paths changed
    leftovers: list[Path] = field(default_factory=list)  # old copies that could not be deleted


Progress = Callable[[MoveProgress], None]


def _contents(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _check_target(old: Path, new: Path) -> None:
    if new.resolve() == old:
        raise QuantDeskError(f"the models folder is already {old}")
    if new.resolve().is_relative_to(old) or old.is_relative_to(new.resolve()):
        raise QuantDeskError(f"{new} and the current models folder {old} contain one another; choose a folder "
                             "outside it")
    if new.exists() and not new.is_dir():
        raise QuantDeskError(f"{new} is a file, not a folder")


def _same_filesystem(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def _check_space(new: Path, total: int) -> None:
    need = total + max(SPACE_MARGIN_MIN, int(SPACE_MARGIN_FRACTION * total))
    free = shutil.disk_usage(new).free
    if need > free:
        raise QuantDeskError(f"{new} has {fmt_bytes(free)} free but the models need {fmt_bytes(need)} (margin "
                             "included)", "Free some space there or choose a folder on a bigger disk.")


def _copy_file(src: Path, dst: Path, cancel: threading.Event | None, on_bytes: Callable[[int], None]) -> None:
    """Copy one file and check its size; a cancel or failure leaves no ``dst`` behind."""
    try:
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            return
        with src.open("rb") as fin, dst.open("xb") as fout:
            while data := fin.read(CHUNK):
                if cancel is not None and cancel.is_set():
                    raise MoveCancelled("moving the models folder was cancelled; every file is back where it was")
                fout.write(data)
                on_bytes(len(data))
        shutil.copystat(src, dst)
        if dst.stat().st_size != src.stat().st_size:
            raise QuantDeskError(f"the copy of {src.name} came out {fmt_bytes(dst.stat().st_size)} instead of "
                                 f"{fmt_bytes(src.stat().st_size)}")
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


def _remove_empty_dirs(root: Path, keep_root: bool) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                         key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:  # not empty: something of the user's, or a leftover
            pass
    if not keep_root:
        try:
            root.rmdir()
        except OSError:
            pass


def _relocated_paths(library: Library, old: Path, new: Path) -> dict[str, str]:
    """Each recorded path under the old folder (as the library spells it) → its path in the new one."""
    moved = {}
    for model in library.models():
        for f in model.files:
            real = Path(f["path"]).resolve()
            if real.is_relative_to(old):
                moved[f["path"]] = str(new / real.relative_to(old))
    return moved


def move_models_dir(new_path: str | Path, progress: Progress | None = None, cancel: threading.Event | None = None,
                    *, downloads_running: bool = False, library: Library | None = None) -> MoveResult:
    """Move everything in the models folder to ``new_path`` and record it in the library and Settings."""
    if downloads_running:
        raise QuantDeskError("downloads are running into the models folder", "Pause them on the Downloads page, "
                             "then move the folder; they resume from the new place.")
    old = models_dir().resolve()
    new = Path(new_path).expanduser().absolute()
    _check_target(old, new)
    files = _contents(old)
    clashes = [f for f in files if os.path.lexists(new / f.relative_to(old))]
    if clashes:
        raise QuantDeskError(f"{new} already has {clashes[0].relative_to(old)}", "Choose an empty folder.")
    created = not new.exists()
    new.mkdir(parents=True, exist_ok=True)
    library = library or Library()
    total = sum(f.lstat().st_size for f in files)
    renamed = _same_filesystem(old, new)
    moved: list[tuple[Path, Path]] = []
    relocated: dict[str, str] = {}  # set once the library points at the new folder
    done = 0

    def report(current: str) -> None:
        if progress is not None:
            progress(MoveProgress(done, total, len(moved), len(files), current))

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        report(current)

    try:
        if not renamed:
            _check_space(new, total)
        for src in files:
            if cancel is not None and cancel.is_set():
                raise MoveCancelled("moving the models folder was cancelled; every file is back where it was")
            current = str(src.relative_to(old))
            dst = new / current
            dst.parent.mkdir(parents=True, exist_ok=True)
            if renamed:
                os.rename(src, dst)
                done += dst.lstat().st_size
            else:
                _copy_file(src, dst, cancel, on_bytes)
            moved.append((src, dst))
            report(current)
        paths = _relocated_paths(library, old, new)
        models = library.relocate(paths)
        relocated = paths
        settings = load_settings()
        settings.models_dir = None if new.resolve() == (data_dir() / "models").resolve() else str(new)
        save_settings(settings)
    except BaseException:
        _undo(library, relocated, moved, renamed)
        _remove_empty_dirs(new, keep_root=not created)
        raise
    leftovers = []
    if not renamed:
        for src, _ in moved:
            try:
                src.unlink()
            except OSError:
                leftovers.append(src)
    _remove_empty_dirs(old, keep_root=False)
    return MoveResult(new, len(files), total, renamed, models, leftovers)


def _undo(library: Library, relocated: dict[str, str], moved: list[tuple[Path, Path]], renamed: bool) -> None:
    """Back to the state before the move: library paths first, then the files, each step tried
    even when another fails (the first failure is the one the caller reports)."""
    if relocated:
        library.relocate({new: old for old, new in relocated.items()})
    for src, dst in reversed(moved):
        try:
            if renamed:
                os.rename(dst, src)
            else:
                dst.unlink(missing_ok=True)
        except OSError:  # the filesystem refused twice: undo the rest regardless
            pass
