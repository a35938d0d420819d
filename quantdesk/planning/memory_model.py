"""How much memory llama.cpp allocates for a model, where, at a given context and GPU split.

Each figure follows what llama.cpp (as bundled with llama-cpp-python) really does; the facts and
the measurements behind the constants are in docs/memory-model.md and ``bench/plan_accuracy.py``.
Placement: with ``n_gpu_layers = k`` the last k repeating layers (and their KV cache) live on
the GPU, the output head only when k > n_layer, ``token_embd`` always on the CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from gguf import GGMLQuantizationType as Q

from quantdesk.gguf.model_info import ModelInfo, is_expert_tensor, layer_of

MiB = 1 << 20
KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
                 "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32}
# ggml type ids for llama_cpp's type_k / type_v
KV_TYPE_IDS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
KV_PAD = 256  # llama.cpp pads the KV cache to a multiple of 256 cells
# Weight types that x86 CPU builds repack into an extra interleaved (anonymous) buffer; the mapped
# file pages stay resident as well. Measured on this build: Q4_K tensors get a CPU_REPACK copy,
# Q6_K/Q8_0/F16 do not; token_embd (used by get_rows) never does.
REPACKED_TYPES_X86 = frozenset({Q.Q4_0, Q.Q4_K, Q.IQ4_NL})
REPACK_ROW_MULTIPLE = 8
# Resident memory of the process that hosts llama.cpp before any model is loaded: the Python
# interpreter, numpy, llama-cpp-python and libllama with its CPU backend (measured: 49-57 MiB;
# bench/plan_accuracy.py reports the measured figure alongside the prediction).
PROCESS_BASE_RAM = 56 * MiB
# What a GPU backend costs before any tensor, by llama.cpp backend. CUDA: context, cuBLAS workspace
# and the pool, measured on an H100 with a CUDA build (docs/vram-h100.md): 598-615 MiB with
# quantized weights, ~96 MiB more when float matrices are offloaded; a bare CUDA context alone is
# 518 MiB. Vulkan keeps no cuBLAS and no pool: what it holds beyond the buffers llama.cpp logs is
# the driver's context and ggml-vulkan's staging and dequantization buffers, which depend on the
# driver; no real card has been measured yet (docs/vulkan-memory.md), so the CUDA figure stands in
# as the reserve until one is. Metal and ROCm: peers' reserves (Ollama: 512 MiB Metal, 457 MiB ROCm).
# Vendors map to the backend a GPU gets when its backend is not known (a simulated machine).
GPU_RUNTIME_OVERHEAD = {"cuda": 600 * MiB, "vulkan": 600 * MiB, "metal": 512 * MiB, "hip": 600 * MiB,
                        "nvidia": 600 * MiB, "amd": 600 * MiB, "apple": 512 * MiB, "intel": 512 * MiB,
                        "other": 600 * MiB}
GPU_FLOAT_MATMUL_EXTRA = 96 * MiB
# Host memory a GPU build's process holds beyond the CPU-only base (driver and runtime libraries,
# pinned staging): measured 330 MiB with quantized weights, 400 MiB with float weights on the GPU.
GPU_HOST_OVERHEAD, GPU_HOST_FLOAT_EXTRA = 330 * MiB, 70 * MiB
_FLOAT_TYPES = frozenset({Q.F32, Q.F16, Q.BF16})


@dataclass(frozen=True)
class RunSettings:
    n_ctx: int
    kv_type: str = "f16"
    flash_attn: bool = True
    n_batch: int = 512
    n_ubatch: int = 512
    repack: bool = True  # x86 CPU weight repacking (llama.cpp's default on AVX2 CPU-only builds)
    swa_full: bool = True  # llama.cpp's default: sliding-window layers keep a full-size cache
    n_threads: int | None = None

    @property
    def n_ctx_padded(self) -> int:
        return -(-self.n_ctx // KV_PAD) * KV_PAD


@dataclass
class Memory:
    """Bytes by kind and device for one placement."""

    weights_gpu: int = 0
    weights_cpu: int = 0  # mapped file pages of tensors used on the CPU
    repack_cpu: int = 0
    kv_gpu: int = 0
    kv_cpu: int = 0
    compute_gpu: int = 0
    compute_cpu: int = 0
    overhead_gpu: int = 0
    overhead_cpu: int = 0
    experts_cpu: int = 0  # of weights_cpu: routed experts kept in RAM while their blocks run on the GPU

    @property
    def vram(self) -> int:
        return self.weights_gpu + self.kv_gpu + self.compute_gpu + self.overhead_gpu

    @property
    def ram(self) -> int:
        return self.weights_cpu + self.repack_cpu + self.kv_cpu + self.compute_cpu + self.overhead_cpu

    @property
    def kv_cache(self) -> int:
        return self.kv_gpu + self.kv_cpu

    def to_json(self) -> dict[str, int]:
        return asdict(self) | {"vram": self.vram, "ram": self.ram}


def kv_cache_per_layer(model: ModelInfo, s: RunSettings) -> list[int]:
    """KV bytes of each layer: cells x heads_kv x (head_dim_k x size_k + head_dim_v x size_v)."""
    size = KV_TYPE_BYTES[s.kv_type]
    full = s.n_ctx_padded
    out = []
    for layer in range(model.n_layer):
        cells = full
        if s.swa_full is False and model.swa_layers and model.swa_layers[layer] and model.sliding_window:
            cells = min(full, -(-(model.sliding_window + s.n_ubatch) // KV_PAD) * KV_PAD)
        out.append(int(cells * model.n_head_kv[layer] * (model.head_dim_k + model.head_dim_v) * size))
    return out


def compute_buffer(model: ModelInfo, s: RunSettings, with_logits: bool = True) -> int:
    """The graph's scratch buffer, reserved for a full ``n_ubatch`` at the full context.

    With flash attention: logits (4·ub·n_vocab) + the f16 mask (2·ub·n_ctx) + the FFN/residual
    activations (4·ub·(n_ff + 1.5·n_embd)). Without it the f32 attention scores of all heads
    (4·ub·n_ctx·n_head) take the logits' place once they are larger.
    """
    ub, ctx = min(s.n_ubatch, s.n_batch, s.n_ctx), s.n_ctx_padded
    n_ff, n_head = max(model.n_ff), max(model.n_head)
    if model.n_expert:
        n_ff = (model.n_ff_exp or n_ff) * max(1, model.n_expert_used)
    activations = 4 * ub * (n_ff + 1.5 * model.n_embd)
    logits = 4 * ub * model.n_vocab if with_logits else 0
    if s.flash_attn:
        return int(logits + 2 * ub * ctx + activations)
    scores = 4 * ub * ctx * n_head + 4 * ub * ctx
    return int(max(logits, scores) + activations)


def vulkan_compute_buffer(model: ModelInfo, s: RunSettings, with_logits: bool = True, copied_weight: int = 0) -> int:
    """The Vulkan device's scratch buffer when every layer and the head are on it.

    ggml's graph allocator reuses memory, so the buffer is the largest of three stages, not their
    sum (measured on Mesa's Vulkan device to the logged 0.01 MiB for five shapes, contexts 512 to
    4096, micro-batches 256 and 512, flash attention on and off: docs/vulkan-memory.md):
    output — logits (4·ub·n_vocab) with the last hidden state and its norm (8·ub·n_embd);
    FFN — the mask, gate, up and their product (12·ub·n_ff), the hidden state and its norm;
    attention without flash attention — the f32 scores of all heads (4·ub·n_ctx·n_head), the f32
    mask, Q, the new K and V, the output and the residual (4·ub·(3·n_embd + 2·n_embd_kv)).
    The mask is f16 (2·ub·n_ctx) with flash attention, f32 without. With layers left on the CPU
    (``copied_weight``: their largest weight matrix) ggml still runs their large-batch matrix
    products on the GPU and copies each weight into this buffer first: the FFN and attention
    stages hold one such copy (measured within -5%..+15% of the logged buffer; the output stage,
    when the head is on the GPU, is exact).
    """
    ub, ctx = min(s.n_ubatch, s.n_batch, s.n_ctx), s.n_ctx_padded
    n_ff, n_head = max(model.n_ff), max(model.n_head)
    if model.n_expert:
        n_ff = (model.n_ff_exp or n_ff) * max(1, model.n_expert_used)
    hidden = 8 * ub * model.n_embd
    output = 4 * ub * model.n_vocab + hidden if with_logits else 0
    mask = (2 if s.flash_attn else 4) * ub * ctx
    ffn = mask + 12 * ub * n_ff + hidden + copied_weight
    if model.n_expert and model.n_expert_used:
        ffn = mask + hidden + _vulkan_moe_activations(model, ub, copied_weight)
    if s.flash_attn:
        return int(max(output, ffn))
    n_embd_kv = max(model.n_head_kv) * max(model.head_dim_k, model.head_dim_v)
    attention = 4 * ub * ctx * n_head + mask + 4 * ub * (3 * model.n_embd + 2 * n_embd_kv) + copied_weight
    return int(max(output, ffn, attention))


def _vulkan_moe_activations(model: ModelInfo, ub: int, copied_weight: int) -> int:
    """A mixture-of-experts FFN's peak in the Vulkan scratch buffer (fitted to the logged buffer of six
    generated MoE shapes on Mesa's device, llama and qwen3moe, with and without experts in RAM —
    exact for four, up to +8% for one and high for a wide-embedding one: docs/moe-placement.md).

    Per token batch: gate and up outputs and their product are ``a`` each (expert width x experts used),
    the down projection's output and its weighted copy ``d`` each (embedding x experts used); a
    RAM-resident expert tensor copied in for a prompt batch (``copied_weight``) sits beside them.
    """
    used = max(1, model.n_expert_used)
    a = 4 * ub * (model.n_ff_exp or max(model.n_ff)) * used
    d = 4 * ub * model.n_embd * used
    h = 4 * ub * model.n_embd
    if copied_weight:
        return int(max(3 * a, 2 * a + copied_weight, 2 * d + copied_weight))
    return int(max(3 * a, a + d + 2 * h))


@dataclass(frozen=True)
class TensorTable:
    """A model's tensors as arrays, for pricing many placements quickly (the MoE search tries hundreds).

    ``layer`` is the block a tensor belongs to, -1 outside the blocks (embeddings, output head);
    ``expert`` marks routed-expert tensors (what ``--n-cpu-moe`` keeps in RAM).
    """

    layer: np.ndarray
    expert: np.ndarray
    n_bytes: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    matrix: np.ndarray  # 2-D and wider: what ggml copies to the GPU for a large-batch product
    float_matrix: np.ndarray
    embedding: np.ndarray
    repack_candidate: np.ndarray
    n_elements: np.ndarray
    type_ids: np.ndarray
    file: np.ndarray  # the part of a split model that holds the tensor (offsets are per part)


def tensor_table(model: ModelInfo) -> TensorTable:
    """The model's table, built once per model object (callers treat ModelInfo as read-only)."""
    cached = model.__dict__.get("_tensor_table")
    if cached is not None and cached[0] == len(model.tensors):
        return cached[1]
    ts = model.tensors
    layers = [layer_of(t.name) for t in ts]
    table = TensorTable(
        layer=np.array([-1 if x is None else x for x in layers], dtype=np.int64),
        expert=np.array([is_expert_tensor(t.name) for t in ts], dtype=bool),
        n_bytes=np.array([t.n_bytes for t in ts], dtype=np.int64),
        lo=np.array([t.offset for t in ts], dtype=np.int64),
        hi=np.array([t.offset + t.n_bytes for t in ts], dtype=np.int64),
        matrix=np.array([len(t.shape) >= 2 for t in ts], dtype=bool),
        float_matrix=np.array([t.type_id in _FLOAT_TYPES and len(t.shape) == 2 for t in ts], dtype=bool),
        embedding=np.array([t.name == "token_embd.weight" for t in ts], dtype=bool),
        repack_candidate=np.array([t.type_id in REPACKED_TYPES_X86 and t.name != "token_embd.weight"
                                   and len(t.shape) == 2 and t.shape[1] % REPACK_ROW_MULTIPLE == 0 for t in ts],
                                  dtype=bool),
        n_elements=np.array([t.n_elements for t in ts], dtype=np.float64),
        type_ids=np.array([t.type_id for t in ts], dtype=np.int64),
        file=np.array(model.tensor_files if len(model.tensor_files) == len(ts) else [0] * len(ts), dtype=np.int64),
    )
    model.__dict__["_tensor_table"] = (len(ts), table)
    return table


