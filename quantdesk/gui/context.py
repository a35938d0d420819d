"""What the pages share: the machine planned for, the error bridge, the download queue, the
window's persistent state, and the few cross-page actions (open a model in Chat, show a page).

Pages talk to each other only through these signals, never by reaching into another page.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal

from quantdesk.base.paths import data_dir
from quantdesk.base.settings import load_settings
from quantdesk.gui.errors import ErrorBridge
from quantdesk.hardware.machine import Hardware
from quantdesk.library.index import Library

log = logging.getLogger("quantdesk.gui")


def app_state() -> QSettings:
    """Window state (geometry, last page, last model) in the data folder, so QUANTDESK_HOME
    isolates it like everything else (tests never touch the user's real state)."""
    return QSettings(str(data_dir() / "window-state.ini"), QSettings.Format.IniFormat)


@dataclass
class ModelUser:
    """A page that holds model files open: ``in_use()`` says which paths now; ``release(path)``
    lets one go (Chat unloads it). A user without ``release`` (a running quantize) cannot let go,
    and a refusal names it by ``doing`` ("a quantize job")."""
    in_use: Callable[[], set[str]]
    release: Callable[[str], None] | None = None
    doing: str = ""


def _same_file(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


class AppContext(QObject):
    hardware_changed = Signal(object)   # Hardware: a different (or simulated) machine to plan for
    library_changed = Signal()          # a model was added, removed, moved or re-verified
    open_in_chat = Signal(str)          # a model path: switch to Chat and load it
    open_in_chat_planned = Signal(str, int, str)  # (path, ctx, kv_type): load it in Chat as Discover planned it
    quantize_requested = Signal(str, str)  # (source: library name, path or hub repo; target type or ""):
                                           # switch to Quantize with these filled in
    show_page = Signal(str)             # a page name from app.PAGES
    open_in_discover = Signal(str)      # a repo id, a .gguf path or search words: switch to Discover with it
    settings_changed = Signal()         # core Settings were saved
    catalog_refreshed = Signal(object)  # catalog_refresh.RefreshResult: the offline catalog changed
    page_badge = Signal(str, str)       # (page name, short text such as "3"; "" clears): shown in the sidebar

    def __init__(self, hardware: Hardware, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.hardware = hardware
        self.errors = ErrorBridge(self)
        self.state = app_state()
        self._downloads = None
        self._model_users: dict[str, ModelUser] = {}
        self.settings_changed.connect(self._apply_settings)

    # --- which page holds which model file (so a delete or a folder move does not pull it away) ----
    def register_model_user(self, owner: str, in_use: Callable[[], set[str]],
                            release: Callable[[str], None] | None = None, doing: str = "") -> None:
        self._model_users[owner] = ModelUser(in_use, release, doing or f"the {owner} page")

    def model_users(self, paths: Iterable[str] | None = None) -> dict[str, set[str]]:
        """Owner → the files it holds now, among ``paths`` (all files when None)."""
        wanted = list(paths) if paths is not None else None
        out: dict[str, set[str]] = {}
        for owner, user in self._model_users.items():
            held = {p for p in user.in_use() if wanted is None or any(_same_file(p, w) for w in wanted)}
            if held:
                out[owner] = held
        return out

    def holding_on(self, users: dict[str, set[str]]) -> tuple[str, str] | None:
        """(owner, what it is doing) of the first of ``users`` that cannot let its files go, or None."""
        return next(((owner, self._model_users[owner].doing) for owner in users
                     if self._model_users[owner].release is None), None)

    def release_models(self, users: dict[str, set[str]]) -> None:
        """Ask each owner to let its files go (check ``holding_on`` first)."""
        for owner, paths in users.items():
            release = self._model_users[owner].release
            for path in paths:
                if release is not None:
                    release(path)

    def refresh_catalog_in_background(self) -> bool:
        """Bring the offline catalog up to date when the hub answers and the last refresh is old;
        silent when offline (the bundled data still works). ``QUANTDESK_NO_AUTO_REFRESH=1`` turns it off."""
        import os

        from quantdesk.catalog.refresh_store import refresh_due  # the stamp only: no gguf/numpy at start
        from quantdesk.gui.tasks import run_task

        if os.environ.get("QUANTDESK_NO_AUTO_REFRESH") == "1" or not refresh_due():
            return False

        def skipped(exc: Exception) -> None:  # offline is normal: the catalog stays as it is
            log.info("catalog refresh skipped: %s", exc)

        # a thread of its own: ~70 hub listings must not hold the pool that plans and searches use
        def work(_) -> Any:
            from quantdesk.catalog.refresh import refresh_catalog  # imported on the worker, not the GUI thread

            return refresh_catalog()

        run_task(work, self.catalog_refreshed.emit, skipped, owner=self, where="own")
        return True

    def set_hardware(self, hardware: Hardware) -> None:
        self.hardware = hardware
        self.hardware_changed.emit(hardware)

    def library(self) -> Library:
        """A fresh handle on the library index (SQLite: cheap, and always current)."""
        return Library()

    @property
    def downloads(self):
        """The app's one download queue (``gui.download_bridge.QtDownloadQueue``), started on first use:
        queued downloads from the last run resume then."""
        if self._downloads is None:
            from quantdesk.gui.download_bridge import QtDownloadQueue

            self._downloads = QtDownloadQueue(self)
        return self._downloads

    def downloads_running(self) -> bool:
        """True while the download queue writes (or is about to) into the models folder; a queue
        nobody started yet is idle, and asking does not start it."""
        return self._downloads is not None and self._downloads.queue.busy()

    def _apply_settings(self) -> None:
        if self._downloads is not None:
            self._downloads.queue.set_max_concurrent(load_settings().max_concurrent_downloads)

    def shutdown(self) -> None:
        if self._downloads is not None:
            self._downloads.shutdown()
