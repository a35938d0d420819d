"""The core download queue as Qt signals: worker-thread updates arrive on the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from quantdesk.base.settings import load_settings
from quantdesk.base.sqlite_db import DamagedDatabase, set_aside
from quantdesk.hub.client import RepoGGUF
from quantdesk.library.queue import DownloadJob, DownloadQueue


class QtDownloadQueue(QObject):
    """Wraps one ``DownloadQueue``; ``job_changed`` fires (queued connection) for every update,
    ``job_finished`` once a job is done (verified and in the library) or failed."""

    job_changed = Signal(object)   # DownloadJob
    job_finished = Signal(object)  # DownloadJob in state done or failed
    job_removed = Signal(int)      # a job id dropped from the list

    def __init__(self, context, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        # the listener runs on worker threads; emitting a signal from there is queued to the GUI thread
        try:
            self.queue = DownloadQueue(max_concurrent=load_settings().max_concurrent_downloads,
                                       listener=self.job_changed.emit)
        except DamagedDatabase as damaged:
            # The queue holds only jobs to do (the partial files stay, and resume when added again):
            # the damaged file is kept beside it and a new queue starts, and the user is told.
            aside = set_aside(damaged.path)
            context.errors.report("Downloads", f"{damaged.path.name} was damaged ({damaged}); it is kept as "
                                  f"{aside.name} and a new download queue was started",
                                  next_step="Add the downloads you had queued again: their partial files are kept "
                                            "and resume where they stopped.")
            self.queue = DownloadQueue(max_concurrent=load_settings().max_concurrent_downloads,
                                       listener=self.job_changed.emit)
        self.job_changed.connect(self._on_changed)
        self._reporters: dict[int, str] = {}

    def claim_reports(self, job_id: int, where: str) -> None:
        """``where`` (e.g. Discover's one-click download) reports this job's failure itself, with its own
        Retry; the Downloads page then shows it in the row only, so one failure makes one report."""
        self._reporters[job_id] = where

    def release_reports(self, job_id: int) -> None:
        self._reporters.pop(job_id, None)

    def reported_by(self, job_id: int) -> str | None:
        return self._reporters.get(job_id)

    def _on_changed(self, job: DownloadJob) -> None:
        if job.state in ("done", "failed"):
            self.job_finished.emit(job)
            if job.state == "done":
                self.context.library_changed.emit()

    def add(self, repo: str, entry: RepoGGUF, revision: str | None = None) -> DownloadJob:
        return self.queue.add(repo, entry, revision)

    def jobs(self) -> list[DownloadJob]:
        return self.queue.jobs()

    def pause(self, job_id: int) -> None:
        """Returns at once: a worker stuck in a stalled read must not freeze the window; ``job_changed``
        brings the paused state when the worker stops."""
        self.queue.pause(job_id, wait=False)

    def resume(self, job_id: int) -> None:
        self.queue.resume(job_id)

    def cancel(self, job_id: int) -> None:
        """Returns at once, like ``pause``; the worker removes the partial files when it stops."""
        self.queue.cancel(job_id, wait=False)

    def remove(self, job_id: int) -> None:
        self.queue.remove(job_id)
        self.job_removed.emit(job_id)

    def shutdown(self) -> None:
        self.queue.shutdown()
