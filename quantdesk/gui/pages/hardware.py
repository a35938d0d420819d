"""Hardware page: what QuantDesk found (or is simulating), with VRAM and RAM bars.

The detected machine refreshes live (VRAM and RAM change as other programs run); the picker
switches every page to a simulated machine — a preset or a JSON file — to plan for hardware you
do not have in front of you.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from quantdesk.base.units import fmt_bytes, fmt_rate
from quantdesk.planning.margins import ram_for_models, ram_margin, vram_for_models, vram_margin
from quantdesk.hardware.machine import Hardware, load_hardware_spec, preset_names

DETECTED = "detected"
OPEN_FILE = "file"
REFRESH_MS = 2000
# The llama.cpp self-test starts this long after the window appears (it loads native code and,
# on a GPU, may compile shaders: never in the way of the first paint).
SELFTEST_DELAY_MS = 1500


def _bar(used: int, total: int, text: str, name: str) -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setValue(int(1000 * used / total) if total else 0)
    bar.setFormat(text)
    bar.setAccessibleName(name)
    bar.setTextVisible(True)
    return bar


class HardwarePage(QWidget):
    """Shows one ``Hardware``; with a context it also offers the picker and the live refresh."""

    def __init__(self, parent: QWidget | None = None, context=None) -> None:
        super().__init__(parent)
        self.context = context
        self.hardware: Hardware | None = None
        self._layout = QVBoxLayout(self)
        header = QHBoxLayout()
        header.addWidget(QLabel("<h2>Hardware</h2>"))
        header.addStretch(1)
        self.picker = QComboBox()
        self.picker.setAccessibleName("Machine to plan for")
        self.picker.setToolTip("Plan for this machine, or simulate another one on every page")
        self.picker.addItem("This machine (detected)", DETECTED)
        for name in preset_names():
            self.picker.addItem(f"Simulate: {name}", f"preset:{name}")
        self.picker.addItem("Simulate from a JSON file…", OPEN_FILE)
        self.picker.setVisible(context is not None)
        self.picker.activated.connect(self._picked)
        header.addWidget(self.picker)
        self._layout.addLayout(header)
        self.acceleration = QLabel("GPU acceleration: not checked yet")
        self.acceleration.setAccessibleName("GPU acceleration")
        self.acceleration.setWordWrap(True)
        self.acceleration.setVisible(context is not None)
        self._layout.addWidget(self.acceleration)
        self.selftest_result = None
        self._selftest_task = None
        if context is not None and os.environ.get("QUANTDESK_NO_SELFTEST") != "1":
            QTimer.singleShot(SELFTEST_DELAY_MS, self, self.run_selftest)
        self._content: list[QWidget] = []
        self.picks_box = None
        if context is not None:
            from quantdesk.gui.widgets.machine_picks import MachinePicksBox

            self.picks_box = MachinePicksBox()
            self.picks_box.open_repo.connect(context.open_in_discover)
            self._layout.addWidget(self.picks_box)
            context.catalog_refreshed.connect(lambda _: self._replan_picks())
        self._layout.addStretch(1)
        self._refreshing = False
        self._timer = QTimer(self, interval=REFRESH_MS, timeout=self._refresh)
        if context is not None:
            self._timer.start()

    # --- picking a machine -------------------------------------------------------------------
    def _picked(self, index: int) -> None:
        data = self.picker.itemData(index)
        if data == OPEN_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "A hardware description", "", "JSON (*.json)")
            if not path:
                self._select_current()
                return
            self.simulate(path)
        elif data == DETECTED:
            self.use_detected()
        else:
            self.simulate(str(data).removeprefix("preset:").removeprefix("file:"))

    def simulate(self, spec: str) -> bool:
        """Plan for a preset name or a hardware JSON file on every page; a bad file is reported."""
        try:
            hw = load_hardware_spec(spec)
        except Exception as exc:  # noqa: BLE001 - reported through the bridge as a sentence
            self._report(exc, "Pick a preset, or a JSON file like those in resources/hardware/.")
            self._select_current()
            return False
        self._apply(hw)
        return True

    def use_detected(self) -> None:
        from quantdesk.gui.tasks import run_task
        from quantdesk.hardware.detect import detect_hardware

        run_task(lambda _: detect_hardware(), self._apply,
                 lambda exc: self._report(exc, "The simulated presets still work for planning."), owner=self)

    def _apply(self, hw: Hardware) -> None:
        if self.context is not None:
            self.context.set_hardware(hw)  # calls show_hardware through hardware_changed
        else:
            self.show_hardware(hw)

    def _select_current(self) -> None:
        source = self.hardware.source if self.hardware else DETECTED
        if source.startswith("file:") and self.picker.findData(source) < 0:
            path = source.removeprefix("file:")
            self.picker.insertItem(self.picker.count() - 1, f"Simulate: {path.rsplit('/', 1)[-1]}", source)
        index = self.picker.findData(source)
        self.picker.setCurrentIndex(index if index >= 0 else 0)

    def _report(self, error, step: str) -> None:
        if self.context is not None:
            self.context.errors.report("Hardware", error, step)

    # --- does llama.cpp really run here ----------------------------------------------------------
    def run_selftest(self) -> None:
        """Generate with a tiny model on the CPU and the GPU, in a child process (``quantdesk selftest``)."""
        from quantdesk.gui.tasks import run_task

        if self._selftest_task is not None:
            return
        self.acceleration.setText("GPU acceleration: checking (llama.cpp generates a few tokens)…")

        def work(control):
            from quantdesk.chat.selftest import selftest_in_child
            from quantdesk.hardware.detect import detect_amd, detect_apple, detect_intel, detect_nvidia

            seen = [g.name for g in detect_nvidia() + detect_amd() + detect_intel() + detect_apple()]
            return selftest_in_child(seen, cancel=control.cancel_event)

        def done(result) -> None:
            self.selftest_result, self._selftest_task = result, None
            text = result.summary + (f" — {result.problem}" if result.problem and result.problem not in result.summary else "")
            self.acceleration.setText(("✓ " if result.ok and not result.problem else "⚠ ") + text)

        def failed(exc: Exception) -> None:
            self._selftest_task = None
            self.acceleration.setText(f"⚠ GPU acceleration: the self-test could not run ({exc})")

        self._selftest_task = run_task(work, done, failed, owner=self)

    def stop_selftest(self) -> None:
        if self._selftest_task is not None:
            self._selftest_task.cancel()

    # --- live refresh ------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Re-detect the real machine in the background; simulated machines do not change."""
        if self._refreshing or self.hardware is None or self.hardware.source != DETECTED or not self.isVisible():
            return
        from quantdesk.gui.tasks import run_task
        from quantdesk.hardware.detect import detect_hardware

        self._refreshing = True

        def done(hw: Hardware) -> None:
            self._refreshing = False
            if self.hardware is not None and self.hardware.source == DETECTED:
                self.hardware = hw
                if self.context is not None:
                    self.context.hardware = hw  # fresh figures without re-planning every page
                self._show(hw)

        def failed(_exc: Exception) -> None:
            self._refreshing = False  # the figures shown stay; the next refresh tries again

        run_task(lambda _: detect_hardware(), done, failed, owner=self)

    # --- showing -----------------------------------------------------------------------------
    def show_hardware(self, hw: Hardware) -> None:
        self.hardware = hw
        self._select_current()
        self._show(hw)
        self._replan_picks()  # a different machine; the live refresh (same machine) does not re-rank

    def background_busy(self) -> bool:
        return self.picks_box is not None and self.picks_box.busy

    def _replan_picks(self) -> None:
        if self.picks_box is not None and self.hardware is not None:
            self.picks_box.show_for(self.hardware)

    def _show(self, hw: Hardware) -> None:
        for w in self._content:
            w.setParent(None)
            w.deleteLater()
        self._content.clear()

        def add(w: QWidget) -> None:
            self._layout.insertWidget(1 + len(self._content), w)
            self._content.append(w)

        simulated = hw.source != DETECTED
        source = QLabel(f"Source: {hw.source}" + (" — a simulated machine: plans on every page are for it, "
                                                   "not for this computer" if simulated else " (refreshes live)"))
        source.setWordWrap(True)
        add(source)
        gpus = QGroupBox("GPUs")
        gl = QVBoxLayout(gpus)
        for g in hw.gpus:
            details = [g.vendor]
            if g.bandwidth:
                details.append(fmt_rate(g.bandwidth))
            if g.compute_capability:
                details.append(f"compute {g.compute_capability}")
            if g.driver:
                details.append(f"driver {g.driver}")
            if g.unified_memory:
                details.append("unified memory")
            gl.addWidget(QLabel(f"<b>{g.name}</b> ({', '.join(details)}); source: {g.source}"))
            used = g.vram_total - g.vram_free
            gl.addWidget(_bar(used, g.vram_total, f"VRAM: {fmt_bytes(g.vram_free)} free of {fmt_bytes(g.vram_total)} "
                              f"· {fmt_bytes(vram_for_models(g))} for a model", f"VRAM of {g.name}"))
        if not hw.gpus:
            gl.addWidget(QLabel("No supported GPU found: models run on the CPU."))
        add(gpus)
        mem = QGroupBox("Memory, CPU and disk")
        ml = QVBoxLayout(mem)
        ml.addWidget(_bar(hw.ram_total - hw.ram_available, hw.ram_total,
                          f"RAM: {fmt_bytes(hw.ram_available)} available of {fmt_bytes(hw.ram_total)} "
                          f"· {fmt_bytes(ram_for_models(hw))} for a model", "RAM"))
        margins = QLabel(f"“For a model” is what Discover plans with: what is free, less a safety margin kept for "
                         f"the system ({fmt_bytes(ram_margin(hw))} of RAM"
                         + "".join(f", {fmt_bytes(vram_margin(g))} of {g.name}'s VRAM" for g in hw.gpus) + ").")
        margins.setWordWrap(True)
        margins.setAccessibleName("Memory margins")
        ml.addWidget(margins)
        cpu = QLabel(f"CPU: {hw.cpu.name}, {hw.cpu.cores} cores / {hw.cpu.threads} threads — "
                     f"{' '.join(hw.cpu.features) or 'no SIMD extensions found'}")
        cpu.setWordWrap(True)
        ml.addWidget(cpu)
        ml.addWidget(QLabel(f"Disk free for models: {fmt_bytes(hw.disk_free)}"))
        ml.addWidget(QLabel("llama.cpp GPU offload: " + ("available" if hw.gpu_offload_supported
                                                         else "not in this build (CPU-only)")))
        add(mem)
        for note in hw.notes:
            if not hw.gpus and note.lower().startswith("no supported gpu"):
                continue  # the GPUs box says so already
            label = QLabel(f"⚠ {note}")
            label.setWordWrap(True)
            add(label)
