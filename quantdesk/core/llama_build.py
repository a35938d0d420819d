"""What the installed llama.cpp build (through llama-cpp-python) can do.

Imported lazily: loading libllama costs a few hundred milliseconds that start-up should not pay.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class LlamaBuild:
    installed: bool
    version: str | None
    gpu_offload: bool
    system_info: str


@functools.lru_cache(maxsize=1)
def llama_build() -> LlamaBuild:
    try:
        import llama_cpp  # noqa: PLC0415 - deliberately lazy
    except Exception:  # pragma: no cover - depends on the install
        return LlamaBuild(False, None, False, "")
    try:
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        gpu = False
    try:
        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    except Exception:
        info = ""
    return LlamaBuild(True, getattr(llama_cpp, "__version__", None), gpu, info)
