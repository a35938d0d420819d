"""The main window: a sidebar of pages over the core; ``--screenshot`` renders a page to PNG."""

from __future__ import annotations

import argparse
import sys

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QHBoxLayout, QListWidget, QMainWindow, QStackedWidget, QWidget

from quantdesk import __version__
from quantdesk.core.hardware import Hardware, resolve_hardware
from quantdesk.gui.chat_page import ChatPage
from quantdesk.gui.hardware_page import HardwarePage
from quantdesk.gui.plan_page import PlanPage

PAGES = ["hardware", "plan", "chat"]


class MainWindow(QMainWindow):
    def __init__(self, hardware: Hardware) -> None:
        super().__init__()
        self.setWindowTitle(f"QuantDesk {__version__}")
        self.hardware_page = HardwarePage()
        self.hardware_page.show_hardware(hardware)
        self.plan_page = PlanPage(hardware)
        self.chat_page = ChatPage(hardware)
        self.sidebar = QListWidget()
        self.sidebar.addItems([p.capitalize() for p in PAGES])
        self.sidebar.setFixedWidth(140)
        self.sidebar.setAccessibleName("Pages")
        self.stack = QStackedWidget()
        for page in (self.hardware_page, self.plan_page, self.chat_page):
            self.stack.addWidget(page)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.resize(1000, 640)
        self._settings = QSettings("QuantDesk", "QuantDesk")
        geometry = self._settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.chat_page.select_model(str(self._settings.value("chat/model", "") or ""))
        self.show_page(str(self._settings.value("page", "hardware")))

    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentRow(PAGES.index(name) if name in PAGES else 0)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self._settings.setValue("geometry", self.saveGeometry())
        self._settings.setValue("page", PAGES[self.sidebar.currentRow()])
        if self.chat_page.model_path():
            self._settings.setValue("chat/model", self.chat_page.model_path())
        self.chat_page.shutdown()  # the model's process ends with the window
        super().closeEvent(event)


def run_app(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quantdesk gui")
    parser.add_argument("--screenshot", metavar="PATH", help="render a page offscreen to PNG and exit")
    parser.add_argument("--page", choices=PAGES, default=None)
    parser.add_argument("--hardware", metavar="FILE|PRESET")
    parser.add_argument("--model", help="plan this model on the Plan page at start")
    args = parser.parse_args(argv)
    if args.screenshot:
        import os

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(resolve_hardware(args.hardware))
    if args.page:
        window.show_page(args.page)
    if args.model:
        window.plan_page.model_edit.setText(args.model)
        window.plan_page.replan()
    if args.screenshot:
        return _screenshot(app, window, args.screenshot, wait_for_plan=bool(args.model))
    window.show()
    return app.exec()


def _screenshot(app: QApplication, window: MainWindow, path: str, wait_for_plan: bool) -> int:
    from PySide6.QtCore import QThreadPool

    window.show()
    if wait_for_plan:
        QThreadPool.globalInstance().waitForDone(60_000)
    for _ in range(5):
        app.processEvents()
    ok = window.grab().save(path, "PNG")
    window.close()
    return 0 if ok else 1
