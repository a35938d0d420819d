"""The main window: a sidebar of pages over the core; ``--screenshot`` renders a page to PNG."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QHBoxLayout, QListWidget, QMainWindow, QStackedWidget, QVBoxLayout, QWidget

from quantdesk import __version__
from quantdesk.base.settings import load_settings
from quantdesk.gui.context import AppContext
from quantdesk.gui.errors import ErrorBanner
from quantdesk.gui.preload import start_preload
from quantdesk.gui.theme import apply_theme
from quantdesk.hardware.detect import resolve_hardware
from quantdesk.hardware.machine import Hardware

log = logging.getLogger("quantdesk.gui")


def _hardware_page(ctx: AppContext) -> QWidget:
    from quantdesk.gui.pages.hardware import HardwarePage

    page = HardwarePage(context=ctx)
    page.show_hardware(ctx.hardware)
    ctx.hardware_changed.connect(page.show_hardware)
    return page


def _discover_page(ctx: AppContext) -> QWidget:
    from quantdesk.gui.pages.discover import DiscoverPage

    return DiscoverPage(ctx)


def _downloads_page(ctx: AppContext) -> QWidget:
    from quantdesk.gui.pages.downloads import DownloadsPage

    return DownloadsPage(ctx)


def _library_page(ctx: AppContext) -> QWidget:
    from quantdesk.gui.pages.library import LibraryPage

    return LibraryPage(ctx)


def _chat_page(ctx: AppContext) -> QWidget:
    from quantdesk.gui.pages.chat.page import ChatPage

    page = ChatPage(context=ctx)
    ctx.register_model_user("Chat", page.models_in_use, page.release_model)
    return page


def _quantize_page(ctx: AppContext) -> QWidget:
    from quantdesk.gui.pages.quantize import QuantizePage

    page = QuantizePage(ctx)
    ctx.register_model_user("Quantize", page.models_in_use, doing="a quantize job")  # it cannot let go
    return page


def _settings_page(ctx: AppContext) -> QWidget:
    from quantdesk.gui.pages.settings import SettingsPage

    return SettingsPage(ctx)


# name → (sidebar title, factory). The order is the sidebar's order.
PAGE_FACTORIES: dict[str, tuple[str, Callable[[AppContext], QWidget]]] = {
    "hardware": ("Hardware", _hardware_page),
    "discover": ("Discover", _discover_page),
    "downloads": ("Downloads", _downloads_page),
    "library": ("Library", _library_page),
    "quantize": ("Quantize", _quantize_page),
    "chat": ("Chat", _chat_page),
    "settings": ("Settings", _settings_page),
}
PAGES = list(PAGE_FACTORIES)
PAGE_ALIASES = {"plan": "discover"}  # the Plan page became part of Discover; old names keep working


class _Pages(Mapping):
    """``window.pages[name]``: every page by name, built on first access."""

    def __init__(self, window: MainWindow) -> None:
        self._window = window

    def __getitem__(self, name: str) -> QWidget:
        if name not in PAGE_FACTORIES:
            raise KeyError(name)
        return self._window.page(name)

    def __iter__(self) -> Iterator[str]:
        return iter(PAGES)

    def __len__(self) -> int:
        return len(PAGES)


class MainWindow(QMainWindow):
    def __init__(self, hardware: Hardware, context: AppContext | None = None, freeze_heap: bool = False) -> None:
        """``freeze_heap``: the app's own window (``run_app``) takes its long-lived objects out of the
        garbage collector's walks once start-up is done (see ``_settle_heap``); tests and embedders that
        make many windows in one process leave it off."""
        super().__init__()
        self.freeze_heap = freeze_heap
        self.setWindowTitle(f"QuantDesk {__version__}")
        self.context = context or AppContext(hardware, self)
        self.context.errors.install_excepthook()
        self._built: dict[str, QWidget] = {}
        self.pages = _Pages(self)
        self.sidebar = QListWidget()
        self.sidebar.setFixedWidth(150)
        self.sidebar.setAccessibleName("Pages")
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setStyleSheet("#sidebar { border: none; font-size: 11pt; outline: 0; }"
                                   "#sidebar::item { padding: 9px 12px; border-radius: 4px; }"
                                   "#sidebar::item:selected { background: palette(highlight);"
                                   " color: palette(highlighted-text); }")
        self.stack = QStackedWidget()
        self.context.page_badge.connect(self._set_badge)
        for _name, (title, _factory) in PAGE_FACTORIES.items():
            self.sidebar.addItem(title)
            self.stack.addWidget(QWidget())  # a placeholder until the page is first needed
        self.sidebar.currentRowChanged.connect(self._row_changed)
        self.banner = ErrorBanner(self.context.errors)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(self.stack, 1)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self.sidebar)
        layout.addWidget(right, 1)
        self.setCentralWidget(central)
        self.resize(1100, 700)
        for i, name in enumerate(PAGES[:9], start=1):  # Ctrl+1…: jump to a page
            shortcut = QShortcut(QKeySequence(f"Ctrl+{i}"), self)
            shortcut.activated.connect(lambda name=name: self.show_page(name))
            self.sidebar.item(i - 1).setToolTip(f"{self.sidebar.item(i - 1).text()} (Ctrl+{i})")
        self.context.show_page.connect(self.show_page)
        self.context.open_in_discover.connect(self.open_in_discover)
        self.context.open_in_chat.connect(self.open_in_chat)
        self.context.open_in_chat_planned.connect(self.open_in_chat)
        self.context.quantize_requested.connect(self._quantize_requested)
        state = self.context.state
        geometry = state.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.show_page(str(state.value("page", "hardware")))
        # the shown page is built now, the others once the window has painted and their imports are
        # done (on a background thread: see gui/preload.py), one per event-loop turn
        self._preload: threading.Thread | None = None
        self._damaged: list[Exception] = []  # data files the preload found damaged, offered once each
        self._heap_settled = False
        self._builder = QTimer(self, singleShot=True, interval=200, timeout=self._build_next)  # dies with us
        self._builder.start()
        self.context.refresh_catalog_in_background()

    # --- pages, built on first need ----------------------------------------------------------
    def page(self, name: str) -> QWidget:
        """The page called ``name``, built now if it was not yet."""
        built = self._built.get(name)
        if built is not None:
            return built
        title, factory = PAGE_FACTORIES[name]
        page = factory(self.context)
        page.setObjectName(f"{name}Page")
        index = PAGES.index(name)
        placeholder = self.stack.widget(index)
        current = self.stack.currentIndex()
        self.stack.insertWidget(index, page)
        self.stack.removeWidget(placeholder)
        placeholder.deleteLater()
        self.stack.setCurrentIndex(current)
        self._built[name] = page
        if name == "chat":
            page.select_model(str(self.context.state.value("chat/model", "") or ""))
        return page

    def _quantize_requested(self, source: str, preset: str) -> None:
        """A built Quantize page takes requests itself; one not built yet is built for this one (it
        would otherwise miss the request it exists to answer)."""
        if "quantize" not in self._built:
            self.page("quantize").request(source, preset)

    def _build_next(self) -> None:
        missing = [name for name in PAGES if name not in self._built]
        if not missing:
            self._settle_heap()
            return
        if self._preload is None:
            self._preload = start_preload(freeze=self.freeze_heap, on_damaged=self._damaged.append)
        if self._preload.is_alive():
            self._builder.start(30)  # building now would import on the GUI thread
            return
        while self._damaged:
            self._offer_new_data_file(self._damaged.pop(0))
        self.page(missing[0])
        self._builder.start(0)

    def _offer_new_data_file(self, damaged: Exception) -> None:
        """A damaged data file: say which, and offer to set it aside and start a new one."""
        path = getattr(damaged, "path", None)
        if path is not None and path.name == "downloads.db":
            self.context.downloads  # noqa: B018 - starting the queue replaces its damaged file and says so
            return
        self.context.errors.report("Data", damaged, next_step="“Start a new one” keeps the damaged file beside it and "
                                   "starts afresh; nothing else is touched.",
                                   action="Start a new one", callback=lambda: self._start_new_data_file(path))

    def _start_new_data_file(self, path: Path | None) -> None:
        from quantdesk.gui.tasks import run_task

        if path is None:
            return

        def work(_) -> Path | None:
            from quantdesk.base import sqlite_db
            from quantdesk.library.index import restart_damaged_library

            try:
                sqlite_db.check_intact(path)
                return None  # replaced meanwhile (another window, `quantdesk repair`): nothing to do
            except sqlite_db.DamagedDatabase:
                pass
            return restart_damaged_library(path)[0] if path.name == "library.db" else sqlite_db.set_aside(path)

        def done(aside: Path | None) -> None:
            self.context.errors.clear("Data")
            if path.name == "library.db":
                self.context.library_changed.emit()
            elif path.name == "chats.db" and "chat" in self._built:
                self._built["chat"].reopen_store()
            log.info("%s was damaged: kept as %s, a new one started", path, aside)

        run_task(work, done, lambda error: self.context.errors.report("Data", error), owner=self)

    def background_busy(self) -> bool:
        """Work a page has scheduled but not finished (e.g. the Hardware page's picks, started a moment
        after it is shown), beyond what the thread pool is running now."""
        return any(getattr(page, "background_busy", lambda: False)() for page in self._built.values())

    def pages_pending(self) -> bool:
        """Pages not built yet (they are built one by one after the first paint; each can widen the
        window's minimum size, so a screenshot waits for all of them)."""
        return len(self._built) < len(PAGES)

    def _settle_heap(self) -> None:
        """Once start-up work is done (pages built, the Hardware page's picks planned), move what is alive
        — modules, classes, pages, the planner's caches: all of it lives as long as the window — out of
        the garbage collector's sight (``gc.freeze``). A full collection otherwise walks those ~100k
        objects each time: measured 34 ms (22 ms before the catalog's planning caches), on the GUI
        thread, in the middle of a download or a reply."""
        if self._heap_settled or not self.freeze_heap:
            return
        if self.background_busy():
            self._builder.start(200)  # e.g. the Hardware page's picks: their objects belong in the frozen heap too
            return
        import gc

        self._heap_settled = True
        # No gc.collect() first: on this GUI thread it is the very pause this avoids (~50 ms); the few
        # cycles that happen to be garbage right now stay frozen with the rest, a bounded one-off.
        gc.freeze()

    def _row_changed(self, row: int) -> None:
        if 0 <= row < len(PAGES):
            self.page(PAGES[row])
            self.stack.setCurrentIndex(row)

    # the pages other code and tests reach directly
    @property
    def hardware_page(self):
        return self.pages["hardware"]

    @property
    def discover_page(self):
        return self.pages["discover"]

    @property
    def chat_page(self):
        return self.pages["chat"]

    def show_page(self, name: str) -> None:
        name = PAGE_ALIASES.get(name, name)
        self.sidebar.setCurrentRow(PAGES.index(name) if name in PAGES else 0)

    def _set_badge(self, name: str, text: str) -> None:
        if name in PAGES:
            title = PAGE_FACTORIES[name][0]
            self.sidebar.item(PAGES.index(name)).setText(f"{title} ({text})" if text else title)

    def current_page(self) -> str:
        return PAGES[max(0, self.sidebar.currentRow())]

    def open_in_discover(self, ref: str) -> None:
        self.show_page("discover")
        self.discover_page.open_ref(ref)

    def open_in_chat(self, path: str, ctx: int | None = None, kv_type: str | None = None) -> None:
        """Switch to Chat with this model picked and loading; with ``ctx``/``kv_type`` (from Discover) it
        loads with the context and KV-cache type that were planned, not Chat's own choice."""
        self.chat_page.refresh_models()
        self.show_page("chat")
        if self.chat_page.select_model(path):
            if ctx:
                self.chat_page.set_context(ctx)
            self.chat_page.load_model(path, kv_type=kv_type)
        else:
            self.context.errors.report("Chat", f"the model file {path} is missing", "Check the Library page.")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        state = self.context.state
        state.setValue("geometry", self.saveGeometry())
        state.setValue("page", self.current_page())
        chat = self._built.get("chat")
        if chat is not None and chat.model_path():
            state.setValue("chat/model", chat.model_path())
        # Gone from the screen first: what follows (ending the model's process, syncing settings)
        # may take seconds, and a window that lingers after Close looks hung.
        self.hide()
        state.sync()
        for page in self._built.values():
            shutdown = getattr(page, "shutdown", None)
            if callable(shutdown):
                shutdown()  # e.g. the model's process ends with the window
        self.context.shutdown()
        super().closeEvent(event)


def _window_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("use WIDTHxHEIGHT, e.g. 1000x640") from None
    if not (320 <= w <= 10000 and 240 <= h <= 10000):
        raise argparse.ArgumentTypeError("the size must be between 320x240 and 10000x10000")
    return w, h


def run_app(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quantdesk gui")
    parser.add_argument("--screenshot", metavar="PATH", help="render a page offscreen to PNG and exit")
    parser.add_argument("--page", choices=PAGES + list(PAGE_ALIASES), default=None)
    parser.add_argument("--hardware", metavar="FILE|PRESET")
    parser.add_argument("--model", help="plan this model (a repo id or a .gguf path; other text is searched) "
                                        "on the Discover page at start")
    parser.add_argument("--text", metavar="PATH", help="with --screenshot: also write the text the window shows, "
                                                       "one line per label, button or row")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="with --screenshot: let background work (downloads under way) run this long first")
    parser.add_argument("--size", type=_window_size, default=None, metavar="WxH",
                        help="the window's size (default 1100x700), e.g. 1000x640")
    args = parser.parse_args(argv)
    if args.screenshot:
        import os

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from quantdesk.gui.collector import GuiThreadCollector

    app._quantdesk_collector = GuiThreadCollector(app)  # Qt objects are never destroyed on a worker thread
    _identify(app)
    apply_theme(app, load_settings().theme)
    window = MainWindow(resolve_hardware(args.hardware), freeze_heap=True)
    if args.size:
        window.resize(*args.size)
    if args.page:
        window.show_page(args.page)
    if args.model:
        window.discover_page.open_ref(args.model)
    if args.screenshot:
        return _screenshot(app, window, args.screenshot, settle=args.settle, text_path=args.text)
    window.show()
    return app.exec()


def _identify(app: QApplication) -> None:
    """The window's icon, and the desktop-file name Wayland uses to match it to its launcher."""
    import json

    from PySide6.QtGui import QIcon

    from quantdesk.base.paths import resources_dir

    try:
        meta = json.loads((resources_dir() / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    icon = QIcon()
    for png in sorted((resources_dir() / "icons").glob("quantdesk-*.png")):
        icon.addFile(str(png))
    app.setWindowIcon(icon)
    app.setApplicationName(meta.get("name", "QuantDesk"))
    app.setDesktopFileName(meta.get("app_id", ""))


def _screenshot(app: QApplication, window: MainWindow, path: str, settle: float = 0.0,
                text_path: str | None = None) -> int:
    import time

    from PySide6.QtCore import QThreadPool

    window.show()
    pool, deadline = QThreadPool.globalInstance(), time.monotonic() + 60
    while True:  # background work may start more (a search's answer plans its first result)
        app.processEvents()
        if time.monotonic() > deadline or (pool.activeThreadCount() == 0 and not window.background_busy()
                                                and not window.pages_pending()):
            break
        pool.waitForDone(100)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(5):
        app.processEvents()
    ok = window.grab().save(path, "PNG")
    if text_path:
        from pathlib import Path

        from quantdesk.gui.visible_text import visible_text

        Path(text_path).write_text("\n".join(visible_text(window)) + "\n", encoding="utf-8")
    window.close()
    return 0 if ok else 1
