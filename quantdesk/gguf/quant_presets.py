"""The quantization presets the installed llama.cpp offers, and what each does to every tensor.

The preset list comes from llama-cpp-python's ``LLAMA_FTYPE_MOSTLY_*`` constants, so a newer
build's presets appear without a code change. Which type each tensor gets follows llama.cpp's
own mixing rules (``llama_tensor_get_type_impl`` in ``src/llama-quant.cpp``, 0.3.36) for the
presets we offer, closely enough to estimate a file's size from its header alone — a local
file or a remote one — before anything is quantized.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from quantdesk.base.errors import QuantDeskError
from quantdesk.gguf.model_info import ModelInfo, layer_of
from quantdesk.gguf.quants import quality_rank
from quantdesk.gguf.reader import TensorInfo

Q = GGMLQuantizationType
FULL_PRECISION = ("F32", "F16", "BF16")
_IMATRIX = "needs an importance matrix (imatrix), which QuantDesk does not compute yet"
_TRAINED = "only for models trained for it (ternary/low-bit training); it ruins an ordinary model"
# Presets llama.cpp defines but QuantDesk does not offer, with the reason shown to the user.
REFUSED = {
    **{name: _IMATRIX for name in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS",
                                   "IQ3_XS", "IQ3_S", "IQ3_M", "Q2_K_S")},
    "TQ1_0": _TRAINED, "TQ2_0": _TRAINED, "Q1_0": _TRAINED, "Q2_0": _TRAINED,
    "MXFP4_MOE": "meant for mixture-of-experts models shipped in MXFP4 (gpt-oss); it leaves other tensors Q8_0",
    "NVFP4": "the installed llama.cpp's quantizer rejects it as an output file type",
}
# The main tensor type of each preset (llama_ftype_get_default_type); others resolve by name.
DEFAULT_TYPES = {
    "F32": Q.F32, "F16": Q.F16, "BF16": Q.BF16, "Q8_0": Q.Q8_0, "Q6_K": Q.Q6_K, "Q5_K_M": Q.Q5_K,
    "Q5_K_S": Q.Q5_K, "Q4_K_M": Q.Q4_K, "Q4_K_S": Q.Q4_K, "Q3_K_L": Q.Q3_K, "Q3_K_M": Q.Q3_K,
    "Q3_K_S": Q.Q3_K, "Q2_K": Q.Q2_K, "Q4_0": Q.Q4_0, "Q4_1": Q.Q4_1, "Q5_0": Q.Q5_0, "Q5_1": Q.Q5_1,
    "IQ4_XS": Q.IQ4_XS, "IQ4_NL": Q.IQ4_NL,
}
# A tensor whose row is not a multiple of the type's block falls back (tensor_type_fallback).
_FALLBACK = {Q.Q2_K: Q.Q4_0, Q.Q3_K: Q.Q4_0, Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0,
             Q.IQ4_XS: Q.IQ4_NL}


@dataclass(frozen=True)
class QuantPreset:
    name: str
    ftype: int  # llama_ftype, from the installed llama_cpp
    default_type: GGMLQuantizationType | None
    refused: str | None = None  # why QuantDesk does not offer it; None when offered

    @property
    def bits_per_weight(self) -> float:
        if self.default_type is None:
            return 0.0
        block, size = GGML_QUANT_SIZES[self.default_type]
        return 8 * size / block


@functools.lru_cache(maxsize=1)
def all_presets() -> dict[str, QuantPreset]:
    """Every output preset llama.cpp defines, offered or refused (imports llama_cpp: ~0.3 s)."""
    import llama_cpp  # deliberately lazy: loading libllama costs ~0.3 s

    found: dict[str, QuantPreset] = {}
    for attr in dir(llama_cpp):
        if not attr.startswith(("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_")):
            continue
        name = attr.split("_", 3)[3]
        default = DEFAULT_TYPES.get(name) or getattr(Q, name, None)
        refused = REFUSED.get(name)
        if refused is None and default is None:
            refused = "QuantDesk cannot estimate or read this type yet"
        found[name] = QuantPreset(name, int(getattr(llama_cpp, attr)), default, refused)
    return found


def file_preset(name: str) -> QuantPreset | None:
    """The preset a published file's label names, to estimate its per-tensor mix; None if unknown.

    Needs no llama.cpp (the window plans the offline catalog at start, and loading libllama there
    costs ~0.3 s) and accepts presets QuantDesk does not offer itself: an IQ4_XS file is one whoever
    made it. ``ftype`` is -1: estimating the mix does not use it.
    """
    key = name.strip().upper()
    default = DEFAULT_TYPES.get(key) or getattr(Q, key, None)
    return QuantPreset(key, -1, default, REFUSED.get(key)) if default is not None else None


def offered_presets() -> list[QuantPreset]:
    """The presets a user may pick: quantized ones best quality first, then the float conversions."""
    return sorted((p for p in all_presets().values() if p.refused is None),
                  key=lambda p: (p.name in FULL_PRECISION, -quality_rank(p.name, p.bits_per_weight), p.name))


def resolve_preset(name: str) -> QuantPreset:
    """The preset called ``name`` (any case); a clear error lists the valid ones."""
    presets = all_presets()
    preset = presets.get(name.strip().upper())
    valid = ", ".join(p.name for p in offered_presets())
    if preset is None:
        raise QuantDeskError(f"unknown quantization type '{name}'; valid types: {valid}")
    if preset.refused:
        raise QuantDeskError(f"{preset.name} is not offered: it {preset.refused}; valid types: {valid}")
    return preset


def is_quantizable(t: TensorInfo) -> bool:
    """llama.cpp's tensor_allows_quantization for the tensors ordinary LLMs have."""
    dims = list(t.shape)
    while len(dims) > 1 and dims[-1] == 1:  # ggml_n_dims ignores trailing 1s
        dims.pop()
    if len(dims) < 2 or not t.name.endswith("weight") or "_norm.weight" in t.name:
        return False
    skip = ("ffn_gate_inp.weight", "ssm_conv1d", "shortconv.conv.weight", "altup", "laurel", "attn_rel_b.weight",
            "position_embd", "token_types.weight", "time_mix_", ".patch_embd", "per_layer_model_proj")
    return not any(s in t.name for s in skip)


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _mixed_type(name: str, default: Q, preset: str, model: ModelInfo, n_attn_v: int) -> Q:
    """The type llama.cpp picks for one quantizable tensor under ``preset`` (K/legacy/IQ4 presets)."""
    n_gqa = max(model.n_head) // max(1, max(model.n_head_kv) or 1)
    n_expert, layer = model.n_expert, layer_of(name)
    i = layer if layer is not None else 0
    n = model.n_layer
    t = default
    if "attn_v.weight" in name or "attn_qkv.weight" in name or "attn_kv_b.weight" in name:
        if preset == "Q2_K":
            t = Q.Q4_K if n_gqa >= 4 else Q.Q3_K
        elif preset == "Q3_K_M":
            t = Q.Q5_K if i < 2 else Q.Q4_K
        elif preset == "Q3_K_L" or (preset in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4):
            t = Q.Q5_K
        elif preset in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n_attn_v):
            t = Q.Q6_K
        elif preset == "Q4_K_S" and i < 4:
            t = Q.Q5_K
        if model.architecture == "llama" and n == 80 and t in (Q.Q3_K, Q.Q4_K):  # llama.cpp's 70B rule
            t = Q.Q5_K
        if n_expert == 8:
            t = Q.Q8_0
    elif "attn_k.weight" in name and n_expert == 8:
        t = Q.Q8_0
    elif "ffn_down" in name:
        if preset == "Q2_K":
            t = Q.Q3_K
        elif preset == "Q3_K_M":
            t = Q.Q5_K if i < n // 16 else Q.Q4_K
        elif preset == "Q3_K_L":
            t = Q.Q5_K
        elif preset in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            t = Q.Q6_K
        elif preset in ("IQ4_NL", "IQ4_XS", "Q4_K_S") and i < n // 8:
            t = Q.Q5_K
    elif "attn_output.weight" in name:
        if n_expert == 8:
            if preset in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                t = Q.Q5_K
        else:
            t = {"Q2_K": Q.Q3_K, "Q3_K_M": Q.Q4_K, "Q3_K_L": Q.Q5_K}.get(preset, t)
    return t


