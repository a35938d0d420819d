"""``quantdesk selftest``: does llama.cpp really generate here, on the CPU and on the GPU?

It writes a tiny random-weight model, loads it in this process and generates a few tokens with
every layer on the CPU, then — where the backend sees a GPU — with every layer offloaded. A
result says which CPU variant the loader picked, which GPU backend and devices llama.cpp uses,
how many layers it put on the GPU, the speed, and, when something is wrong, one sentence saying
what and what to do. The window runs it as a child process (``python -m quantdesk.chat.selftest``)
so that a driver crash costs a sentence, not the window.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.hardware.ggml_devices import BackendDevice, cpu_variant, list_devices, llama_lib_dir
from quantdesk.hardware.llama_build import llama_build
from quantdesk.hardware.llama_log import load_report_from_log

GENERATE_TOKENS = 8
VULKAN_DRIVER_HINT = ("install a Vulkan driver (Debian/Ubuntu: `sudo apt install mesa-vulkan-drivers libvulkan1` "
                      "for AMD and Intel; NVIDIA's driver brings its own)")


@dataclass
class SelfTest:
    ok: bool
    tokens: int = 0  # generated on the CPU (and as many again on the GPU when one ran)
    cpu_backend: str | None = None  # the CPU variant llama.cpp picked ("haswell"), or "built-in" (one CPU backend, no variants)
    gpu_backend: str | None = None  # "vulkan", "cuda", "metal"
    devices: list[dict[str, Any]] = field(default_factory=list)
    gpu_layers: int = 0
    total_layers: int | None = None
    tokens_per_s: float | None = None  # the GPU run's where one ran, else the CPU's
    cpu_tokens_per_s: float | None = None
    gpu_tokens_per_s: float | None = None
    gpu_buffers: dict[str, int] = field(default_factory=dict)
    problem: str | None = None  # what is wrong and what to do, one sentence
    summary: str = ""  # "GPU acceleration: Vulkan on Radeon RX 7600, 8 GB: working"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _LogTap:
    """llama.cpp's log, kept (and passed on to stderr only when asked)."""

    def __init__(self, llama_cpp: Any, echo: bool) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._lock = threading.Lock()

        @llama_cpp.llama_log_callback
        def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            piece = text.decode("utf-8", "replace")
            if echo:
                sys.stderr.write(piece)
            with self._lock:
                *complete, self._partial = (self._partial + piece).split("\n")
                self.lines.extend(complete)

        self._callback = on_log  # ctypes callbacks must outlive their use
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))

    def take(self) -> list[str]:
        with self._lock:
            lines, self.lines = self.lines, []
        return lines


def _generate(llama_cpp: Any, path: Path, gpu_layers: int, tap: _LogTap) -> tuple[int, float, dict[str, Any]]:
    """(tokens, tokens/s, load report) of one greedy run of ``GENERATE_TOKENS`` tokens."""
    tap.take()
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_batch=64, n_gpu_layers=gpu_layers, verbose=False, seed=1)
    try:
        report = load_report_from_log(tap.take())
        prompt = llm.tokenize(b"hello", add_bos=True)
        t0, n = time.perf_counter(), 0
        for _ in llm.generate(prompt, temp=0.0, top_k=1):
            n += 1
            if n >= GENERATE_TOKENS:
                break
        elapsed = time.perf_counter() - t0
    finally:
        llm.close()
    return n, n / elapsed if elapsed > 0 else 0.0, report


def _device_words(dev: BackendDevice) -> str:
    gib = dev.memory_total / 2**30
    return f"{dev.description or dev.name}, {gib:.0f} GB" if gib >= 1 else dev.description or dev.name


def _no_gpu_problem(build_gpu: bool, system_info: str, gpus_seen: list[str]) -> str | None:
    """Why no GPU ran, when a person would expect one to."""
    if not gpus_seen:
        return None
    names = ", ".join(gpus_seen)
    if not build_gpu:
        return f"a GPU was found ({names}) but this build has no GPU backend: install QuantDesk's package or build llama-cpp-python with Vulkan (see the README)"
    if "vulkan" in system_info and ctypes.util.find_library("vulkan") is None:
        return f"Vulkan driver missing: {VULKAN_DRIVER_HINT}"
    return f"a GPU was found ({names}) but llama.cpp's GPU backend sees no device: {VULKAN_DRIVER_HINT}"


