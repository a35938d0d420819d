"""llama.cpp's own view of the machine: ggml's backend registry, read through ctypes.

A portable build (``GGML_BACKEND_DL``) ships its backends as separate libraries —
``libggml-cpu-haswell.so``, ``libggml-cpu-skylakex.so``…, ``libggml-vulkan.so`` — and registers none
until asked: :func:`load_backends` loads the best CPU variant for this CPU and every GPU backend
whose driver is present. Every process that runs llama.cpp calls it before loading a model (the
engine and quantize children, the probe, ``selftest``); in a build with backends linked in, it
changes nothing.

This module loads native code and may meet a broken GPU driver: the app calls it only in child
processes (``quantdesk.hardware.backend_probe_child``), never in the window's process.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

GGML_LIBRARY = {"win32": "ggml.dll", "darwin": "libggml.dylib"}.get(sys.platform, "libggml.so")
LLAMA_LIBRARY = {"win32": "llama.dll", "darwin": "libllama.dylib"}.get(sys.platform, "libllama.so")
DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}
# ggml's registry names, as llama.cpp logs them ("Vulkan0 model buffer size"), to the names hw --json uses.
BACKEND_NAMES = {"CUDA": "cuda", "Vulkan": "vulkan", "Metal": "metal", "ROCm": "hip", "HIP": "hip",
                 "SYCL": "sycl", "MUSA": "musa", "CANN": "cann", "OpenCL": "opencl", "CPU": "cpu",
                 "BLAS": "blas", "RPC": "rpc"}
_CPU_VARIANT = re.compile(r"ggml-cpu-([A-Za-z0-9_]+)\.(?:so|dll|dylib)")


@dataclass(frozen=True)
class BackendDevice:
    """One device as ggml registers it: what llama.cpp will offload to, with the memory it sees."""

    name: str  # "Vulkan0", "CUDA0", "CPU"
    description: str  # "NVIDIA GeForce RTX 4060", "llvmpipe (LLVM 15.0.6, 256 bits)"
    backend: str  # "vulkan", "cuda", "metal", "cpu", …
    type: str  # "gpu", "igpu", "cpu", "accel"
    memory_free: int
    memory_total: int
    device_id: str | None = None  # PCI bus id where the backend knows it

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def llama_lib_dir() -> Path | None:
    """Where llama-cpp-python keeps libllama and the ggml libraries (found without importing it)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    for folder in (package / "lib", package):
        if (folder / GGML_LIBRARY).is_file():
            return folder
    return None


