"""The window against simulated hardware and generated models, on the offscreen platform."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtWidgets import QLabel, QProgressBar

from quantdesk.gui.app import PAGES, MainWindow
from quantdesk.hardware.machine import load_hardware_spec


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
    page = window.discover_page
    page.open_ref(str(llama8b_q4))
    qtbot.waitUntil(lambda: page.plan is not None, timeout=20_000)
    first = page.plan
    assert first.ctx == 4096 and page.view.table.rowCount() == 1
    assert page.view.table.item(0, 3).text() == "full GPU"
    page.ctx_slider.setValue(page.ctx_slider.maximum())  # 128k tokens: 16 GiB of KV cache
    qtbot.waitUntil(lambda: page.plan is not first and page.plan is not None, timeout=20_000)
    assert page.plan.ctx == 131072
    assert page.plan.options[0].memory.kv_cache > first.options[0].memory.kv_cache


def test_plan_error_is_shown_not_raised(qtbot):
    window = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(window)
    window.discover_page.open_ref("/nonexistent/model.gguf")
    qtbot.waitUntil(lambda: bool(window.context.errors.history), timeout=10_000)
    assert "no such file" in window.context.errors.history[-1].text().lower()


def test_plan_page_name_is_an_alias_of_discover(qtbot):
    window = MainWindow(load_hardware_spec("nvidia-8gb"))
    qtbot.addWidget(window)
    window.show_page("plan")  # e.g. the last page of a window saved before Discover replaced Plan
    assert window.current_page() == "discover" and window.stack.currentWidget() is window.discover_page


@pytest.mark.parametrize("page", ["hardware", "plan"])
def test_screenshot_verb_writes_a_png_and_the_text_shown(tmp_path, llama8b_q4, page):
    out, text = tmp_path / "shot.png", tmp_path / "shot.txt"
    model = ["--model", str(llama8b_q4)] if page == "plan" else []  # `--page plan`: Discover, planning it
    result = subprocess.run([sys.executable, "-m", "quantdesk", "gui", "--screenshot", str(out), "--text", str(text),
                             "--page", page, "--hardware", "nvidia-24gb", *model], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    lines = text.read_text().splitlines()
    assert "Settings" in lines  # the sidebar
    if page == "hardware":
        assert "Good picks for this machine" in lines and lines.count("Open in Discover") == 3
        assert any("RTX" in line for line in lines)
    else:
        assert any(line.startswith("Download best fit") or "Q4_K_M" in line for line in lines)
        assert not any("Good picks" in line for line in lines)  # only what the shown page shows


def test_hardware_picker_simulates_a_preset_for_every_page_and_reports_a_bad_file(qtbot, tmp_path):
    window = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(window)
    page = window.hardware_page
    seen = []
    window.context.hardware_changed.connect(seen.append)
    page.picker.setCurrentIndex(page.picker.findData("preset:nvidia-24gb"))
    page.picker.activated.emit(page.picker.currentIndex())
    assert seen and seen[-1].source == "preset:nvidia-24gb" and window.context.hardware is seen[-1]
    texts = " ".join(label.text() for label in page.findChildren(QLabel))
    assert "simulated machine" in texts and "RTX" in texts
    bad = tmp_path / "hw.json"
    bad.write_text("{not json")
    assert not page.simulate(str(bad))
    assert window.banner.isVisibleTo(window) and "cannot read hardware file" in window.banner.label.text().lower()
    assert window.context.hardware.source == "preset:nvidia-24gb"  # nothing changed
    assert page.picker.currentData() == "preset:nvidia-24gb"


def test_ctrl_number_switches_pages_and_the_last_page_survives_a_restart(qtbot):
    from PySide6.QtGui import QKeySequence, QShortcut

    window = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(window)
    keys = {s.key().toString(): s for s in window.findChildren(QShortcut)}
    last = QKeySequence(f"Ctrl+{len(PAGES)}").toString()
    assert last in keys
    keys[last].activated.emit()  # offscreen windows are not reliably "active" for real key presses
    assert window.current_page() == PAGES[-1]
    window.close()
    again = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(again)
    assert again.current_page() == PAGES[-1]


def test_the_window_survives_a_crashed_model_process_and_its_banner_reloads_it(qtbot, tiny_model):
    import os
    import signal

    from quantdesk.hardware.detect import resolve_hardware

    window = MainWindow(resolve_hardware())
    qtbot.addWidget(window)
    window.show()
    chat = window.chat_page
    assert chat.select_model(str(tiny_model))
    chat.ctx_combo.setCurrentIndex(chat.ctx_combo.findData(512))
    with qtbot.waitSignal(chat.model_loaded, timeout=60_000):
        chat.load_model()
    pid = chat.engine.proc.pid
    os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: window.banner.isVisibleTo(window), timeout=15_000)
    text = window.banner.label.text()
    assert "Chat:" in text and "SIGKILL" in text
    assert window.banner.action_button.isVisibleTo(window) and window.banner.action_button.text() == "Reload"
    assert not chat.banner.isVisibleTo(chat)  # one place for errors: the window's banner
    with qtbot.waitSignal(chat.model_loaded, timeout=60_000):
        window.banner.action_button.click()
    assert chat.engine.proc.pid != pid and chat.model_ready
    assert not window.banner.isVisibleTo(window)
    window.close()
    qtbot.waitUntil(lambda: chat.engine is None or not chat.engine.alive(), timeout=10_000)


def test_the_app_carries_its_icon_and_desktop_file_name(qapp):
    from quantdesk.gui.app import _identify

    _identify(qapp)
    assert not qapp.windowIcon().isNull() and qapp.windowIcon().availableSizes()
    assert qapp.desktopFileName() == "io.github.quantdesk.QuantDesk"


def test_no_page_forces_the_window_wider_than_its_default(qtbot, monkeypatch):
    """A page whose controls need more than the default 1100 px widens the whole window (a long
    checkbox row once did): each page must fit, with the sidebar, in the default size."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # offline: Discover shows its longest notice
    window = MainWindow(load_hardware_spec("nvidia-8gb"))
    qtbot.addWidget(window)
    window.show()
    for name in ("hardware", "discover", "downloads", "library", "quantize", "chat", "settings"):
        window.show_page(name)
        qtbot.wait(50)
        assert window.minimumSizeHint().width() <= 1100, name
        assert window.width() == 1100, name


