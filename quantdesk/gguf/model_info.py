"""What the planner needs to know about a model, derived from its GGUF header(s).

Split models (``name-00001-of-00003.gguf``) are one model: metadata from the first part,
tensors from all parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.gguf.quants import FTYPE_NAMES, quant_from_filename
from quantdesk.gguf.reader import ArrayInfo, GGUFError, GGUFHeader, TensorInfo, read_header

SPLIT_RE = re.compile(r"^(?P<base>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# The routed-expert tensors of a mixture-of-experts block, as llama.cpp's ``--n-cpu-moe`` names them
# (common/arg: LLM_FFN_EXPS_REGEX): gate, up, down and fused gate_up, plain or chunked; shared
# experts (``ffn_up_shexp``) and the router (``ffn_gate_inp``) are not among them.
EXPERT_TENSOR_RE = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps")


@dataclass
class ModelInfo:
    name: str
    architecture: str
    n_layer: int
    n_embd: int
    n_head: list[int]
    n_head_kv: list[int]
    head_dim_k: int
    head_dim_v: int
    n_ff: list[int]
    n_vocab: int
    n_ctx_train: int
    tensors: list[TensorInfo]
    file_size: int
    files: list[str]
    quant: str | None
    chat_template: str | None
    sliding_window: int | None = None
    swa_layers: list[bool] = field(default_factory=list)
    n_expert: int = 0
    n_expert_used: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    n_ff_exp: int = 0  # each routed expert's FFN width where the header gives it apart from n_ff
    tensor_files: list[int] = field(default_factory=list)  # per tensor: which part of a split model holds it

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def weight_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.weight_bytes / max(1, self.n_params)

    def layer_bytes(self) -> list[int]:
        """Weight bytes of each repeating block ``blk.N``."""
        sizes = [0] * self.n_layer
        for t in self.tensors:
            layer = layer_of(t.name)
            if layer is not None and layer < self.n_layer:
                sizes[layer] += t.n_bytes
        return sizes

    @property
    def is_moe(self) -> bool:
        """A mixture-of-experts model whose routed experts are tensors of their own (llama.cpp refuses
        expert tensors without ``expert_count`` > 1 and ``expert_used_count`` > 0)."""
        return (self.n_expert > 1 and self.n_expert_used > 0
                and any(is_expert_tensor(t.name) for t in self.tensors))

    @property
    def active_expert_share(self) -> float:
        """The share of each expert tensor one token reads: experts used / experts."""
        if self.n_expert > 0 and self.n_expert_used > 0:
            return min(1.0, self.n_expert_used / self.n_expert)
        return 1.0

    def moe_layers(self) -> list[int]:
        """The blocks that hold routed experts (GLM-4.5 keeps its first block dense); [] unless MoE."""
        if not self.is_moe:
            return []
        return sorted({layer for t in self.tensors if is_expert_tensor(t.name)
                       and (layer := layer_of(t.name)) is not None and layer < self.n_layer})

    def tensor_bytes(self, *names: str) -> int:
        return sum(t.n_bytes for t in self.tensors if t.name in names)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "architecture": self.architecture, "quant": self.quant,
            "n_params": self.n_params, "n_layer": self.n_layer, "n_embd": self.n_embd,
            "n_head": max(self.n_head), "n_head_kv": max(self.n_head_kv), "n_ff": max(self.n_ff),
            "n_vocab": self.n_vocab, "n_ctx_train": self.n_ctx_train, "sliding_window": self.sliding_window,
            "n_expert": self.n_expert, "n_expert_used": self.n_expert_used, "file_size": self.file_size,
            "files": self.files, "has_chat_template": bool(self.chat_template),
        }


def layer_of(tensor_name: str) -> int | None:
    if tensor_name.startswith("blk."):
        part = tensor_name.split(".", 2)[1]
        if part.isdigit():
            return int(part)
    return None


def is_expert_tensor(tensor_name: str) -> bool:
    return EXPERT_TENSOR_RE.search(tensor_name) is not None


def _per_layer(value: Any, n_layer: int, default: int) -> list[int]:
    if isinstance(value, list) and value:
        return [int(v) for v in value[:n_layer]] + [int(value[-1])] * max(0, n_layer - len(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [int(value)] * n_layer
    return [default] * n_layer


# What llama.cpp itself accepts (llama-hparams.h: LLAMA_MAX_LAYERS, LLAMA_MAX_EXPERTS), and bounds
# far above any published model for the counts it leaves open. A header claiming more is corrupt or
# hostile: per-layer lists built from it would take gigabytes before anything else could object.
MAX_LAYERS = 512
MAX_EXPERTS = 512
LIMITS = {
    "block_count": MAX_LAYERS,
    "embedding_length": 1 << 20,
    "attention.head_count": 1 << 14,
    "attention.head_count_kv": 1 << 14,
    "attention.key_length": 1 << 16,
    "attention.value_length": 1 << 16,
    "feed_forward_length": 1 << 24,
    "vocab_size": 1 << 24,
    "context_length": 1 << 27,
    "attention.sliding_window": 1 << 27,
    "expert_count": MAX_EXPERTS,
    "expert_used_count": MAX_EXPERTS,
    "expert_feed_forward_length": 1 << 24,
}


def _checked(md: dict[str, Any], arch: str) -> None:
    """Refuse, naming the field, any count that no model llama.cpp loads can have."""
    for suffix, limit in LIMITS.items():
        name = f"{arch}.{suffix}"
        value = md.get(name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is None or isinstance(v, ArrayInfo):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= limit:  # (NaN fails too)
                shown = f"{v:,}" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)[:40]
                raise GGUFError(f"header is corrupt: {name} is {shown}, but llama.cpp models have at most "
                                f"{limit:,}; this file cannot be loaded")
    for name in (f"{arch}.attention.head_count", f"{arch}.attention.head_count_kv", f"{arch}.feed_forward_length"):
        if isinstance(md.get(name), ArrayInfo):
            raise GGUFError(f"header is corrupt: {name} lists {md[name].length:,} values, more than "
                            f"{MAX_LAYERS} layers can have")
    tokens = md.get("tokenizer.ggml.tokens")
    n_tokens = tokens.length if isinstance(tokens, ArrayInfo) else len(tokens) if isinstance(tokens, list) else 0
    if n_tokens > LIMITS["vocab_size"]:
        raise GGUFError(f"header is corrupt: tokenizer.ggml.tokens lists {n_tokens:,} tokens, more than any "
                        f"model has ({LIMITS['vocab_size']:,})")


def model_info_from_headers(headers: list[GGUFHeader], files: list[str], file_size: int) -> ModelInfo:
    first = headers[0]
    md = first.metadata
    arch = md.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFError("the GGUF has no general.architecture; it is not a model file")
    _checked(md, arch)

    def key(suffix: str, default: Any = None) -> Any:
        return md.get(f"{arch}.{suffix}", default)

    n_layer = int(key("block_count", 0) or 0)
    n_embd = int(key("embedding_length", 0) or 0)
    if n_layer <= 0 or n_embd <= 0:
        raise GGUFError(f"the GGUF lacks {arch}.block_count / {arch}.embedding_length")
    n_head = _per_layer(key("attention.head_count"), n_layer, 1)
    raw_kv = key("attention.head_count_kv")
    n_head_kv = list(n_head) if raw_kv is None else _per_layer(raw_kv, n_layer, 0)
    head0 = max(n_head) or 1
    head_dim_k = int(key("attention.key_length", n_embd // head0) or n_embd // head0)
    head_dim_v = int(key("attention.value_length", n_embd // head0) or n_embd // head0)
    n_ff = _per_layer(key("feed_forward_length"), n_layer, 4 * n_embd)
    tokens = md.get("tokenizer.ggml.tokens")
    n_vocab = tokens.length if isinstance(tokens, ArrayInfo) else len(tokens) if isinstance(tokens, list) else 0
    n_vocab = int(key("vocab_size", n_vocab) or n_vocab)
    tensors = [t for h in headers for t in h.tensors]
    if not n_vocab:
        embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
        n_vocab = embd.shape[-1] if embd else 0
    window = key("attention.sliding_window")
    swa_layers = _swa_layers(md, arch, n_layer, window)
    ftype = md.get("general.file_type")
    quant = FTYPE_NAMES.get(ftype) if isinstance(ftype, int) else None
    quant = quant_from_filename(files[0]) or quant
    template = md.get("tokenizer.chat_template")
    return ModelInfo(
        name=str(md.get("general.name") or Path(files[0]).stem), architecture=arch, n_layer=n_layer,
        n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, head_dim_k=head_dim_k, head_dim_v=head_dim_v,
        n_ff=n_ff, n_vocab=n_vocab, n_ctx_train=int(key("context_length", 0) or 0), tensors=tensors,
        file_size=file_size, files=files, quant=quant,
        chat_template=template if isinstance(template, str) else None,
        sliding_window=int(window) if isinstance(window, int) and window > 0 else None,
        swa_layers=swa_layers, n_expert=int(key("expert_count", 0) or 0),
        n_expert_used=int(key("expert_used_count", 0) or 0),
        n_ff_exp=_first_int(key("expert_feed_forward_length")),
        tensor_files=[i for i, h in enumerate(headers) for _ in h.tensors],
        metadata={k: v for k, v in md.items() if not isinstance(v, ArrayInfo)},
    )


def _first_int(value: Any) -> int:
    if isinstance(value, list):
        value = max((v for v in value if isinstance(v, (int, float))), default=0)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _swa_layers(md: dict[str, Any], arch: str, n_layer: int, window: Any) -> list[bool]:
    """Which layers use a sliding window (only a window's worth of KV), where the header says."""
    if not isinstance(window, int) or window <= 0:
        return [False] * n_layer
    pattern = md.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return [bool(pattern[i % len(pattern)]) for i in range(n_layer)]
    if isinstance(pattern, int) and pattern > 1:  # every pattern-th layer is global
        return [(i + 1) % pattern != 0 for i in range(n_layer)]
    return [True] * n_layer


def split_parts(path: Path) -> list[Path]:
    """All parts of a split model given any one of them; [path] for a single file."""
    match = SPLIT_RE.match(path.name)
    if not match:
        return [path]
    count = int(match["count"])
    parts = [path.with_name(f"{match['base']}-{i:05d}-of-{match['count']}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise GGUFError(f"split model is incomplete: missing {', '.join(missing)}")
    return parts


def load_model_info(path: str | Path) -> ModelInfo:
    path = Path(path)
    if not path.exists():
        raise GGUFError(f"no such file: {path}")
    parts = split_parts(path)
    headers = [read_header(p) for p in parts]
    return model_info_from_headers(headers, [str(p) for p in parts], sum(p.stat().st_size for p in parts))
