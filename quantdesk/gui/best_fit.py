""""Download best fit": the plan's pick, fetched through the app's download queue, verified into
the library and opened in Chat — one click, with progress and failures reported on the way."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from quantdesk.base.units import fmt_bytes
from quantdesk.gui.context import AppContext
from quantdesk.gui.tasks import TaskControl, TaskSlot
from quantdesk.hub.client import RepoGGUF
from quantdesk.library.failure import explain_failure
from quantdesk.library.index import LibraryModel
from quantdesk.library.queue import DownloadJob
from quantdesk.planning.discover import download_entry, installed
from quantdesk.planning.plan import Plan

BUSY, NO_BAR = -1, -2  # progress "percent" values: working with no figure yet; over (text only)


def percent(job: DownloadJob) -> int:
    return int(100 * job.done / job.total) if job.total else 0


def progress_text(job: DownloadJob) -> str:
    if job.state == "downloading":  # the bar beside it shows the percentage
        speed = f" · {fmt_bytes(job.speed)}/s" if job.speed else ""
        eta = f" · {job.eta:.0f} s left" if job.eta else ""
        retry = f" · {job.error}" if job.error else ""  # the queue puts a retry's reason here
        return f"Downloading {job.entry.quant or job.entry.name} ({fmt_bytes(job.total)}){speed}{eta}{retry}"
    return {"queued": f"{job.entry.name}: waiting for a download slot…",
            "verifying": f"Verifying {job.entry.name} (SHA-256)…",
            "paused": f"{job.entry.name} is paused (Downloads page).",
            "cancelled": f"Download of {job.entry.name} cancelled.",
            "done": f"{job.entry.name} verified and in the library: opening it in Chat…",
            "failed": f"Download of {job.entry.name} failed."}.get(job.state, job.state)


class BestFitDownload(QObject):
    progress = Signal(str, int)  # a sentence; percent done, BUSY or NO_BAR
    active_changed = Signal(bool)

    def __init__(self, context: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.job_id: int | None = None
        self._lookup = TaskSlot(self)
        self._connected = False
        self._planned = (4096, "f16")  # (ctx, kv_type) the pick was planned at: Chat loads it so

    @property
    def active(self) -> bool:
        return self._lookup.busy or self.job_id is not None

    def start(self, plan: Plan) -> None:
        """Find the pick's hub record (sizes, hashes) off the GUI thread, then queue it."""
        rec = plan.recommended
        self._planned = (plan.ctx, plan.kv_type)
        repo = plan.model
        what = rec.quant if rec else "the best fit"

        def lookup(_: TaskControl) -> tuple[RepoGGUF, LibraryModel | None]:
            entry = download_entry(plan)
            return entry, installed(repo, entry)

        self._lookup.run(lookup, lambda found: self._queue(repo, *found), self._lookup_failed)
        self.progress.emit(f"Looking up {what} of {repo} on the hub…", BUSY)
        self.active_changed.emit(True)

    def _lookup_failed(self, exc: BaseException) -> None:
        self.progress.emit("", NO_BAR)
        self.active_changed.emit(False)
        self.context.errors.report("Discover", exc)

    def _queue(self, repo: str, entry: RepoGGUF, have: LibraryModel | None) -> None:
        if have is not None:
            self.active_changed.emit(False)
            self.context.open_in_chat_planned.emit(have.path, *self._planned)
            self.progress.emit(f"{entry.name} is already in the library: opened it in Chat.", NO_BAR)
            return
        downloads = self.context.downloads
        if not self._connected:
            downloads.job_changed.connect(self._changed)
            self._connected = True
        job = downloads.add(repo, entry)
        self.job_id = job.id
        downloads.claim_reports(job.id, "Discover")
        if job.state in ("failed", "paused"):  # the queue keeps one job per file: take the old one up again
            downloads.resume(job.id)
        else:
            self._changed(job)

    def retry(self, job_id: int) -> None:
        self.job_id = job_id
        self.context.downloads.claim_reports(job_id, "Discover")
        self.active_changed.emit(True)
        self.context.downloads.resume(job_id)

    def cancel(self) -> None:
        if self.job_id is not None:
            self.context.downloads.cancel(self.job_id)
        else:
            self.cancel_lookup()

    def cancel_lookup(self) -> None:
        if self._lookup.busy:
            self._lookup.cancel()
            self.progress.emit("", NO_BAR)
            self.active_changed.emit(False)

    def _changed(self, job: DownloadJob) -> None:
        if job.id != self.job_id:
            return
        over = job.state in ("done", "failed", "cancelled", "paused")
        self.progress.emit(progress_text(job), NO_BAR if over else BUSY if job.state == "queued" else percent(job))
        if not over:
            return
        self.job_id = None
        self.context.downloads.release_reports(job.id)
        self.active_changed.emit(False)
        if job.state == "done":
            model = self.context.library().find(job.model or "")
            if model is None:
                self.context.errors.report("Discover", f"{job.entry.name} was downloaded but is not in the library",
                                           "Open the Library page, or import the file from the models folder.")
                return
            self.context.open_in_chat_planned.emit(model.path, *self._planned)
            self.progress.emit(f"{job.entry.name} is verified, in the library and opened in Chat.", NO_BAR)
        elif job.state == "failed":
            job_id = job.id
            # the Downloads page words it the same; this Retry also finishes the one click (opens it in Chat)
            failure = explain_failure(job.failure(), job.entry.name, job.repo)
            self.context.errors.report("Discover", failure.sentence, failure.next_step, action="Retry",
                                       callback=lambda: self.retry(job_id), details=failure.details)


class BestFitProgress(QWidget):
    """The flow's progress inline: a bar, what is happening (state, speed, time left) and Cancel."""

    def __init__(self, flow: BestFitDownload, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.flow = flow
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Download progress")
        self.bar.setMaximumWidth(160)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setAccessibleName("Download status")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel download")
        self.cancel_button.clicked.connect(flow.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.cancel_button)
        flow.progress.connect(self.show_progress)
        flow.active_changed.connect(lambda active: self.cancel_button.setVisible(active and bool(self.label.text())))
        self.show_progress("", NO_BAR)

    def show_progress(self, text: str, percent: int) -> None:
        self.label.setText(text)
        self.label.setToolTip(text)
        self.label.setVisible(bool(text))
        self.bar.setVisible(bool(text) and percent != NO_BAR)
        if percent == BUSY:
            self.bar.setRange(0, 0)
        elif percent != NO_BAR:
            self.bar.setRange(0, 100)
            self.bar.setValue(percent)
        self.cancel_button.setVisible(bool(text) and self.flow.active)
