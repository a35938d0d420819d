"""The bundled offline catalog: real, cited entries, and plans that agree with real headers."""

from __future__ import annotations

import json
import re

from quantdesk.catalog.offline import load_catalog, model_info_for
from quantdesk.gguf.model_info import load_model_info
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.planning.fit import plan_model
from quantdesk.planning.plan import plan_catalog_repo
from tests.cli.test_cli import run_cli


def test_catalog_spans_small_to_70b_with_cited_hashes():
    cat = load_catalog()
    assert len(cat.models) >= 25 and cat.snapshot
    params = [m.params for m in cat.models]
    assert min(params) < 1e9 and max(params) > 65e9
    for m in cat.models:
        assert m.arch["n_layer"] > 0 and m.arch["n_head"] % m.arch["n_head_kv"] == 0 and m.arch_source
        for f in m.files:
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
            assert f.sha256 or f.size, f"{m.repo}/{f.path} carries neither hash nor size"
            assert f.source and f.source.startswith("https://")
    assert sum(1 for m in cat.models for f in m.files if f.sha256) >= 100


def test_search_matches_every_word_smallest_first():
    hits = load_catalog().search("QWEN3 8b")
    assert hits and all("qwen3" in h.repo.lower() and "8b" in h.repo.lower() for h in hits)
    sizes = [h.params for h in load_catalog().search("llama")]
    assert sizes == sorted(sizes)


def test_plan_from_catalog_shape_agrees_with_a_real_header(llama8b_q4):
    """Catalog Llama-3-8B Q4_K_M (published shape, real size) vs our header-only file of the same shape."""
    cat = load_catalog()
    model = cat.find("lmstudio-community/Meta-Llama-3-8B-Instruct-GGUF")
    f = next(x for x in model.files if x.quant == "Q4_K_M")
    synthetic = model_info_for(model, f)
    assert synthetic.weight_bytes == f.size or abs(synthetic.weight_bytes - f.size) < 1 << 20
    real = load_model_info(llama8b_q4)
    for preset in ("nvidia-6gb", "cpu-16gb-laptop"):
        hw = load_hardware_spec(preset)
        a, b = plan_model(synthetic, hw, 8192), plan_model(real, hw, 8192)
        assert a.memory.kv_cache == b.memory.kv_cache
        assert abs(a.gpu_layers - b.gpu_layers) <= 1 and a.verdict == b.verdict
        assert abs((a.vram + a.ram) - (b.vram + b.ram)) / (b.vram + b.ram) < 0.05


def test_catalog_plan_recommends_and_says_it_is_offline():
    plan = plan_catalog_repo("QuantFactory/Meta-Llama-3-8B-Instruct-GGUF", load_hardware_spec("nvidia-8gb"))
    assert plan.recommended is not None and len(plan.options) > 5
    assert any("offline" in n for n in plan.notes)


def test_cli_falls_back_to_the_catalog_when_the_hub_is_unreachable():
    env = {"HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    out = run_cli("search", "llama 3.2", "--fits", "--hardware", "nvidia-8gb", "--json", env=env)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows and all(r["source"] == "catalog" for r in rows) and rows[0]["best"]["verdict"] == "full_gpu"
    assert "Offline" in out.stderr and "bundled catalog" in out.stderr
    files = run_cli("files", "bartowski/Llama-3.2-3B-Instruct-GGUF", "--hardware", "cpu-8gb-laptop", "--json",
                    env=env)
    assert files.returncode == 0, files.stderr
    data = json.loads(files.stdout)
    assert all(r["source"] == "catalog" and r["plan"]["verdict"] for r in data)
    unknown = run_cli("files", "someone/not-in-catalog", "--offline")
    assert unknown.returncode == 1 and "not in the offline catalog" in unknown.stderr
