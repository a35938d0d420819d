"""VRAM accuracy: predicted vs measured GPU memory of llama.cpp on an NVIDIA GPU (CUDA build).

For generated models of several shapes x quant types x context sizes x GPU layer counts (full
offload and a partial split), the planner's ``placement_memory`` predicts VRAM and RAM for exactly
that ``n_gpu_layers``; a fresh child process then loads the model with the planner's own
``load_args``, fills the whole context with a prompt (so the KV cache, compute buffer and the CUDA
pool are really used), generates a few tokens, and stays alive while the parent reads NVML: the
child's own GPU memory (``nvmlDeviceGetComputeRunningProcesses``) and the device's used memory less
the baseline taken before the child started (and its peak, sampled while the child ran). The child
also reports VmRSS/VmHWM and the buffer sizes llama.cpp logs (model, KV, compute per device), so
each component of the prediction can be checked on its own; what is left over is the CUDA runtime
(context, cuBLAS workspace, the pool). A runtime section measures a bare CUDA context and loads
with 0 and 1 GPU layers.

Needs a CUDA build of llama-cpp-python, nvidia-ml-py and an NVIDIA GPU.

    python bench/vram_accuracy.py [--quick] [--jsonl rows.jsonl] [--shapes medium,wide,big]

With ``--jsonl`` every row is appended as it is measured and rows already in the file are not
measured again, so an interrupted run can be resumed; the table is printed from the file.
``--make-models`` only writes the F16 models (no llama.cpp needed) and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _common import f16_model, quantized_model  # noqa: F401 - sets sys.path

from quantdesk.gguf.model_info import load_model_info
from quantdesk.planning.fit import load_args, settings_for
from quantdesk.planning.memory_model import GPU_RUNTIME_OVERHEAD, Memory, placement_memory
from quantdesk.planning.plan import plan_local
from tests.support.gguf_factory import MEDIUM, WIDE, ModelShape
from tests.support.llama_probe import CHILD  # verbose=1 for buffer sizes, hold=1 while NVML is read

MiB = 1 << 20
# A ~1B-parameter llama (TinyLlama-like widths) so the weights dominate as in real models.
BIG = ModelShape(n_vocab=32000, n_embd=2048, n_layer=16, n_head=16, n_head_kv=8, n_ff=5632,
                 n_ctx_train=8192, name="big")
SHAPES = {"medium": MEDIUM, "wide": WIDE, "big": BIG}

# A bare CUDA context, the floor under every GPU process: cudaFree(0) through the runtime
# llama.cpp links against.
CONTEXT_CHILD = r"""
import ctypes, json, sys
rt = None
for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
    try:
        rt = ctypes.CDLL(name)
        break
    except OSError:
        pass
rc = rt.cudaFree(ctypes.c_void_p(0)) if rt is not None else -1
status = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in open("/proc/self/status")
          if l.startswith(("VmHWM", "VmRSS"))}
sys.stdout.write(json.dumps({"status": status, "rc": rc}) + "\n")
sys.stdout.flush()
sys.stdin.readline()
"""

BUFFER_RE = re.compile(r"(\S+)\s+(model|KV|compute|output|RS)\s+buffer size =\s*([\d.]+) MiB")


def parse_buffers(log: str) -> dict[str, float]:
    """llama.cpp's own buffer sizes in bytes, keyed 'DEVICE kind' (model buffers summed)."""
    out: dict[str, float] = {}
    for dev, kind, mib in BUFFER_RE.findall(log):
        key = f"{dev} {kind}"
        out[key] = out.get(key, 0.0) + float(mib) * MiB if kind == "model" else float(mib) * MiB
    return out


class Gpu:
    """NVML view of GPU 0: device used memory and per-process used memory."""

    def __init__(self) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def describe(self) -> str:
        n = self.nvml
        name = n.nvmlDeviceGetName(self.handle)
        name = name.decode() if isinstance(name, bytes) else name
        driver = n.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        return f"{name}, driver {driver}, {self.nvml.nvmlDeviceGetMemoryInfo(self.handle).total / MiB:.0f} MiB"

    def used(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def process_used(self, pid: int) -> int | None:
        for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if p.pid == pid:
                return int(p.usedGpuMemory) if p.usedGpuMemory is not None else None
        return None

    def settled_baseline(self, tries: int = 20) -> int:
        """Device used memory once the last child's memory has been given back."""
        last = self.used()
        for _ in range(tries):
            time.sleep(0.15)
            now = self.used()
            if abs(now - last) < MiB:
                return now
            last = now
        return last


def run_child(gpu: Gpu, code: str, argv: list[str], timeout: float = 300) -> dict:
    """Start a child, wait for its JSON line, read NVML while it holds its memory, end it."""
    baseline = gpu.settled_baseline()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        peak, stop = [baseline], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], gpu.used())
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline()
            proc_used = gpu.process_used(proc.pid)
            total_used = gpu.used()
        finally:
            stop.set()
            sampler.join()
            timer.cancel()
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.wait(timeout=60)
        err.seek(0)
        log = err.read()
    if not line.strip():
        raise RuntimeError(f"child failed ({proc.returncode}): {log[-3000:]}")
    result = json.loads(line)
    result.update(proc_vram=proc_used, delta_vram=total_used - baseline, peak_vram=peak[0] - baseline,
                  buffers=parse_buffers(log))
    return result


