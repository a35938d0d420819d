"""Quantize page: pick a source and a target type, see the pre-flight, run with per-tensor progress,
cancel, and read the quality report.

The page only drives ``core.quantize_job``: ``check_job`` on the thread pool whenever the inputs
change, ``run_job`` on a thread of its own. Cancel sets the job's event; the core kills the
quantizer's process group and removes the partial file.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QMenu,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.units import fmt_bytes, fmt_duration
from quantdesk.gguf.quant_presets import FULL_PRECISION, QuantPreset, all_presets, offered_presets
from quantdesk.gui.context import AppContext
from quantdesk.gui.errors import inline_text
from quantdesk.gui.tasks import Task, TaskControl, run_task
from quantdesk.gui.widgets.quantize_views import NO_REPORT, PreflightPanel, QualityReportView, TensorLog
from quantdesk.gui.widgets.status_text import colored
from quantdesk.hardware.machine import Hardware
from quantdesk.library.download import Cancelled as DownloadCancelled
from quantdesk.library.download import DownloadEvent
from quantdesk.quantize.evaluate import EvaluationCancelled, QualityReport
from quantdesk.quantize.job import Evaluating, JobCheck, Registered, check_job, run_job
from quantdesk.quantize.source import Converting
from quantdesk.quantize.quantizer import QuantizeCancelled, QuantizeResult, Started, TensorProgress

DEFAULT_TYPE = "Q4_K_M"


class QuantizePage(QWidget):
    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.last_check: JobCheck | None = None
        self.child_pid: int | None = None
        self.output_model: str | None = None  # the finished file's path
        self._generation = 0
        self._task: Task | None = None
        self._job_files: set[str] = set()  # the running job's input and output
        self._started_at = 0.0
        self._eta: tuple[float, float] | None = None  # (seconds left, when it was said)
        self._preset = ""
        self.types_loaded = False
        self._wanted_type = DEFAULT_TYPE
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<h2>Quantize</h2>Make a smaller GGUF from an F16, BF16 or F32 model with "
                                "llama.cpp's own quantizer, on this machine."))
        layout.addLayout(self._inputs())
        self.preflight = PreflightPanel()
        layout.addWidget(self.preflight)
        layout.addLayout(self._run_row())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setAccessibleName("Quantize progress")
        layout.addWidget(self.progress)
        self.current = QLabel()
        self.current.setAccessibleName("Current tensor")
        layout.addWidget(self.current)
        self.log = TensorLog()
        self.report = QualityReportView()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.log)
        split.addWidget(self.report)
        split.setSizes([500, 500])
        layout.addWidget(split, 1)
        layout.addLayout(self._result_row())
        self._debounce = QTimer(self, singleShot=True, interval=300, timeout=self.recheck)
        self._clock = QTimer(self, interval=500, timeout=self._tick)
        self.source_combo.editTextChanged.connect(self._inputs_changed)
        self.type_combo.currentIndexChanged.connect(self._inputs_changed)
        self.output_edit.textChanged.connect(self._inputs_changed)
        self.eval_check.toggled.connect(self._inputs_changed)
        self.replace_check.toggled.connect(self._inputs_changed)
        context.library_changed.connect(self.refresh_sources)
        context.hardware_changed.connect(self._inputs_changed)
        context.settings_changed.connect(self._inputs_changed)
        context.quantize_requested.connect(self.request)
        self.refresh_sources()
        self._set_running(False)
        # llama.cpp's preset list imports llama_cpp (a fraction of a second): not on the GUI thread
        run_task(lambda _: _preset_lists(), self._types_arrived,
                 lambda error: self.context.errors.report("Quantize", error), owner=self)

    # --- layout -------------------------------------------------------------------------------
    def _inputs(self) -> QGridLayout:
        grid = QGridLayout()
        self.source_combo = QComboBox()
        self.source_combo.setEditable(True)
        self.source_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.source_combo.lineEdit().setPlaceholderText("a library model, a -F16.gguf, a checkpoint folder or owner/repo")
        self.source_combo.setAccessibleName("Source model")
        self.source_combo.setToolTip("A full-precision (F16, BF16 or F32) model: from the library, a .gguf file, "
                                     "a folder holding a Hugging Face checkpoint (converted to GGUF first), or a hub "
                                     "repo whose full-precision file — or checkpoint — is downloaded first")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setAccessibleName("Choose a GGUF file or a checkpoint folder")
        browse_menu = QMenu(self.browse_button)
        browse_menu.addAction("A GGUF file…", self._browse_source)
        browse_menu.addAction("A Hugging Face checkpoint folder…", self._browse_checkpoint)
        self.browse_button.setMenu(browse_menu)
        self.type_combo = QComboBox()
        self.type_combo.setAccessibleName("Target type")
        self.type_combo.addItem("Loading types…")  # the list comes from llama.cpp, loaded off the GUI thread
        # sized for the offered names; the popup is widened for the refused ones' reasons once loaded
        self.type_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.type_combo.setMinimumContentsLength(26)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("default: <models folder>/quantized/<name>-<TYPE>.gguf")
        self.output_edit.setAccessibleName("Output file")
        self.choose_button = QPushButton("Choose…")
        self.choose_button.setAccessibleName("Choose the output file")
        self.choose_button.clicked.connect(self._browse_output)
        self.eval_check = QCheckBox("Evaluate quality afterwards (KL divergence and perplexity vs the source)")
        self.eval_check.setToolTip("KL divergence, top-1 agreement and perplexity against the source (loads both "
                                   "models)")
        self.eval_check.setAccessibleName("Evaluate quality")
        self.replace_check = QCheckBox("Replace the output file if it exists")
        self.replace_check.setAccessibleName("Replace an existing output file")
        self.replace_check.setToolTip("Run the same job again over its earlier result (the Library entry follows)")
        grid.addWidget(QLabel("Source:"), 0, 0)
        grid.addWidget(self.source_combo, 0, 1)
        grid.addWidget(self.browse_button, 0, 2)
        grid.addWidget(QLabel("Type:"), 1, 0)
        row = QHBoxLayout()
        row.addWidget(self.type_combo)
        row.addWidget(QLabel("Output:"))
        row.addWidget(self.output_edit, 1)
        grid.addLayout(row, 1, 1)
        grid.addWidget(self.choose_button, 1, 2)
        grid.addWidget(self.eval_check, 2, 1, 1, 2)
        grid.addWidget(self.replace_check, 3, 1, 1, 2)
        grid.setColumnStretch(1, 1)
        return grid

    def _type_model(self, offered: list[QuantPreset], refused: list[QuantPreset]) -> QStandardItemModel:
        """Offered presets best first, then the refused ones greyed out with the reason."""
        model = QStandardItemModel(self)
        for preset in offered:
            bits = "" if preset.name in FULL_PRECISION else f"  (~{preset.bits_per_weight:.1f} bits/weight)"
            item = QStandardItem(f"{preset.name}{bits}")
            item.setData(preset.name, Qt.ItemDataRole.UserRole)
            model.appendRow(item)
        for preset in refused:
            item = QStandardItem(f"{preset.name} — not offered: it {preset.refused}")
            item.setData(preset.name, Qt.ItemDataRole.UserRole)
            item.setToolTip(f"{preset.name} {preset.refused}")
            item.setEnabled(False)
            model.appendRow(item)
        return model

    def _run_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.quantize_button = QPushButton("Quantize")
        self.quantize_button.setAccessibleName("Start quantizing")
        self.quantize_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel quantizing")
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Quantize status")
        row.addWidget(self.quantize_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.status, 1)
        return row

    def _result_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setAccessibleName("Result")
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_chat_button = QPushButton("Open in Chat")
        self.open_chat_button.setAccessibleName("Open the quantized model in Chat")
        self.open_chat_button.clicked.connect(lambda: self.context.open_in_chat.emit(self.output_model or ""))
        self.show_library_button = QPushButton("Show in Library")
        self.show_library_button.setAccessibleName("Show the quantized model in the Library")
        self.show_library_button.clicked.connect(lambda: self.context.show_page.emit("library"))
        row.addWidget(self.result_label, 1)
        row.addWidget(self.open_chat_button)
        row.addWidget(self.show_library_button)
        self._show_result_buttons(False)
        return row

    # --- inputs -------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.source_combo.currentText().strip()

    @property
    def preset(self) -> str:
        """The selected type's name; empty until the list is loaded."""
        return str(self.type_combo.currentData(Qt.ItemDataRole.UserRole) or "") if self.types_loaded else ""

    def set_type(self, name: str) -> bool:
        """Select ``name`` (any case), even a refused one, so its reason shows; before the list is
        loaded it is selected once it is. False when the loaded list has no such type."""
        self._wanted_type = name.strip().upper()
        if not self.types_loaded:
            return True
        index = self.type_combo.findData(self._wanted_type, Qt.ItemDataRole.UserRole)
        if index >= 0:
            self.type_combo.setCurrentIndex(index)
        return index >= 0

    def _types_arrived(self, lists: tuple[list[QuantPreset], list[QuantPreset]]) -> None:
        self.type_combo.blockSignals(True)
        self.type_combo.setModel(self._type_model(*lists))
        self.type_combo.view().setMinimumWidth(self.type_combo.view().sizeHintForColumn(0) + 24)
        self.types_loaded = True
        self.set_type(self._wanted_type)
        self.type_combo.blockSignals(False)
        self.type_combo.setEnabled(not self.running)
        self._inputs_changed()

    def refresh_sources(self) -> None:
        """Library models that can be quantized (full precision), keeping what is typed."""
        text = self.source_combo.currentText()
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for model in self.context.library().models():
            if (model.quant or "").upper() in FULL_PRECISION:
                self.source_combo.addItem(model.name)
                self.source_combo.setItemData(self.source_combo.count() - 1,
                                              f"{model.path} — {fmt_bytes(model.size)}", Qt.ItemDataRole.ToolTipRole)
        self.source_combo.setEditText(text)
        self.source_combo.blockSignals(False)

    def request(self, source: str, preset: str) -> None:
        """Another page asked for this job (``AppContext.quantize_requested``): fill it in and show it."""
        if self.running:
            self.context.errors.report("Quantize", f"another quantize job is running, so {source} was not filled in",
                                       "Pick it again once this job ends.")
        else:
            self.source_combo.setEditText(source)
            if preset:
                self.set_type(preset)
            self.recheck()
        self.context.show_page.emit("quantize")

    def _browse_source(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a full-precision GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.source_combo.setEditText(path)

    def _browse_checkpoint(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder holding a Hugging Face checkpoint")
        if path:
            self.source_combo.setEditText(path)

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the quantized model as", self.output_edit.text(),
                                              "GGUF models (*.gguf)")
        if path:
            self.output_edit.setText(path)

    def _hardware(self) -> Hardware | None:
        """None: the job runs on this computer, so its pre-flight measures this computer's RAM, disk and
        CPU live — even while the app plans for a simulated machine (that is for choosing what to run)."""
        return None

    def _inputs_changed(self, *_args) -> None:
        self._generation += 1  # whatever pre-flight is in flight describes old inputs now
        self.quantize_button.setEnabled(False)
        self._debounce.start()

    # --- pre-flight ---------------------------------------------------------------------------
    def recheck(self) -> None:
        """Pre-flight the current inputs off the GUI thread; the newest answer wins."""
        self._debounce.stop()
        self._generation += 1
        self.last_check = None
        self.quantize_button.setEnabled(False)
        if self.running:
            return
        spec, preset = self.source, self.preset
        if not spec:
            self.preflight.show_message("Pick a source: a library model, a .gguf file or a hub repo id.")
            return
        if not preset:
            self.preflight.show_message("Loading the quantization types…")
            return
        generation, output, evaluate, hw = (self._generation, self.output_edit.text().strip() or None,
                                            self.eval_check.isChecked(), self._hardware())
        overwrite = self.replace_check.isChecked()
        self.preflight.show_message(f"Checking {spec} for {preset}…")
        run_task(lambda _: check_job(spec, preset, output, overwrite=overwrite, evaluate_quality=evaluate, hardware=hw),
                 lambda check: self._checked(check, generation),
                 lambda error: self._refused(inline_text(error), generation), owner=self)

    def _checked(self, check: JobCheck, generation: int) -> None:
        if generation != self._generation or self.running:
            return
        self.last_check = check
        self.preflight.show_check(check)
        if self.context.hardware.source != "detected":
            self.preflight.add_note("Quantizing runs on this computer: the pre-flight uses its own RAM, disk and "
                                    f"CPU, not the simulated machine's ({self.context.hardware.source}).")
        self.quantize_button.setEnabled(check.ok)

    def _refused(self, message: str, generation: int) -> None:
        if generation == self._generation and not self.running:
            self.preflight.show_refusal(message)

    # --- running ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None

    def _set_running(self, running: bool) -> None:
        for w in (self.source_combo, self.browse_button, self.type_combo, self.output_edit, self.choose_button,
                  self.eval_check, self.replace_check):
            w.setEnabled(not running)
        self.type_combo.setEnabled(not running and self.types_loaded)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.quantize_button.setVisible(not running)
        self.quantize_button.setEnabled(not running and bool(self.last_check and self.last_check.ok))

    def start(self) -> None:
        check = self.last_check
        if self.running or check is None or not check.ok:
            return
        spec, preset, output = self.source, check.preflight.preset, self.output_edit.text().strip() or None
        evaluate, hw = self.eval_check.isChecked(), self._hardware()
        overwrite = self.replace_check.isChecked()

        def work(control: TaskControl):  # the job's events are the task's progress
            return run_job(spec, preset, output, overwrite=overwrite, evaluate_quality=evaluate, hardware=hw,
                           cancel=control.cancel_event)

        self._preset, self.child_pid, self.output_model = preset, None, None
        self._job_files = {str(check.preflight.input), str(check.preflight.output)}
        self._started_at, self._eta = time.monotonic(), None
        self.log.setRowCount(0)
        self.report.show_note("The report comes once the model is quantized." if evaluate else NO_REPORT)
        self.progress.setValue(0)
        self.result_label.clear()
        self._show_result_buttons(False)
        self.current.setText("Starting the quantizer…")
        self.status.setText(f"Quantizing {check.label} to {preset}…")
        self._task = run_task(work, lambda _: self._ended(None), self._ended, on_progress=self._on_event, owner=self,
                              where="own")  # minutes long: not on the pool that pre-flights use
        self._set_running(True)
        self._clock.start()

    def models_in_use(self) -> set[str]:
        """The running job's input and output files (nothing when idle)."""
        return set(self._job_files) if self.running else set()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")

    def _on_event(self, ev: object) -> None:
        if isinstance(ev, Converting):
            self.progress.setValue(int(1000 * ev.done / ev.total) if ev.total else 0)
            self.progress.setFormat("%p%  ·  converting to GGUF")
            self.current.setText(f"Converting the checkpoint to GGUF: {fmt_bytes(ev.done)} of {fmt_bytes(ev.total)} "
                                 "written (removed once quantized)…")
        elif isinstance(ev, DownloadEvent):
            frac = ev.done / ev.total if ev.total else 0.0
            self.progress.setValue(int(1000 * frac))
            speed = f" at {fmt_bytes(ev.speed)}/s" if ev.speed else ""
            self.current.setText(f"Downloading {ev.file} ({ev.state}): {fmt_bytes(ev.done)} of "
                                 f"{fmt_bytes(ev.total)}{speed}")
        elif isinstance(ev, Started):
            self.child_pid = ev.pid
            self.current.setText(f"The quantizer is running with {ev.threads} threads…")
        elif isinstance(ev, TensorProgress):
            self._tensor(ev)
        elif isinstance(ev, QuantizeResult):
            self.progress.setValue(1000)
            self.current.setText(f"Quantized in {fmt_duration(ev.seconds)}; hashing it for the library…")
        elif isinstance(ev, Registered):
            self._registered(ev)
        elif isinstance(ev, Evaluating):
            self.progress.setRange(0, 0)  # busy: the evaluation reports no steps
            self.current.setText(f"Evaluating quality on {ev.tokens} tokens (both models run in a child process)…")
            self.report.show_note("Evaluating…")
        elif isinstance(ev, QualityReport):
            self.report.show_report(ev, self._preset)
            self.current.setText("Done: quantized, in the library, and evaluated.")

    def _tensor(self, ev: TensorProgress) -> None:
        self.progress.setValue(int(1000 * ev.done_bytes / ev.total_bytes) if ev.total_bytes else 0)
        self.progress.setFormat(f"%p%  ·  {ev.index - (not ev.finished)}/{ev.total} tensors")
        if not ev.finished:  # its target type is known once it is done
            self.current.setText(f"Tensor {ev.index} of {ev.total}: {ev.name} ({ev.src_type}, "
                                 f"{fmt_bytes(ev.bytes_in)})…")
        if ev.eta is not None:
            self._eta = (ev.eta, time.monotonic())
        if ev.finished:
            self.log.add(ev)

    def _registered(self, ev: Registered) -> None:
        result, model = ev.result, ev.model
        self.output_model = model.path
        self.result_label.setText(colored(f"Saved {result.output.name}: {fmt_bytes(result.size)} in "
                                          f"{fmt_duration(result.seconds)} (peak RAM {fmt_bytes(result.peak_ram)}); "
                                          f"in the library as {model.name}.", True))
        self._show_result_buttons(True)
        self.current.setText("Done.")
        self.context.library_changed.emit()

    def _tick(self) -> None:
        elapsed = time.monotonic() - self._started_at
        left = ""
        if self._eta is not None:
            eta, said = self._eta
            left = f" · about {fmt_duration(max(0.0, eta - (time.monotonic() - said)))} left"
        self.status.setText(f"{'Cancelling' if self._task and self._task.control.cancelled else 'Running'} · "
                            f"{fmt_duration(elapsed)} elapsed{left}")

    def _ended(self, error: Exception | None) -> None:
        self._task = None
        self._clock.stop()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p%")
        if error is None:
            self.last_check = None  # the same job again would only find its output there
        self._set_running(False)
        if self.output_model is not None:
            self.progress.setValue(1000)  # the model is quantized whatever became of its evaluation
        if error is None:
            self.status.setText(colored("Finished.", True))
            self.preflight.set_verdict("Done: the figures above were the prediction. Pick another type or source "
                                       "for the next job.")
            return
        if self.output_model is not None:  # the model is saved; only the evaluation failed or was cancelled
            self.status.setText("The model is saved; its quality evaluation did not finish.")
            self.report.show_note(str(error))
            if not isinstance(error, EvaluationCancelled):
                self.context.errors.report("Quantize", error)
            return
        self.progress.setValue(0)
        self.current.clear()
        if isinstance(error, QuantizeCancelled):
            self.status.setText("Cancelled: the quantizer was stopped and its partial output removed.")
        elif isinstance(error, DownloadCancelled):
            self.status.setText("Cancelled: the download stopped; its partial file is kept and resumes next time.")
        else:
            self.status.setText(colored("Failed; see the message above.", False))
            self.context.errors.report("Quantize", error)
        self.recheck()  # the inputs are still good: the page is ready to run them again

    def _show_result_buttons(self, visible: bool) -> None:
        self.open_chat_button.setVisible(visible)
        self.show_library_button.setVisible(visible)

    def shutdown(self) -> None:
        """The window closes: stop the job (the core kills the child and removes the partial), and
        let no pre-flight still in flight touch the page."""
        self._debounce.stop()
        self._generation += 1
        if self._task is not None:
            self._task.cancel()
            self._task.wait(30.0)


def _preset_lists() -> tuple[list[QuantPreset], list[QuantPreset]]:
    """(offered presets best first, refused ones by name)."""
    return offered_presets(), sorted((p for p in all_presets().values() if p.refused), key=lambda p: p.name)
