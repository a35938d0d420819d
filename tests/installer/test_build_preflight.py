"""installer/build.py refuses to bundle a llama.cpp that would crash on older CPUs or ignore the GPU."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "installer"))
import build  # noqa: E402


def _lib(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "lib"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_a_native_cpu_only_build_is_refused_with_both_reasons(tmp_path):
    lib = _lib(tmp_path, "libllama.so", "libggml.so", "libggml-base.so", "libggml-cpu.so")
    problems = build.check_llama_runtime("linux", lib)
    assert len(problems) == 2 and "CPU backend variants" in problems[0] and "libggml-vulkan.so" in problems[1]


def test_the_portable_vulkan_build_passes_on_linux_and_windows(tmp_path):
    linux = _lib(tmp_path, "libggml.so", "libggml-cpu-haswell.so", "libggml-cpu-x64.so", "libggml-vulkan.so")
    assert build.check_llama_runtime("linux", linux) == []
    assert build.check_llama_runtime("windows", linux) != []  # Windows names its DLLs without "lib"
    windows = _lib(tmp_path / "w", "ggml.dll", "ggml-cpu-haswell.dll", "ggml-vulkan.dll")
    assert build.check_llama_runtime("windows", windows) == []


def test_macos_needs_metal_but_no_cpu_variants(tmp_path):
    assert build.check_llama_runtime("macos", _lib(tmp_path, "libggml.dylib", "libggml-metal.dylib")) == []
    assert build.check_llama_runtime("macos", _lib(tmp_path / "m", "libggml.dylib")) == [
        "no metal backend (libggml-metal.dylib)"]
