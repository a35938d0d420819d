"""What the installed llama.cpp build (through llama-cpp-python) can do.

Loading libllama (and numpy with it) costs a few hundred milliseconds that start-up should not
pay, so the build is first read from the files llama-cpp-python ships: current builds put each
ggml backend in its own library (``libggml-cuda.so``, ``ggml-metal.dylib``, ``ggml-vulkan.dll`` …).
Only a build laid out differently is imported to ask it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

GPU_BACKENDS = ("cuda", "metal", "vulkan", "hip", "sycl", "musa", "cann", "opencl", "kompute")


@dataclass(frozen=True)
class LlamaBuild:
    installed: bool
    version: str | None
    gpu_offload: bool
    system_info: str


def _backend_libraries(package_dir: Path) -> set[str] | None:
    """The ggml backends found as separate libraries, or None when the layout is not recognised."""
    libs = [p.name.lower() for folder in (package_dir / "lib", package_dir) if folder.is_dir()
            for p in folder.iterdir() if "ggml" in p.name.lower()]
    if not any("ggml-cpu" in name or "ggml-base" in name for name in libs):
        return None  # one monolithic library: the files do not say which backends it has
    return {b for b in GPU_BACKENDS for name in libs if f"ggml-{b}" in name}


def _version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def llama_build() -> LlamaBuild:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return LlamaBuild(False, None, False, "")
    backends = _backend_libraries(Path(next(iter(spec.submodule_search_locations))))
    if backends is not None:
        return LlamaBuild(True, _version(), bool(backends), "backends: " + (", ".join(sorted(backends)) or "cpu"))
    return imported_build()


def imported_build() -> LlamaBuild:
    """Ask the loaded library itself (slow: imports llama_cpp)."""
    try:
        import llama_cpp  # noqa: PLC0415 - deliberately lazy
    except Exception:  # pragma: no cover - depends on the install
        return LlamaBuild(False, None, False, "")
    try:
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        gpu = False
    if not gpu:  # a portable build says "no" when its GPU backend found no device on this machine
        from quantdesk.hardware.ggml_devices import registered_backends  # noqa: PLC0415 - native code

        try:
            gpu = any(name in GPU_BACKENDS for name in registered_backends())
        except (OSError, AttributeError):
            gpu = False
    try:
        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    except Exception:
        info = ""
    return LlamaBuild(True, getattr(llama_cpp, "__version__", None), gpu, info)
