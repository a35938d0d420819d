"""Quant preset names: parsing them from file names, ranking them, and their cited quality loss."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from quantdesk.base.paths import resources_dir

# Longest names first so "Q4_K_M" wins over "Q4_K" and "IQ4_XS" over "Q4".
KNOWN_QUANTS = (
    "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
    "IQ4_XS", "IQ4_NL", "Q2_K_S", "Q2_K_L", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q3_K_XL", "Q4_K_S",
    "Q4_K_M", "Q4_K_L", "Q4_K_XL", "Q4_0", "Q4_1", "Q5_K_S", "Q5_K_M", "Q5_K_L", "Q5_0", "Q5_1", "Q6_K_L",
    "Q6_K", "Q8_0", "BF16", "F16", "F32", "MXFP4", "TQ1_0", "TQ2_0",
)
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(" + "|".join(sorted(KNOWN_QUANTS, key=len, reverse=True)) + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# general.file_type (llama_ftype) -> preset name
FTYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}


def quant_from_filename(name: str) -> str | None:
    """The preset label in a file name like ``Llama-3-8B-Instruct-Q4_K_M.gguf`` (case-folded up)."""
    stem = re.sub(r"-\d{5}-of-\d{5}", "", name.rsplit("/", 1)[-1])
    matches = _QUANT_RE.findall(stem)
    return matches[-1].upper() if matches else None


@dataclass(frozen=True)
class QuantQuality:
    name: str
    bpw: float | None
    kld: float | None
    delta_ppl: float | None


@functools.lru_cache(maxsize=1)
def _quality_table() -> dict[str, QuantQuality]:
    data = json.loads((resources_dir() / "quant_quality.json").read_text(encoding="utf-8"))
    return {k: QuantQuality(k, v.get("bpw"), v.get("kld"), v.get("delta_ppl")) for k, v in data["presets"].items()}


def quality(quant: str | None) -> QuantQuality | None:
    return _quality_table().get((quant or "").upper())


# KL divergence from the full-precision model, in words, on the llama.cpp scoreboard's scale
# (Llama-3-8B): Q8_0 0.0014 and Q6_K 0.0057 near-lossless; Q5_K 0.011–0.017 very small; Q4_K and
# IQ4_XS 0.029–0.044 small; Q3_K_M/L and IQ3_M 0.089–0.105 noticeable; Q3_K_S 0.24 and Q2_K 0.46 large.
QUALITY_WORDS = ((0.007, "near-lossless"), (0.02, "very small"), (0.05, "small"), (0.15, "noticeable"))


def quality_words(kld: float | None) -> str:
    """How much quality a quant loses, in words a person can weigh ("small", "noticeable")."""
    if kld is None:
        return "not measured"
    return next((words for limit, words in QUALITY_WORDS if kld < limit), "large")


def quality_rank(quant: str | None, bits_per_weight: float) -> float:
    """Higher is better: the cited KL divergence where known, else bits per weight."""
    q = quality(quant)
    if q is not None and q.kld is not None:
        return -q.kld
    # unknown label: place it by bits per weight on the same scale (fit through the table)
    return -0.4573 * (3.16 / max(bits_per_weight, 1.0)) ** 6