def target_types(model: ModelInfo, preset: QuantPreset) -> dict[str, GGMLQuantizationType]:
    """The type each tensor of ``model`` will have after quantizing to ``preset``."""
    default = preset.default_type
    if default is None:
        raise QuantDeskError(f"{preset.name}: QuantDesk cannot estimate this type")
    names = {t.name for t in model.tensors}
    tied = "output.weight" not in names
    n_attn_v = sum(1 for t in model.tensors if "attn_v.weight" in t.name or "attn_qkv.weight" in t.name)
    quantized = default not in (Q.F32, Q.F16, Q.BF16)
    out: dict[str, GGMLQuantizationType] = {}
    for t in model.tensors:
        if not is_quantizable(t):
            out[t.name] = GGMLQuantizationType(t.type_id)
            continue
        if not quantized:
            out[t.name] = default
            continue
        if t.name == "output.weight" or (tied and t.name == "token_embd.weight"):
            block = GGML_QUANT_SIZES[default][0]
            new = Q.Q8_0 if default == Q.Q8_0 or t.shape[0] % block else Q.Q6_K
        elif t.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            new = default
        else:
            new = _mixed_type(t.name, default, preset.name, model, n_attn_v)
        out[t.name] = _fit_row(new, t.shape[0])
    return out


def _fit_row(t: Q, ncols: int) -> Q:
    if ncols % GGML_QUANT_SIZES[t][0] == 0:
        return t
    fallback = _FALLBACK.get(t, t)
    return fallback if ncols % GGML_QUANT_SIZES[fallback][0] == 0 else Q.F16


