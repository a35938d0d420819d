"""Shared helpers for the benchmarks: make generated models once, measure child processes."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.gguf_factory import ModelShape, write_model  # noqa: E402

FTYPES = {"Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q4_K_M": 15, "Q4_0": 2, "Q2_K": 10}


def bench_dir() -> Path:
    path = Path(os.environ.get("QUANTDESK_BENCH_DIR", "/tmp/quantdesk-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def f16_model(shape: ModelShape) -> Path:
    path = bench_dir() / f"{shape.name}-F16.gguf"
    if not path.exists():
        write_model(path.with_suffix(".tmp"), shape, "F16")
        path.with_suffix(".tmp").rename(path)
    return path


def quantized_model(shape: ModelShape, quant: str) -> Path:
    """Quantized in-process with llama.cpp's own quantizer (the reference path)."""
    if quant == "F16":
        return f16_model(shape)
    path = bench_dir() / f"{shape.name}-{quant}.gguf"
    if not path.exists():
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPES[quant]
        params.nthread = os.cpu_count() or 2
        tmp = path.with_suffix(".tmp")
        rc = llama_cpp.llama_model_quantize(str(f16_model(shape)).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise RuntimeError(f"quantize {quant} failed ({rc})")
        tmp.rename(path)
    return path


def serve_hub(big: str, ready, stop, fault: dict | None = None) -> None:
    """The fake hub in its own process, as the real one is another machine: its threads must not
    compete with the app's for the interpreter lock (that would be the bench measuring itself)."""
    from tests.support.fake_hub import FakeHub

    with FakeHub() as hub:
        hub.add_repo("bench/Big-GGUF", {Path(big).name: Path(big)})
        if fault:
            hub.set_fault("bench/Big-GGUF", Path(big).name, **fault)
        ready.put(hub.endpoint)
        stop.wait()


@contextlib.contextmanager
def hub_process(big: Path, in_process: bool, fault: dict | None = None):
    """The fake hub serving ``big`` as bench/Big-GGUF, with ``fault`` switches on it (e.g. a throttle)."""
    if in_process:
        from tests.support.fake_hub import FakeHub

        with FakeHub() as hub:
            hub.add_repo("bench/Big-GGUF", {big.name: big})
            if fault:
                hub.set_fault("bench/Big-GGUF", big.name, **fault)
            yield hub.endpoint
        return
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=serve_hub, args=(str(big), ready, stop, fault), daemon=True)
    proc.start()
    try:
        yield ready.get(timeout=60)
    finally:
        stop.set()
        proc.join(timeout=10)


def scratch_dir(prefix: str) -> Path:
    """A temporary folder removed when the bench exits (they hold GB-sized files: a leak fills the disk)."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def write_gguf_blob(path: Path, size_mb: int) -> Path:
    """A GGUF of ``size_mb`` MiB (a header and one int8 tensor of random bytes): a download must be a
    readable GGUF to enter the library."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    block = np.frombuffer(os.urandom(1 << 20), dtype=np.int8)
    writer.add_tensor("blob", np.tile(block, size_mb))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