def run_selftest(gpus_seen: list[str] | None = None, echo_log: bool = False) -> SelfTest:
    """The whole check, in this process. ``gpus_seen``: GPU names NVML/sysfs found (for the advice)."""
    build = llama_build()
    if not build.installed or llama_lib_dir() is None:
        return SelfTest(ok=False, problem="llama-cpp-python is not installed: models cannot run",
                        summary="llama.cpp: not installed")
    devices = list_devices()
    import llama_cpp  # after the backends are registered: the same libraries

    from quantdesk.gguf.synthetic import TINY, write_model

    tap = _LogTap(llama_cpp, echo_log)
    gpu_devices = [d for d in devices if d.type in ("gpu", "igpu")]
    result = SelfTest(ok=False, devices=[d.to_json() for d in devices], cpu_backend=cpu_variant() or "built-in",
                      gpu_backend=gpu_devices[0].backend if gpu_devices else None)
    with tempfile.TemporaryDirectory(prefix="quantdesk-selftest-") as tmp:
        model = write_model(Path(tmp) / "selftest.gguf", TINY, dtype="F16")
        try:
            # With a GPU visible, n_gpu_layers=0 still runs prompt batches there; CPU-only devices
            # would need a second process, and the point here is that the CPU kernels run at all.
            result.tokens, result.cpu_tokens_per_s, report = _generate(llama_cpp, model, 0, tap)
            result.total_layers = report.get("total_layers")
        except Exception as exc:  # noqa: BLE001 - every failure is a sentence in the result
            result.problem = f"llama.cpp could not generate on the CPU: {exc}"
            result.summary = "llama.cpp: not working on this CPU"
            return result
        result.tokens_per_s = result.cpu_tokens_per_s
        if not gpu_devices:
            result.ok = True
            result.problem = _no_gpu_problem(build.gpu_offload, build.system_info, gpus_seen or [])
            result.summary = ("GPU acceleration: none — " + result.problem) if result.problem else \
                f"llama.cpp on the CPU ({result.cpu_backend}): working; no GPU found"
            return result
        try:
            n, rate, report = _generate(llama_cpp, model, 999, tap)
        except Exception as exc:  # noqa: BLE001
            result.ok = False
            result.problem = f"{gpu_devices[0].description} failed to run the model: {exc}; models will run on the CPU"
            result.summary = f"GPU acceleration: {_backend_title(result.gpu_backend)} on {_device_words(gpu_devices[0])}: failed"
            return result
    result.gpu_layers, result.total_layers = report["gpu_layers"], report["total_layers"]
    result.gpu_tokens_per_s = result.tokens_per_s = rate
    result.gpu_buffers = {k: v for k, v in report["buffers"].items() if not k.startswith("CPU")}
    result.ok = n > 0 and result.gpu_layers > 0 and result.gpu_layers == result.total_layers
    where = f"{_backend_title(result.gpu_backend)} on {_device_words(gpu_devices[0])}"
    if result.ok:
        result.summary = f"GPU acceleration: {where}: working"
    else:
        result.problem = (f"llama.cpp offloaded {result.gpu_layers} of {result.total_layers} layers to "
                          f"{gpu_devices[0].description}: the rest ran on the CPU")
        result.summary = f"GPU acceleration: {where}: partly working"
    return result


def _backend_title(backend: str | None) -> str:
    return {"vulkan": "Vulkan", "cuda": "CUDA", "metal": "Metal", "hip": "ROCm"}.get(backend or "", backend or "GPU")


SELFTEST_TIMEOUT_S = 300.0  # the first GPU run compiles shaders: ~20 s on a software device


def selftest_in_child(gpus_seen: list[str], cancel: threading.Event | None = None,
                      timeout: float = SELFTEST_TIMEOUT_S) -> SelfTest:
    """:func:`run_selftest` in a child process: a driver crash or hang becomes a failed result."""
    from quantdesk.base.child_process import death_reason, kill_tree, spawn_module

    proc = spawn_module("quantdesk.chat.selftest", {"gpus_seen": gpus_seen})
    deadline = time.monotonic() + timeout
    try:
        while True:
            if cancel is not None and cancel.is_set():
                return SelfTest(ok=False, problem="the self-test was cancelled", summary="GPU acceleration: not checked")
            if time.monotonic() > deadline:
                return SelfTest(ok=False, problem=f"llama.cpp did not finish the self-test within {timeout:.0f} s "
                                "(a GPU driver that hangs?)", summary="GPU acceleration: not working (timed out)")
            try:
                out, _ = proc.communicate(timeout=0.2)  # drains both pipes while waiting
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        kill_tree(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return SelfTest(ok=False, problem=f"the llama.cpp self-test {death_reason(proc.returncode)}",
                        summary="GPU acceleration: not working (llama.cpp crashed in the self-test)")
    data = json.loads(lines[-1])
    return SelfTest(**{k: v for k, v in data.items() if k in SelfTest.__dataclass_fields__})


def main(argv: list[str]) -> int:
    """``python -m quantdesk.chat.selftest JOB_JSON``: the result as one JSON line on stdout."""
    job = json.loads(argv[0]) if argv else {}
    sys.stdout.flush()
    result = run_selftest(gpus_seen=list(job.get("gpus_seen", [])))
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
