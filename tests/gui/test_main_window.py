"""The window against simulated hardware and generated models, on the offscreen platform."""

from __future__ import annotations

import subprocess
import sys

from PySide6.QtWidgets import QLabel, QProgressBar

from quantdesk.core.hardware import load_hardware_spec
from quantdesk.gui.app import MainWindow


def test_hardware_page_shows_the_gpu_and_ram(qtbot):
    window = MainWindow(load_hardware_spec("nvidia-12gb"))
    qtbot.addWidget(window)
    texts = " ".join(label.text() for label in window.hardware_page.findChildren(QLabel))
    assert "RTX 3060" in texts and "preset:nvidia-12gb" in texts
    bars = {bar.accessibleName() for bar in window.hardware_page.findChildren(QProgressBar)}
    assert "RAM" in bars and any(name.startswith("VRAM") for name in bars)


def test_context_slider_replans_live(qtbot, llama8b_q4):
    window = MainWindow(load_hardware_spec("nvidia-8gb"))
    qtbot.addWidget(window)
    page = window.plan_page
    page.model_edit.setText(str(llama8b_q4))
    page.replan()
    qtbot.waitUntil(lambda: page.last_plan is not None, timeout=20_000)
    first = page.last_plan
    assert first.ctx == 4096 and page.table.rowCount() == 1
    assert page.table.item(0, 3).text() == "full GPU"
    page.ctx_slider.setValue(page.ctx_slider.maximum())  # 128k tokens: 16 GiB of KV cache
    qtbot.waitUntil(lambda: page.last_plan is not first, timeout=20_000)
    assert page.last_plan.ctx == 8192 or page.last_plan.ctx == 131072
    assert page.last_plan.options[0].memory.kv_cache > first.options[0].memory.kv_cache


def test_plan_error_is_shown_not_raised(qtbot):
    window = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(window)
    page = window.plan_page
    page.model_edit.setText("/nonexistent/model.gguf")
    page.replan()
    qtbot.waitUntil(lambda: "no such file" in page.status.text(), timeout=10_000)


def test_screenshot_verb_writes_a_png(tmp_path):
    out = tmp_path / "hw.png"
    result = subprocess.run([sys.executable, "-m", "quantdesk", "gui", "--screenshot", str(out), "--page",
                             "hardware", "--hardware", "nvidia-24gb"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
