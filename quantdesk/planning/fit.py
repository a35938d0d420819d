"""The fit planner: for each quant file, where it runs on this machine, how fast, at what cost.

For every option it finds the largest GPU layer count whose predicted VRAM fits the free VRAM
(less a safety margin) while the rest fits in available RAM, then recommends one option: the
best quality that runs fully on the GPU; else the best partial split that keeps a usable
speed; else the best CPU fit. Every figure comes from ``memory_model``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.paths import resources_dir
from quantdesk.gguf.model_info import ModelInfo
from quantdesk.gguf.quants import quality, quality_rank, quality_words
from quantdesk.hardware.machine import Hardware
from quantdesk.planning.margins import (  # noqa: F401 - the margins are part of this module's story
    RAM_MARGIN_FRACTION, RAM_MARGIN_MIN, VRAM_MARGIN_FRACTION, VRAM_MARGIN_MIN, ram_for_models, vram_for_models)
from quantdesk.planning.memory_model import (
    KV_TYPE_BYTES, KV_TYPE_IDS, Memory, RunSettings, gpu_blocks, on_gpu_mask, placement_memory, tensor_table)

GiB = 1 << 30
MiB = 1 << 20
DEFAULT_CTX = 4096
# Safety margins: planning.margins (shared with the Hardware page's "free for a model" figures).
# Below this generation speed a split is not worth recommending over a smaller quant.
USABLE_TOKENS_PER_S = 5.0
# When nothing is usable: a quant this close to the fastest one's speed is as good as it for speed.
NEAR_FASTEST = 0.85
# Fraction of peak memory bandwidth token generation reaches (measured llama.cpp figures are
# ~70-80% on GPUs; the CPU figure is calibrated by bench/plan_accuracy.py on this machine).
GPU_BANDWIDTH_EFFICIENCY = 0.75
CPU_BANDWIDTH_EFFICIENCY = 0.6
DEFAULT_RAM_BANDWIDTH = 40e9
# CPU generation is often compute-bound rather than memory-bound on few cores, and the cost per weight
# depends on its type (K-quant and Q8_0 kernels differ): bench/cpu_quant_speed.py measures the weights
# one core multiplies per second for each type; others get the old figure, 15 GFLOP/s (7.5 G weights/s).
CPU_FLOPS_PER_CORE = 15e9
DEFAULT_CPU_RATE = CPU_FLOPS_PER_CORE / 2
# A block whose routed experts stay in RAM hands each token's hidden state from the GPU to the CPU
# and back: two hops per block, each a small copy plus a wait for the device. Not yet measured on a
# real GPU (no device lent so far; bench/moe_placement.py --measure does it): this is the order of a
# CUDA/Vulkan launch-and-synchronize round trip on a discrete card.
GPU_CPU_HOP_S = 30e-6
# A block whose routed experts run on the CPU costs a fixed time per token beyond its weight reads:
# the router, top-k, and the expert products' bookkeeping are a dozen small ops, each a thread
# barrier. Measured here (bench/moe_placement.py --cpu, 2 cores): 0.26 and 0.28 ms per block with 2
# and 8 of 32 experts used — the same cost whatever the share read, so a cost per block.
CPU_MOE_BLOCK_S = 0.27e-3


@functools.lru_cache(maxsize=1)
def cpu_rates() -> dict[str, float]:
    """Weights per second per core by ggml type name, as measured (F32/BF16 take F16's)."""
    try:
        data = json.loads((resources_dir() / "cpu_quant_rates.json").read_text(encoding="utf-8"))
        rates = {str(k): float(v) for k, v in data["rates"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if "F16" in rates:
        rates.setdefault("BF16", rates["F16"])
        rates.setdefault("F32", rates["F16"] / 2)
    return rates


def _type_name(type_id: int) -> str:
    try:
        return GGMLQuantizationType(type_id).name
    except ValueError:
        return ""
VERDICTS = ("full_gpu", "partial", "cpu_only", "no_fit")


@dataclass
class PlanOption:
    file: str
    quant: str
    size: int
    verdict: str
    n_layers: int
    gpu_layers: int
    memory: Memory
    max_ctx_full_gpu: int | None
    tokens_per_s: float | None
    quality_loss: float | None
    load_args: dict[str, Any]
    recommended: bool = False
    reason: str = ""
    model: ModelInfo | None = field(default=None, repr=False)
    cpu_moe_layers: int = 0  # blocks (the first N, llama.cpp's --n-cpu-moe) whose routed experts stay in RAM

    @property
    def all_layers_on_gpu(self) -> bool:
        return self.gpu_layers >= self.n_layers + 1

    @property
    def vram(self) -> int:
        return self.memory.vram

    @property
    def ram(self) -> int:
        return self.memory.ram

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "quant": self.quant, "size": self.size, "verdict": self.verdict,
            "n_layers": self.n_layers, "gpu_layers": self.gpu_layers, "vram": self.vram, "ram": self.ram,
            "kv_cache": self.memory.kv_cache, "max_ctx_full_gpu": self.max_ctx_full_gpu,
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 2),
            "quality_loss": self.quality_loss, "recommended": self.recommended, "reason": self.reason,
            "load_args": self.load_args, "memory": self.memory.to_json(),
            "summary": self.summary(), "cpu_moe_layers": self.cpu_moe_layers,
        }

    def experts_in_ram(self) -> str:
        """"experts of 20 of 48 layers in RAM", or "" when every expert is on the GPU (or the model is dense)."""
        if not self.cpu_moe_layers:
            return ""
        return f"experts of {self.cpu_moe_layers} of {self.n_layers} layers in RAM"

    def experts_sentence(self) -> str:
        """Where the experts are and why, in a sentence ("" without experts in RAM)."""
        if not self.cpu_moe_layers:
            return ""
        first_gpu, _ = gpu_blocks(self.n_layers, self.gpu_layers)
        if self.all_layers_on_gpu:
            where, blocks = "Every layer runs on the GPU", f"the first {self.cpu_moe_layers} of {self.n_layers} layers"
        else:
            where = (f"{self.gpu_layers} of {self.n_layers + 1} layers run on the GPU (blocks 0–{first_gpu - 1} on "
                     "the CPU)")
            blocks = f"blocks {first_gpu}–{self.cpu_moe_layers - 1} as well"
        return (f"{where}, but the routed experts of {blocks} stay in RAM ({self.memory.experts_cpu / GiB:.1f} GiB), "
                "where a token reads only the few it uses.")

    def summary(self) -> str:
        if self.verdict == "full_gpu":
            return "full GPU"
        if self.verdict == "partial" and self.cpu_moe_layers and self.all_layers_on_gpu:
            return f"all layers on GPU, {self.experts_in_ram()}"
        if self.verdict == "partial" and self.cpu_moe_layers:
            return f"partial ({self.gpu_layers} of {self.n_layers + 1} layers on GPU; {self.experts_in_ram()})"
        if self.verdict == "partial":
            return f"partial ({self.gpu_layers} of {self.n_layers + 1} layers on GPU)"
        return {"cpu_only": "CPU only", "no_fit": "does not fit"}[self.verdict]


@dataclass
class Budget:
    vram: int
    ram: int
    vendor: str | None
    unified: bool
    gpu_bandwidth: float | None
    ram_bandwidth: float
    cpu_cores: int = 4
    backend: str | None = None  # the llama.cpp backend of the GPUs ("vulkan", "cuda"), when known
    process_ram: int | None = None  # a model process's base RAM as measured here (Hardware.llama_process_ram)

    @property
    def gpu_runtime(self) -> str | None:
        """What the GPU's runtime overhead is looked up by: its backend, else its vendor."""
        return self.backend or self.vendor

    @classmethod
    def of(cls, hw: Hardware) -> "Budget":
        gpus = hw.usable_gpus
        vram = sum(vram_for_models(g) for g in gpus)
        ram = ram_for_models(hw)
        bandwidths = [g.bandwidth for g in gpus if g.bandwidth]
        return cls(vram=vram, ram=ram, vendor=gpus[0].vendor if gpus else None,
                   unified=any(g.unified_memory for g in gpus),
                   gpu_bandwidth=float(min(bandwidths)) if bandwidths else (300e9 if gpus else None),
                   ram_bandwidth=float(hw.ram_bandwidth or DEFAULT_RAM_BANDWIDTH), cpu_cores=hw.cpu.cores,
                   backend=gpus[0].backend if gpus else None, process_ram=hw.llama_process_ram)

    def fits(self, m: Memory) -> bool:
        if self.unified:  # one pool: GPU buffers come out of the same RAM
            return m.vram <= self.vram and m.vram + m.ram <= self.ram
        return m.vram <= self.vram and m.ram <= self.ram


def default_ctx(model: ModelInfo) -> int:
    return min(DEFAULT_CTX, model.n_ctx_train) if model.n_ctx_train else DEFAULT_CTX


def settings_for(model: ModelInfo, ctx: int | None, kv_type: str, repack: bool = True,
                 n_threads: int | None = None) -> RunSettings:
    if kv_type not in KV_TYPE_BYTES:
        raise QuantDeskError(f"unknown KV cache type '{kv_type}'; use one of f16, q8_0, q4_0")
    n_ctx = ctx or default_ctx(model)
    return RunSettings(n_ctx=max(256, n_ctx), kv_type=kv_type, flash_attn=True, repack=repack,
                       n_threads=n_threads)


def load_args(s: RunSettings, gpu_layers: int, cpu_moe_layers: int = 0) -> dict[str, Any]:
    """The exact ``llama_cpp.Llama`` keyword arguments the figures hold for; where a mixture-of-experts
    model keeps experts in RAM, also ``cpu_moe_layers``: what the engine applies as a tensor
    buffer-type override (llama-cpp-python has no argument for it)."""
    args: dict[str, Any] = {
        "n_gpu_layers": gpu_layers, "n_ctx": s.n_ctx, "n_batch": s.n_batch, "n_ubatch": s.n_ubatch,
        "flash_attn": s.flash_attn, "type_k": KV_TYPE_IDS[s.kv_type], "type_v": KV_TYPE_IDS[s.kv_type],
        "use_mmap": True, "offload_kqv": True, "n_threads": s.n_threads}
    if cpu_moe_layers:
        args["cpu_moe_layers"] = cpu_moe_layers
    return args


@dataclass(frozen=True)
class Placement:
    """Where a model's weights go: ``gpu_layers`` as llama.cpp's n_gpu_layers, and the first
    ``cpu_moe_layers`` blocks' routed experts kept in RAM; with its memory and predicted speed."""

    gpu_layers: int
    cpu_moe_layers: int
    memory: Memory
    tokens_per_s: float


def best_gpu_layers(model: ModelInfo, s: RunSettings, budget: Budget) -> tuple[int, Memory] | None:
    """Largest k in 0..n_layer+1 that fits, with its memory; None when even CPU-only does not."""
    if budget.vendor is None:
        m = placement_memory(model, s, 0, process_ram=budget.process_ram)
        return (0, m) if budget.fits(m) else None
    for k in range(model.n_layer + 1, -1, -1):
        m = placement_memory(model, s, k, budget.gpu_runtime, budget.process_ram)
        if budget.fits(m):
            return k, m
    return None


def normalized_cpu_moe(model: ModelInfo, gpu_layers: int, cpu_moe_layers: int) -> int:
    """The same placement's smallest N: experts of CPU blocks are in RAM anyway, and N past the last
    block with experts changes nothing. 0 when no expert of a GPU block stays in RAM."""
    moe = model.moe_layers()
    if not moe or cpu_moe_layers <= 0:
        return 0
    first_gpu, _ = gpu_blocks(model.n_layer, gpu_layers)
    n = min(cpu_moe_layers, moe[-1] + 1, model.n_layer)
    return n if any(first_gpu <= layer < n for layer in moe) else 0


def fewest_cpu_moe(model: ModelInfo, s: RunSettings, budget: Budget, gpu_layers: int) -> tuple[int, Memory] | None:
    """The smallest ``cpu_moe_layers`` whose memory fits with ``gpu_layers`` offloaded, or None.

    VRAM only falls as N grows and RAM (and VRAM + RAM, what a unified pool holds) only rises, so
    the smallest N that fits the VRAM is the only candidate: a binary search on VRAM alone.
    """
    runtime, base = budget.gpu_runtime, budget.process_ram
    m = placement_memory(model, s, gpu_layers, runtime, base)
    if budget.fits(m):
        return 0, m
    moe = model.moe_layers()
    first_gpu, _ = gpu_blocks(model.n_layer, gpu_layers)
    lo, hi = first_gpu + 1, min(model.n_layer, (moe[-1] + 1) if moe else 0)
    if not moe or lo > hi:
        return None
    if placement_memory(model, s, gpu_layers, runtime, base, hi).vram > budget.vram:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if placement_memory(model, s, gpu_layers, runtime, base, mid).vram <= budget.vram:
            hi = mid
        else:
            lo = mid + 1
    m = placement_memory(model, s, gpu_layers, runtime, base, lo)
    return (normalized_cpu_moe(model, gpu_layers, lo), m) if budget.fits(m) else None


def best_placement(model: ModelInfo, s: RunSettings, budget: Budget) -> Placement | None:
    """The fastest placement that fits; None when even the CPU alone cannot hold the model.

    Dense models: the most layers on the GPU. Mixture-of-experts models: every (layers on the GPU,
    blocks whose experts stay in RAM) pair that fits is priced by the speed model and the fastest
    wins — typically all layers on the GPU with the experts of the first N blocks in RAM. A split
    with no experts in RAM that fits ends the search: any split below it keeps more in RAM.
    """
    if budget.vendor is None or not model.is_moe:
        found = best_gpu_layers(model, s, budget)
        if found is None:
            return None
        k, m = found
        return Placement(k, 0, m, tokens_per_second(model, m, budget, k, 0))
    best: Placement | None = None
    for k in range(model.n_layer + 1, -1, -1):
        found = fewest_cpu_moe(model, s, budget, k)
        if found is None:
            continue
        n, m = found
        trial = Placement(k, n, m, tokens_per_second(model, m, budget, k, n))
        if best is None or trial.tokens_per_s > best.tokens_per_s * 1.0001:
            best = trial
        if n == 0:
            break
    return best


def _moe_budget(option: PlanOption, hw: Hardware, kv_type: str) -> tuple[ModelInfo, RunSettings, Budget] | None:
    model = option.model
    budget = Budget.of(hw)
    if model is None or not model.is_moe or budget.vendor is None:
        return None
    s = settings_for(model, option.load_args.get("n_ctx"), kv_type, repack=False, n_threads=hw.cpu.cores)
    return model, s, budget


def cpu_moe_layers_for(option: PlanOption, hw: Hardware, gpu_layers: int, kv_type: str = "f16") -> int | None:
    """For a split forced by hand (``--gpu-layers N``): the fewest blocks whose experts must stay in RAM
    for it to fit this machine at the option's context; 0 for dense models or without a GPU; None
    when even every block's experts in RAM do not make it fit."""
    found = _moe_budget(option, hw, kv_type)
    if found is None:
        return 0
    fewest = fewest_cpu_moe(*found, gpu_layers)
    return fewest[0] if fewest else None


def gpu_layers_for_cpu_moe(option: PlanOption, hw: Hardware, cpu_moe_layers: int, kv_type: str = "f16") -> int | None:
    """For an expert count forced by hand (``--cpu-moe N``): the most layers on the GPU that fit this
    machine with it; None when not even the CPU alone holds the model."""
    found = _moe_budget(option, hw, kv_type)
    if found is None:
        return None
    model, s, budget = found
    for k in range(model.n_layer + 1, -1, -1):
        if budget.fits(placement_memory(model, s, k, budget.gpu_runtime, budget.process_ram, cpu_moe_layers)):
            return k
    return None


def max_ctx_full_gpu(model: ModelInfo, s: RunSettings, budget: Budget) -> int | None:
    """The largest context (multiple of 256, up to the trained one) that still runs fully on the GPU."""
    if budget.vendor is None:
        return None
    full = model.n_layer + 1

    def fits(ctx: int) -> bool:
        trial = dataclasses.replace(s, n_ctx=ctx)
        return budget.fits(placement_memory(model, trial, full, budget.gpu_runtime, budget.process_ram))

    lo, hi = 0, max(1, (model.n_ctx_train or 131072) // 256)
    if not fits(256):
        return None
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * 256):
            lo = mid
        else:
            hi = mid - 1
    return lo * 256


def _cpu_seconds_per_element(model: ModelInfo) -> np.ndarray:
    """Core-seconds one weight of each tensor costs on this CPU (its type's measured rate)."""
    rates = cpu_rates()
    table = tensor_table(model)
    per_type = {int(t): 1.0 / rates.get(_type_name(int(t)), DEFAULT_CPU_RATE) for t in set(table.type_ids.tolist())}
    return np.array([per_type[int(t)] for t in table.type_ids], dtype=np.float64)


def tokens_per_second(model: ModelInfo, m: Memory, budget: Budget, gpu_layers: int,
                      cpu_moe_layers: int = 0) -> float:
    """Generation is memory-bound: every token reads each weight it uses once — all of a dense
    tensor, the active share (experts used / experts) of a routed-expert tensor — the GPU's at its
    bandwidth, the CPU's at RAM bandwidth or its measured compute rate, whichever is slower; plus
    the hops between them for blocks whose experts stay in RAM. ``m``: the placement's memory (KV).
    """
    t = tensor_table(model)
    on_gpu = (on_gpu_mask(model, gpu_layers, cpu_moe_layers) if budget.vendor
              else np.zeros(len(t.layer), dtype=bool))
    share = np.where(t.expert, model.active_expert_share, 1.0)
    if not t.expert.any():  # experts not listed tensor by tensor (older catalogs): all weights scale
        share = np.full(len(t.layer), model.active_expert_share)
    on_cpu = ~on_gpu & ~t.embedding  # token_embd is a row lookup, not a read of the whole matrix
    cpu_bytes = float((t.n_bytes * share)[on_cpu].sum()) + m.kv_cpu / 2
    gpu_bytes = float((t.n_bytes * share)[on_gpu].sum()) + m.kv_gpu / 2
    # the CPU's compute: each type multiplies at its own measured rate (resources/cpu_quant_rates.json)
    cost = model.__dict__.get("_cpu_cost")
    if cost is None or len(cost) != len(t.layer):
        cost = model.__dict__["_cpu_cost"] = _cpu_seconds_per_element(model)
    core_seconds = float((t.n_elements * share * cost)[on_cpu].sum())
    seconds = max(cpu_bytes / (budget.ram_bandwidth * CPU_BANDWIDTH_EFFICIENCY), core_seconds / budget.cpu_cores)
    if gpu_bytes and budget.gpu_bandwidth:
        seconds += gpu_bytes / (budget.gpu_bandwidth * GPU_BANDWIDTH_EFFICIENCY)
    first_gpu, _ = gpu_blocks(model.n_layer, gpu_layers) if budget.vendor else (model.n_layer, False)
    moe_layers = model.moe_layers() if t.expert.any() else []
    seconds += CPU_MOE_BLOCK_S * sum(1 for layer in moe_layers if layer < max(first_gpu, cpu_moe_layers))
    if cpu_moe_layers and budget.vendor:
        hopping = sum(1 for layer in moe_layers if first_gpu <= layer < cpu_moe_layers)
        seconds += 2 * hopping * GPU_CPU_HOP_S
    return 1.0 / seconds if seconds > 0 else 0.0


def plan_model(model: ModelInfo, hw: Hardware, ctx: int | None = None, kv_type: str = "f16",
               file: str | None = None) -> PlanOption:
    budget = Budget.of(hw)
    s = settings_for(model, ctx, kv_type, repack=budget.vendor is None and "AVX2" in hw.cpu.features,
                     n_threads=hw.cpu.cores)
    found = best_placement(model, s, budget)
    n = model.n_layer
    if found is None:
        k, moe, m, verdict = 0, 0, placement_memory(model, s, 0, process_ram=budget.process_ram), "no_fit"
    else:
        k, moe, m = found.gpu_layers, found.cpu_moe_layers, found.memory
        verdict = "full_gpu" if k == n + 1 and moe == 0 else "partial" if k > 0 else "cpu_only"
    q = quality(model.quant)
    return PlanOption(
        file=file or model.files[0], quant=model.quant or "unknown", size=model.file_size, verdict=verdict,
        n_layers=n, gpu_layers=k, memory=m, max_ctx_full_gpu=max_ctx_full_gpu(model, s, budget),
        tokens_per_s=None if found is None else found.tokens_per_s,
        quality_loss=q.kld if q else None, load_args=load_args(s, k, moe), model=model, cpu_moe_layers=moe,
    )


def recommend(options: list[PlanOption], ctx: int) -> PlanOption | None:
    """Mark the recommendation in place and give every option its one-sentence reason."""
    def rank(o: PlanOption) -> float:
        return quality_rank(o.quant, o.model.bits_per_weight if o.model else 16.0)

    for o in options:
        o.recommended = False
        o.reason = _reason(o, ctx)
    full = [o for o in options if o.verdict == "full_gpu"]
    partial = [o for o in options if o.verdict == "partial" and (o.tokens_per_s or 0) >= USABLE_TOKENS_PER_S]
    cpu = [o for o in options if o.verdict == "cpu_only"]
    usable_cpu = [o for o in cpu if (o.tokens_per_s or 0) >= USABLE_TOKENS_PER_S]
    if full:
        pick = max(full, key=rank)
        why = f"best quality that runs fully on the GPU at {ctx} tokens of context"
    elif partial:
        pick = max(partial, key=rank)
        split = (f"all layers on GPU, {pick.experts_in_ram()}" if pick.cpu_moe_layers and pick.all_layers_on_gpu
                 else f"{pick.gpu_layers} of {pick.n_layers + 1} layers on GPU"
                 + (f", {pick.experts_in_ram()}" if pick.cpu_moe_layers else ""))
        why = (f"no quant fits fully on the GPU at {ctx} tokens; this is the best quality whose split "
               f"({split}) still runs at ~{pick.tokens_per_s:.0f} tokens/s")
    elif usable_cpu:
        pick = max(usable_cpu, key=rank)
        why = f"best quality that runs on the CPU at a usable ~{pick.tokens_per_s:.0f} tokens/s"
    elif cpu or [o for o in options if o.verdict == "partial"]:
        # Nothing is fast enough to read along with. The fastest is often a crushed 2-bit quant only a
        # little faster than a good 4-bit one (on few cores the CPU's compute, not the file size, bounds
        # speed): the best quality within NEAR_FASTEST of the top speed, the smaller download on a tie.
        pool = cpu + [o for o in options if o.verdict == "partial"]
        top = max(o.tokens_per_s or 0 for o in pool)
        near = [o for o in pool if (o.tokens_per_s or 0) >= NEAR_FASTEST * top]
        pick = max(near, key=lambda o: (rank(o), -o.size))
        fastest = next(o for o in pool if (o.tokens_per_s or 0) == top)
        if pick is fastest:
            why = f"nothing runs at a usable speed here; this is the fastest option (~{top:.1f} tokens/s)"
        else:
            why = (f"nothing here reaches a usable {USABLE_TOKENS_PER_S:.0f} tokens/s; {pick.quant} runs "
                   f"at ~{pick.tokens_per_s:.1f} tokens/s, within {100 * (1 - NEAR_FASTEST):.0f}% of the fastest "
                   f"({fastest.quant}, ~{top:.1f}), with {quality_words(pick.quality_loss)} quality loss and a "
                   f"{pick.size / GiB:.1f} GiB download")
    else:
        return None
    pick.recommended = True
    pick.reason = f"Recommended: {why}."
    return pick


def _reason(o: PlanOption, ctx: int) -> str:
    gib = lambda b: f"{b / GiB:.1f} GiB"  # noqa: E731
    if o.verdict == "full_gpu":
        return f"Runs fully on the GPU: {gib(o.vram)} VRAM, {gib(o.ram)} RAM at {ctx} tokens."
    if o.verdict == "partial" and o.cpu_moe_layers and o.all_layers_on_gpu:
        return (f"Every layer runs on the GPU ({gib(o.vram)} VRAM) but the routed experts of the first "
                f"{o.cpu_moe_layers} of {o.n_layers} stay in RAM ({gib(o.ram)} RAM), where a token reads only "
                f"the few it uses.")
    if o.verdict == "partial" and o.cpu_moe_layers:
        return (f"{o.gpu_layers} of {o.n_layers + 1} layers fit on the GPU ({gib(o.vram)} VRAM), with the "
                f"routed experts of the first {o.cpu_moe_layers} of {o.n_layers} in RAM; the rest runs on the "
                f"CPU ({gib(o.ram)} RAM).")
    if o.verdict == "partial":
        return (f"{o.gpu_layers} of {o.n_layers + 1} layers fit on the GPU ({gib(o.vram)} VRAM); "
                f"the rest runs on the CPU ({gib(o.ram)} RAM).")
    if o.verdict == "cpu_only":
        return f"Runs on the CPU only, needing {gib(o.ram)} RAM."
    return f"Does not fit: needs {gib(o.ram)} RAM on the CPU alone, more than is available."
