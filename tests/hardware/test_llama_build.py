"""Reading the llama.cpp build from its files (fast start-up) agrees with asking the loaded library."""

from __future__ import annotations

import subprocess
import sys

from quantdesk.hardware.llama_build import _backend_libraries, imported_build, llama_build


def test_file_scan_agrees_with_the_loaded_library():
    fast = llama_build()
    assert fast.installed and fast.version
    assert fast.gpu_offload == imported_build().gpu_offload


def test_backend_layouts(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libllama.so").touch()
    assert _backend_libraries(tmp_path) is None  # monolithic: the files cannot tell
    (lib / "libggml-base.so").touch()
    (lib / "libggml-cpu.so").touch()
    assert _backend_libraries(tmp_path) == set()
    (lib / "libggml-cuda.so").touch()
    assert _backend_libraries(tmp_path) == {"cuda"}
    (tmp_path / "ggml-vulkan.dll").touch()
    assert _backend_libraries(tmp_path) == {"cuda", "vulkan"}


def test_the_window_starts_without_loading_llama_cpp():
    code = ("from PySide6.QtWidgets import QApplication; app = QApplication([]);"
            "from quantdesk.hardware.detect import resolve_hardware; from quantdesk.gui.app import MainWindow;"
            "w = MainWindow(resolve_hardware()); w.show(); app.processEvents();"
            "import sys; print('llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
