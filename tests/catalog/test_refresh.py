"""The offline catalog refreshed from the (fake) hub: exact sizes and hashes kept for the next offline run."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from quantdesk.base import files as atomic_files
from quantdesk.catalog.offline import load_catalog
from quantdesk.catalog.refresh import list_and_remember, refresh_catalog
from quantdesk.catalog.refresh_store import read_refresh, refresh_due, refresh_path
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.hub.client import list_repo_ggufs
from quantdesk.hub.errors import HubUnreachable
from quantdesk.planning.plan import plan_catalog_repo
from tests.cli.test_cli import run_cli
from tests.conftest import CATALOG_REPO as REPO


@pytest.fixture(autouse=True)
def _fresh_catalog():
    load_catalog.cache_clear()
    yield
    load_catalog.cache_clear()


def test_refresh_lays_the_hubs_files_over_the_snapshot_and_says_so(hub_with_catalog_repo, monkeypatch):
    bundled = load_catalog()
    assert bundled.refreshed_repos == 0 and "refreshed" not in bundled.origin()
    assert refresh_due()
    result = refresh_catalog([REPO, "nobody/Not-There-GGUF"])
    # the fake hub is not huggingface.co: a repo it never had is absent from it, not gone
    assert result.refreshed == [REPO] and result.absent == ["nobody/Not-There-GGUF"] and not result.gone
    assert not result.failed
    hub_files = {e.first: e for e in list_repo_ggufs(REPO)}
    model = load_catalog().find(REPO)
    assert model.hub_status == "ok"
    assert {f.path for f in model.files} == set(hub_files)
    for f in model.files:
        assert f.size == hub_files[f.path].size and f.sha256 == hub_files[f.path].parts[0].sha256
        assert f.confidence == "hub"
    catalog = load_catalog()
    assert catalog.refreshed_repos == 1 and "refreshed from the hub" in catalog.origin()
    assert not refresh_due()
    # offline afterwards: the remembered files plan, with exact sizes (no "~ estimated" note)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    plan = plan_catalog_repo(REPO, load_hardware_spec("cpu-8gb-laptop"))
    assert {o.file for o in plan.options} == set(hub_files)
    assert not any("estimated" in n for n in plan.notes)


def test_an_unreachable_hub_changes_nothing(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubUnreachable):
        refresh_catalog()
    assert not refresh_path().exists() and load_catalog().refreshed_repos == 0


def test_a_listing_while_online_refreshes_that_repo_for_free(hub_with_catalog_repo):
    list_and_remember(REPO)
    assert read_refresh()["repos"][REPO]["status"] == "ok"
    assert load_catalog().find(REPO).hub_status == "ok"
    assert refresh_due()  # one repo is not a full refresh


def test_a_damaged_refresh_file_means_the_bundled_catalog(tmp_path):
    refresh_path().write_text("{half a file")
    catalog = load_catalog()
    assert catalog.refreshed_repos == 0 and len(catalog.models) > 30


def test_refresh_is_due_again_after_a_week(hub_with_catalog_repo):
    refresh_catalog([REPO])
    data = read_refresh()
    data["refreshed_at"] = (datetime.now(timezone.utc) - timedelta(days=8)).isoformat()
    refresh_path().write_text(json.dumps(data))
    assert refresh_due() and not refresh_due(max_age_days=30)


def test_catalog_verb_refreshes_every_repo_and_reports_which_catalog_is_shown(hub_with_catalog_repo):
    out = run_cli("catalog", "--json")
    assert out.returncode == 0, out.stderr
    before = json.loads(out.stdout)
    assert before["refreshed_repos"] == 0 and before["refresh_due"] and before["repos"] > 30
    out = run_cli("catalog", "refresh", "--json")
    assert out.returncode == 0, out.stderr
    after = json.loads(out.stdout)
    assert after["refresh"]["refreshed"] == [REPO]
    assert len(after["refresh"]["absent"]) == after["repos"] - 1  # the fake hub has only one of them
    assert after["refreshed_repos"] == 1 and not after["refresh_due"] and "refreshed from the hub" in after["origin"]
    out = run_cli("files", REPO, "--offline", "--json")
    assert out.returncode == 0 and "refreshed from the hub" in out.stderr


def test_catalog_refresh_offline_is_one_clear_sentence(monkeypatch):
    out = run_cli("catalog", "refresh", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert out.returncode != 0 and "cannot reach the hub" in out.stderr and "Traceback" not in out.stderr


def test_module_keeps_catalog_writes_atomic(hub_with_catalog_repo, monkeypatch):
    refresh_catalog([REPO])
    good = refresh_path().read_text()

    def crash(*_a, **_k):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic_files.os, "replace", crash)
    with pytest.raises(OSError):
        refresh_catalog([REPO])
    assert refresh_path().read_text() == good
    assert [p.name for p in refresh_path().parent.glob("catalog-refresh*")] == [refresh_path().name]



def test_a_repo_an_endpoint_listed_before_and_no_longer_has_is_gone(hub_with_catalog_repo):
    assert refresh_catalog([REPO]).refreshed == [REPO]
    hub_with_catalog_repo.remove_repo(REPO)
    result = refresh_catalog([REPO])
    assert result.gone == [REPO] and load_catalog().find(REPO).hub_status == "gone"


def test_a_mirror_without_the_catalogs_repos_still_leaves_good_picks(fake_hub):
    """A mirror (HF_ENDPOINT) that has none of the catalog's repos: nothing is marked gone, the
    picks are the same as offline, and the note says what happened."""
    from quantdesk.planning.picks import machine_picks

    hw = load_hardware_spec("nvidia-8gb")
    offline = [p.repo for p in machine_picks(hw)]
    result = refresh_catalog()
    assert not result.gone and len(result.absent) == len(load_catalog().models)
    assert [p.repo for p in machine_picks(hw)] == offline and len(offline) == 3
    assert "not on " + fake_hub.endpoint in load_catalog().mirror_gaps()
