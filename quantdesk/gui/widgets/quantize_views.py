"""What the Quantize page shows: the pre-flight, the per-tensor log and the quality report."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.units import fmt_bytes, fmt_duration
from quantdesk.gui.widgets.status_text import colored, mark
from quantdesk.planning.quantize_cost import RAM_RESERVE
from quantdesk.quantize.evaluate import QualityReport
from quantdesk.quantize.job import JobCheck
from quantdesk.quantize.quantizer import TensorProgress

KINDS = {"library": "library model", "file": "local file", "checkpoint": "its GGUF once converted",
         "checkpoint-repo": "its GGUF once converted"}
NO_REPORT = "Tick “Evaluate quality” before starting to compare the result with its source."


def elide_path(path: Path | str, limit: int = 90) -> str:
    text = str(path)
    home = str(Path.home())
    if text.startswith(home + "/"):
        text = "~" + text[len(home):]
    return text if len(text) <= limit else f"{text[:limit // 3]}…{text[-(2 * limit // 3):]}"




class PreflightPanel(QGroupBox):
    """Input, output, RAM, disk and time of the job as the pre-flight sees it, and its verdict."""

    ROWS = ("Input", "Output", "Memory", "Disk", "Time", "Evaluation")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Pre-flight", parent)
        grid = QGridLayout(self)
        grid.setColumnStretch(1, 1)
        self.values: dict[str, QLabel] = {}
        self.names: dict[str, QLabel] = {}
        for row, name in enumerate(self.ROWS):
            label, value = QLabel(f"{name}:"), QLabel()
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setAccessibleName(f"Pre-flight {name.lower()}")
            grid.addWidget(label, row, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(value, row, 1)
            self.names[name], self.values[name] = label, value
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setAccessibleName("Pre-flight verdict")
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.verdict, len(self.ROWS), 0, 1, 2)
        self.show_message("Pick a source and a target type.")

    def _rows(self, values: dict[str, str]) -> None:
        for name in self.ROWS:
            text = values.get(name, "")
            self.values[name].setText(text)
            self.values[name].setVisible(bool(text))
            self.names[name].setVisible(bool(text))

    def show_message(self, text: str) -> None:
        self._rows({})
        self.verdict.setText(text)

    def set_verdict(self, text: str) -> None:
        """A new last line, keeping the figures above it (the finished job's prediction)."""
        self.verdict.setText(text)

    def show_refusal(self, reason: str) -> None:
        self._rows({})
        self.verdict.setText(colored(f"Can't run: {reason}", False))

    def show_check(self, check: JobCheck) -> None:
        pf = check.preflight
        source = f"{check.label} — {fmt_bytes(pf.input_bytes)}, {KINDS.get(check.kind, 'on the hub')}"
        if check.download_bytes and check.kind == "checkpoint-repo":
            source += f"; its checkpoint ({fmt_bytes(check.download_bytes)}) is downloaded, verified and converted first"
        elif check.download_bytes:
            source += f"; its full-precision file ({fmt_bytes(check.download_bytes)}) is downloaded first"
        disk_need = pf.disk_needed + check.download_bytes
        values = {
            "Input": source,
            "Output": f"{elide_path(pf.output)} — about {fmt_bytes(pf.output_bytes)} as {pf.preset}",
            "Memory": f"{mark(pf.ram_needed + RAM_RESERVE <= pf.ram_available)} needs {fmt_bytes(pf.ram_needed)} "
                      f"(+{fmt_bytes(RAM_RESERVE)} kept free) of {fmt_bytes(pf.ram_available)} available "
                      f"({pf.source})",
            "Disk": f"{mark(disk_need <= pf.disk_free)} needs {fmt_bytes(disk_need)} of {fmt_bytes(pf.disk_free)} "
                    "free, margin" + (" and download" if check.download_bytes else "") + " included",
            "Time": f"about {fmt_duration(pf.seconds)} with {pf.threads} threads",
        }
        if check.eval_ram is not None:
            values["Evaluation"] = (f"{mark(check.eval_ram <= pf.ram_available)} needs {fmt_bytes(check.eval_ram)} "
                                    "of RAM afterwards (the source model and both models' logits)")
        self._rows(values)
        self.values["Output"].setToolTip(str(pf.output))
        self.verdict.setText(colored("Ready to quantize.", True) if check.ok
                             else colored(f"Can't run: {check.reason}", False))

    def add_note(self, text: str) -> None:
        """A sentence under the verdict (e.g. that the figures are this computer's)."""
        self.verdict.setText(f"{self.verdict.text()}<br><span style='font-size:small'>{_escape(text)}</span>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class TensorLog(QTableWidget):
    """One row per finished tensor: what it was, what it became."""

    COLUMNS = ["#", "Tensor", "From", "To", "Size"]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels(self.COLUMNS)
        self.setAccessibleName("Tensor log")
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)

    def add(self, ev: TensorProgress) -> None:
        row = self.rowCount()
        self.insertRow(row)
        cells = [f"{ev.index}/{ev.total}", ev.name, ev.src_type, ev.dst_type or "copied",
                 f"{fmt_bytes(ev.bytes_in)} → {fmt_bytes(ev.bytes_out)}"]
        for col, text in enumerate(cells):
            self.setItem(row, col, QTableWidgetItem(text))
        self.scrollToBottom()


class QualityReportView(QGroupBox):
    """The evaluation's figures, each with what it means."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Quality report", parent)
        layout = QVBoxLayout(self)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Measure", "Value", "What it means"])
        self.table.setAccessibleName("Quality report")
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        self.show_note(NO_REPORT)

    def show_note(self, text: str) -> None:
        self.note.setText(text)
        self.table.setRowCount(0)

    def show_report(self, report: QualityReport, preset: str) -> None:
        change = (report.ppl_quantized / report.ppl_reference - 1) if report.ppl_reference else 0.0
        rows = [
            ("KL divergence, mean", f"{report.kl_mean:.5f}", "0 = same odds as the source"),
            ("KL divergence, p99", f"{report.kl_p99:.5f}", "The worst 1% of tokens"),
            ("KL divergence, max", f"{report.kl_max:.5f}", "The single worst token"),
            ("Top-1 agreement", f"{report.top1_agreement:.1%}", "Same most likely next token"),
            ("Perplexity, source", f"{report.ppl_reference:.3f}", "Lower is better"),
            (f"Perplexity, {preset}", f"{report.ppl_quantized:.3f} ({change:+.1%})", "Close to the source's is good"),
        ]
        self.note.setText(f"Against {Path(report.reference).name} on {report.tokens} tokens of the bundled sample "
                          f"text, in {fmt_duration(report.seconds)}.")
        self.table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()
