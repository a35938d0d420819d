"""Sampling settings, with per-model defaults where the GGUF publishes them.

Recent GGUF files may carry the publisher's recommended sampler (``general.sampling.*``);
those beat generic defaults. The generic ones are llama.cpp's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

_METADATA_KEYS = {
    "temperature": "general.sampling.temp",
    "top_p": "general.sampling.top_p",
    "top_k": "general.sampling.top_k",
    "min_p": "general.sampling.min_p",
    "repeat_penalty": "general.sampling.penalty_repeat",
}


@dataclass(frozen=True, eq=True)
class Sampling:
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int = -1            # -1: a new random seed per reply
    max_tokens: int = 1024
    ignore_eos: bool = False  # generate to max_tokens (benchmarks); never a chat default
    logit_bias: dict[str, float] | None = None  # token id -> bias, as in the OpenAI API

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Sampling":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def with_(self, **changes: Any) -> "Sampling":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def request_fields(self) -> dict[str, Any]:
        """The OpenAI-style request fields llama_cpp.server understands."""
        out = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
               "min_p": self.min_p, "repeat_penalty": self.repeat_penalty, "max_tokens": self.max_tokens}
        if self.seed >= 0:
            out["seed"] = self.seed
        if self.logit_bias:
            out["logit_bias"] = dict(self.logit_bias)
        return out


def defaults_for(metadata: dict[str, Any]) -> Sampling:
    """Generic defaults overlaid with the model's own recommendations."""
    found: dict[str, Any] = {}
    for name, key in _METADATA_KEYS.items():
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found[name] = int(value) if name == "top_k" else float(value)
    return Sampling().with_(**found)