def predict(path: Path, ctx: int, k: int) -> tuple[Memory, dict]:
    """The planner's figures and load arguments for ``n_gpu_layers = k`` on an NVIDIA GPU build."""
    info = load_model_info(path)
    s = settings_for(info, ctx, "f16", repack=False, n_threads=psutil.cpu_count(logical=False) or os.cpu_count())
    return placement_memory(info, s, k, "nvidia"), load_args(s, k)


def row_key(shape: str, quant: str, ctx: int, k: int) -> str:
    return f"{shape}/{quant}/{ctx}/{k}"


def measure_row(gpu: Gpu, hw, shape: ModelShape, quant: str, ctx: int, k: int) -> dict:
    path = quantized_model(shape, quant)
    mem, args = predict(path, ctx, k)
    # what the planner itself picks on this machine (full offload is expected on a big GPU)
    option = plan_local(path, hw, ctx=ctx).options[0]
    result = run_child(gpu, CHILD, [str(path), json.dumps(args), "8", "1", "1"])
    return {"key": row_key(shape.name, quant, ctx, k), "shape": shape.name, "quant": quant, "ctx": ctx,
            "k": k, "n_layer": shape.n_layer, "file": path.stat().st_size, "pred": mem.to_json(),
            "plan": {"gpu_layers": option.gpu_layers, "verdict": option.verdict, "vram": option.vram}, **result}


def measure_context(gpu: Gpu) -> dict:
    return {"key": "cuda-context", **run_child(gpu, CONTEXT_CHILD, [])}


def _mib(b: float | None) -> str:
    return "-" if b is None else f"{b / MiB:.0f}"


def cuda_buffers(row: dict) -> dict[str, float]:
    """llama.cpp's CUDA0 buffers of a row by kind (model, KV, compute)."""
    out = {"model": 0.0, "KV": 0.0, "compute": 0.0}
    for key, size in row["buffers"].items():
        dev, kind = key.split(" ")
        if dev.startswith("CUDA") and not dev.startswith("CUDA_Host") and kind in out:
            out[kind] += size
    return out


def print_tables(rows: list[dict]) -> None:
    ctx_row = next((r for r in rows if r["key"] == "cuda-context"), None)
    model_rows = [r for r in rows if r["key"] != "cuda-context"]
    main = [r for r in model_rows if r["k"] >= 2]
    print(f"\n{'model':7} {'quant':6} {'ctx':>5} {'ngl':>4} {'plan':>4} {'pred VRAM':>9} {'meas VRAM':>9} {'error':>7} "
          f"{'dev delta':>9} {'pred RAM':>8} {'VmRSS':>7} {'error':>7} {'VmHWM':>7} {'gen t/s':>8}")
    errs, ram_errs = [], []
    for r in main:
        pred, meas = r["pred"]["vram"], r["proc_vram"] or r["delta_vram"]
        err = (pred - meas) / meas
        errs.append(err)
        rss = r["status"]["VmRSS"]
        rerr = (r["pred"]["ram"] - rss) / rss
        ram_errs.append(rerr)
        print(f"{r['shape']:7} {r['quant']:6} {r['ctx']:>5} {r['k']:>4} {r['plan']['gpu_layers']:>4} {_mib(pred):>9} {_mib(meas):>9} {err:>+7.1%} "
              f"{_mib(r['delta_vram']):>9} {_mib(r['pred']['ram']):>8} {_mib(rss):>7} {rerr:>+7.1%} "
              f"{_mib(r['status']['VmHWM']):>7} {r['gen_tps']:>8.0f}")
    if errs:
        print(f"# VRAM rows: {len(errs)}, max |error| {max(map(abs, errs)):.1%}, mean |error| "
              f"{sum(map(abs, errs)) / len(errs):.1%}, mean signed {sum(errs) / len(errs):+.1%}; "
              f"RAM max |error| {max(map(abs, ram_errs)):.1%}, mean |error| {sum(map(abs, ram_errs)) / len(ram_errs):.1%}")
    print("\n# components (MiB): predicted / llama.cpp's CUDA0 buffer; overhead = measured - CUDA0 buffers")
    print(f"{'model':7} {'quant':6} {'ctx':>5} {'ngl':>4} {'weights p/m':>13} {'KV p/m':>11} {'compute p/m':>13} "
          f"{'overhead p/m':>13} {'host bufs':>9}")
    for r in model_rows:
        b, p = cuda_buffers(r), r["pred"]
        meas = r["proc_vram"] or r["delta_vram"]
        over = meas - sum(b.values())
        host = sum(v for key, v in r["buffers"].items() if key.startswith("CUDA_Host"))
        print(f"{r['shape']:7} {r['quant']:6} {r['ctx']:>5} {r['k']:>4} "
              f"{_mib(p['weights_gpu']):>6}/{_mib(b['model']):<6} {_mib(p['kv_gpu']):>5}/{_mib(b['KV']):<5} "
              f"{_mib(p['compute_gpu']):>6}/{_mib(b['compute']):<6} {_mib(p['overhead_gpu']):>6}/{_mib(over):<6} "
              f"{_mib(host):>9}")
    if ctx_row:
        print(f"\n# bare CUDA context (cudaFree(0)): process {_mib(ctx_row['proc_vram'])} MiB, device delta "
              f"{_mib(ctx_row['delta_vram'])} MiB; planner GPU_RUNTIME_OVERHEAD {_mib(GPU_RUNTIME_OVERHEAD['nvidia'])} MiB")