def _nbytes(t: Q, n_elements: int) -> int:
    block, size = GGML_QUANT_SIZES[t]
    return math.ceil(n_elements / block) * size


def quantized_tensors(model: ModelInfo, preset: QuantPreset) -> list[TensorInfo]:
    """``model``'s tensor list as it will be after quantizing (types and byte sizes)."""
    types = target_types(model, preset)
    return [dataclasses.replace(t, type_id=int(types[t.name]), n_bytes=_nbytes(types[t.name], t.n_elements))
            for t in model.tensors]


# Alignment padding (32 B per tensor) and the metadata part are copied from the input; a margin
# of 1% + 1 MiB covers rules this approximation does not know (unusual architectures).
SIZE_MARGIN_FRACTION, SIZE_MARGIN_MIN = 0.01, 1 << 20


def estimate_output_size(model: ModelInfo, preset: QuantPreset) -> int:
    """A conservative (upper) estimate of the output file's size, from the header alone."""
    tensors = quantized_tensors(model, preset)
    data = sum(t.n_bytes + 31 for t in tensors)
    metadata = max(0, model.file_size - model.weight_bytes)
    body = data + metadata
    return int(body + max(SIZE_MARGIN_MIN, SIZE_MARGIN_FRACTION * body))


def quantized_model_info(model: ModelInfo, preset: QuantPreset) -> ModelInfo:
    """What ``model`` will look like quantized to ``preset``: for planning before it exists."""
    return dataclasses.replace(model, tensors=quantized_tensors(model, preset),
                               file_size=estimate_output_size(model, preset), quant=preset.name)


def is_full_precision(model: ModelInfo) -> bool:
    """True when every quantizable weight is F32/F16/BF16 (what the quantizer should start from)."""
    fp = {Q.F32, Q.F16, Q.BF16}
    return all(GGMLQuantizationType(t.type_id) in fp for t in model.tensors if is_quantizable(t))