def gpu_blocks(n_layer: int, gpu_layers: int) -> tuple[int, bool]:
    """(first block on the GPU, output head on the GPU) for ``n_gpu_layers = gpu_layers``.

    llama.cpp counts the output head as layer n_layer and offloads from the top: k = 1 puts only
    the head on the GPU, k = n_layer + 1 everything but token_embd.
    """
    k = max(0, min(gpu_layers, n_layer + 1))
    return n_layer - max(0, k - 1), k >= 1


def on_gpu_mask(model: ModelInfo, gpu_layers: int, cpu_moe_layers: int = 0) -> np.ndarray:
    """Which tensors llama.cpp puts in GPU buffers: blocks from ``first_gpu`` up, the head with the
    last "layer", never token_embd; the routed experts of blocks below ``cpu_moe_layers`` stay in
    RAM (llama.cpp's ``--n-cpu-moe``: a CPU buffer-type override for ``blk.i.ffn_*_exps``)."""
    t = tensor_table(model)
    first_gpu, head_on_gpu = gpu_blocks(model.n_layer, gpu_layers)
    in_block = t.layer >= 0
    mask = in_block & (t.layer >= first_gpu)
    if cpu_moe_layers > 0:
        mask &= ~(t.expert & (t.layer < cpu_moe_layers))
    if head_on_gpu:
        mask |= ~in_block & ~t.embedding
    return mask


