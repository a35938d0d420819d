"""Keeping a mixture-of-experts model's routed experts in RAM: llama.cpp's ``--n-cpu-moe N``.

llama.cpp does it with tensor buffer-type overrides (``llama_model_params.tensor_buft_overrides``:
a NULL-terminated array of {regex, buffer type}); every tensor whose name matches goes to that
buffer type instead of the GPU. llama-cpp-python 0.3.36 has the field in its ctypes struct, typed
``c_void_p`` and marked unused, and its ``Llama`` never sets it: :func:`keep_experts_in_ram` wraps
``llama_model_default_params`` so the next ``Llama`` built in this process gets the override.

Runs only in the model process (it loads native code). The pattern, the array and the buffer type
pointer stay referenced here for the model's life: llama.cpp reads them while loading and keeps
the pointer.
"""

from __future__ import annotations

import ctypes
from typing import Any

# llama.cpp's own expression for routed-expert tensors (common/arg: LLM_FFN_EXPS_REGEX)
EXPERT_SUFFIX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


class TensorBufferOverride(ctypes.Structure):
    """``struct llama_model_tensor_buft_override { const char * pattern; ggml_backend_buffer_type_t buft; }``"""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


_alive: list[Any] = []  # what llama.cpp points into, for the process's life


def expert_pattern(cpu_moe_layers: int) -> str:
    """One expression for the routed experts of blocks 0..N-1, as ``--n-cpu-moe N`` means it.

    ``blk\\.(0|1|…)\\.`` — the dot after the number keeps block 1 from matching block 10.
    """
    if cpu_moe_layers <= 0:
        raise ValueError("cpu_moe_layers must be at least 1")
    blocks = "|".join(str(i) for i in range(cpu_moe_layers))
    return rf"blk\.({blocks}){EXPERT_SUFFIX}"


def cpu_buffer_type(llama_cpp_module: Any) -> int:
    """ggml's CPU buffer type, from the copy of ggml that libllama itself uses.

    llama.cpp compares the override's pointer with ``ggml_backend_cpu_buffer_type()`` to treat it
    as "CPU" (with the host/repack choices that brings): looked up through libllama's handle,
    ``dlsym`` finds the function in libllama's own libggml-base, so the pointer is the same one.
    """
    lib = llama_cpp_module._lib
    fn = lib.ggml_backend_cpu_buffer_type
    fn.argtypes, fn.restype = [], ctypes.c_void_p
    pointer = fn()
    if not pointer:
        raise RuntimeError("llama.cpp has no CPU buffer type")
    return int(pointer)


def keep_experts_in_ram(cpu_moe_layers: int) -> str:
    """Make the next model loaded in this process keep the first ``cpu_moe_layers`` blocks' routed
    experts in RAM; returns the expression used (the load report shows it)."""
    import llama_cpp.llama_cpp as llama_cpp_module

    pattern = expert_pattern(cpu_moe_layers)
    encoded = pattern.encode("ascii")
    overrides = (TensorBufferOverride * 2)()
    overrides[0].pattern, overrides[0].buft = encoded, cpu_buffer_type(llama_cpp_module)
    overrides[1].pattern, overrides[1].buft = None, None  # the terminator llama.cpp stops at
    original = llama_cpp_module.llama_model_default_params

    def default_params_with_overrides() -> Any:
        params = original()
        params.tensor_buft_overrides = ctypes.cast(overrides, ctypes.c_void_p).value
        return params

    _alive.extend([encoded, overrides, original, default_params_with_overrides])
    llama_cpp_module.llama_model_default_params = default_params_with_overrides
    return pattern
