"""One download on the Downloads page: what, how far, how fast, why it failed, and the buttons its
state allows. Real widgets rather than a painted delegate, so every button is reachable with Tab and
has an accessible name; the page throttles how often a row is refreshed."""

from __future__ import annotations


from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from quantdesk.base.units import fmt_bytes
from quantdesk.gui.theme import MUTED, dark_now, tone
from quantdesk.gui.widgets.status_text import BAD
from quantdesk.library.failure import explain_failure
from quantdesk.library.queue import DownloadJob

STATE_LABELS = {"queued": "Queued", "downloading": "Downloading", "verifying": "Verifying", "paused": "Paused",
                "failed": "Failed", "done": "Done", "cancelled": "Cancelled"}
ACTIONS = {"pause": "Pause", "resume": "Resume", "retry": "Retry", "chat": "Open in Chat", "cancel": "Cancel",
           "remove": "Remove"}
OFFERED = {"queued": ("pause", "cancel"), "downloading": ("pause", "cancel"), "verifying": ("cancel",),
           "paused": ("resume", "cancel"), "failed": ("retry", "remove"), "cancelled": ("retry", "remove"),
           "done": ("chat", "remove")}

# (light, dark) colours of the row's chips and bars
_CHIPS = {
    "quant": (("#eef2ff", "#3730a3"), ("#1f2a5c", "#a9b4f5")),
    "idle": (("#f3f4f6", "#4b5563"), ("#2d333b", "#c9d1d9")),
    "downloading": (("#dbeafe", "#1d4ed8"), ("#0c2d6b", "#79b8ff")),
    "verifying": (("#ede9fe", "#6d28d9"), ("#2f1f5c", "#c8a8ff")),
    "paused": (("#fef3c7", "#92400e"), ("#3d2e00", "#f0c96a")),
    "failed": (("#fee2e2", "#991b1b"), ("#4a1818", "#ff9a94")),
    "done": (("#dcfce7", "#166534"), ("#0f3d1f", "#7ee2a8")),
}