def placement_memory(model: ModelInfo, s: RunSettings, gpu_layers: int, gpu_vendor: str | None = None,
                     process_ram: int | None = None, cpu_moe_layers: int = 0) -> Memory:
    """Memory for ``gpu_layers`` offloaded layers on a GPU driven by ``gpu_vendor`` — a llama.cpp
    backend ("vulkan", "cuda", "metal") or, where that is unknown, a vendor (None: CPU-only build) —
    with the routed experts of the first ``cpu_moe_layers`` blocks kept in RAM.
    ``process_ram``: the model process's own base as measured on this machine, when known.

    RAM is the steady state while generating: the process base, the span of the file that stays
    mapped for CPU tensors (llama.cpp unmaps only what lies outside the first and last CPU tensor —
    with experts in RAM, that span runs over the offloaded attention weights between them),
    repacked copies, and the CPU's KV and compute buffers.
    """
    n = model.n_layer
    t = tensor_table(model)
    if not gpu_vendor:
        gpu_layers, cpu_moe_layers = 0, 0
    first_gpu, head_on_gpu = gpu_blocks(n, gpu_layers) if gpu_vendor else (n, False)
    on_gpu = on_gpu_mask(model, gpu_layers, cpu_moe_layers) if gpu_vendor else np.zeros(len(t.layer), dtype=bool)
    on_cpu = ~on_gpu
    m = Memory(overhead_cpu=max(PROCESS_BASE_RAM, process_ram or 0))
    m.weights_gpu = int(t.n_bytes[on_gpu].sum())
    m.weights_cpu = int(t.n_bytes[on_cpu].sum())
    if not gpu_vendor and s.repack:  # the mapped pages stay resident as well (counted in weights_cpu)
        m.repack_cpu = int(t.n_bytes[on_cpu & t.repack_candidate].sum())
    if gpu_vendor and on_cpu.any():
        # offloaded tensors between the first and last CPU tensor of each file stay mapped and resident
        span = sum(int(t.hi[sel].max() - t.lo[sel].min()) for f in np.unique(t.file[on_cpu])
                   for sel in [on_cpu & (t.file == f)])
        m.weights_cpu = max(m.weights_cpu, span)
    if cpu_moe_layers > 0:
        m.experts_cpu = int(t.n_bytes[on_cpu & t.expert & (t.layer >= first_gpu)].sum())
    kv = kv_cache_per_layer(model, s)
    m.kv_gpu = sum(kv[first_gpu:]) if gpu_vendor else 0
    m.kv_cpu = sum(kv) - m.kv_gpu
    if not gpu_vendor:
        m.compute_cpu = compute_buffer(model, s) + output_buffer(model)
        return m
    float_on_gpu = bool((t.float_matrix & on_gpu).any())
    m.overhead_gpu = GPU_RUNTIME_OVERHEAD.get(gpu_vendor, GPU_RUNTIME_OVERHEAD["other"])
    m.overhead_gpu += GPU_FLOAT_MATMUL_EXTRA if float_on_gpu else 0
    m.overhead_cpu += GPU_HOST_OVERHEAD + (GPU_HOST_FLOAT_EXTRA if float_on_gpu else 0)
    # pinned host buffers: the output, the input embeddings, the attention mask at full context
    m.compute_cpu = output_buffer(model) + int(4 * s.n_ubatch * model.n_embd * 2) + 2 * s.n_ubatch * s.n_ctx_padded
    if gpu_vendor == "vulkan" and (head_on_gpu or first_gpu < n):
        # the largest weight a prompt batch copies in: a matrix of a CPU block, or a RAM-resident expert tensor
        copied_from = on_cpu & t.matrix & (((t.layer >= 0) & (t.layer < first_gpu) & (t.layer < n))
                                           | (t.expert & (t.layer >= 0)))
        copied = int(t.n_bytes[copied_from].max()) if copied_from.any() else 0
        m.compute_gpu = vulkan_compute_buffer(model, s, with_logits=head_on_gpu, copied_weight=copied)
    elif head_on_gpu or first_gpu < n:
        m.compute_gpu = compute_buffer(model, s, with_logits=head_on_gpu)
        if first_gpu > 0:  # partial offload: the GPU graph also holds a CPU layer's K and V
            m.compute_gpu += max(kv[:first_gpu])
    else:
        # nothing offloaded, yet prompt batches run on the GPU (weights copied in per op)
        output = model.tensor_bytes("output.weight") or model.tensor_bytes("token_embd.weight")
        m.compute_gpu = compute_buffer(model, s) + output + max(kv, default=0)
    return m


def output_buffer(model: ModelInfo) -> int:
    """Logits of the one output token llama-cpp-python asks for (zeroed, so resident)."""
    return 4 * model.n_vocab