def test_close_hides_the_window_before_pages_shut_down(qtbot, monkeypatch):
    """Ending a model's process can take seconds; the window must not linger on screen meanwhile."""
    window = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(window)
    window.show()
    chat = window.chat_page
    seen: list[bool] = []
    real = chat.shutdown
    monkeypatch.setattr(chat, "shutdown", lambda: (seen.append(window.isVisible()), real()))
    window.close()
    assert seen == [False]


def test_the_apps_window_freezes_its_long_lived_heap_once_start_up_is_done(qtbot):
    import gc

    window = MainWindow(load_hardware_spec("nvidia-8gb"), freeze_heap=True)
    qtbot.addWidget(window)
    window.show()
    try:
        qtbot.waitUntil(lambda: window._heap_settled, timeout=30_000)
        assert set(window._built) == set(PAGES)
        assert window.hardware_page.picks_box.picks  # the picks were planned before, not after
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()  # this test process makes many windows: let the collector see them again


def test_building_the_window_imports_no_numerics_or_hub_client_on_the_gui_thread():
    """What the first paint waits for stays small: gguf/numpy (planning) and huggingface_hub load on
    workers, never while the GUI thread builds the window (a layering slip once cost ~120 ms)."""
    code = ("import builtins, sys, threading\n"
            "from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([])\n"
            "from quantdesk.hardware.detect import resolve_hardware\n"
            "from quantdesk.gui.app import MainWindow\n"
            "seen, original = set(), builtins.__import__\n"
            "def spy(name, *a, **k):\n"
            "    if threading.current_thread() is threading.main_thread() and name.split('.')[0] not in sys.modules:\n"
            "        seen.add(name.split('.')[0])\n"
            "    return original(name, *a, **k)\n"
            "builtins.__import__ = spy\n"
            "w = MainWindow(resolve_hardware())\n"
            "print(sorted(seen & {'gguf', 'numpy', 'huggingface_hub', 'llama_cpp', 'jinja2'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "QUANTDESK_NO_AUTO_REFRESH": "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
