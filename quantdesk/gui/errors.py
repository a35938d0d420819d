"""The one way failures reach the user: a sentence and the next step, in a banner atop the window.

Pages call ``ErrorBridge.report`` (or connect a worker's ``failed`` signal to it); exceptions that
escape a Qt slot are routed here by the window's excepthook, so nothing fails silently and
nothing takes the window down.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from quantdesk.base.errors import explain
from quantdesk.gui.theme import themed_style, tone

log = logging.getLogger("quantdesk.gui")


@dataclass(frozen=True)
class Report:
    where: str        # the page or task: "Downloads", "Chat", …
    sentence: str
    next_step: str
    action: str | None = None           # a button label, e.g. "Retry"
    callback: Callable[[], None] | None = None
    details: str = ""                   # the facts behind the sentence (hashes, sizes), behind "Details"

    def text(self) -> str:
        head = f"{self.where}: {self.sentence}" if self.where else self.sentence
        return f"{head} {self.next_step}".strip()


class ErrorBridge(QObject):
    reported = Signal(object)  # Report
    cleared = Signal(str)      # where: that source's problem is over (e.g. the model reloaded)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history: list[Report] = []

    def report(self, where: str, error: BaseException | str, next_step: str | None = None,
               action: str | None = None, callback: Callable[[], None] | None = None,
               details: str = "") -> Report:
        explained = explain(error, next_step)
        report = Report(where, explained.sentence, explained.next_step, action, callback, details)
        log.warning("%s: %s", where, explained.text())
        if isinstance(error, BaseException) and error.__traceback__ is not None:
            log.debug("%s", "".join(traceback.format_exception(error)).rstrip())
        self.history.append(report)
        self.reported.emit(report)
        return report

    def clear(self, where: str) -> None:
        self.cleared.emit(where)

    def install_excepthook(self) -> None:
        """Exceptions escaping slots become reports instead of a stderr trace nobody reads."""
        previous = sys.excepthook

        def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
            previous(kind, value, tb)  # the trace still reaches stderr for bug reports
            if issubclass(kind, KeyboardInterrupt):
                return
            try:
                self.report("QuantDesk", value.with_traceback(tb))
            except RuntimeError:
                pass  # the window is already gone (exit in progress)

        sys.excepthook = hook


class ErrorBanner(QFrame):
    """Shows the latest report with an optional action and a Dismiss button; hidden when empty."""

    def __init__(self, bridge: ErrorBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setAccessibleName("Error message")
        themed_style(self, lambda: "#errorBanner { background: %s; border: 1px solid %s; border-radius: 4px; }"
                     "#errorBanner QLabel { color: %s; }" % (tone("#fdecea", "#3d1f1f"), tone("#e0a39c", "#8a3b3b"),
                                                             tone("#611a15", "#ffd7d5")))
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton()
        self.action_button.setAccessibleName("Error action")
        self.action_button.clicked.connect(self._act)
        self.details_button = QPushButton("Details")
        self.details_button.setAccessibleName("Error details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self._show_details)
        self.details_label = QLabel()
        self.details_label.setWordWrap(True)
        self.details_label.setAccessibleName("Error details text")
        self.details_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.setAccessibleName("Dismiss error")
        self.dismiss_button.clicked.connect(self.hide)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        row = QHBoxLayout()
        row.addWidget(self.label, 1)
        row.addWidget(self.details_button)
        row.addWidget(self.action_button)
        row.addWidget(self.dismiss_button)
        layout.addLayout(row)
        layout.addWidget(self.details_label)
        self.current: Report | None = None
        bridge.reported.connect(self.show_report)
        bridge.cleared.connect(self._cleared)
        self.hide()

    def _cleared(self, where: str) -> None:
        if self.current is not None and self.current.where == where:
            self.hide()

    def show_report(self, report: Report) -> None:
        self.current = report
        head = f"<b>{report.where}:</b> " if report.where else ""
        self.label.setText(f"{head}{_esc(report.sentence)} {_esc(report.next_step)}")
        self.action_button.setVisible(bool(report.action and report.callback))
        self.action_button.setText(report.action or "")
        self.details_button.setVisible(bool(report.details))
        self.details_button.setChecked(False)
        self.details_label.setText(report.details)
        self.details_label.hide()
        self.show()

    def _show_details(self, shown: bool) -> None:
        self.details_label.setVisible(shown and bool(self.details_label.text()))

    def _act(self) -> None:
        if self.current is not None and self.current.callback is not None:
            callback = self.current.callback
            self.hide()
            callback()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def inline_text(error: Exception) -> str:
    """A failure as one line shown where it happened (a pre-flight verdict, a token test): the
    core's own words and next step, or the exception's type for one it did not expect."""
    from quantdesk.base.errors import QuantDeskError

    if isinstance(error, QuantDeskError):
        return f"{error} — {error.next_step}" if error.next_step else str(error)
    return f"Unexpected error: {type(error).__name__}: {error}"