def row_style() -> str:
    """The rows' stylesheet for the scheme shown now (the page re-applies it when the theme changes)."""
    dark = dark_now()

    def chip(name: str) -> str:
        bg, fg = _CHIPS[name][1 if dark else 0]
        return f"background: {bg}; color: {fg};"

    return f"""
#downloadRow {{ background: palette(base); border: 1px solid palette(midlight); border-radius: 8px; }}
#downloadRow QLabel#rowTitle {{ font-weight: 600; font-size: 14px; }}
#downloadRow QLabel#rowQuant {{ {chip("quant")} border-radius: 4px; padding: 1px 6px; }}
#downloadRow QLabel#rowRepo {{ color: {tone(*MUTED)}; }}
#downloadRow QLabel#rowState {{ border-radius: 9px; padding: 2px 10px; font-weight: 600; }}
QLabel#rowState[state="queued"], QLabel#rowState[state="cancelled"] {{ {chip("idle")} }}
QLabel#rowState[state="downloading"] {{ {chip("downloading")} }}
QLabel#rowState[state="verifying"] {{ {chip("verifying")} }}
QLabel#rowState[state="paused"] {{ {chip("paused")} }}
QLabel#rowState[state="failed"] {{ {chip("failed")} }}
QLabel#rowState[state="done"] {{ {chip("done")} }}
#downloadRow QProgressBar {{ border: none; background: {tone("#e5e7eb", "#3d444d")}; border-radius: 3px; max-height: 6px; }}
#downloadRow QProgressBar::chunk {{ background: #2563eb; border-radius: 3px; }}
#downloadRow QProgressBar[state="done"]::chunk {{ background: #16a34a; }}
#downloadRow QProgressBar[state="failed"]::chunk {{ background: #dc2626; }}
#downloadRow QProgressBar[state="paused"]::chunk {{ background: #d97706; }}
#downloadRow QProgressBar[state="verifying"]::chunk {{ background: #7c3aed; }}
#downloadRow QProgressBar[state="queued"]::chunk, #downloadRow QProgressBar[state="cancelled"]::chunk {{
    background: #9ca3af; }}
"""


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def detail_html(job: DownloadJob) -> tuple[str, str]:
    """The row's status line (rich text, hashes shortened) and its full plain text for the tooltip."""
    amount = f"{fmt_bytes(job.done)} of {fmt_bytes(job.total)}"
    percent = f"{100 * job.done / job.total:.0f}%" if job.total else ""
    if job.state == "failed":  # one sentence for people; the hashes and sizes in the tooltip
        failure = explain_failure(job.failure(), job.entry.name, job.repo)
        full = f"{failure.sentence} {failure.next_step}" + (f"\n\nDetails: {failure.details}" if failure.details else "")
        return f"<span style='color:{BAD}'>{_esc(failure.sentence)}</span> {_esc(failure.next_step)}", full
    if job.state == "downloading":
        parts = [percent, amount]
        if job.speed > 0:
            parts.append(f"{fmt_bytes(job.speed)}/s" + (f" over {job.connections} connections"
                                                         if job.connections > 1 else ""))
            if job.eta is not None:
                parts.append(f"{fmt_duration(job.eta)} left")
        elif not job.error:
            parts.append("starting…")
        text = " · ".join(parts)
        if job.error:  # the downloader is retrying after a drop, a stall or a 5xx
            return f"{_esc(text)} · <span style='color:#d29922'>retrying: {_esc(job.error)}</span>", text
        return _esc(text), text
    text = {
        "queued": f"Waiting for a free download slot · {fmt_bytes(job.total)}",
        "verifying": f"{amount} · checking the SHA-256 against the hub's record…",
        "paused": f"Paused at {percent} · {amount}; Resume continues from there",
        "cancelled": "Cancelled; the partial file was removed",
        "done": f"{fmt_bytes(job.total)} · SHA-256 verified · in the Library as {job.model}",
    }.get(job.state, job.state)
    return _esc(text), text


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class DownloadRow(QFrame):
    """Shows one ``DownloadJob``; its buttons emit ``action(name, job_id)`` for the page to carry out."""

    action = Signal(str, int)

    def __init__(self, job: DownloadJob, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadRow")
        self.job = job
        self.pending_from: str | None = None  # the state a Pause/Cancel was clicked in, until it changes
        name = job.entry.name
        self.title = QLabel(name, objectName="rowTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.quant = QLabel(job.entry.quant or "", objectName="rowQuant")
        self.quant.setVisible(bool(job.entry.quant))
        parts = len(job.entry.parts)
        self.repo = QLabel(job.repo + (f" · {parts} parts" if parts > 1 else ""), objectName="rowRepo")
        self.state_label = QLabel(objectName="rowState")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setAccessibleName(f"Progress of {name}")
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.buttons: dict[str, QPushButton] = {}
        button_row = QHBoxLayout()
        button_row.setSpacing(6)
        for key, text in ACTIONS.items():
            button = QPushButton(text)
            button.setAccessibleName(f"{text} {name}")
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, k=key: self.action.emit(k, self.job.id))
            self.buttons[key] = button
            button_row.addWidget(button)
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.title)
        head.addWidget(self.quant)
        head.addStretch(1)
        head.addWidget(self.state_label)
        grid = QGridLayout(self)
        grid.setContentsMargins(14, 10, 14, 10)
        grid.setVerticalSpacing(4)
        grid.addLayout(head, 0, 0)
        grid.addWidget(self.repo, 1, 0)
        grid.addLayout(button_row, 0, 1, 2, 1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(self.bar, 2, 0, 1, 2)
        grid.addWidget(self.detail, 3, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        self._shown_state: str | None = None
        self.show_job(job)

    def show_job(self, job: DownloadJob) -> None:
        self.job = job
        if self.pending_from is not None and job.state != self.pending_from:
            self.pending_from = None
        if job.state != self._shown_state:
            self._shown_state = job.state
            for widget in (self.state_label, self.bar):
                widget.setProperty("state", job.state)
                widget.style().unpolish(widget)
                widget.style().polish(widget)
            offered = OFFERED.get(job.state, ())
            for key, button in self.buttons.items():
                button.setVisible(key in offered)
        self.state_label.setText("Stopping…" if self.pending_from else STATE_LABELS.get(job.state, job.state))
        for button in self.buttons.values():
            button.setEnabled(self.pending_from is None)
        self.bar.setValue(1000 if job.state == "done" else int(1000 * job.done / job.total) if job.total else 0)
        html, plain = detail_html(job)
        self.detail.setText(html)
        self.detail.setToolTip(plain)
        self.setAccessibleName(f"{job.entry.name} from {job.repo}: {STATE_LABELS.get(job.state, job.state)}")
        self.setAccessibleDescription(plain)

    def mark_pending(self) -> None:
        """Pause or Cancel was clicked: the worker stops in its own time; until then nothing else is offered."""
        if self.job.state in ("downloading", "verifying"):
            self.pending_from = self.job.state
            self.show_job(self.job)