def load_rows(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="medium and wide only, Q8_0 and Q4_K_M, 2048 only")
    parser.add_argument("--shapes", default="medium,wide,big", help="comma-separated: " + ",".join(SHAPES))
    parser.add_argument("--quants", default="F16,Q8_0,Q4_K_M")
    parser.add_argument("--contexts", default="2048,8192")
    parser.add_argument("--jsonl", type=Path, help="append rows here; rows already in it are skipped")
    parser.add_argument("--make-models", action="store_true", help="write the F16 models and exit")
    args = parser.parse_args()
    shapes = [SHAPES[s] for s in args.shapes.split(",")]
    quants, contexts = args.quants.split(","), [int(c) for c in args.contexts.split(",")]
    if args.quick:
        shapes, quants, contexts = [MEDIUM, WIDE], ["Q8_0", "Q4_K_M"], [2048]
    if args.make_models:
        for shape in shapes:
            t0 = time.perf_counter()
            f16_model(shape)
            print(f"# {shape.name}: F16 written in {time.perf_counter() - t0:.1f} s", flush=True)
        return 0

    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        print("this llama-cpp-python build has no GPU offload; build it with CMAKE_ARGS=-DGGML_CUDA=on")
        return 2
    from quantdesk.hardware.detect import detect_hardware

    hw = detect_hardware()
    if not hw.usable_gpus:
        print("the planner sees no usable GPU here: " + "; ".join(hw.notes))
        return 2
    gpu = Gpu()
    print(f"# VRAM accuracy on {gpu.describe()}, llama-cpp-python {llama_cpp.__version__}", flush=True)
    rows = load_rows(args.jsonl)
    done = {r["key"] for r in rows}

    def record(row: dict) -> None:
        rows.append(row)
        if args.jsonl:
            with args.jsonl.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    if "cuda-context" not in done:
        record(measure_context(gpu))
    plan = []
    for shape in shapes:
        for quant in quants:
            for ctx in contexts:
                for k in (shape.n_layer + 1, shape.n_layer // 2):
                    plan.append((shape, quant, ctx, k))
        # runtime floor: no layer and only the output head on the GPU
        plan += [(shape, "Q8_0", min(contexts), 0), (shape, "Q8_0", min(contexts), 1)]
    for shape, quant, ctx, k in plan:
        if row_key(shape.name, quant, ctx, k) in done:
            continue
        t0 = time.perf_counter()
        row = measure_row(gpu, hw, shape, quant, ctx, k)
        record(row)
        print(f"{row['key']:24} pred {_mib(row['pred']['vram'])} MiB, process {_mib(row['proc_vram'])} MiB, "
              f"delta {_mib(row['delta_vram'])} MiB, peak {_mib(row['peak_vram'])} MiB, "
              f"RSS {_mib(row['status']['VmRSS'])} MiB ({time.perf_counter() - t0:.1f} s)", flush=True)
    print_tables(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
