"""Proves the real ``huggingface_hub`` client works unchanged against ``FakeHub``.

Every other download/search test relies on the fake being faithful, so these tests drive it only through the
public client API (``HfApi``, ``hf_hub_download``, ``get_hf_file_metadata``, the client's shared HTTP session) and
check each fault switch is observable from the client side.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    HfApi,
    constants,
    get_hf_file_metadata,
    get_session,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

try:
    from tests.support.fake_hub import FakeHub
except ImportError:  # tests/ not importable as a package (pytest run from another rootdir)
    from support.fake_hub import FakeHub  # type: ignore[no-redef]

GGUF = "model-Q4_K_M.gguf"
REPO = "TheOrg/Tiny-Llama-GGUF"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _isolated_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the client away from the user's token, cache and offline setting (constants are read at import)."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def gguf_bytes() -> bytes:
    return os.urandom(200_000)


@pytest.fixture
def hub(gguf_bytes: bytes) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo(
            REPO,
            {GGUF: gguf_bytes, "README.md": b"# Tiny llama\n", "config.json": b'{"a": 1}', "extra/notes.txt": b"n"},
            downloads=500,
            likes=7,
            last_modified="2024-05-01T10:00:00.000Z",
            gguf={"total": 1_100_000_000, "architecture": "llama", "context_length": 2048},
        )
        fake.add_repo("TheOrg/Big-Llama-GGUF", {"big-Q8_0.gguf": b"\0" * 64}, downloads=9000, likes=2)
        fake.add_repo("Other/llama-safetensors", {"model.safetensors": b"st"}, downloads=99_999, tags=("safetensors",))
        fake.add_repo("Other/qwen-GGUF", {"q.gguf": b"q"}, downloads=100_000)
        yield fake


@pytest.fixture
def api(hub: FakeHub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=False)


def _download(hub: FakeHub, tmp_path: Path, filename: str = GGUF, repo_id: str = REPO, **kwargs) -> Path:
    kwargs.setdefault("token", False)
    path = hf_hub_download(repo_id, filename, cache_dir=tmp_path / "cache", endpoint=hub.endpoint, **kwargs)
    return Path(path)


# ---------------------------------------------------------------------------------------------------------------------
# Search and metadata
# ---------------------------------------------------------------------------------------------------------------------


def test_list_models_search_filter_sort(api: HfApi) -> None:
    models = list(api.list_models(search="llama", filter="gguf", sort="downloads"))
    assert [m.id for m in models] == ["TheOrg/Big-Llama-GGUF", REPO]
    tiny = models[1]
    assert tiny.author == "TheOrg" and tiny.downloads == 500 and tiny.likes == 7
    assert "gguf" in (tiny.tags or []) and tiny.library_name == "gguf" and tiny.gated is False
    assert tiny.last_modified is not None and tiny.last_modified.year == 2024
    assert tiny.siblings is None  # only with full/expand, like the Hub

    assert [m.id for m in api.list_models(filter="gguf", sort="likes", limit=1)] == [REPO]
    assert [m.id for m in api.list_models(author="Other", filter="gguf")] == ["Other/qwen-GGUF"]


def test_list_models_full_expand_and_pagination(gguf_bytes: bytes) -> None:
    with FakeHub(page_size=2) as hub:
        for i in range(5):
            hub.add_repo(f"org/m{i}-GGUF", {"m.gguf": b"x"}, downloads=i)
        api = HfApi(endpoint=hub.endpoint, token=False)
        listed = list(api.list_models(sort="downloads", full=True))
        assert [m.id for m in listed] == [f"org/m{i}-GGUF" for i in (4, 3, 2, 1, 0)]
        assert [s.rfilename for s in listed[0].siblings or []] == ["m.gguf"]
        assert sum(1 for r in hub.requests if "cursor" in r.query) == 2  # followed Link: rel="next"

        expanded = next(iter(api.list_models(expand=["downloads", "siblings"], limit=1)))
        assert expanded.downloads is not None and expanded.siblings is not None
        assert expanded.likes is None  # expand returns only what was asked


def test_model_info_files_metadata(api: HfApi, hub: FakeHub, gguf_bytes: bytes) -> None:
    info = api.model_info(REPO, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == {GGUF, "README.md", "config.json", "extra/notes.txt"}
    gguf = siblings[GGUF]
    assert gguf.size == len(gguf_bytes)
    assert gguf.lfs is not None and gguf.lfs.sha256 == _sha256(gguf_bytes) and gguf.lfs.size == len(gguf_bytes)
    assert siblings["README.md"].lfs is None and siblings["README.md"].blob_id == hub.file(REPO, "README.md").blob_id
    assert info.sha == hub.commit(REPO)
    assert info.gguf == {"total": 1_100_000_000, "architecture": "llama", "context_length": 2048}

    pinned = api.model_info(REPO, revision=hub.commit(REPO))
    assert pinned.sha == info.sha and [s.size for s in pinned.siblings or []] == [None] * 4


def test_list_repo_tree(api: HfApi, gguf_bytes: bytes) -> None:
    top = list(api.list_repo_tree(REPO))
    assert {e.path for e in top} == {GGUF, "README.md", "config.json", "extra"}
    assert isinstance(next(e for e in top if e.path == "extra"), RepoFolder)

    everything = {e.path: e for e in api.list_repo_tree(REPO, recursive=True)}
    gguf = everything[GGUF]
    assert isinstance(gguf, RepoFile) and gguf.lfs is not None
    assert gguf.size == len(gguf_bytes) and gguf.lfs.sha256 == _sha256(gguf_bytes)
    assert "extra/notes.txt" in everything

    sub = list(api.list_repo_tree(REPO, path_in_repo="extra", expand=True))
    assert [e.path for e in sub] == ["extra/notes.txt"]
    assert sub[0].last_commit is not None and sub[0].security is not None


def test_get_paths_info(api: HfApi, gguf_bytes: bytes) -> None:
    infos = api.get_paths_info(REPO, [GGUF, "extra", "does-not-exist.bin"])
    by_path = {i.path: i for i in infos}
    assert set(by_path) == {GGUF, "extra"}  # missing paths are silently skipped, like the Hub
    gguf = by_path[GGUF]
    assert isinstance(gguf, RepoFile) and gguf.lfs is not None and gguf.lfs.sha256 == _sha256(gguf_bytes)


def test_whoami(hub: FakeHub) -> None:
    hub.extra_tokens.add("hf_user")
    assert HfApi(endpoint=hub.endpoint).whoami(token="hf_user")["name"] == "fake-user"


# ---------------------------------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------------------------------


def test_hf_hub_download_lfs_follows_cdn_redirect(hub: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    path = _download(hub, tmp_path, token="hf_anything")
    assert path.read_bytes() == gguf_bytes
    assert path.resolve().name == _sha256(gguf_bytes)  # blob is named after the sha256 (X-Linked-Etag)

    head, get = hub.requests_for(REPO, GGUF)
    assert (head.method, head.server, head.status) == ("HEAD", "hub", 302)
    assert (get.method, get.server, get.status) == ("GET", "cdn", 200)
    assert "Authorization" in head.headers and "Authorization" not in get.headers  # token never reaches the CDN
    assert hub.bytes_served[(REPO, GGUF)] == len(gguf_bytes)


def test_hf_hub_download_regular_file(hub: FakeHub, tmp_path: Path) -> None:
    path = _download(hub, tmp_path, "config.json")
    assert path.read_bytes() == b'{"a": 1}'
    assert path.resolve().name == hub.file(REPO, "config.json").blob_id  # git blob sha1 as ETag
    assert [(r.method, r.status) for r in hub.requests_for(REPO, "config.json")] == [("HEAD", 200), ("GET", 200)]


def test_snapshot_download_and_existence_checks(hub: FakeHub, api: HfApi, tmp_path: Path) -> None:
    folder = snapshot_download(
        REPO, cache_dir=tmp_path / "cache", endpoint=hub.endpoint, token=False, allow_patterns=["*.gguf", "*.md"]
    )
    assert sorted(p.name for p in Path(folder).iterdir()) == ["README.md", GGUF]
    assert api.file_exists(REPO, GGUF) and not api.file_exists(REPO, "nope.gguf")
    assert api.repo_exists(REPO) and not api.repo_exists("nobody/nothing")


def test_hf_endpoint_env_var_in_fresh_process(hub: FakeHub, tmp_path: Path) -> None:
    """HF_ENDPOINT is read when huggingface_hub is imported, so prove it in a new interpreter."""
    code = (
        "import sys; from huggingface_hub import HfApi, hf_hub_download;"
        "print(','.join(m.id for m in HfApi().list_models(search='Tiny')));"
        f"print(open(hf_hub_download({REPO!r}, 'config.json', cache_dir=sys.argv[1]), 'rb').read().decode())"
    )
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "home")}
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [REPO, '{"a": 1}']


def test_hf_hub_download_disk_backed_large_file(tmp_path: Path) -> None:
    source = tmp_path / "weights.dat"
    source.write_bytes(os.urandom(11 * 1024 * 1024))  # over the LFS threshold despite the extension
    with FakeHub() as hub:
        hub.add_repo("org/disk", {"weights.dat": source})
        assert hub.file("org/disk", "weights.dat").lfs
        path = _download(hub, tmp_path, "weights.dat", repo_id="org/disk")
        assert _sha256(path.read_bytes()) == _sha256(source.read_bytes())


def test_same_origin_lfs_mode(tmp_path: Path, gguf_bytes: bytes) -> None:
    with FakeHub(separate_cdn=False) as hub:
        hub.add_repo(REPO, {GGUF: gguf_bytes})
        meta = get_hf_file_metadata(hub.resolve_url(REPO, GGUF), token=False)
        assert meta.location.startswith(f"{hub.endpoint}/_lfs/") and meta.etag == _sha256(gguf_bytes)
        assert _download(hub, tmp_path).read_bytes() == gguf_bytes


def test_get_hf_file_metadata(hub: FakeHub, gguf_bytes: bytes) -> None:
    meta = get_hf_file_metadata(hub.resolve_url(REPO, GGUF), token=False)
    assert meta.etag == _sha256(gguf_bytes)
    assert meta.size == len(gguf_bytes)
    assert meta.commit_hash == hub.commit(REPO)
    assert meta.location.startswith(f"{hub.cdn_endpoint}/_lfs/{_sha256(gguf_bytes)}")

    small = get_hf_file_metadata(hub.resolve_url(REPO, "README.md"), token=False)
    assert small.etag == hub.file(REPO, "README.md").blob_id and small.size == len(b"# Tiny llama\n")


def test_range_requests_with_client_session(hub: FakeHub, gguf_bytes: bytes) -> None:
    session = get_session()
    url = hub.resolve_url(REPO, GGUF)
    size = len(gguf_bytes)

    r = session.get(url, headers={"Range": "bytes=10-19"})  # follows the 302, keeping Range
    assert r.status_code == 206 and r.content == gguf_bytes[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{size}"

    r = session.get(url, headers={"Range": f"bytes={size - 100}-"})
    assert r.status_code == 206 and r.content == gguf_bytes[-100:]
    r = session.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == gguf_bytes[-5:]

    r = session.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"

    assert [r.range for r in hub.requests_for(REPO, GGUF) if r.server == "cdn"][0] == "bytes=10-19"


# ---------------------------------------------------------------------------------------------------------------------
# Auth and errors
# ---------------------------------------------------------------------------------------------------------------------


def test_gated_repo_needs_the_right_token(hub: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    hub.add_repo("meta/gated-GGUF", {GGUF: gguf_bytes}, gated=True, token="hf_good")
    api = HfApi(endpoint=hub.endpoint, token=False)
    assert api.model_info("meta/gated-GGUF").gated == "manual"  # metadata stays public, like the Hub

    with pytest.raises(GatedRepoError) as anonymous:
        _download(hub, tmp_path, repo_id="meta/gated-GGUF")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong:
        _download(hub, tmp_path, repo_id="meta/gated-GGUF", token="hf_bad")
    assert wrong.value.response.status_code == 403

    assert _download(hub, tmp_path, repo_id="meta/gated-GGUF", token="hf_good").read_bytes() == gguf_bytes


def test_private_repo_is_hidden_without_token(hub: FakeHub) -> None:
    hub.add_repo("me/private-GGUF", {"p.gguf": b"p"}, private=True, token="hf_mine")
    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError) as err:
        anonymous.model_info("me/private-GGUF")
    assert err.value.response.status_code == 401
    assert "me/private-GGUF" not in [m.id for m in anonymous.list_models(search="private")]
    owner = HfApi(endpoint=hub.endpoint, token="hf_mine")
    assert owner.model_info("me/private-GGUF").private is True
    assert [m.id for m in owner.list_models(search="private")] == ["me/private-GGUF"]


def test_missing_repo_entry_and_revision(api: HfApi, hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        _download(hub, tmp_path, repo_id="nobody/nothing")
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        _download(hub, tmp_path, "missing.gguf")
    assert isinstance(missing.value, EntryNotFoundError) and missing.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")


# ---------------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------------


def test_fault_drop_cuts_a_plain_stream_once(hub: FakeHub, gguf_bytes: bytes) -> None:
    fault = hub.set_fault(REPO, GGUF, drop_after_bytes=1000, times=1)
    received = bytearray()
    with pytest.raises(httpx2.RemoteProtocolError):
        with get_session().stream("GET", hub.resolve_url(REPO, GGUF)) as response:
            assert response.headers["Content-Length"] == str(len(gguf_bytes))
            for chunk in response.iter_bytes():
                received += chunk
    assert bytes(received) == gguf_bytes[:1000] and fault.triggered == 1
    assert get_session().get(hub.resolve_url(REPO, GGUF)).content == gguf_bytes  # `times=1`: next one is whole


def test_fault_drop_then_client_resumes_with_range(hub: FakeHub, tmp_path: Path) -> None:
    # The client writes in 10 MiB chunks (constants.DOWNLOAD_CHUNK_SIZE) and resumes from the last *whole* chunk:
    # bytes received after it are thrown away and fetched again with `Range: bytes=<written>-`.
    data = os.urandom(12 * 1024 * 1024)
    hub.add_repo("org/resume-GGUF", {"r.gguf": data})
    hub.set_fault("org/resume-GGUF", "r.gguf", drop_after_bytes=11 * 1024 * 1024, times=1)
    path = _download(hub, tmp_path, "r.gguf", repo_id="org/resume-GGUF")  # http_get retries after ~1 s
    assert _sha256(path.read_bytes()) == _sha256(data)
    gets = hub.requests_for("org/resume-GGUF", "r.gguf", method="GET")
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    assert [(r.range, r.status) for r in gets] == [(None, 200), (f"bytes={chunk}-", 206)]
    assert [r.body_bytes for r in gets] == [11 * 1024 * 1024, len(data) - chunk]
    assert hub.bytes_served[("org/resume-GGUF", "r.gguf")] == len(data) + 11 * 1024 * 1024 - chunk


def test_fault_corrupt_byte_keeps_advertised_hash(hub: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    hub.set_fault(REPO, GGUF, corrupt_byte_at=12_345)
    path = _download(hub, tmp_path)
    data = path.read_bytes()
    assert len(data) == len(gguf_bytes) and data[12_345] == gguf_bytes[12_345] ^ 0xFF
    assert _sha256(data) != _sha256(gguf_bytes)
    assert path.resolve().name == _sha256(gguf_bytes)  # the client stored it under the advertised hash anyway


def test_fault_wrong_size(hub: FakeHub, api: HfApi, tmp_path: Path, gguf_bytes: bytes) -> None:
    hub.set_fault(REPO, GGUF, wrong_size=len(gguf_bytes) + 1)
    assert get_hf_file_metadata(hub.resolve_url(REPO, GGUF), token=False).size == len(gguf_bytes) + 1
    sibling = next(s for s in api.model_info(REPO, files_metadata=True).siblings or [] if s.rfilename == GGUF)
    assert sibling.size == len(gguf_bytes) + 1
    with pytest.raises(OSError, match="Consistency check failed"):
        _download(hub, tmp_path)


def test_fault_status_sequence_then_success(hub: FakeHub) -> None:
    hub.set_fault(REPO, "README.md", statuses=[429, 500], retry_after=3)
    session = get_session()
    url = hub.resolve_url(REPO, "README.md")
    first = session.get(url)
    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
    assert session.get(url).status_code == 500
    ok = session.get(url)
    assert ok.status_code == 200 and ok.content == b"# Tiny llama\n"


def test_fault_429_on_get_is_retried_by_hf_hub_download(hub: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    hub.set_fault(REPO, GGUF, statuses=[429], methods=["GET"], retry_after=0)
    assert _download(hub, tmp_path).read_bytes() == gguf_bytes  # client sleeps Retry-After + 1 s
    assert [r.status for r in hub.requests_for(REPO, GGUF, method="GET")] == [429, 200]


def test_fault_throttle(hub: FakeHub, gguf_bytes: bytes) -> None:
    hub.set_fault(REPO, GGUF, bytes_per_second=500_000)  # 200 kB at 500 kB/s
    started = time.monotonic()
    assert get_session().get(hub.resolve_url(REPO, GGUF)).content == gguf_bytes
    assert time.monotonic() - started >= 0.35

    hub.set_fault(REPO, "README.md", delay_per_chunk=0.05, chunk_size=4)  # 13 bytes -> 4 chunks
    started = time.monotonic()
    assert get_session().get(hub.resolve_url(REPO, "README.md")).content == b"# Tiny llama\n"
    assert time.monotonic() - started >= 0.15


def test_fault_stall_times_out_client_and_stop_does_not_hang(gguf_bytes: bytes) -> None:
    hub = FakeHub().start()
    hub.add_repo(REPO, {GGUF: gguf_bytes})
    hub.set_fault(REPO, GGUF, stall_after_bytes=1000, stall_seconds=30)
    received = bytearray()
    with pytest.raises(httpx2.ReadTimeout):
        timeout = httpx2.Timeout(5.0, read=0.3)
        with get_session().stream("GET", hub.resolve_url(REPO, GGUF), timeout=timeout) as response:
            for chunk in response.iter_bytes():
                received += chunk
    assert len(received) == 1000
    started = time.monotonic()
    hub.stop()
    assert time.monotonic() - started < 2
