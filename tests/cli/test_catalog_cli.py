"""`search` and `files` against the fake hub with header-only models of real shapes."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import run_cli
from tests.support import gguf_factory as factory


@pytest.fixture
def catalog(fake_hub, tmp_path):
    def repo(repo_id, shape, quants, downloads):
        files = {f"{repo_id.split('/')[1].replace('-GGUF', '')}-{q}.gguf": (shape, q) for q in quants}
        factory.add_header_only_repo(fake_hub, repo_id, tmp_path, files, downloads=downloads)

    repo("bartowski/Big-70B-GGUF", factory.LLAMA3_70B, ["Q4_K_M", "Q2_K"], downloads=900)
    repo("someone/Mid-8B-GGUF", factory.LLAMA3_8B, ["Q8_0", "Q4_K_M"], downloads=500)
    repo("Qwen/Small-0.5B-GGUF", factory.QWEN25_05B, ["Q8_0"], downloads=100)
    return fake_hub


def test_search_sorted_by_downloads_with_publishers(catalog):
    out = run_cli("search", "GGUF", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["repo"] for r in rows] == ["bartowski/Big-70B-GGUF", "someone/Mid-8B-GGUF", "Qwen/Small-0.5B-GGUF"]
    assert rows[0]["publisher"] == "known quantizer" and rows[2]["publisher"] == "model author"
    assert rows[1]["publisher"] is None


def test_search_fits_ranks_what_runs_here(catalog):
    out = run_cli("search", "GGUF", "--fits", "--json", "--hardware", "nvidia-12gb")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    # the 8B runs fully on a 12 GB card at better quality than the 0.5B's; the 70B only partially or not at all
    assert rows[0]["repo"] in ("someone/Mid-8B-GGUF", "Qwen/Small-0.5B-GGUF")
    assert rows[0]["best"]["verdict"] == "full_gpu"
    assert rows[-1]["repo"] == "bartowski/Big-70B-GGUF"


def test_files_with_verdicts(catalog):
    out = run_cli("files", "someone/Mid-8B-GGUF", "--json", "--hardware", "nvidia-8gb")
    assert out.returncode == 0, out.stderr
    rows = {r["quant"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"Q8_0", "Q4_K_M"}
    assert rows["Q4_K_M"]["plan"]["verdict"] == "full_gpu" and rows["Q8_0"]["plan"]["verdict"] == "partial"
    assert rows["Q4_K_M"]["parts"][0]["sha256"] == catalog.file("someone/Mid-8B-GGUF", "Mid-8B-Q4_K_M.gguf").sha256
    assert rows["Q4_K_M"]["size"] > 4 * 2**30  # the advertised full size, not the served header


def test_offline_search_sees_the_whole_catalog_and_limit_keeps_the_best(tmp_path):
    from quantdesk.catalog.offline import load_catalog
    from quantdesk.catalog.search import search

    found = search("", offline=True)  # what the Discover page lists offline
    assert len(found.rows) == len(load_catalog().models) > 30
    out = run_cli("search", "", "--offline", "--fits", "--limit", "3", "--json", "--hardware", "nvidia-24gb")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 3 and all(r["best"]["params"] > 20e9 for r in rows)  # 32B-class, not the 30 smallest
    plain = json.loads(run_cli("search", "", "--offline", "--limit", "5", "--json").stdout)
    assert len(plain) == 5


def test_plan_of_a_repo_works_offline_from_the_catalog_like_discover():
    """The one planning entry: `plan REPO` with the hub unreachable falls back to the catalog's shape (it
    used to fail with "cannot reach the hub" while Discover planned the same repo)."""
    out = run_cli("plan", "QuantFactory/Meta-Llama-3-8B-Instruct-GGUF", "--json", "--hardware", "nvidia-8gb",
                  env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert any(o["recommended"] and o["verdict"] == "full_gpu" for o in plan["options"])
    assert any("offline: planned from the bundled catalog" in note for note in plan["notes"])
    missing = run_cli("plan", "someone/not-in-the-catalog", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert missing.returncode == 1 and "cannot reach the hub" in missing.stderr
