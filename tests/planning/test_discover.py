"""What Discover asks of the core: search with the catalog fallback, plan any reference, re-plan
from headers already read, the file a best-fit download fetches, and the quantize suggestion."""

from __future__ import annotations

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.catalog.offline import load_catalog
from quantdesk.catalog.search import search
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.hub.errors import HubUnreachable
from quantdesk.library.index import Library
from quantdesk.planning.discover import download_entry, installed, quantize_suggestion
from quantdesk.planning.plan import kind_of, plan_local, plan_named, replan
from tests.support import gguf_factory as factory

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there
REPO = "bartowski/Mid-8B-GGUF"


@pytest.fixture
def hub_repo(fake_hub, tmp_path):
    factory.add_header_only_repo(fake_hub, REPO, tmp_path, {
        "Mid-8B-Q8_0.gguf": (factory.LLAMA3_8B, "Q8_0"), "Mid-8B-Q4_K_M.gguf": (factory.LLAMA3_8B, "Q4_K_M")},
        downloads=500)
    return fake_hub


def test_search_says_which_source_answered(hub_repo, monkeypatch):
    found = search("Mid")
    assert found.source == "hub" and found.label == "Hugging Face hub" and found.reason is None
    assert [r.repo_id for r in found.rows] == [REPO] and found.rows[0].publisher == "known quantizer"
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    offline = search("llama 3.2")
    assert offline.source == "catalog" and "cannot reach the hub" in offline.reason
    assert offline.label == f"Bundled catalog (offline, snapshot {load_catalog().snapshot})"
    assert offline.rows and all(r.params for r in offline.rows)
    assert search("qwen3", offline=True).reason == "offline mode"


def test_kind_of_what_was_typed(llama8b_q4):
    assert kind_of(str(llama8b_q4)) == "file" and kind_of("/nowhere/x.GGUF") == "file"
    assert kind_of("bartowski/Llama-3.2-3B-Instruct-GGUF") == "repo"
    assert kind_of("llama 3.2 instruct") == "search" and kind_of("") == "search"


def test_plan_ref_file_hub_and_catalog_fallback(hub_repo, llama8b_q4, monkeypatch):
    hw = load_hardware_spec("nvidia-8gb")
    assert plan_named(str(llama8b_q4), hw).source == "file"
    remote = plan_named(REPO, hw)
    assert remote.source == "hub" and {o.quant for o in remote.options} == {"Q8_0", "Q4_K_M"}
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    catalog = plan_named("QuantFactory/Meta-Llama-3-8B-Instruct-GGUF", hw)
    assert catalog.source == "catalog" and any("offline" in n for n in catalog.notes)
    with pytest.raises(HubUnreachable):
        plan_named("someone/not-in-the-catalog", hw)
    with pytest.raises(QuantDeskError, match="neither a .gguf file nor a hub repo id"):
        plan_named("just some words", hw)


def test_replan_reuses_the_headers_and_equals_a_fresh_plan(hub_repo, llama8b_q4):
    hw = load_hardware_spec("nvidia-8gb")
    local = plan_local(llama8b_q4, hw, 4096)
    assert replan(local, hw, 32768).to_json() == plan_local(llama8b_q4, hw, 32768).to_json()
    remote = plan_named(REPO, hw, 4096)
    hub_repo.clear_requests()
    longer = replan(remote, hw, 32768, "q8_0")
    assert hub_repo.requests == []  # no network: the slider re-plans from the headers already read
    assert longer.source == "hub" and longer.ctx == 32768 and longer.kv_type == "q8_0"
    by_quant = {o.quant: o for o in remote.options}
    assert all(o.memory.kv_cache > by_quant[o.quant].memory.kv_cache for o in longer.options)
    assert replan(remote, load_hardware_spec("cpu-4gb"), 4096).recommended is None


def test_download_entry_is_the_hubs_record_of_the_pick(hub_repo):
    plan = plan_named(REPO, load_hardware_spec("nvidia-8gb"))
    assert plan.recommended.quant == "Q4_K_M"
    entry = download_entry(plan)
    assert entry.first == "Mid-8B-Q4_K_M.gguf"
    assert entry.parts[0].sha256 == hub_repo.file(REPO, "Mid-8B-Q4_K_M.gguf").sha256
    assert download_entry(plan, plan.options[0]).quant == plan.options[0].quant
    assert installed(REPO, entry) is None
    from quantdesk.library.download import final_path

    path = str(final_path(REPO, entry.first))
    Library().add(files=[{"path": path, "size": entry.size, "sha256": entry.parts[0].sha256}], source="downloaded",
                  repo=REPO, quant=entry.quant)
    assert installed(REPO, entry).path == path
    with pytest.raises(QuantDeskError, match="no file of"):
        download_entry(replan(plan, load_hardware_spec("cpu-4gb"), 4096))


def test_quantize_suggestion(tmp_path, llama8b_q4):
    f16 = factory.write_header_only(tmp_path / "L8B-F16.gguf", factory.LLAMA3_8B, "F16")
    offer = quantize_suggestion(plan_local(f16, load_hardware_spec("cpu-16gb-laptop")))
    assert offer is not None and offer.type == "Q4_K_M" and offer.source == str(f16)
    assert "quantize locally to Q4_K_M" in offer.why
    # nothing runs here and no quant would either: still offered, the type left to the user
    hopeless = quantize_suggestion(plan_local(f16, load_hardware_spec("cpu-4gb")))
    assert hopeless is not None and hopeless.type == "" and "full precision" in hopeless.why
    assert quantize_suggestion(plan_local(llama8b_q4, load_hardware_spec("cpu-4gb"))) is None
