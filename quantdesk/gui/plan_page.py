"""Plan page: pick a local GGUF or a hub repo, move the context slider, see what fits and why."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                               QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from quantdesk.core.hardware import Hardware
from quantdesk.core.plan_service import Plan, plan
from quantdesk.core.units import fmt_bytes
from quantdesk.gui.workers import run_in_background

CONTEXTS = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
COLUMNS = ["", "Quant", "Size", "Fit", "VRAM", "RAM", "KV cache", "tok/s", "Quality loss (KLD)"]


class PlanPage(QWidget):
    def __init__(self, hardware: Hardware, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hardware = hardware
        self.last_plan: Plan | None = None
        self._generation = 0
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<h2>Plan</h2>A local .gguf file or a hub repo id (owner/name); nothing is downloaded."))
        row = QHBoxLayout()
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("bartowski/Llama-3.2-3B-Instruct-GGUF or /path/to/model.gguf")
        self.model_edit.setAccessibleName("Model")
        self.model_edit.returnPressed.connect(self.replan)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.plan_button = QPushButton("Plan")
        self.plan_button.clicked.connect(self.replan)
        row.addWidget(self.model_edit, 1)
        row.addWidget(browse)
        row.addWidget(self.plan_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.ctx_slider = QSlider(Qt.Orientation.Horizontal)
        self.ctx_slider.setRange(0, len(CONTEXTS) - 1)
        self.ctx_slider.setValue(CONTEXTS.index(4096))
        self.ctx_slider.setAccessibleName("Context length")
        self.ctx_label = QLabel()
        self.kv_combo = QComboBox()
        self.kv_combo.addItems(["f16", "q8_0", "q4_0"])
        self.kv_combo.setAccessibleName("KV cache type")
        row.addWidget(QLabel("Context:"))
        row.addWidget(self.ctx_slider, 1)
        row.addWidget(self.ctx_label)
        row.addWidget(QLabel("KV cache:"))
        row.addWidget(self.kv_combo)
        layout.addLayout(row)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setAccessibleName("Plan options")
        layout.addWidget(self.table, 1)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        # re-plan live while the slider moves, without a plan per pixel
        self._debounce = QTimer(self, singleShot=True, interval=150, timeout=self.replan)
        self.ctx_slider.valueChanged.connect(self._ctx_changed)
        self.kv_combo.currentTextChanged.connect(lambda _: self._debounce.start())
        self._ctx_changed()

    @property
    def ctx(self) -> int:
        return CONTEXTS[self.ctx_slider.value()]

    def _ctx_changed(self) -> None:
        self.ctx_label.setText(f"{self.ctx:,} tokens")
        if self.model_edit.text().strip():
            self._debounce.start()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.model_edit.setText(path)
            self.replan()

    def replan(self) -> None:
        model = self.model_edit.text().strip()
        if not model:
            self.status.setText("Enter a model first.")
            return
        self._generation += 1
        generation, hw, ctx, kv = self._generation, self.hardware, self.ctx, self.kv_combo.currentText()
        self.status.setText(f"Planning {model} at {ctx:,} tokens…")
        run_in_background(lambda: plan(model, hw, ctx=ctx, kv_type=kv),
                          lambda result: self._show(result, generation),
                          lambda message: self._failed(message, generation))

    def _failed(self, message: str, generation: int) -> None:
        if generation == self._generation:
            self.status.setText(f"<span style='color:#b00020'>{message}</span>")

    def _show(self, result: Plan, generation: int) -> None:
        if generation != self._generation:  # a newer request superseded this one
            return
        self.last_plan = result
        self.table.setRowCount(len(result.options))
        for row, o in enumerate(result.options):
            cells = ["★" if o.recommended else "", o.quant, fmt_bytes(o.size), o.summary(), fmt_bytes(o.vram),
                     fmt_bytes(o.ram), fmt_bytes(o.memory.kv_cache),
                     f"{o.tokens_per_s:.1f}" if o.tokens_per_s else "-",
                     f"{o.quality_loss:.4f}" if o.quality_loss is not None else "-"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(o.reason)
                self.table.setItem(row, col, item)
        rec = result.recommended
        text = rec.reason if rec else "Nothing here runs on this machine."
        if rec and rec.max_ctx_full_gpu:
            text += f" Largest context fully on the GPU: {rec.max_ctx_full_gpu:,} tokens."
        self.status.setText(text + "".join(f"<br>note: {n}" for n in result.notes))
