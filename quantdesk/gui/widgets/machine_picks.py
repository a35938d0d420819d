"""The Hardware page's "Good picks for this machine": the best models for the shown machine from
the offline catalog, so a first run with no network already says what to run (core:
``machine_picks``). Planned on the thread pool; a newer machine's answer replaces an older one.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QWidget

from quantdesk.base.units import fmt_bytes
from quantdesk.gui.tasks import TaskSlot
from quantdesk.gui.widgets.status_text import breakable
from quantdesk.hardware.machine import Hardware

LIMIT = 3
START_DELAY_MS = 250


class MachinePicksBox(QGroupBox):
    open_repo = Signal(str)  # a repo id: plan it on the Discover page

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Good picks for this machine", parent)
        self.setAccessibleName("Good picks for this machine")
        self._grid = QGridLayout(self)
        self._grid.setColumnStretch(0, 1)
        self._rows: list[QWidget] = []
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self._grid.addWidget(self.caption, 0, 0, 1, 2)
        self._latest = TaskSlot(self)
        self._pending: Hardware | None = None
        self._start_timer = QTimer(self, singleShot=True, interval=START_DELAY_MS, timeout=self._start)
        self.picks: list | None = None  # core MachinePick list once planned

    def show_for(self, hw: Hardware) -> None:
        """Plan the catalog for ``hw`` in the background; the old picks stay until the new ones arrive.

        Started a moment later, not at once: at start-up the first paint comes first (the planning's
        imports would take the interpreter from it), and a quick run of machine changes plans once."""
        self.caption.setText("Finding the models that run best here…")
        self._pending = hw
        self._start_timer.start()

    def _start(self) -> None:
        hw = self._pending
        if hw is None:
            return
        self._pending = None
        self._latest.run(lambda _: (_picks(hw), _origin()), self._show,
                         lambda exc: self.caption.setText(f"Could not rank the offline catalog: {exc}"))

    @property
    def busy(self) -> bool:
        return self._pending is not None or self._latest.busy

    def _show(self, answer) -> None:
        from quantdesk.planning.picks import display_name  # the planner's imports: not before the first paint

        picks, (origin, gaps) = answer
        self.picks = picks
        gaps_note = f" Note: {escape(gaps)}." if gaps else ""
        for w in self._rows:
            w.setParent(None)
            w.deleteLater()
        self._rows.clear()
        if not picks:
            self.caption.setText(f"Nothing in the {escape(origin)} runs at a usable speed on this machine. "
                                 f"The Discover page searches the hub for smaller models.{gaps_note}")
            return
        self.caption.setText(f"From the {escape(origin)} (no network needed), planned for this machine. "
                             f"Discover searches the hub for more.{gaps_note}")
        for row, pick in enumerate(picks, start=1):
            name = display_name(pick.repo)
            owner = pick.repo.split("/", 1)[0] + (f" ({pick.publisher})" if pick.publisher else "")
            label = QLabel(f"<b>{breakable(name)}</b> · {escape(owner)}<br>"
                           f"{escape(pick.summary())} · {fmt_bytes(pick.option.size)}")
            label.setToolTip(pick.option.reason or pick.repo)
            button = QPushButton("Open in Discover")
            button.setAccessibleName(f"Open {pick.repo} in Discover")
            button.clicked.connect(lambda _=False, repo=pick.repo: self.open_repo.emit(repo))
            self._grid.addWidget(label, row, 0)
            self._grid.addWidget(button, row, 1)
            self._rows += [label, button]


def _picks(hw: Hardware) -> list:
    from quantdesk.planning.picks import machine_picks  # on the worker: the planner's imports are heavy

    return machine_picks(hw, limit=LIMIT)


def _origin() -> tuple[str, str | None]:
    from quantdesk.catalog.offline import load_catalog

    catalog = load_catalog()
    return catalog.origin(), catalog.mirror_gaps()
