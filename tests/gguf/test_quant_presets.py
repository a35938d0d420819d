"""Presets come from the installed llama.cpp; QuantDesk's per-tensor types and sizes match its quantizer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.gguf.model_info import load_model_info
from quantdesk.gguf.quant_presets import (
    all_presets,
    estimate_output_size,
    offered_presets,
    resolve_preset,
    target_types,
)
from quantdesk.gguf.reader import read_header
from tests.support import gguf_factory as factory

# What llama.cpp's own tool calls them; the values must come from llama_cpp, not from us.
REQUIRED = {"Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_L", "Q3_K_M", "Q2_K", "IQ4_XS"}

# Quantize one model to every offered preset in a single process (llama.cpp in-process: fast).
ALL_PRESETS = r"""
import ctypes, json, sys
import llama_cpp
quiet = llama_cpp.llama_log_callback(lambda *a: None)  # must stay referenced while llama.cpp may log
llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
for src, out, ftype in json.loads(sys.argv[1]):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.nthread = ftype, 2
    assert llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(p)) == 0, out
"""


def test_ftypes_come_from_the_installed_llama_cpp():
    import llama_cpp

    presets = all_presets()
    for name in REQUIRED:
        assert presets[name].ftype == getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
    assert REQUIRED <= {p.name for p in offered_presets()}
    offered = [p.name for p in offered_presets()]
    assert offered.index("Q8_0") < offered.index("Q4_K_M") < offered.index("Q2_K")  # best quality first


@pytest.mark.parametrize("name,reason", [("IQ2_XXS", "importance matrix"), ("IQ3_M", "importance matrix"),
                                         ("Q2_K_S", "importance matrix"), ("TQ1_0", "trained for it")])
def test_presets_that_need_more_than_we_have_are_refused_with_a_reason(name, reason):
    assert all_presets()[name].refused and reason in all_presets()[name].refused
    with pytest.raises(QuantDeskError, match=reason):
        resolve_preset(name)


def test_unknown_type_lists_the_valid_ones():
    with pytest.raises(QuantDeskError) as err:
        resolve_preset("Q7_K")
    for name in REQUIRED:
        assert name in str(err.value)
    assert resolve_preset(" q4_k_m ").name == "Q4_K_M"


# Thin and deep (8 layers, 4 query heads per KV head): llama.cpp's per-layer and GQA rules all apply,
# and it quantizes fast. The IQ4 types (~3 M weights/s here) use the tiny model.
THIN_DEEP = factory.ModelShape(n_vocab=512, n_embd=256, n_layer=8, n_head=4, n_head_kv=1, n_ff=256, name="thin")


def test_every_offered_preset_matches_llama_cpp(tiny_model, tmp_path):
    thin = factory.write_model(tmp_path / "thin-F16.gguf", THIN_DEEP, "F16")
    jobs = {p.name: (tiny_model if p.name.startswith("IQ") else thin, p.ftype) for p in offered_presets()}
    args = [[str(src), str(tmp_path / f"{name}.gguf"), ftype] for name, (src, ftype) in jobs.items()]
    done = subprocess.run([sys.executable, "-c", ALL_PRESETS, json.dumps(args)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name, (src, _) in jobs.items():
        info = load_model_info(src)
        out = tmp_path / f"{name}.gguf"
        predicted = target_types(info, resolve_preset(name))
        assert {t.name: t.type_id for t in read_header(out).tensors} == {k: int(v) for k, v in predicted.items()}, name
        size = out.stat().st_size
        assert size <= estimate_output_size(info, resolve_preset(name)) <= size * 1.02 + (2 << 20), name