def _ggml(lib_dir: Path) -> ctypes.CDLL:
    """libggml's functions from the very copy libllama uses.

    A wheel stores ``libggml.so``, ``libggml.so.0`` and ``libggml.so.0.25.3`` as three files (a zip
    has no links) and libllama links ``libggml.so.0``: opening another by its path loads a second
    copy with its own empty registry, and models then find no backend at all. Looked up through
    libllama's handle, the functions come from its own copy (``dlsym`` searches a library's
    dependencies). Windows' lookup does not, and there ``ggml.dll`` is one file.
    """
    mode = getattr(ctypes, "RTLD_GLOBAL", 0)
    lib = ctypes.CDLL(str(lib_dir / LLAMA_LIBRARY), mode=mode)
    if not hasattr(lib, "ggml_backend_reg_count"):
        lib = ctypes.CDLL(str(lib_dir / GGML_LIBRARY), mode=mode)
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    signatures = {
        "ggml_backend_reg_count": ([], sz), "ggml_backend_load_all_from_path": ([ctypes.c_char_p], None),
        "ggml_backend_dev_count": ([], sz), "ggml_backend_dev_get": ([sz], vp),
        "ggml_backend_dev_name": ([vp], ctypes.c_char_p), "ggml_backend_dev_description": ([vp], ctypes.c_char_p),
        "ggml_backend_dev_memory": ([vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
        "ggml_backend_dev_type": ([vp], ctypes.c_int), "ggml_backend_dev_backend_reg": ([vp], vp),
        "ggml_backend_reg_name": ([vp], ctypes.c_char_p), "ggml_backend_dev_get_props": ([vp, vp], None),
        "ggml_backend_reg_get": ([sz], vp),
    }
    for name, (args, result) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    return lib


class _Caps(ctypes.Structure):
    _fields_ = [("async_", ctypes.c_bool), ("host_buffer", ctypes.c_bool), ("buffer_from_host_ptr", ctypes.c_bool),
                ("events", ctypes.c_bool), ("mmap_support", ctypes.c_bool)]


class _Props(ctypes.Structure):
    """``struct ggml_backend_dev_props`` of the llama.cpp that llama-cpp-python 0.3.36 vendors."""

    _fields_ = [("name", ctypes.c_char_p), ("description", ctypes.c_char_p), ("memory_free", ctypes.c_size_t),
                ("memory_total", ctypes.c_size_t), ("type", ctypes.c_int), ("device_id", ctypes.c_char_p),
                ("caps", _Caps)]


def load_backends(lib_dir: Path | None = None) -> bool:
    """Register the build's backends if it ships them as libraries; True when it did.

    Safe to call more than once and in a build with backends linked in (then it does nothing)."""
    lib_dir = lib_dir or llama_lib_dir()
    if lib_dir is None:
        return False
    lib = _ggml(lib_dir)
    if lib.ggml_backend_reg_count() > 0:
        return False
    quiet = hasattr(lib, "ggml_log_set")  # until llama-cpp-python installs its own logger
    if quiet:
        lib.ggml_log_set.argtypes, lib.ggml_log_set.restype = [ctypes.c_void_p, ctypes.c_void_p], None
        lib.ggml_log_set(ctypes.cast(_registration_log, ctypes.c_void_p), None)
    try:
        lib.ggml_backend_load_all_from_path(str(lib_dir).encode())
    finally:  # a Python callback must not outlive this call: ggml's threads log too
        if quiet:
            lib.ggml_log_set(None, None)
    return True


def _registered(lib_dir: Path | None) -> ctypes.CDLL | None:
    """libggml with this build's backends registered; None when llama-cpp-python is absent."""
    lib_dir = lib_dir or llama_lib_dir()
    if lib_dir is None:
        return None
    load_backends(lib_dir)
    return _ggml(lib_dir)


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _registration_log(level: int, text: bytes | None, user_data: int | None) -> None:
    """ggml's log while backends register: each says it loaded ("ggml_vulkan: No devices found.")
    on stderr, where a CLI's one-sentence error would drown; warnings and errors (3, 4) stay."""
    if level in (3, 4) and text:
        sys.stderr.write(text.decode("utf-8", "replace"))


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def list_devices(lib_dir: Path | None = None) -> list[BackendDevice]:
    """Every device ggml registered, in llama.cpp's order (GPUs first as it offloads to them)."""
    lib = _registered(lib_dir)
    if lib is None:
        return []
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        props = _Props()
        lib.ggml_backend_dev_get_props(dev, ctypes.byref(props))
        reg_name = _text(lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(dev)))
        devices.append(BackendDevice(
            name=_text(lib.ggml_backend_dev_name(dev)), description=_text(lib.ggml_backend_dev_description(dev)),
            backend=BACKEND_NAMES.get(reg_name, reg_name.lower()),
            type=DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "other"),
            memory_free=int(free.value), memory_total=int(total.value),
            device_id=_text(props.device_id) or None))
    return devices


def registered_backends(lib_dir: Path | None = None) -> list[str]:
    """The backends this build registered ("vulkan", "cpu"…), whether or not they found a device."""
    lib = _registered(lib_dir)
    if lib is None:
        return []
    names = (_text(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i))) for i in range(lib.ggml_backend_reg_count()))
    return [BACKEND_NAMES.get(name, name.lower()) for name in names]


def cpu_variant() -> str | None:
    """The CPU backend variant the loader picked for this CPU ("haswell", "skylakex", …), read
    from the libraries mapped into this process; None for a build with one CPU backend."""
    maps = Path("/proc/self/maps")
    if maps.is_file():
        found = _CPU_VARIANT.search(maps.read_text(errors="replace"))
        return found.group(1) if found else None
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return _windows_cpu_variant()
    return None


def _windows_cpu_variant() -> str | None:  # pragma: no cover - Windows only
    """On Windows the loaded DLLs are asked for by name: the loader loads one variant."""
    lib_dir = llama_lib_dir()
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.GetModuleHandleW.restype = ctypes.c_void_p
    for path in sorted(lib_dir.glob("ggml-cpu-*.dll")) if lib_dir else []:
        if kernel32.GetModuleHandleW(str(path)):
            return _CPU_VARIANT.search(path.name).group(1)
    return None
