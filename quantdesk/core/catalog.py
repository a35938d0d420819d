"""The bundled offline catalog: popular instruct GGUF repos, usable with no network at all.

A first run without network still gets recommendations: each entry carries the model's published
shape (layers, heads, vocabulary, context) and files with the sizes and SHA-256 that public sources
list. The planner plans from a header synthesized from that shape, sized to the real file where
the size is known; figures from such a plan say so. Downloads never trust this file: they verify
against the hub's own LFS hash at download time.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from quantdesk.core.gguf_reader import TensorInfo
from quantdesk.core.hardware import Hardware
from quantdesk.core.model_info import ModelInfo
from quantdesk.core.paths import resources_dir
from quantdesk.core.quants import quality

# llama.cpp's preset mixes, simplified: (most tensors, attn_v/ffn_down in the "more bits" layers, output head).
_MIX = {"Q8_0": ("Q8_0", "Q8_0", "Q8_0"), "Q6_K": ("Q6_K", "Q6_K", "Q6_K"), "Q5_K_M": ("Q5_K", "Q6_K", "Q6_K"),
        "Q5_K_S": ("Q5_K", "Q5_K", "Q6_K"), "Q4_K_M": ("Q4_K", "Q6_K", "Q6_K"), "Q4_K_S": ("Q4_K", "Q5_K", "Q6_K"),
        "Q4_0": ("Q4_0", "Q4_0", "Q6_K"), "Q4_1": ("Q4_1", "Q4_1", "Q6_K"), "Q5_0": ("Q5_0", "Q5_0", "Q6_K"),
        "Q5_1": ("Q5_1", "Q5_1", "Q6_K"), "Q3_K_L": ("Q3_K", "Q5_K", "Q6_K"), "Q3_K_M": ("Q3_K", "Q4_K", "Q6_K"),
        "Q3_K_S": ("Q3_K", "Q3_K", "Q6_K"), "Q2_K": ("Q2_K", "Q3_K", "Q6_K"), "Q2_K_L": ("Q2_K", "Q3_K", "Q8_0"),
        "IQ4_XS": ("IQ4_XS", "IQ4_XS", "Q6_K"), "F16": ("F16", "F16", "F16"), "BF16": ("BF16", "BF16", "BF16")}
_FALLBACK_BPW = {"Q2_K_L": 3.4, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_1": 6.0}


@dataclass(frozen=True)
class CatalogFile:
    path: str
    quant: str | None
    size: int | None
    sha256: str | None
    confidence: str
    source: str | None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "quant": self.quant, "size": self.size, "sha256": self.sha256,
                "confidence": self.confidence, "source": self.source}


@dataclass(frozen=True)
class CatalogModel:
    repo: str
    base_model: str | None
    params: int
    arch: dict[str, Any]
    arch_source: str | None
    files: list[CatalogFile] = field(default_factory=list)

    def estimated_size(self, f: CatalogFile) -> int:
        """The file's size where published, else parameters × the preset's bits per weight."""
        if f.size:
            return f.size
        q = quality(f.quant) if f.quant else None
        bpw = q.bpw if q and q.bpw else _FALLBACK_BPW.get(f.quant or "", 5.0)
        return int(self.params * bpw / 8)

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo, "base_model": self.base_model, "params": self.params, "arch": self.arch,
                "arch_source": self.arch_source, "files": [f.to_json() for f in self.files]}


@dataclass(frozen=True)
class Catalog:
    snapshot: str
    models: list[CatalogModel]

    def find(self, repo: str) -> CatalogModel | None:
        return next((m for m in self.models if m.repo.lower() == repo.lower()), None)

    def search(self, text: str) -> list[CatalogModel]:
        """Every word of ``text`` in the repo or base-model name; smallest models first."""
        words = text.lower().split()
        hits = [m for m in self.models
                if all(w in f"{m.repo} {m.base_model or ''}".lower() for w in words)]
        return sorted(hits, key=lambda m: (m.params, m.repo.lower()))


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    data = json.loads((resources_dir() / "catalog.json").read_text(encoding="utf-8"))
    models = [CatalogModel(m["repo"], m.get("base_model"), int(m["params"]), m["arch"], m.get("arch_source"),
                           [CatalogFile(f["path"], f.get("quant"), f.get("size"), f.get("sha256"),
                                        f.get("confidence") or "unknown", f.get("source")) for f in m["files"]])
              for m in data["models"]]
    return Catalog(str(data.get("snapshot", "")), models)


def _tensor_type(name: str, quant: str | None, n_layer: int) -> GGMLQuantizationType:
    main, more, head = _MIX.get(quant or "", _MIX["Q4_K_M"])
    if name == "output.weight":
        return GGMLQuantizationType[head]
    if name.endswith(("attn_v.weight", "ffn_down.weight")):
        i = int(name.split(".")[1])
        if i < n_layer // 8 or i >= 7 * n_layer // 8 or (i - n_layer // 8) % 3 == 2:
            return GGMLQuantizationType[more]
    return GGMLQuantizationType[main]


def model_info_for(model: CatalogModel, f: CatalogFile) -> ModelInfo:
    """A header synthesized from the published shape, with tensor sizes scaled to the file's size.

    Per-tensor types are approximated by the preset's main type; the total matches the real (or
    estimated) file, which is what placement and memory depend on.
    """
    a = model.arch
    n_layer, n_embd, n_vocab = int(a["n_layer"]), int(a["n_embd"]), int(a["n_vocab"])
    n_head, n_head_kv, n_ff = int(a["n_head"]), int(a["n_head_kv"]), int(a["n_ff"])
    head_dim = int(a.get("head_dim") or n_embd // n_head)
    n_expert = int(a.get("n_expert") or 0)
    # the order converted GGUFs use (it decides which bytes stay mapped when layers go to the GPU)
    shapes: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (n_embd, n_vocab))]
    for i in range(n_layer):
        p = f"blk.{i}."
        shapes += [(p + "attn_norm.weight", (n_embd,)), (p + "ffn_norm.weight", (n_embd,)),
                   (p + "attn_q.weight", (n_embd, n_head * head_dim)),
                   (p + "attn_k.weight", (n_embd, n_head_kv * head_dim)),
                   (p + "attn_v.weight", (n_embd, n_head_kv * head_dim)),
                   (p + "attn_output.weight", (n_head * head_dim, n_embd)),
                   (p + "ffn_gate.weight", (n_embd, n_ff)), (p + "ffn_up.weight", (n_embd, n_ff)),
                   (p + "ffn_down.weight", (n_ff, n_embd))]
    shapes.append(("output_norm.weight", (n_embd,)))
    if not a.get("tie_word_embeddings"):
        shapes.append(("output.weight", (n_embd, n_vocab)))
    total = model.estimated_size(f)
    typed = []
    for name, shape in shapes:
        n = _prod(shape)
        if len(shape) == 1:
            typed.append((name, shape, n, GGMLQuantizationType.F32, 4 * n))
        else:
            t = _tensor_type(name, f.quant, n_layer)
            block, size = GGML_QUANT_SIZES[t]
            typed.append((name, shape, n, t, n // block * size))
    fixed = sum(b for *_, t, b in typed if t == GGMLQuantizationType.F32)
    # scale the matrices to the real file (MoE experts are not listed tensor by tensor; their bytes land here)
    scale = max(total - fixed, 1) / max(sum(b for *_, t, b in typed if t != GGMLQuantizationType.F32), 1)
    tensors, offset = [], 0
    for name, shape, n, t, raw in typed:
        n_bytes = raw if t == GGMLQuantizationType.F32 else int(raw * scale)
        tensors.append(TensorInfo(name, shape, int(t), offset, n, n_bytes))
        offset += n_bytes
    return ModelInfo(
        name=model.base_model or model.repo, architecture=str(a.get("architecture") or "llama"), n_layer=n_layer,
        n_embd=n_embd, n_head=[n_head] * n_layer, n_head_kv=[n_head_kv] * n_layer, head_dim_k=head_dim,
        head_dim_v=head_dim, n_ff=[n_ff] * n_layer, n_vocab=n_vocab, n_ctx_train=int(a.get("context_length") or 0),
        tensors=tensors, file_size=total, files=[f.path], quant=f.quant, chat_template=None,
        n_expert=n_expert, n_expert_used=int(a.get("n_expert_used") or 0),
        metadata={"quantdesk.source": "catalog", "quantdesk.size_estimated": f.size is None},
    )


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def plan_catalog_repo(repo: str, hw: Hardware, ctx: int | None = None, kv_type: str = "f16"):
    """The planner's options for a catalog repo's files, offline."""
    from quantdesk.core.errors import QuantDeskError
    from quantdesk.core.plan_service import Plan, _finish
    from quantdesk.core.planner import plan_model

    model = load_catalog().find(repo)
    if model is None:
        raise QuantDeskError(f"{repo} is not in the offline catalog")
    options = [plan_model(model_info_for(model, f), hw, ctx, kv_type, file=f.path) for f in model.files]
    notes = [f"offline: planned from the bundled catalog (snapshot {load_catalog().snapshot}) using "
             "the model's published shape; connect to the hub for exact headers"]
    if any(f.size is None for f in model.files):
        notes.append("sizes marked ~ are estimated from the parameter count; the catalog source did not list them")
    result: Plan = _finish(repo, options, hw, ctx, kv_type, notes)
    return result
