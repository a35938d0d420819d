"""A checked checkpoint to a GGUF file, streamed one tensor at a time.

The header (metadata and every tensor's name, type and shape) is written first, from the shards'
own headers; then each tensor is read memory-mapped, transformed, written and dropped, so the peak
memory is near the largest tensor, not the model. The output is written beside its final name and
renamed only when complete; a failure or a cancel removes it.

llama (and Mistral, which llama.cpp runs as llama): Q and K rows are permuted from Hugging Face's
rotate-half RoPE layout to llama.cpp's interleaved one, as llama.cpp's converter does. Qwen2 and
Qwen3 run with llama.cpp's rotate-half ("NEOX") RoPE and keep their rows as they are; Qwen2 adds
Q/K/V biases, Qwen3 per-head Q/K norms and a head width of its own.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import MODEL_ARCH, GGMLQuantizationType, GGUFWriter, LlamaFileType, RopeScalingType, TokenType
from gguf import get_tensor_name_map

from quantdesk.convert.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from quantdesk.convert.safetensors_file import SafetensorsError, SafetensorsFile, as_float32
from quantdesk.convert.tokenizer import Vocabulary, load_vocabulary

IGNORED = (".rotary_emb.inv_freq",)  # buffers some checkpoints store; llama.cpp computes them
GGUF_ARCH = {"llama": MODEL_ARCH.LLAMA, "qwen2": MODEL_ARCH.QWEN2, "qwen3": MODEL_ARCH.QWEN3,
             "phi3": MODEL_ARCH.PHI3, "gemma2": MODEL_ARCH.GEMMA2, "gemma3": MODEL_ARCH.GEMMA3}
PERMUTES_QK = {"llama"}  # the architectures whose RoPE pairs interleave in llama.cpp
# Gemma's RMS norms scale by (1 + weight); llama.cpp's expect the sum stored (as its converter does)
NORM_PLUS_ONE = {"gemma2", "gemma3"}
TIED_ALWAYS = {"gemma2", "gemma3"}  # Gemma has no lm_head of its own


class ConversionCancelled(CheckpointError):
    pass


@dataclass(frozen=True)
class TensorPlan:
    hf_name: str
    gguf_name: str
    shard: Path
    source_dtype: str
    shape: tuple[int, ...]  # numpy order, as written
    out_type: GGMLQuantizationType
    permute_heads: int | None = None  # Q/K: heads to un-rotate
    plus_one: bool = False  # a Gemma norm: stored as 1 + weight


@dataclass(frozen=True)
class ConversionResult:
    output: Path
    size: int
    tensors: int
    file_type: str  # "F16" or "BF16"


@dataclass(frozen=True)
class ConvertProgress:
    done: int   # bytes of tensor data written
    total: int


@dataclass(frozen=True)
class ConversionPlan:
    """What a conversion will write, known before it starts (the pre-flight reads it)."""

    checkpoint: Checkpoint
    output_bytes: int       # the GGUF's tensor data (its header adds the vocabulary: kilobytes to a few MB)
    largest_tensor: int     # elements of the largest tensor: the peak working memory is a few times this
    tensors: int
    hparams: dict[str, Any] = None  # type: ignore[assignment]
    tensor_plan: list[TensorPlan] = None  # type: ignore[assignment]
    vocab_size: int = 0
    chat_template: str | None = None
    f32_source: bool = False  # F32 weights (widened and narrowed) rather than BF16/F16 (copied)


def plan_conversion(folder: str | Path) -> ConversionPlan:
    """Check the checkpoint through and through (config, shards, tokenizer, shapes) without writing."""
    ck = open_checkpoint(folder)
    vocab = load_vocabulary(ck)
    hp = _hparams(ck)
    plan = _plan_tensors(ck, hp, vocab)
    _rope_scaling(hp)
    template = getattr(vocab.special, "chat_template", None)
    return ConversionPlan(ck, sum(_nbytes(t) for t in plan),
                          max(int(np.prod(t.shape, dtype=np.int64)) for t in plan), len(plan), hp, plan,
                          hp["n_vocab"], template if isinstance(template, str) else None,
                          any(t.source_dtype in ("F32", "F64") and len(t.shape) > 1 for t in plan))


def check_before_weights(folder: str | Path) -> None:
    """What can be refused from config.json and the tokenizer alone — before a checkpoint's weights
    are fetched: the architecture, the config's numbers, RoPE scaling, the tokenizer."""
    from quantdesk.convert.checkpoint import SUPPORTED, architecture_of, read_json

    folder = Path(folder)
    config = read_json(folder / "config.json")
    hf_arch = architecture_of(config)
    ck = Checkpoint(folder, config, hf_arch, SUPPORTED[hf_arch], [])
    load_vocabulary(ck)
    _rope_scaling(_hparams(ck))
    _check_attention_scale(ck)


