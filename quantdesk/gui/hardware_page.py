"""Hardware page: what QuantDesk found (or is simulating), with VRAM and RAM bars."""

from __future__ import annotations

from PySide6.QtWidgets import QGroupBox, QLabel, QProgressBar, QVBoxLayout, QWidget

from quantdesk.core.hardware import Hardware
from quantdesk.core.units import fmt_bytes, fmt_rate


def _bar(used: int, total: int, text: str, name: str) -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setValue(int(1000 * used / total) if total else 0)
    bar.setFormat(text)
    bar.setAccessibleName(name)
    return bar


class HardwarePage(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.addStretch(1)
        self._content: list[QWidget] = []

    def show_hardware(self, hw: Hardware) -> None:
        for w in self._content:
            w.deleteLater()
        self._content.clear()

        def add(w: QWidget) -> None:
            self._layout.insertWidget(len(self._content), w)
            self._content.append(w)

        title = QLabel(f"<h2>Hardware</h2><p>Source: {hw.source}</p>")
        add(title)
        gpus = QGroupBox("GPUs")
        gl = QVBoxLayout(gpus)
        for g in hw.gpus:
            gl.addWidget(QLabel(f"<b>{g.name}</b> ({g.vendor}) — {fmt_rate(g.bandwidth)}; source: {g.source}"))
            used = g.vram_total - g.vram_free
            gl.addWidget(_bar(used, g.vram_total, f"{fmt_bytes(g.vram_free)} free of {fmt_bytes(g.vram_total)}",
                              f"VRAM of {g.name}"))
        if not hw.gpus:
            gl.addWidget(QLabel("No supported GPU found: models run on the CPU."))
        add(gpus)
        mem = QGroupBox("Memory, CPU and disk")
        ml = QVBoxLayout(mem)
        ml.addWidget(_bar(hw.ram_total - hw.ram_available, hw.ram_total,
                          f"RAM: {fmt_bytes(hw.ram_available)} available of {fmt_bytes(hw.ram_total)}", "RAM"))
        ml.addWidget(QLabel(f"CPU: {hw.cpu.name}, {hw.cpu.cores} cores / {hw.cpu.threads} threads — "
                            f"{' '.join(hw.cpu.features) or 'no SIMD extensions found'}"))
        ml.addWidget(QLabel(f"Disk free for models: {fmt_bytes(hw.disk_free)}"))
        ml.addWidget(QLabel("llama.cpp GPU offload: " + ("available" if hw.gpu_offload_supported
                                                         else "not in this build (CPU-only)")))
        add(mem)
        for note in hw.notes:
            label = QLabel(f"⚠ {note}")
            label.setWordWrap(True)
            add(label)
