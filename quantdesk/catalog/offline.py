"""The bundled offline catalog: popular instruct GGUF repos, usable with no network at all.

A first run without network still gets recommendations: each entry carries the model's published
shape (layers, heads, vocabulary, context) and files with the sizes and SHA-256 that public sources
list. The planner plans from a header synthesized from that shape, sized to the real file where
the size is known; figures from such a plan say so. Downloads never trust this file: they verify
against the hub's own LFS hash at download time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from gguf import GGMLQuantizationType

from quantdesk.base.paths import resources_dir
from quantdesk.catalog.refresh_store import read_refresh, refresh_path
from quantdesk.hub.endpoint import DEFAULT_ENDPOINT
from quantdesk.gguf.model_info import ModelInfo
from quantdesk.gguf.quant_presets import quantized_tensors
from quantdesk.gguf.quants import quality
from quantdesk.gguf.reader import TensorInfo

# MXFP4 (gpt-oss): experts at 4.25 bits, attention and embeddings at 8.5 — about 4.5 over the whole file
_FALLBACK_BPW = {"Q2_K_L": 3.4, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_1": 6.0, "MXFP4": 4.5}


@dataclass(frozen=True)
class CatalogFile:
    path: str
    quant: str | None
    size: int | None
    sha256: str | None
    confidence: str
    source: str | None
    parts: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "quant": self.quant, "size": self.size, "sha256": self.sha256,
                "confidence": self.confidence, "source": self.source, "parts": self.parts}


@dataclass(frozen=True)
class CatalogModel:
    repo: str
    base_model: str | None
    params: int
    arch: dict[str, Any]
    arch_source: str | None
    files: list[CatalogFile] = field(default_factory=list)
    hub_status: str | None = None   # "ok": files as the hub listed them; "gone": huggingface.co no longer has it
    absent_from: str | None = None  # a mirror that lacks it (it may well be on the hub: still planned)

    def estimated_size(self, f: CatalogFile) -> int:
        """The file's size where published, else parameters × the preset's bits per weight."""
        if f.size:
            return f.size
        q = quality(f.quant) if f.quant else None
        bpw = q.bpw if q and q.bpw else _FALLBACK_BPW.get(f.quant or "", 5.0)
        return int(self.params * bpw / 8)

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo, "base_model": self.base_model, "params": self.params, "arch": self.arch,
                "arch_source": self.arch_source, "files": [f.to_json() for f in self.files],
                "hub_status": self.hub_status, "absent_from": self.absent_from}


@dataclass(frozen=True)
class Catalog:
    snapshot: str
    models: list[CatalogModel]
    refreshed_at: str | None = None    # last full refresh from the hub, if any
    refreshed_repos: int = 0           # repos whose files come from the hub

    def freshness(self) -> str:
        """The snapshot and the last refresh, in words: "snapshot 2026-08, refreshed from the hub on …"."""
        text = f"snapshot {self.snapshot}"
        if self.refreshed_repos:
            when = f" on {self.refreshed_at[:10]}" if self.refreshed_at else ""
            text += f", refreshed from the hub{when} ({self.refreshed_repos} of {len(self.models)} repos)"
        return text

    def origin(self) -> str:
        """Which catalog is shown, in a sentence (notes and the CLI say it)."""
        return f"bundled catalog, {self.freshness()}"

    def mirror_gaps(self) -> str | None:
        """Where a mirror lacks some of the catalog's repos, in a sentence: they are still planned
        (from their published shapes); only a download from that mirror would fail."""
        absent = [m for m in self.models if m.absent_from]
        if not absent:
            return None
        where = absent[0].absent_from
        return (f"{len(absent)} of the catalog's {len(self.models)} repos are not on {where} (a mirror or another "
                "hub); they are planned from their published shapes, and downloading them needs huggingface.co")

    def label(self) -> str:
        """Which catalog is shown, as a heading (the Discover page's source line)."""
        return f"Bundled catalog (offline, {self.freshness()})"

    def find(self, repo: str) -> CatalogModel | None:
        return next((m for m in self.models if m.repo.lower() == repo.lower()), None)

    def search(self, text: str) -> list[CatalogModel]:
        """Every word of ``text`` in the repo or base-model name; smallest models first."""
        words = text.lower().split()
        hits = [m for m in self.models
                if all(w in f"{m.repo} {m.base_model or ''}".lower() for w in words)]
        return sorted(hits, key=lambda m: (m.params, m.repo.lower()))


def _files(items: list[dict[str, Any]], source: str | None = None) -> list[CatalogFile]:
    return [CatalogFile(f["path"], f.get("quant"), f.get("size"), f.get("sha256"),
                        "hub" if source else (f.get("confidence") or "unknown"), source or f.get("source"),
                        int(f.get("parts") or 1)) for f in items]


def load_catalog() -> Catalog:
    """The bundled snapshot with the last hub refresh laid over it (see ``refresh``).

    Cached per refresh file and its modification time: another process refreshing it, or another
    data folder, is seen at the next call.
    """
    path = refresh_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    return _load_catalog(str(path), stamp)


@functools.lru_cache(maxsize=4)
def _load_catalog(refresh_file: str, _stamp: int | None) -> Catalog:
    data = json.loads((resources_dir() / "catalog.json").read_text(encoding="utf-8"))
    refresh = read_refresh()
    hub = refresh.get("repos", {})
    models, refreshed = [], 0
    for m in data["models"]:
        files, status = _files(m["files"]), None
        seen = hub.get(m["repo"])
        if isinstance(seen, dict) and seen.get("status") == "ok" and seen.get("files"):
            files = _files(seen["files"], f"{refresh.get('endpoint', 'the hub')} on {str(seen.get('at', ''))[:10]}")
            status, refreshed = "ok", refreshed + 1
        elif isinstance(seen, dict) and seen.get("status") == "gone":
            # before mirrors were told apart, a mirror's gap was recorded as gone: only the hub can say so
            trusted = "endpoint" in seen or refresh.get("endpoint", DEFAULT_ENDPOINT) == DEFAULT_ENDPOINT
            status = "gone" if trusted else None
        absent = seen.get("absent_from") if isinstance(seen, dict) else None
        if status is None and isinstance(seen, dict) and seen.get("status") == "gone":
            absent = refresh.get("endpoint")
        models.append(CatalogModel(m["repo"], m.get("base_model"), int(m["params"]), m["arch"], m.get("arch_source"),
                                   files, status, absent))
    return Catalog(str(data.get("snapshot", "")), models, refresh.get("refreshed_at"), refreshed)


load_catalog.cache_clear = _load_catalog.cache_clear  # type: ignore[attr-defined]


def _preset_for(quant: str | None):
    """llama.cpp's preset for a file's label; publishers' variants (unsloth's Q2_K_L) map to their base."""
    from quantdesk.gguf.quant_presets import file_preset

    return file_preset({"Q2_K_L": "Q2_K"}.get(quant or "", quant or "Q4_K_M")) or file_preset("Q4_K_M")


_SYNTHESIZED: dict[tuple, ModelInfo] = {}


def model_info_for(model: CatalogModel, f: CatalogFile) -> ModelInfo:
    """A header synthesized from the published shape, with tensor sizes scaled to the file's size.

    Per-tensor types follow llama.cpp's preset mix; the total matches the real (or estimated)
    file, which is what placement and memory depend on. Kept per shape and file: it does not depend
    on the machine, and ranking the whole catalog for a machine would otherwise redo it (~1 s).
    Callers treat the result as read-only.
    """
    key = (model.repo, model.base_model, model.params, repr(sorted(model.arch.items())), f.path, f.quant,
           model.estimated_size(f))
    info = _SYNTHESIZED.get(key)
    if info is None:
        if len(_SYNTHESIZED) >= 1024:
            _SYNTHESIZED.clear()
        info = _SYNTHESIZED[key] = _synthesize(model, f)
    return info


def _synthesize(model: CatalogModel, f: CatalogFile) -> ModelInfo:
    a = model.arch
    n_layer, n_embd, n_vocab = int(a["n_layer"]), int(a["n_embd"]), int(a["n_vocab"])
    n_head, n_head_kv, n_ff = int(a["n_head"]), int(a["n_head_kv"]), int(a["n_ff"])
    head_dim = int(a.get("head_dim") or n_embd // n_head)
    n_expert = int(a.get("n_expert") or 0)
    n_ff_exp = int(a.get("n_ff_exp") or n_ff)  # each routed expert's width (moe_intermediate_size)
    n_shared, n_ff_shexp = int(a.get("n_expert_shared") or 0), int(a.get("n_ff_shexp") or 0)
    n_dense_lead = int(a.get("n_dense_lead") or 0)  # leading dense blocks (GLM's first_k_dense_replace)
    # the order converted GGUFs use (it decides which bytes stay mapped when layers go to the GPU)
    shapes: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (n_embd, n_vocab))]
    for i in range(n_layer):
        p = f"blk.{i}."
        shapes += [(p + "attn_norm.weight", (n_embd,)), (p + "ffn_norm.weight", (n_embd,)),
                   (p + "attn_q.weight", (n_embd, n_head * head_dim)),
                   (p + "attn_k.weight", (n_embd, n_head_kv * head_dim)),
                   (p + "attn_v.weight", (n_embd, n_head_kv * head_dim)),
                   (p + "attn_output.weight", (n_head * head_dim, n_embd))]
        if n_expert and i >= n_dense_lead:
            shapes += [(p + "ffn_gate_inp.weight", (n_embd, n_expert)),
                       (p + "ffn_gate_exps.weight", (n_embd, n_ff_exp, n_expert)),
                       (p + "ffn_up_exps.weight", (n_embd, n_ff_exp, n_expert)),
                       (p + "ffn_down_exps.weight", (n_ff_exp, n_embd, n_expert))]
            if n_shared and n_ff_shexp:
                w = n_shared * n_ff_shexp
                shapes += [(p + "ffn_gate_shexp.weight", (n_embd, w)), (p + "ffn_up_shexp.weight", (n_embd, w)),
                           (p + "ffn_down_shexp.weight", (w, n_embd))]
        else:
            shapes += [(p + "ffn_gate.weight", (n_embd, n_ff)), (p + "ffn_up.weight", (n_embd, n_ff)),
                       (p + "ffn_down.weight", (n_ff, n_embd))]
    shapes.append(("output_norm.weight", (n_embd,)))
    tied = a.get("tie_word_embeddings")
    if tied is None:  # Gemma's configs leave it out (the catalog has null): Gemma always ties
        tied = str(a.get("architecture", "")).startswith("gemma")
    if not tied:
        shapes.append(("output.weight", (n_embd, n_vocab)))
    total = model.estimated_size(f)
    f16, offset = [], 0
    for name, shape in shapes:
        n = _prod(shape)
        t = GGMLQuantizationType.F32 if len(shape) == 1 else GGMLQuantizationType.F16
        f16.append(TensorInfo(name, shape, int(t), offset, n, n * (4 if len(shape) == 1 else 2)))
        offset += f16[-1].n_bytes
    info = ModelInfo(
        name=model.base_model or model.repo, architecture=str(a.get("architecture") or "llama"), n_layer=n_layer,
        n_embd=n_embd, n_head=[n_head] * n_layer, n_head_kv=[n_head_kv] * n_layer, head_dim_k=head_dim,
        head_dim_v=head_dim, n_ff=[n_ff] * n_layer, n_vocab=n_vocab, n_ctx_train=int(a.get("context_length") or 0),
        tensors=f16, file_size=total, files=[f.path], quant=f.quant, chat_template=None,
        n_expert=n_expert, n_expert_used=int(a.get("n_expert_used") or 0), n_ff_exp=n_ff_exp if n_expert else 0,
        metadata={"quantdesk.source": "catalog", "quantdesk.size_estimated": f.size is None},
    )
    typed = quantized_tensors(info, _preset_for(f.quant))  # llama.cpp's own per-tensor mix
    fixed = sum(t.n_bytes for t in typed if t.type_id == GGMLQuantizationType.F32)
    # scale the matrices to the real file (publishers' mixes differ a little from llama.cpp's presets)
    scale = max(total - fixed, 1) / max(sum(t.n_bytes for t in typed if t.type_id != GGMLQuantizationType.F32), 1)
    tensors, offset = [], 0
    for t in typed:
        n_bytes = t.n_bytes if t.type_id == GGMLQuantizationType.F32 else int(t.n_bytes * scale)
        tensors.append(dataclasses.replace(t, offset=offset, n_bytes=n_bytes))
        offset += n_bytes
    return dataclasses.replace(info, tensors=tensors)



def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out