def convert_checkpoint(folder: str | Path, output: str | Path, *, cancel: threading.Event | None = None,
                       progress: Callable[[int, int], None] | None = None) -> ConversionResult:
    """Convert the checkpoint in ``folder`` to ``output`` (F16, or BF16 for a BF16 checkpoint)."""
    result = None
    for event in convert_steps(folder, output, cancel=cancel):
        if isinstance(event, ConvertProgress) and progress is not None:
            progress(event.done, event.total)
        elif isinstance(event, ConversionResult):
            result = event
    assert result is not None
    return result


def convert_steps(folder: str | Path, output: str | Path, *, cancel: threading.Event | None = None,
                  ) -> Iterator[ConvertProgress | ConversionResult]:
    """The conversion as events: progress after each tensor, then the result. Closing the generator
    early (or ``cancel``) stops it and removes the partial output."""
    ck = open_checkpoint(folder)
    vocab = load_vocabulary(ck)
    hp = _hparams(ck)
    plan = _plan_tensors(ck, hp, vocab)
    bf16 = any(t.out_type == GGMLQuantizationType.BF16 for t in plan)
    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    total = sum(_nbytes(t) for t in plan)
    done = 0
    extra = _rope_scaling(hp)  # a computed tensor (llama3's RoPE factors), written first
    writer = None
    try:
        writer = GGUFWriter(str(partial), ck.architecture)
        _write_metadata(writer, ck, hp, vocab, LlamaFileType.MOSTLY_BF16 if bf16 else LlamaFileType.MOSTLY_F16)
        for name, data in extra:
            writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, raw_dtype=GGMLQuantizationType.F32)
        for t in plan:
            writer.add_tensor_info(t.gguf_name, t.shape, _np_dtype(t.out_type), _nbytes(t), raw_dtype=t.out_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, data in extra:
            writer.write_tensor_data(data)
        shards: dict[Path, SafetensorsFile] = {}
        for t in plan:
            if cancel is not None and cancel.is_set():
                raise ConversionCancelled("the conversion was cancelled")
            shard = shards.get(t.shard) or shards.setdefault(t.shard, SafetensorsFile(t.shard))
            writer.write_tensor_data(_tensor_data(shard, t))
            done += _nbytes(t)
            yield ConvertProgress(done, total)
        writer.close()
        os.replace(partial, output)
    except BaseException:  # GeneratorExit included: a consumer that stops early leaves nothing behind
        if writer is not None:
            try:
                writer.close()  # (an open file cannot be removed on Windows)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
        partial.unlink(missing_ok=True)
        raise
    yield ConversionResult(output, output.stat().st_size, len(plan), "BF16" if bf16 else "F16")


def _hparams(ck: Checkpoint) -> dict[str, Any]:
    def need(*keys: str) -> int:
        value = ck.get(*keys)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(f"config.json lacks {keys[0]} (a positive whole number)")
        return value

    hp = {"n_embd": need("hidden_size"), "n_layer": need("num_hidden_layers"), "n_head": need("num_attention_heads"),
          "n_ff": need("intermediate_size"), "n_vocab": need("vocab_size")}
    hp["n_head_kv"] = ck.get("num_key_value_heads", default=hp["n_head"])
    hp["head_dim"] = ck.get("head_dim", default=hp["n_embd"] // hp["n_head"])
    if hp["n_head"] % hp["n_head_kv"] or hp["head_dim"] % 2:
        raise CheckpointError("config.json's head counts do not fit together (num_attention_heads must be a "
                              "multiple of num_key_value_heads, head_dim even)")
    hp["n_ctx"] = int(ck.get("max_position_embeddings", default=4096))
    hp["rope_theta"] = float(ck.get("rope_theta", default=10000.0))
    hp["rms_eps"] = float(ck.get("rms_norm_eps", default=1e-5))
    hp["tied"] = bool(ck.get("tie_word_embeddings", default=False))
    hp["rope_scaling"] = ck.get("rope_scaling")
    hp["partial_rotary"] = float(ck.get("partial_rotary_factor", default=1.0))
    if ck.architecture == "phi3" and hp["n_head"] * hp["head_dim"] != hp["n_embd"]:
        raise CheckpointError("config.json gives Phi-3 a head width llama.cpp's phi3 does not take "
                              "(heads x head_dim must equal hidden_size)")
    if ck.architecture in TIED_ALWAYS:
        hp["tied"] = True
    return hp


def _expected_shapes(hp: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Hugging Face shapes (out, in) of one block's tensors and the model's own."""
    e, hd = hp["n_embd"], hp["head_dim"]
    q, kv, ff = hp["n_head"] * hd, hp["n_head_kv"] * hd, hp["n_ff"]
    return {"self_attn.q_proj.bias": (q,), "self_attn.k_proj.bias": (kv,), "self_attn.v_proj.bias": (kv,),
            "self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,),
            "self_attn.qkv_proj.weight": (q + 2 * kv, e), "mlp.gate_up_proj.weight": (2 * ff, e),
            "pre_feedforward_layernorm.weight": (e,), "post_feedforward_layernorm.weight": (e,),"self_attn.q_proj.weight": (q, e), "self_attn.k_proj.weight": (kv, e),
            "self_attn.v_proj.weight": (kv, e), "self_attn.o_proj.weight": (e, q),
            "mlp.gate_proj.weight": (ff, e), "mlp.up_proj.weight": (ff, e), "mlp.down_proj.weight": (e, ff),
            "input_layernorm.weight": (e,), "post_attention_layernorm.weight": (e,),
            "model.embed_tokens.weight": (hp["n_vocab"], e), "lm_head.weight": (hp["n_vocab"], e),
            "model.norm.weight": (e,)}


def _plan_tensors(ck: Checkpoint, hp: dict[str, Any], vocab: Vocabulary) -> list[TensorPlan]:
    names = get_tensor_name_map(GGUF_ARCH[ck.architecture], hp["n_layer"])
    expected = _expected_shapes(hp)
    entries: dict[str, tuple[Path, Any]] = {}
    try:
        for shard in ck.shards:
            for name, entry in SafetensorsFile(shard).entries.items():
                entries[name] = (shard, entry)
    except SafetensorsError as exc:
        raise CheckpointError(str(exc)) from None
    missing_in_shards = [n for n, p in ck.weight_map.items() if n not in entries]
    if missing_in_shards:
        raise CheckpointError(f"the index lists {missing_in_shards[0]}, but no shard holds it: the checkpoint is "
                              "damaged")
    plan: list[TensorPlan] = []
    for name, (shard, entry) in entries.items():
        if name.endswith(IGNORED):
            continue
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise CheckpointError(f"{name} is not part of a {ck.hf_architecture} model; the checkpoint may be of "
                                  "another architecture than config.json says")
        key = name if name in expected else name.split(".", 3)[-1]
        want = expected.get(key)
        if want is not None and tuple(entry.shape) != want:
            raise CheckpointError(f"{name} has shape {list(entry.shape)}, but config.json implies {list(want)}: the "
                                  "weights and the config do not belong together")
        if name == "lm_head.weight" and hp["tied"]:
            continue
        permute = ck.architecture in PERMUTES_QK
        heads = (hp["n_head"] if permute and name.endswith("q_proj.weight")
                 else hp["n_head_kv"] if permute and name.endswith("k_proj.weight") else None)
        out = (GGMLQuantizationType.F32 if len(entry.shape) == 1
               else GGMLQuantizationType.BF16 if entry.dtype == "BF16" else GGMLQuantizationType.F16)
        plus_one = ck.architecture in NORM_PLUS_ONE and name.endswith("norm.weight")
        if plus_one:
            out = GGMLQuantizationType.F32
        plan.append(TensorPlan(name, gguf_name, shard, entry.dtype, tuple(entry.shape), out, heads, plus_one))
    have = {t.gguf_name for t in plan}
    attention = "attn_qkv" if ck.architecture == "phi3" else "attn_q"
    head = () if hp["tied"] else ("output.weight",)  # untied: its own lm_head, or llama.cpp would reuse embeddings
    for needed in ("token_embd.weight", "output_norm.weight", *head,
                   *(f"blk.{i}.{attention}.weight" for i in range(hp["n_layer"]))):
        if needed not in have:
            raise CheckpointError(f"the checkpoint has no tensor for {needed}: a shard is missing or incomplete")
    if vocab.size != hp["n_vocab"] and vocab.size > hp["n_vocab"]:
        raise CheckpointError(f"the tokenizer has {vocab.size} tokens but the model only {hp['n_vocab']}")
    return plan


def _nbytes(t: TensorPlan) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * (4 if t.out_type == GGMLQuantizationType.F32 else 2)


def _np_dtype(t: GGMLQuantizationType) -> np.dtype:
    return np.dtype({GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}.get(t, np.uint16))


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of Q or K from Hugging Face's rotate-half order to llama.cpp's interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_data(shard: SafetensorsFile, t: TensorPlan) -> np.ndarray:
    raw = shard.array(t.hf_name)
    if t.out_type == GGMLQuantizationType.BF16:  # bit-exact: only rows move
        data = np.asarray(raw, dtype=np.uint16)
    elif t.out_type == GGMLQuantizationType.F32:
        data = as_float32(raw, t.source_dtype) + (np.float32(1.0) if t.plus_one else np.float32(0.0))
    else:
        data = as_float32(raw, t.source_dtype).astype(np.float16) if t.source_dtype != "F16" else np.asarray(raw)
    if t.permute_heads:
        data = _permute(data, t.permute_heads)
    return np.ascontiguousarray(data)


def _write_metadata(w: GGUFWriter, ck: Checkpoint, hp: dict[str, Any], vocab: Vocabulary, ftype: int) -> None:
    w.add_name(ck.folder.name)
    w.add_context_length(hp["n_ctx"])
    w.add_embedding_length(hp["n_embd"])
    w.add_block_count(hp["n_layer"])
    w.add_feed_forward_length(hp["n_ff"])
    w.add_head_count(hp["n_head"])
    w.add_head_count_kv(hp["n_head_kv"])
    w.add_rope_dimension_count(int(hp["head_dim"] * hp["partial_rotary"]) // 2 * 2)
    w.add_key_length(hp["head_dim"])  # (written always, as llama.cpp's converter does)
    w.add_value_length(hp["head_dim"])
    _family_metadata(w, ck)
    w.add_rope_freq_base(hp["rope_theta"])
    w.add_layer_norm_rms_eps(hp["rms_eps"])
    w.add_file_type(int(ftype))
    w.add_vocab_size(hp["n_vocab"])
    scaling = hp["rope_scaling"] or {}
    if (scaling.get("rope_type") or scaling.get("type")) == "linear":
        w.add_rope_scaling_type(RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(scaling["factor"]))
    vocab.add_to(w, hp["n_vocab"])


def _family_metadata(w: GGUFWriter, ck: Checkpoint) -> None:
    """What an architecture needs beyond the common keys (llama.cpp reads each as optional)."""
    window = ck.get("sliding_window")
    if ck.architecture == "phi3":  # (0: no window; llama.cpp's converter writes both always)
        w.add_sliding_window(window if isinstance(window, int) and window > 0 else 0)
        original = ck.get("original_max_position_embeddings", "max_position_embeddings")
        if isinstance(original, int):
            w.add_rope_scaling_orig_ctx_len(original)
    if ck.architecture in ("gemma2", "gemma3"):
        if isinstance(window, int) and window > 0:
            w.add_sliding_window(window)
        for key, add in (("attn_logit_softcapping", w.add_attn_logit_softcapping),
                         ("final_logit_softcapping", w.add_final_logit_softcapping)):
            value = ck.get(key)
            if isinstance(value, (int, float)) and value > 0:
                add(float(value))
        _check_attention_scale(ck)
    if ck.architecture == "gemma3":
        local = ck.get("rope_local_base_freq")
        if isinstance(local, (int, float)):
            w.add_rope_freq_base_swa(float(local))


def _check_attention_scale(ck: Checkpoint) -> None:
    """Gemma scales attention by 1/sqrt(query_pre_attn_scalar); llama.cpp by the head width (or, for
    Gemma 27B, hidden/heads): any other value would compute something else."""
    if ck.architecture not in ("gemma2", "gemma3"):
        return
    scalar, head_dim = ck.get("query_pre_attn_scalar"), ck.get("head_dim")
    if isinstance(scalar, (int, float)) and isinstance(head_dim, int) and scalar != head_dim \
            and scalar != ck.get("hidden_size", default=0) // max(1, ck.get("num_attention_heads", default=1)):
        raise CheckpointError(f"config.json scales attention by 1/sqrt({scalar}), which llama.cpp's "
                              f"{ck.architecture} does not (it uses the head width)")


def _rope_scaling(hp: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """Checks config.json's rope_scaling; llama3's needs a tensor of per-frequency factors."""
    scaling = hp["rope_scaling"]
    if not scaling:
        return []
    if not isinstance(scaling, dict):
        raise CheckpointError("config.json's rope_scaling is not an object")
    kind = scaling.get("rope_type") or scaling.get("type")
    factor = scaling.get("factor")
    if kind in ("linear", "llama3") and not (isinstance(factor, (int, float)) and factor > 0):
        raise CheckpointError(f"config.json's rope_scaling ({kind}) has no valid factor")
    if kind == "llama3":
        return [("rope_freqs.weight", _llama3_rope_factors(hp, scaling))]
    if kind in ("linear", None, "default"):
        return []
    raise CheckpointError(f"RoPE scaling '{kind}' is not supported by the converter yet (linear and llama3 are)")


def _llama3_rope_factors(hp: dict[str, Any], scaling: dict[str, Any]) -> np.ndarray:
    """Llama 3.1's per-frequency RoPE factors, as llama.cpp stores them (``rope_freqs.weight``)."""
    base, dim = hp["rope_theta"], hp["head_dim"]
    factor = float(scaling.get("factor", 8.0))
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


__all__ = ["convert_checkpoint", "convert_steps", "plan_conversion", "ConversionPlan", "ConversionResult",
           "ConvertProgress", "ConversionCancelled", "TokenType"]
