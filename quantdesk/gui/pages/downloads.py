"""Downloads page: the app's download queue, with progress, speed, ETA, state, and the reason and a
Retry when one fails.

The queue reports several times a second per download from worker threads; rows are refreshed at
most every ``REFRESH_MS`` from the newest state of each job, so a fast download never floods the
event loop. Pause and Cancel return at once (the worker stops in its own time): the window never
waits for a stalled connection.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from quantdesk.base.errors import QuantDeskError
from quantdesk.gui.theme import MUTED, themed_style, tone
from quantdesk.gui.context import AppContext
from quantdesk.gui.widgets.download_row import DownloadRow, row_style
from quantdesk.library.failure import explain_failure
from quantdesk.library.queue import ACTIVE, DownloadJob

REFRESH_MS = 250
FINISHED = ("done", "cancelled")


class DownloadsPage(QWidget):
    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.downloads = context.downloads  # starting it resumes what the last run left queued
        self.rows: dict[int, DownloadRow] = {}
        self._pending: dict[int, DownloadJob] = {}
        self._badge: str | None = None
        self._refresh = QTimer(self, singleShot=True, interval=REFRESH_MS, timeout=self._flush)
        themed_style(self, row_style)
        title = QLabel("<h2>Downloads</h2>")
        self.summary = QLabel()
        self.summary.setAccessibleName("Downloads summary")
        self.clear_button = QPushButton("&Clear finished")
        self.clear_button.setAccessibleName("Clear finished downloads")
        self.clear_button.setToolTip("Remove done and cancelled downloads from this list (the models stay)")
        self.clear_button.clicked.connect(self.clear_finished)
        head = QHBoxLayout()
        head.addWidget(title)
        head.addWidget(self.summary, 1, Qt.AlignmentFlag.AlignBottom)
        head.addWidget(self.clear_button, 0, Qt.AlignmentFlag.AlignBottom)
        self.empty = QLabel("No downloads yet. Pick a model on the Discover page: its files download here, "
                            "are checked against the hub's SHA-256, and land in the Library.")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        themed_style(self.empty, lambda: f"color: {tone(*MUTED)}; padding: 40px;")
        self.list_widget = QWidget()
        self.list_layout = QVBoxLayout(self.list_widget)
        self.list_layout.setContentsMargins(0, 0, 8, 0)
        self.list_layout.setSpacing(8)
        self.list_layout.addWidget(self.empty)
        self.list_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.list_widget)
        scroll.setAccessibleName("Download list")
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(scroll, 1)
        self.downloads.job_changed.connect(self._changed)
        self.downloads.job_finished.connect(self._finished)
        self.downloads.job_removed.connect(self._removed)
        self.reload()

    # --- showing -----------------------------------------------------------------------------
    def reload(self) -> None:
        """Every job in the queue, as it is now (at start: what the last run left)."""
        jobs = self.downloads.jobs()
        for job_id in set(self.rows) - {j.id for j in jobs}:
            self._removed(job_id)
        for job in jobs:
            self._show(job)
        self._update_summary()

    def _changed(self, job: DownloadJob) -> None:
        self._pending[job.id] = job  # only the newest state of each job is shown
        if not self._refresh.isActive():
            self._refresh.start()

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for job in pending.values():
            self._show(job)
        self._update_summary()

    def _show(self, job: DownloadJob) -> None:
        row = self.rows.get(job.id)
        if row is None:
            row = DownloadRow(job)
            row.action.connect(self._act)
            later = [self.rows[i] for i in sorted(self.rows) if i > job.id]  # rows stay in queue order
            index = self.list_layout.indexOf(later[0]) if later else self.list_layout.count() - 1  # before the stretch
            self.rows[job.id] = row
            self.list_layout.insertWidget(index, row)
            row.show()  # a layout shows a new child only through a queued call; a test (or a user) may look first
        else:
            row.show_job(job)

    def _removed(self, job_id: int) -> None:
        self._pending.pop(job_id, None)
        row = self.rows.pop(job_id, None)
        if row is not None:
            row.deleteLater()
        self._update_summary()

    def _update_summary(self) -> None:
        states = [row.job.state for row in self.rows.values()]
        counts = [(n, s) for s in ("downloading", "verifying", "queued", "paused", "failed", "done", "cancelled")
                  if (n := states.count(s))]
        self.summary.setText(" · ".join(f"{n} {s}" for n, s in counts))
        self.empty.setVisible(not self.rows)
        self.clear_button.setEnabled(any(s in FINISHED for s in states))
        active = sum(1 for s in states if s in ACTIVE or s == "queued")
        badge = str(active) if active else ""
        if badge != self._badge:
            self._badge = badge
            self.context.page_badge.emit("downloads", badge)

    def _finished(self, job: DownloadJob) -> None:
        if job.state == "failed" and self.downloads.reported_by(job.id) is None:
            failure = explain_failure(job.failure(), job.entry.name, job.repo)
            self.context.errors.report("Downloads", failure.sentence, failure.next_step, action="Retry",
                                       callback=lambda: self.retry(job.id), details=failure.details)

    # --- actions -----------------------------------------------------------------------------
    def _act(self, action: str, job_id: int) -> None:
        {"pause": self.pause, "resume": self.resume, "retry": self.retry, "chat": self.open_in_chat,
         "cancel": self.cancel, "remove": self.remove}[action](job_id)

    def pause(self, job_id: int) -> None:
        self._command(job_id, self.downloads.pause, stops=True)

    def cancel(self, job_id: int) -> None:
        self._command(job_id, self.downloads.cancel, stops=True)

    def resume(self, job_id: int) -> None:
        self._command(job_id, self.downloads.resume)

    def retry(self, job_id: int) -> None:
        self._command(job_id, self.downloads.resume)

    def remove(self, job_id: int) -> None:
        self._command(job_id, self.downloads.remove)

    def _command(self, job_id: int, command, stops: bool = False) -> None:
        try:
            command(job_id)
        except QuantDeskError as exc:
            self.context.errors.report("Downloads", exc)
            return
        row = self.rows.get(job_id)
        if stops and row is not None:
            row.mark_pending()

    def clear_finished(self) -> None:
        for job_id, row in list(self.rows.items()):
            if row.job.state in FINISHED:
                self.remove(job_id)

    def open_in_chat(self, job_id: int) -> None:
        row = self.rows.get(job_id)
        model = self.context.library().find(row.job.model) if row is not None and row.job.model else None
        if model is None:
            self.context.errors.report("Downloads", "that model is no longer in the library",
                                       "Download it again from the Discover page.")
            return
        self.context.open_in_chat.emit(model.path)
