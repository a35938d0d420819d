"""End to end: `quantdesk download` against the fake hub, one test per way a download goes wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import gguf_factory as factory

REPO = "someorg/Tiny-Chat-GGUF"


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "QUANTDESK_STALL_TIMEOUT": "2", **(env or {})})


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hubfiles")
    f16 = factory.write_model(d / "Tiny-Chat-F16.gguf", factory.SMALL, "F16", seed=3)  # ~10 MB
    q8 = factory.write_model(d / "Tiny-Chat-Q8_0.gguf", factory.TINY, "F32", seed=4)
    return {"Tiny-Chat-F16.gguf": f16, "Tiny-Chat-Q8_0.gguf": q8}


@pytest.fixture
def hub_repo(fake_hub, model_files):
    fake_hub.add_repo(REPO, {**model_files, "README.md": b"# Tiny chat"})
    return fake_hub


def library_json() -> list[dict]:
    out = run_cli("list", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_download_verifies_and_registers(hub_repo, model_files):
    out = run_cli("download", REPO, "--quant", "F16", "--json")
    assert out.returncode == 0, out.stderr
    (entry,) = json.loads(out.stdout)["files"]
    expected = hub_repo.file(REPO, "Tiny-Chat-F16.gguf")
    assert entry["verified"] is True and entry["sha256"] == expected.sha256 and entry["size"] == expected.size
    assert Path(entry["path"]).read_bytes() == model_files["Tiny-Chat-F16.gguf"].read_bytes()
    (model,) = library_json()
    assert {"name", "repo", "path", "quant", "size", "sha256", "source"} <= set(model)
    assert model["repo"] == REPO and model["quant"] == "F16" and model["source"] == "downloaded"
    assert run_cli("verify", model["name"]).returncode == 0


def test_dropped_connection_resumes_with_range(hub_repo):
    hub_repo.set_fault(REPO, "Tiny-Chat-F16.gguf", drop_after_bytes=3_000_000, times=1)
    out = run_cli("download", REPO, "--quant", "F16", "--json")
    assert out.returncode == 0, out.stderr
    ranges = [r.range for r in hub_repo.requests_for(REPO, "Tiny-Chat-F16.gguf", "GET") if r.range]
    assert ranges and ranges[-1].startswith("bytes=") and not ranges[-1].startswith("bytes=0-")
    size = hub_repo.file(REPO, "Tiny-Chat-F16.gguf").size
    assert hub_repo.bytes_served[(REPO, "Tiny-Chat-F16.gguf")] < size + 1_000_000


def test_killed_process_resumes_and_fetches_only_missing_bytes(hub_repo):
    name = "Tiny-Chat-F16.gguf"
    size = hub_repo.file(REPO, name).size
    hub_repo.set_fault(REPO, name, bytes_per_second=2_000_000, times=1)
    proc = subprocess.Popen([sys.executable, "-m", "quantdesk", "download", REPO, "--quant", "F16"],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = Path(os.environ["QUANTDESK_HOME"]) / "models" / ".partial" / REPO / (name + ".part")
    deadline = time.time() + 30
    while time.time() < deadline and (not partial.exists() or partial.stat().st_size < 2_000_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    have = partial.stat().st_size
    assert 0 < have < size
    time.sleep(0.5)  # let the server notice the dead connection before its log is cleared
    hub_repo.clear_requests()
    out = run_cli("download", REPO, "--quant", "F16", "--json")
    assert out.returncode == 0, out.stderr
    gets = [r for r in hub_repo.requests_for(REPO, name, "GET") if r.status in (200, 206)]
    assert [r.range for r in gets] == [f"bytes={have}-"]
    assert sum(r.body_bytes for r in gets) == size - have  # only the missing bytes
    assert not partial.exists()
    assert json.loads(out.stdout)["files"][0]["sha256"] == hub_repo.file(REPO, name).sha256


def test_corrupt_byte_is_refused_and_nothing_enters_the_library(hub_repo):
    hub_repo.set_fault(REPO, "Tiny-Chat-F16.gguf", corrupt_byte_at=123_456)
    out = run_cli("download", REPO, "--quant", "F16")
    assert out.returncode == 1
    expected = hub_repo.file(REPO, "Tiny-Chat-F16.gguf").sha256
    assert "checksum mismatch" in out.stderr and "Tiny-Chat-F16.gguf" in out.stderr and expected in out.stderr
    assert library_json() == []
    models = Path(os.environ["QUANTDESK_HOME"]) / "models"
    assert not list(models.rglob("*.gguf")) and not list(models.rglob("*.part"))


def test_no_disk_space_is_refused_before_starting(hub_repo):
    hub_repo.set_fault(REPO, "Tiny-Chat-F16.gguf", wrong_size=50 * 2**40)  # 50 TiB advertised
    out = run_cli("download", REPO, "--quant", "F16")
    assert out.returncode == 1 and "not enough disk space" in out.stderr
    assert not hub_repo.requests_for(REPO, "Tiny-Chat-F16.gguf", "GET")


def test_throttled_then_server_errors_are_retried(hub_repo):
    hub_repo.set_fault(REPO, "Tiny-Chat-Q8_0.gguf", statuses=[429, 500, 503], retry_after=0)
    out = run_cli("download", REPO, "--quant", "Q8_0", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"][0]["verified"] is True


def test_stall_is_detected_and_resumed(hub_repo):
    hub_repo.set_fault(REPO, "Tiny-Chat-F16.gguf", stall_after_bytes=1_000_000, stall_seconds=20, times=1)
    t0 = time.time()
    out = run_cli("download", REPO, "--quant", "F16", "--json")
    assert out.returncode == 0, out.stderr
    assert time.time() - t0 < 15  # the 2 s stall timeout fired, not the 20 s stall


def test_unknown_quant_lists_what_exists(hub_repo):
    out = run_cli("download", REPO, "--quant", "Q5_K_M")
    assert out.returncode == 1 and "F16" in out.stderr and "Q8_0" in out.stderr


def test_best_downloads_the_planners_pick(hub_repo):
    out = run_cli("download", REPO, "--best", "--json", "--hardware", "cpu-8gb-laptop")
    assert out.returncode == 0, out.stderr
    assert Path(json.loads(out.stdout)["files"][0]["path"]).name in ("Tiny-Chat-F16.gguf", "Tiny-Chat-Q8_0.gguf")


def test_gated_repo_needs_a_token(fake_hub, model_files):
    fake_hub.add_repo("gated/Secret-GGUF", {"Secret-Q8_0.gguf": model_files["Tiny-Chat-Q8_0.gguf"]},
                      gated=True, token="hf_secret")
    out = run_cli("download", "gated/Secret-GGUF", "--quant", "Q8_0")
    assert out.returncode == 1 and "gated" in out.stderr
    ok = run_cli("download", "gated/Secret-GGUF", "--quant", "Q8_0", env={"HF_TOKEN": "hf_secret"})
    assert ok.returncode == 0, ok.stderr
    assert "hf_secret" not in ok.stdout + ok.stderr


def test_split_model_all_parts_verified(fake_hub, tmp_path):
    parts = {p.name: p for p in factory.write_split_model(tmp_path, "Big-Q4_K_M", parts=3)}
    fake_hub.add_repo("org/Big-GGUF", parts)
    fake_hub.set_fault("org/Big-GGUF", "Big-Q4_K_M-00003-of-00003.gguf", corrupt_byte_at=10)
    bad = run_cli("download", "org/Big-GGUF", "--quant", "Q4_K_M")
    assert bad.returncode == 1 and "00003-of-00003" in bad.stderr
    assert library_json() == []
    fake_hub.clear_faults()
    out = run_cli("download", "org/Big-GGUF", "--quant", "Q4_K_M", "--json")
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)["files"]
    assert len(files) == 3 and all(f["verified"] for f in files)
    assert [f["sha256"] for f in files] == [fake_hub.file("org/Big-GGUF", n).sha256 for n in sorted(parts)]


def test_traversal_names_are_refused():
    from quantdesk.base.errors import QuantDeskError
    from quantdesk.hub.client import check_repo_path

    for bad in ("../evil.gguf", "a/../../evil.gguf", "/etc/passwd", "C:\\x.gguf", "a\\..\\b.gguf", "", "a//b.gguf"):
        with pytest.raises(QuantDeskError):
            check_repo_path(bad)
    assert check_repo_path("sub/dir/Model-Q4_K_M.gguf") == "sub/dir/Model-Q4_K_M.gguf"


def test_library_verify_rm_and_import(hub_repo, model_files, tmp_path):
    assert run_cli("download", REPO, "--quant", "Q8_0").returncode == 0
    (model,) = library_json()
    path = Path(model["path"])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    bad = run_cli("verify", model["name"])
    assert bad.returncode == 1 and "does not match" in bad.stderr
    assert run_cli("rm", model["name"]).returncode == 0
    assert library_json() == [] and not path.exists()
    # import registers in place; a broken file is reported, not imported
    folder = tmp_path / "lmstudio"
    folder.mkdir()
    good = folder / "Good-F16.gguf"
    good.write_bytes(model_files["Tiny-Chat-F16.gguf"].read_bytes())
    (folder / "Broken.gguf").write_bytes(good.read_bytes()[:5000])
    out = run_cli("import", str(folder), "--json")
    assert out.returncode == 0
    result = json.loads(out.stdout)
    assert [m["name"] for m in result["imported"]] == ["Good-F16"] and "Broken.gguf" in result["failed"][0]
    (entry,) = library_json()
    assert entry["source"] == "imported" and entry["path"] == str(good)
    assert run_cli("rm", "Good-F16").returncode == 0 and good.exists()  # imported files stay


def test_a_second_download_of_the_same_file_is_refused_while_the_first_runs(hub_repo):
    """Two writers would append to one partial file; the loser must not put a mixed file in the library."""
    name = "Tiny-Chat-F16.gguf"
    hub_repo.set_fault(REPO, name, bytes_per_second=3_000_000, times=1)
    first = subprocess.Popen([sys.executable, "-m", "quantdesk", "download", REPO, "--quant", "F16", "--json"],
                             env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = Path(os.environ["QUANTDESK_HOME"]) / "models" / ".partial" / REPO / (name + ".part")
    deadline = time.time() + 30
    while time.time() < deadline and (not partial.exists() or partial.stat().st_size < 1_000_000):
        time.sleep(0.05)
    second = run_cli("download", REPO, "--quant", "F16", "--json")
    assert second.returncode == 1 and "already in progress" in second.stderr, second.stderr
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    (model,) = library_json()
    assert model["sha256"] == hub_repo.file(REPO, name).sha256
    assert run_cli("verify", model["name"]).returncode == 0


@pytest.mark.parametrize("delta, what", [(-4096, "sent more"), (4096, "refused bytes")])
def test_a_wrong_advertised_size_is_a_mismatch_and_leaves_nothing(hub_repo, delta, what):
    name = "Tiny-Chat-Q8_0.gguf"
    real = hub_repo.file(REPO, name)
    hub_repo.set_fault(REPO, name, wrong_size=real.size + delta)
    out = run_cli("download", REPO, "--quant", "Q8_0")
    assert out.returncode == 1
    assert "size mismatch" in out.stderr and name in out.stderr and what in out.stderr and real.sha256 in out.stderr
    models = Path(os.environ["QUANTDESK_HOME"]) / "models"
    assert library_json() == [] and not list(models.rglob("*.part")) and not list(models.rglob("*.gguf"))
    hub_repo.clear_faults()
    assert run_cli("download", REPO, "--quant", "Q8_0").returncode == 0  # nothing left behind blocks a retry


def test_the_file_listing_is_retried_after_429_and_503(hub_repo):
    hub_repo.set_fault(REPO, None, statuses=[503, 429], retry_after=0)
    out = run_cli("download", REPO, "--quant", "Q8_0", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"][0]["verified"] is True


def test_an_installed_file_is_rechecked_not_downloaded_again(hub_repo):
    name = "Tiny-Chat-Q8_0.gguf"
    assert run_cli("download", REPO, "--quant", "Q8_0").returncode == 0
    gets = len(hub_repo.requests_for(REPO, name, "GET"))
    again = run_cli("download", REPO, "--quant", "Q8_0", "--json")
    assert again.returncode == 0, again.stderr
    assert len(hub_repo.requests_for(REPO, name, "GET")) == gets
    (entry,) = json.loads(again.stdout)["files"]
    assert entry["verified"] is True and entry["sha256"] == hub_repo.file(REPO, name).sha256
    (model,) = library_json()
    path = Path(model["path"])
    path.write_bytes(b"x" + path.read_bytes()[1:])  # damaged since: downloaded again, not trusted
    fixed = run_cli("download", REPO, "--quant", "Q8_0")
    assert fixed.returncode == 0 and len(hub_repo.requests_for(REPO, name, "GET")) > gets
    assert run_cli("verify", model["name"]).returncode == 0


def test_downloads_add_only_queues_and_another_process_job_is_left_to_it(hub_repo):
    name = "Tiny-Chat-F16.gguf"
    added = run_cli("downloads", "add", "--repo", REPO, "--quant", "F16", "--json")
    assert added.returncode == 0, added.stderr
    assert [j["state"] for j in json.loads(added.stdout)] == ["queued"]
    assert not hub_repo.requests_for(REPO, name, "GET")  # nothing started by a command that then exits
    hub_repo.set_fault(REPO, name, bytes_per_second=3_000_000, times=1)
    runner = subprocess.Popen([sys.executable, "-m", "quantdesk", "downloads", "run"], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = Path(os.environ["QUANTDESK_HOME"]) / "models" / ".partial" / REPO / (name + ".part")
    deadline = time.time() + 30
    while time.time() < deadline and (not partial.exists() or partial.stat().st_size < 1_000_000):
        time.sleep(0.05)
    listed = run_cli("downloads", "--json")  # a second process looking must not re-queue the running job
    assert [j["state"] for j in json.loads(listed.stdout)] == ["downloading"]
    paused = run_cli("downloads", "pause", "1")
    assert paused.returncode == 1 and "running in another QuantDesk" in paused.stderr
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    (job,) = json.loads(run_cli("downloads", "--json").stdout)
    assert job["state"] == "done"
    assert run_cli("verify", job["model"]).returncode == 0


def test_import_of_a_relative_folder_names_a_split_model_once_and_then_as_known(tmp_path, model_files):
    folder = tmp_path / "cache" / "sub"
    folder.mkdir(parents=True)
    single = folder / "Single-F16.gguf"
    single.write_bytes(model_files["Tiny-Chat-F16.gguf"].read_bytes())
    factory.write_split_model(folder, "Split", factory.TINY, parts=3)
    out = subprocess.run([sys.executable, "-m", "quantdesk", "import", "cache", "--json"], capture_output=True,
                         text=True, cwd=tmp_path, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    names = [m["name"] for m in first["imported"]]
    assert sorted(names) == ["Single-F16", "Split"] and first["already"] == [] and first["failed"] == []
    again = subprocess.run([sys.executable, "-m", "quantdesk", "import", "cache"], capture_output=True, text=True,
                           cwd=tmp_path, env=dict(os.environ), timeout=120)
    assert again.returncode == 0 and "imported" not in again.stdout
    assert again.stdout.count("already in the library") == len(names)


def test_a_repo_file_name_that_escapes_the_library_is_refused_end_to_end(fake_hub, model_files, tmp_path):
    evil = "a/../../../evil-Q8_0.gguf"
    fake_hub.add_repo("org/Evil-GGUF", {evil: model_files["Tiny-Chat-Q8_0.gguf"],
                                        "Good-F16.gguf": model_files["Tiny-Chat-F16.gguf"]})
    out = run_cli("download", "org/Evil-GGUF", "--quant", "Q8_0")
    assert out.returncode == 1 and "unsafe file name" in out.stderr, out.stderr
    assert not fake_hub.requests_for("org/Evil-GGUF", evil, "GET")
    home = Path(os.environ["QUANTDESK_HOME"])
    assert not list(home.parent.rglob("evil-Q8_0.gguf")) and library_json() == []
    listed = run_cli("files", "org/Evil-GGUF", "--json", "--hardware", "nvidia-8gb")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert "unsafe file name" in rows["evil-Q8_0.gguf"]["refused"] and "refused" not in rows["Good-F16.gguf"]
    assert run_cli("download", "org/Evil-GGUF", "--quant", "F16").returncode == 0  # the rest of the repo is fine


def test_files_lists_a_repo_whose_headers_cannot_be_read(fake_hub, model_files):
    fake_hub.add_repo("gated/Locked-GGUF", {"Locked-Q8_0.gguf": model_files["Tiny-Chat-Q8_0.gguf"]}, gated=True,
                      token="hf_x")
    out = run_cli("files", "gated/Locked-GGUF")
    assert out.returncode == 0, out.stderr
    assert "Locked-Q8_0.gguf" in out.stdout and "not planned" in out.stdout
    assert fake_hub.file("gated/Locked-GGUF", "Locked-Q8_0.gguf").sha256 in out.stdout


def test_a_trickling_connection_is_dropped_and_resumed(hub_repo):
    """Still delivering, but far too slowly: as stuck as a silent connection (the stall timeout is 2 s here)."""
    name = "Tiny-Chat-F16.gguf"
    hub_repo.set_fault(REPO, name, bytes_per_second=10_000, times=1)  # 10 MB would take ~17 minutes
    t0 = time.time()
    out = run_cli("download", REPO, "--quant", "F16", "--json")
    assert out.returncode == 0, out.stderr
    assert time.time() - t0 < 30
    assert "slowed to" in out.stderr
    ranges = [r.range for r in hub_repo.requests_for(REPO, name, "GET")]
    assert len(ranges) >= 2 and ranges[-1] and not ranges[-1].startswith("bytes=0-")


@pytest.mark.parametrize("what", ["html", "truncated"])
def test_a_file_that_matches_its_hash_but_is_not_a_model_never_enters_the_library(fake_hub, model_files, what):
    """The hub's hash only proves the bytes are the hub's: an HTML page named .gguf, or a truncated
    upload, is refused after the hash with the reason, and nothing is left behind."""
    real = model_files["Tiny-Chat-F16.gguf"].read_bytes()
    content = (b"<html><body>Rate limited</body></html>" * 300_000 if what == "html"
               else real[: len(real) // 2])  # both above the LFS threshold: the hub lists a SHA-256
    fake_hub.add_repo("someorg/Broken-GGUF", {"x-Q4_K_M.gguf": content})
    out = run_cli("download", "someorg/Broken-GGUF", "--quant", "Q4_K_M")
    assert out.returncode == 1
    assert "matched the hub's SHA-256 but is not a usable GGUF model" in out.stderr
    assert ("not a GGUF file" if what == "html" else "truncated") in out.stderr
    assert library_json() == []
    models = Path(os.environ["QUANTDESK_HOME"]) / "models"
    assert not list(models.rglob("*.gguf")) and not list(models.rglob("*.gguf.part*"))


def test_a_server_that_ignores_range_and_keeps_dropping_ends_in_one_sentence(hub_repo):
    """Issue 15.3 at the CLI: it used to loop forever (hundreds of GETs, gigabytes for a small file)."""
    name = "Tiny-Chat-F16.gguf"
    hub_repo.set_fault(REPO, name, ignore_range=True, drop_after_bytes=3_000_000)
    out = run_cli("download", REPO, "--quant", "F16", env={"QUANTDESK_DOWNLOAD_TRIES": "3"})
    assert out.returncode == 1
    assert "ignores resume requests (Range)" in out.stderr and "the partial file is kept" in out.stderr
    gets = [r for r in hub_repo.requests_for(REPO, name, "GET") if r.status in (200, 206)]
    assert len(gets) <= 5 and hub_repo.bytes_served[(REPO, name)] <= 5 * 3_000_000
    partial = Path(os.environ["QUANTDESK_HOME"]) / "models" / ".partial" / REPO / (name + ".part")
    assert partial.exists()
