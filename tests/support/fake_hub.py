"""A stdlib-only fake of the Hugging Face Hub for tests.

The machine running the tests cannot reach huggingface.co, yet QuantDesk must be tested against the *real*
``huggingface_hub`` client (search, file listings with LFS hashes, downloads with redirects, ranges, auth errors).
``FakeHub`` serves the subset of the Hub HTTP protocol that client speaks, on 127.0.0.1, with the same URLs,
headers and JSON shapes as the real service (read from ``huggingface_hub`` 2.4.0's own source), plus switchable
faults (dropped connections, corrupt bytes, lying sizes, 429/5xx sequences, throttling, stalls) so download
code can be tested against the failures that happen in the field.

Like the real Hub, LFS files (``*.gguf`` and anything over 10 MiB) are not served by ``/resolve``: it answers
``302`` to a separate "CDN" origin (a second listener on another port), so the client reads the file metadata
from the redirect response itself and drops the ``Authorization`` header for the CDN, exactly as in production.

Usage::

    with FakeHub() as hub:
        hub.add_repo("org/model-GGUF", {"model-Q4_K_M.gguf": b"GGUF...", "README.md": b"# hi"})
        HfApi(endpoint=hub.endpoint).model_info("org/model-GGUF", files_metadata=True)
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = ["FakeHub", "Fault", "FaultRegistry", "HubFile", "RequestRecord", "LFS_THRESHOLD"]

#: Files above this size are stored with LFS (like the Hub's default .gitattributes); ``*.gguf`` always are.
LFS_THRESHOLD = 10 * 1024 * 1024
#: Body chunk size: large enough that a 1 GB file streams at loopback speed.
CHUNK_SIZE = 1024 * 1024
_HASH_READ_SIZE = 8 * 1024 * 1024
_LFS_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ckpt")

GatedMode = Literal["auto", "manual", False]


# --------------------------------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubFile:
    """One file of a fake repo, with the hashes the Hub publishes for it (computed once, at add time)."""

    path: str
    size: int
    sha256: str
    #: Git blob id: of the content for regular files, of the LFS pointer file for LFS files (as on the Hub).
    blob_id: str
    lfs: bool
    pointer_size: int | None
    data: bytes | None = field(default=None, repr=False)
    source: Path | None = None

    def read(self, offset: int, length: int, handle: Any = None) -> bytes:
        """Bytes ``[offset, offset+length)``; ``handle`` is an open file for disk-backed files."""
        if self.data is not None:
            return self.data[offset : offset + length]
        handle.seek(offset)
        return handle.read(length)


@dataclass
class _Repo:
    repo_id: str
    author: str
    sha: str
    files: dict[str, HubFile]
    downloads: int
    likes: int
    trending_score: int
    tags: list[str]
    gated: GatedMode
    private: bool
    token: str | None
    last_modified: str
    created_at: str
    library_name: str | None
    pipeline_tag: str | None
    gguf: dict | None

    def directories(self) -> set[str]:
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs


@dataclass
class RequestRecord:
    """One request seen by the fake hub; ``status`` and ``body_bytes`` are filled in as the response is sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    #: Headers of interest only: Range, Authorization, If-Range, Accept-Encoding (missing ones are absent).
    headers: dict[str, str]
    #: "hub" for the API/resolve listener, "cdn" for the LFS listener.
    server: str
    repo_id: str | None = None
    filename: str | None = None
    status: int | None = None
    body_bytes: int = 0

    @property
    def range(self) -> str | None:
        return self.headers.get("Range")


@dataclass
class Fault:
    """Failure switches for one file, one repo or the whole hub (see :meth:`FaultRegistry.set`).

    Body switches (drop, corrupt, stall, throttle) act on GET bodies only, for the first ``times`` bodies served
    (``None``: every time). ``statuses`` are answered one per matching request (restricted to ``methods`` if set)
    before normal service resumes. ``wrong_size`` changes every size the hub *advertises* for the file (API
    listings, HEAD ``X-Linked-Size``/``Content-Length``) while the body keeps its real length.
    """

    drop_after_bytes: int | None = None
    corrupt_byte_at: int | None = None
    wrong_size: int | None = None
    statuses: list[int] = field(default_factory=list)
    #: Sent as ``Retry-After`` on 429/503 answers; ``None`` omits the header.
    retry_after: int | None = 0
    methods: tuple[str, ...] | None = None
    delay_per_chunk: float = 0.0
    bytes_per_second: float | None = None
    stall_after_bytes: int | None = None
    stall_seconds: float = 0.0
    chunk_size: int | None = None
    #: Answer every GET with the whole file (200), whatever its Range header asks, as some servers do.
    ignore_range: bool = False
    times: int | None = None
    #: How many GET bodies the body switches have acted on so far.
    triggered: int = 0

    def has_body_switch(self) -> bool:
        return (
            self.drop_after_bytes is not None
            or self.corrupt_byte_at is not None
            or self.stall_after_bytes is not None
            or self.bytes_per_second is not None
            or self.delay_per_chunk > 0
        )


class FaultRegistry:
    """Faults keyed by ``(repo_id, filename)``; ``None`` is a wildcard (repo-wide or hub-wide).

    The most specific fault wins: ``(repo, file)``, then ``(repo, None)``, then ``(None, None)``. API requests about
    a repo match the repo-wide and hub-wide faults only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[tuple[str | None, str | None], Fault] = {}

    def set(self, repo_id: str | None = None, filename: str | None = None, **switches: Any) -> Fault:
        """Install (replacing any previous) a fault; returns it so tests can inspect ``triggered``."""
        if "statuses" in switches:
            switches["statuses"] = list(switches["statuses"])
        if switches.get("methods") is not None:
            switches["methods"] = tuple(m.upper() for m in switches["methods"])
        fault = Fault(**switches)
        with self._lock:
            self._faults[(repo_id, filename)] = fault
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def remove(self, repo_id: str | None = None, filename: str | None = None) -> None:
        with self._lock:
            self._faults.pop((repo_id, filename), None)

    def get(self, repo_id: str | None, filename: str | None) -> Fault | None:
        """The fault that applies to a request about ``repo_id``/``filename`` (either may be None)."""
        keys: list[tuple[str | None, str | None]] = []
        if repo_id is not None and filename is not None:
            keys.append((repo_id, filename))
        if repo_id is not None:
            keys.append((repo_id, None))
        keys.append((None, None))
        with self._lock:
            for key in keys:
                if key in self._faults:
                    return self._faults[key]
        return None

    def take_status(self, repo_id: str | None, filename: str | None, method: str) -> tuple[int, Fault] | None:
        """Pop the next injected status for this request, if any."""
        fault = self.get(repo_id, filename)
        if fault is None:
            return None
        with self._lock:
            if not fault.statuses or (fault.methods is not None and method not in fault.methods):
                return None
            return fault.statuses.pop(0), fault

    def take_body_fault(self, repo_id: str, filename: str) -> Fault | None:
        """The fault to apply to the GET body about to be served, counting it against ``times``."""
        fault = self.get(repo_id, filename)
        if fault is None or not fault.has_body_switch():
            return None
        with self._lock:
            if fault.times is not None and fault.triggered >= fault.times:
                return None
            fault.triggered += 1
            return fault

    def advertised_size(self, repo_id: str, hub_file: HubFile) -> int:
        fault = self.get(repo_id, hub_file.path)
        return fault.wrong_size if fault is not None and fault.wrong_size is not None else hub_file.size


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def _git_blob_id(size: int, chunks: Iterable[bytes]) -> str:
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    for chunk in chunks:
        sha1.update(chunk)
    return sha1.hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _iter_file(path: Path) -> Iterable[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_READ_SIZE):
            yield chunk


def _make_file(path_in_repo: str, content: bytes | Path, lfs_threshold: int) -> HubFile:
    """Hash a file once (streaming for disk files) and decide whether it is LFS, as the Hub would."""
    if isinstance(content, Path):
        size = content.stat().st_size
        data, source = None, content
    else:
        size = len(content)
        data, source = bytes(content), None
    is_lfs = path_in_repo.lower().endswith(_LFS_SUFFIXES) or size > lfs_threshold
    sha256 = hashlib.sha256()
    sha1 = None if is_lfs else hashlib.sha1(b"blob %d\0" % size)
    for chunk in _iter_file(source) if source is not None else (data,):  # type: ignore[arg-type]
        sha256.update(chunk)
        if sha1 is not None:
            sha1.update(chunk)
    digest = sha256.hexdigest()
    if is_lfs:
        pointer = _lfs_pointer(digest, size)
        blob_id = _git_blob_id(len(pointer), [pointer])
        return HubFile(path_in_repo, size, digest, blob_id, True, len(pointer), data, source)
    assert sha1 is not None
    return HubFile(path_in_repo, size, digest, sha1.hexdigest(), False, None, data, source)


def _iso(value: str | datetime | None) -> str:
    if value is None:
        value = datetime.now(timezone.utc)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")  # type: ignore[index]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | Literal["unsatisfiable"]:
    """``(start, end_inclusive)`` for a single ``bytes=`` range; None means "serve the whole file"."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # multi-range or unknown unit: RFC 9110 lets a server ignore Range
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return max(size - suffix, 0), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


_SORT_KEYS = {
    "downloads": "downloads",
    "likes": "likes",
    "lastModified": "lastModified",
    "last_modified": "lastModified",
    "createdAt": "createdAt",
    "created_at": "createdAt",
    "trendingScore": "trendingScore",
    "trending_score": "trendingScore",
    "trending": "trendingScore",
    "id": "id",
    "modelId": "id",
}


# --------------------------------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------------------------------


class _HubError(Exception):
    """An error answer with the Hub's ``X-Error-Code``/``X-Error-Message`` headers."""

    def __init__(self, status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, hub: FakeHub, role: str) -> None:
        self.hub = hub
        self.role = role
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    server: _Server
    _record: RequestRecord

    # -- plumbing -------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.hub._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request stderr log: tests read ``FakeHub.requests`` instead."""

    def send_response(self, code: int, message: str | None = None) -> None:
        if getattr(self, "_record", None) is not None:
            self._record.status = code
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        body = b""
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        interesting = ("Range", "Authorization", "If-Range", "Accept-Encoding")
        record = RequestRecord(
            method=method,
            path=split.path,
            query=query,
            headers={name: self.headers[name] for name in interesting if self.headers.get(name) is not None},
            server=self.server.role,
        )
        self._record = record
        hub._log(record)
        try:
            self._route(method, split.path, query, body)
        except _HubError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True
        except Exception as exc:  # a bug in the fake: answer 500 so the test fails loudly, not with a hang
            traceback.print_exc()
            self.close_connection = True
            if record.status is None:
                self._send_json({"error": f"FakeHub internal error: {exc!r}"}, status=500)

    @property
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    # -- responses ------------------------------------------------------------------------------------------------

    def _send_bytes(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self._record.body_bytes += len(body)

    def _send_json(self, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _send_error(self, err: _HubError) -> None:
        headers = dict(err.headers)
        if err.code is not None:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message
        self._send_json({"error": err.message}, status=err.status, headers=headers)

    def _injected_status(self, method: str, repo_id: str | None, filename: str | None) -> bool:
        taken = self.server.hub.faults.take_status(repo_id, filename, method)
        if taken is None:
            return False
        status, fault = taken
        headers = {}
        if status in (429, 503) and fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        message = "Too Many Requests" if status == 429 else f"Injected error {status}"
        self._send_json({"error": message}, status=status, headers=headers)
        return True

    # -- routing --------------------------------------------------------------------------------------------------

    def _route(self, method: str, raw_path: str, query: dict[str, list[str]], body: bytes) -> None:
        segments = raw_path.split("/")[1:]
        while segments and segments[-1] == "":
            segments.pop()

        if segments[:1] == ["_lfs"] and len(segments) == 2 and method in ("GET", "HEAD"):
            repo_id = (query.get("repo") or [None])[0]
            filename = (query.get("file") or [None])[0]
            self._record.repo_id, self._record.filename = repo_id, filename
            if not self._injected_status(method, repo_id, filename):
                self._serve_lfs(unquote(segments[1]), repo_id, filename)
            return
        if self.server.role == "cdn":
            raise _HubError(404, None, "NoSuchKey")

        if segments == ["api", "whoami-v2"] and method == "GET":
            if not self._injected_status(method, None, None):
                self._whoami()
            return
        if segments == ["api", "models"] and method == "GET":
            if not self._injected_status(method, None, None):
                self._list_models(query)
            return
        if segments[:2] == ["api", "models"] and len(segments) >= 3:
            repo_id, op, rest = _split_repo(segments[2:], {"revision", "tree", "paths-info"})
            self._record.repo_id = repo_id
            if self._injected_status(method, repo_id, None):
                return
            if op is None and method == "GET":
                return self._model_info(repo_id, "main", query)
            if op == "revision" and rest and method == "GET":
                return self._model_info(repo_id, "/".join(unquote(s) for s in rest), query)
            if op == "tree" and rest and method == "GET":
                path = "/".join(unquote(s) for s in rest[1:]).strip("/")
                return self._tree(repo_id, unquote(rest[0]), path, query)
            if op == "paths-info" and rest and method == "POST":
                return self._paths_info(repo_id, "/".join(unquote(s) for s in rest), body)
            raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")

        repo_id, op, rest = _split_repo(segments, {"resolve"})
        if op == "resolve" and len(rest) >= 2 and method in ("GET", "HEAD"):
            filename = "/".join(unquote(s) for s in rest[1:])
            self._record.repo_id, self._record.filename = repo_id, filename
            if not self._injected_status(method, repo_id, filename):
                self._resolve(repo_id, unquote(rest[0]), filename)
            return
        raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")

    # -- access control -------------------------------------------------------------------------------------------

    def _repo(self, repo_id: str, revision: str | None = None) -> _Repo:
        """The repo, if this request may see it; raise the errors the Hub answers otherwise."""
        repo = self.server.hub._repos.get(repo_id)
        token = self._token
        if repo is None or (repo.private and not _token_ok(repo, token)):
            # The Hub answers 401 to anonymous callers and 404 to authenticated ones, never revealing existence.
            raise _HubError(404 if token else 401, "RepoNotFound", "Repository not found")
        if revision is not None and revision not in ("main", repo.sha):
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo

    def _check_gate(self, repo: _Repo) -> None:
        if not repo.gated or _token_ok(repo, self._token):
            return
        if self._token is None:
            message = (
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in."
            )
            raise _HubError(401, "GatedRepo", message)
        message = (
            f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
            f"Visit {self.server.hub.endpoint}/{repo.repo_id} to ask for access."
        )
        raise _HubError(403, "GatedRepo", message)

    # -- API endpoints --------------------------------------------------------------------------------------------

    def _whoami(self) -> None:
        token = self._token
        if token is None or token not in self.server.hub._known_tokens():
            raise _HubError(401, None, "Invalid credentials in Authorization header")
        self._send_json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": "fake-user",
                "fullname": "Fake User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "read"}},
            }
        )

    def _list_models(self, query: dict[str, list[str]]) -> None:
        hub = self.server.hub
        token = self._token
        repos = [r for r in hub._repos.values() if not r.private or _token_ok(r, token)]
        if search := (query.get("search") or [""])[-1].lower():
            repos = [r for r in repos if search in r.repo_id.lower()]
        if author := (query.get("author") or [""])[-1].lower():
            repos = [r for r in repos if r.author.lower() == author]
        for wanted in query.get("filter", []):
            repos = [r for r in repos if wanted in r.tags]
        if pipeline_tag := (query.get("pipeline_tag") or [""])[-1]:
            repos = [r for r in repos if r.pipeline_tag == pipeline_tag]
        if "gated" in query:
            want_gated = _truthy(query["gated"])
            repos = [r for r in repos if bool(r.gated) == want_gated]

        sort_key = _SORT_KEYS.get((query.get("sort") or [""])[-1])
        descending = (query.get("direction") or ["-1"])[-1] != "1"
        if sort_key is not None:
            repos.sort(key=lambda r: r.repo_id)  # deterministic ties
            repos.sort(key=lambda r: _model_json(r)[sort_key], reverse=descending if sort_key != "id" else False)

        full = _truthy(query.get("full"))
        expand = query.get("expand") or None
        items = [
            _model_json(r, siblings=full or bool(expand and "siblings" in expand), expand=expand, hub=hub)
            for r in repos
        ]
        if full:
            for item, repo in zip(items, repos):
                if repo.gguf is not None:
                    item["gguf"] = repo.gguf
        self._send_paginated(items, query)

    def _send_paginated(self, items: list[dict], query: dict[str, list[str]]) -> None:
        hub = self.server.hub
        page_size = hub.page_size
        if limit := (query.get("limit") or [""])[-1]:
            page_size = max(1, min(page_size, int(limit)))
        start = int((query.get("cursor") or ["0"])[-1] or 0)
        page = items[start : start + page_size]
        headers = {}
        if start + page_size < len(items):
            next_query = {k: v for k, v in query.items() if k != "cursor"}
            next_query["cursor"] = [str(start + page_size)]
            url = f"{hub.endpoint}{self._record.path}?{urlencode(next_query, doseq=True)}"
            headers["Link"] = f'<{url}>; rel="next"'
        self._send_json(page, headers=headers)

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id, revision)
        expand = query.get("expand") or None
        payload = _model_json(
            repo, siblings=True, blobs=_truthy(query.get("blobs")), expand=expand, hub=self.server.hub
        )
        if expand is None:
            payload["usedStorage"] = sum(f.size for f in repo.files.values())
            if repo.gguf is not None:
                payload["gguf"] = repo.gguf
        self._send_json(payload)

    def _tree(self, repo_id: str, revision: str, path: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id, revision)
        directories = repo.directories()
        if path and path not in directories:
            message = f'{path} does not exist on "{revision}"'
            raise _HubError(404, "EntryNotFound", message, {"X-Repo-Commit": repo.sha})
        recursive = _truthy(query.get("recursive"))
        expand = _truthy(query.get("expand"))
        prefix = f"{path}/" if path else ""

        def wanted(entry_path: str) -> bool:
            if not entry_path.startswith(prefix):
                return False
            return recursive or "/" not in entry_path[len(prefix) :]

        entries = [_dir_json(repo, d, expand) for d in sorted(directories) if wanted(d)]
        entries += [
            _file_json(repo, f, expand, self.server.hub) for p, f in sorted(repo.files.items()) if wanted(p)
        ]
        entries.sort(key=lambda e: (e["path"].count("/"), e["type"] != "directory", e["path"]))
        self._send_paginated(entries, query)

    def _paths_info(self, repo_id: str, revision: str, body: bytes) -> None:
        repo = self._repo(repo_id, revision)
        content_type = (self.headers.get("Content-Type") or "").lower()
        if "json" in content_type:
            parsed = json.loads(body or b"{}")
            paths = parsed.get("paths") or []
            expand = bool(parsed.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _truthy(form.get("expand"))
        if isinstance(paths, str):
            paths = [paths]
        directories = repo.directories()
        result = []
        for raw in paths:
            path = raw.strip("/")
            if path in repo.files:
                result.append(_file_json(repo, repo.files[path], expand, self.server.hub))
            elif path in directories:
                result.append(_dir_json(repo, path, expand))
        self._send_json(result)

    # -- file endpoints -------------------------------------------------------------------------------------------

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        hub = self.server.hub
        repo = self._repo(repo_id, revision)
        self._check_gate(repo)
        hub_file = repo.files.get(filename)
        if hub_file is None:
            raise _HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": repo.sha})
        advertised = hub.faults.advertised_size(repo_id, hub_file)
        common = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if hub_file.lfs:
            location = hub._lfs_url(repo, hub_file)
            headers = {
                **common,
                "Location": location,
                "ETag": f'"{hub_file.blob_id}"',
                "X-Linked-Etag": f'"{hub_file.sha256}"',
                "X-Linked-Size": str(advertised),
            }
            self._send_bytes(302, f"Found. Redirecting to {location}".encode(), "text/plain; charset=utf-8", headers)
            return
        self._serve_content(repo, hub_file, {**common, "ETag": f'"{hub_file.blob_id}"'}, advertised)

    def _serve_lfs(self, sha256: str, repo_id: str | None, filename: str | None) -> None:
        hub = self.server.hub
        repo = hub._repos.get(repo_id or "")
        hub_file = repo.files.get(filename or "") if repo is not None else None
        if repo is None or hub_file is None or not hub_file.lfs or hub_file.sha256 != sha256:
            raise _HubError(404, None, "NoSuchKey")
        headers = {
            "ETag": f'"{hub_file.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(hub_file.path.rsplit('/', 1)[-1])}",
        }
        advertised = hub.faults.advertised_size(repo.repo_id, hub_file)
        if not hub.separate_cdn:
            # Same-origin mode: the client follows the redirect on HEAD and reads metadata from this response.
            headers.update(
                {
                    "X-Repo-Commit": repo.sha,
                    "X-Linked-Etag": f'"{hub_file.sha256}"',
                    "X-Linked-Size": str(advertised),
                }
            )
        self._serve_content(repo, hub_file, headers, advertised)

    def _serve_content(self, repo: _Repo, hub_file: HubFile, headers: dict[str, str], advertised: int) -> None:
        """Answer HEAD/GET for file bytes, honouring Range and the body faults."""
        size = hub_file.size
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(advertised))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            return
        fault_now = self.server.hub.faults.get(repo.repo_id, hub_file.path)
        ranged = self.headers.get("Range") if fault_now is None or not fault_now.ignore_range else None
        byte_range = _parse_range(ranged, size)
        if byte_range == "unsatisfiable":
            self._send_bytes(
                416, b"Requested Range Not Satisfiable", "text/plain", {**headers, "Content-Range": f"bytes */{size}"}
            )
            return
        if byte_range is None:
            start, end, status = 0, size - 1, 200
        else:
            (start, end), status = byte_range, 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        fault = self.server.hub.faults.take_body_fault(repo.repo_id, hub_file.path)
        self._stream_body(repo, hub_file, start, length, fault)

    def _stream_body(self, repo: _Repo, hub_file: HubFile, start: int, length: int, fault: Fault | None) -> None:
        key = (repo.repo_id, hub_file.path)
        handle = hub_file.source.open("rb") if hub_file.source is not None else None
        try:
            if fault is None:
                self._stream_plain(hub_file, handle, start, length, key)
            else:
                self._stream_faulty(hub_file, handle, start, length, key, fault)
        finally:
            if handle is not None:
                handle.close()

    def _count(self, key: tuple[str, str], n: int) -> None:
        self._record.body_bytes += n
        self.server.hub._add_bytes(key, n)

    def _stream_plain(self, hub_file: HubFile, handle: Any, start: int, length: int, key: tuple[str, str]) -> None:
        """Fast path: zero-copy ``sendfile`` for disk files, memoryview slices for in-memory ones."""
        end = start + length
        pos = start
        if handle is not None:
            while pos < end:
                sent = self.connection.sendfile(handle, offset=pos, count=min(8 * CHUNK_SIZE, end - pos))
                if sent == 0:
                    raise BrokenPipeError("sendfile sent nothing")
                pos += sent
                self._count(key, sent)
            return
        view = memoryview(hub_file.data or b"")
        while pos < end:
            n = min(CHUNK_SIZE, end - pos)
            self.wfile.write(view[pos : pos + n])
            pos += n
            self._count(key, n)

    def _stream_faulty(
        self, hub_file: HubFile, handle: Any, start: int, length: int, key: tuple[str, str], fault: Fault
    ) -> None:
        stop = self.server.hub._stop_event
        limit = length if fault.drop_after_bytes is None else min(length, fault.drop_after_bytes)
        chunk_size = fault.chunk_size or CHUNK_SIZE
        if fault.bytes_per_second:
            chunk_size = min(chunk_size, max(1024, int(fault.bytes_per_second / 20)))
        stall_at = fault.stall_after_bytes
        began = time.monotonic()
        sent = 0
        while sent < limit:
            if stall_at is not None and sent >= stall_at:
                stall_at = None
                if stop.wait(fault.stall_seconds):
                    break
            n = min(chunk_size, limit - sent)
            if stall_at is not None and sent < stall_at:
                n = min(n, stall_at - sent)
            offset = start + sent
            data = hub_file.read(offset, n, handle)
            corrupt = fault.corrupt_byte_at
            if corrupt is not None and offset <= corrupt < offset + n:
                mutable = bytearray(data)
                mutable[corrupt - offset] ^= 0xFF
                data = bytes(mutable)
            self.wfile.write(data)
            sent += n
            self._count(key, n)
            wait = fault.delay_per_chunk
            if fault.bytes_per_second:
                wait = max(wait, sent / fault.bytes_per_second - (time.monotonic() - began))
            if wait > 0 and stop.wait(wait):
                break
        if sent < length:
            # Cut the connection mid-body: the client sees fewer bytes than Content-Length promised.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _split_repo(segments: list[str], ops: set[str]) -> tuple[str, str | None, list[str]]:
    """Split ``[ns, name, op, ...]`` (or legacy ``[name, op, ...]``) into repo id, operation and the rest."""
    if len(segments) >= 2 and segments[1] in ops:
        return unquote(segments[0]), segments[1], segments[2:]
    repo_id = "/".join(unquote(s) for s in segments[:2])
    op = segments[2] if len(segments) > 2 else None
    return repo_id, op, segments[3:]


def _token_ok(repo: _Repo, token: str | None) -> bool:
    """A repo's own token grants access; a repo without one accepts any token (auto-approved gate)."""
    if token is None:
        return False
    return repo.token is None or token == repo.token


def _model_json(
    repo: _Repo,
    *,
    siblings: bool = False,
    blobs: bool = False,
    expand: list[str] | None = None,
    hub: FakeHub | None = None,
) -> dict[str, Any]:
    """A model as ``/api/models`` returns it; ``expand`` keeps only the requested properties (plus ids)."""
    payload: dict[str, Any] = {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.author,
        "sha": repo.sha,
        "lastModified": repo.last_modified,
        "createdAt": repo.created_at,
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": repo.downloads,
        "likes": repo.likes,
        "trendingScore": repo.trending_score,
        "tags": list(repo.tags),
        "library_name": repo.library_name,
        "pipeline_tag": repo.pipeline_tag,
    }
    if siblings:
        payload["siblings"] = [_sibling_json(repo, f, blobs, hub) for _, f in sorted(repo.files.items())]
    if expand:
        extra = {"gguf": repo.gguf, "usedStorage": sum(f.size for f in repo.files.values())}
        full = {**payload, **extra}
        if "siblings" in expand and "siblings" not in full:
            full["siblings"] = [_sibling_json(repo, f, False, hub) for _, f in sorted(repo.files.items())]
        payload = {"_id": payload["_id"], "id": repo.repo_id}
        payload.update({k: full[k] for k in expand if k in full and full[k] is not None})
    return payload


def _sibling_json(repo: _Repo, hub_file: HubFile, blobs: bool, hub: FakeHub | None) -> dict[str, Any]:
    if not blobs:
        return {"rfilename": hub_file.path}
    size = hub.faults.advertised_size(repo.repo_id, hub_file) if hub is not None else hub_file.size
    entry: dict[str, Any] = {"rfilename": hub_file.path, "size": size, "blobId": hub_file.blob_id}
    if hub_file.lfs:
        entry["lfs"] = {"sha256": hub_file.sha256, "size": size, "pointerSize": hub_file.pointer_size}
    return entry


def _last_commit(repo: _Repo) -> dict[str, str]:
    return {"id": repo.sha, "title": "Upload folder using huggingface_hub", "date": repo.last_modified}


def _file_json(repo: _Repo, hub_file: HubFile, expand: bool, hub: FakeHub) -> dict[str, Any]:
    size = hub.faults.advertised_size(repo.repo_id, hub_file)
    entry: dict[str, Any] = {"type": "file", "oid": hub_file.blob_id, "size": size, "path": hub_file.path}
    if hub_file.lfs:
        entry["lfs"] = {"oid": hub_file.sha256, "size": size, "pointerSize": hub_file.pointer_size}
    if expand:
        entry["lastCommit"] = _last_commit(repo)
        entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False}, "pickleImportScan": None}
    return entry


def _dir_json(repo: _Repo, path: str, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "directory",
        "oid": hashlib.sha1(f"{repo.sha}:{path}".encode()).hexdigest(),
        "size": 0,
        "path": path,
    }
    if expand:
        entry["lastCommit"] = _last_commit(repo)
    return entry


# --------------------------------------------------------------------------------------------------------------------
# Public facade
# --------------------------------------------------------------------------------------------------------------------


class FakeHub:
    """A fake Hugging Face Hub on 127.0.0.1 for the real ``huggingface_hub`` client (see module docstring)."""

    def __init__(self, *, separate_cdn: bool = True, page_size: int = 1000, lfs_threshold: int = LFS_THRESHOLD):
        """``separate_cdn``: serve LFS bytes from a second origin (like the real Hub) instead of ``/_lfs`` here.

        ``page_size``: items per page of ``/api/models`` and tree listings before a ``Link: rel="next"`` header.
        """
        self.separate_cdn = separate_cdn
        self.page_size = page_size
        self.lfs_threshold = lfs_threshold
        self.faults = FaultRegistry()
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._bytes_served: dict[tuple[str, str], int] = {}
        self._connections: set[socket.socket] = set()
        self._stop_event = threading.Event()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._commit_counter = 0
        #: Tokens accepted by ``/api/whoami-v2`` besides the repos' own.
        self.extra_tokens: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> FakeHub:
        """Bind 127.0.0.1 on free ports and serve from daemon threads."""
        if self._servers:
            raise RuntimeError("FakeHub already started")
        self._stop_event.clear()
        roles = ["hub", "cdn"] if self.separate_cdn else ["hub"]
        for role in roles:
            server = _Server(self, role)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-hub-{role}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (including stalled ones) so no test can hang on us."""
        self._stop_event.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL to give the client (``HF_ENDPOINT`` / ``endpoint=``), e.g. ``http://127.0.0.1:41234``."""
        return self._origin("hub")

    @property
    def cdn_endpoint(self) -> str:
        """Origin that serves LFS bytes (same as ``endpoint`` when ``separate_cdn=False``)."""
        return self._origin("cdn" if self.separate_cdn else "hub")

    def _origin(self, role: str) -> str:
        for server in self._servers:
            if server.role == role:
                host, port = server.server_address[:2]
                return f"http://{host}:{port}"
        raise RuntimeError("FakeHub is not started")

    # -- content --------------------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        author: str | None = None,
        downloads: int = 0,
        likes: int = 0,
        tags: Iterable[str] = ("gguf",),
        gated: bool | Literal["auto", "manual"] = False,
        token: str | None = None,
        last_modified: str | datetime | None = None,
        private: bool = False,
        created_at: str | datetime | None = None,
        library_name: str | None = None,
        pipeline_tag: str | None = "text-generation",
        trending_score: int | None = None,
        gguf: dict | None = None,
    ) -> str:
        """Publish (or replace, as a new commit) a model repo; returns its commit sha.

        ``Path`` values are hashed once here by streaming and served from disk; ``bytes`` are kept in memory.
        ``gated=True`` means "manual" approval; a gated/private repo accepts ``token`` (any token if None).
        ``filter=`` searches match ``tags``; ``library_name`` defaults to "gguf" when that tag is present.
        """
        tags = list(tags)
        hub_files = {}
        for name, content in files.items():
            hub_files[name.strip("/")] = _make_file(name.strip("/"), content, self.lfs_threshold)
        with self._lock:
            self._commit_counter += 1
            listing = ",".join(f"{p}={f.blob_id}" for p, f in sorted(hub_files.items()))
            sha = hashlib.sha1(f"{repo_id}:{self._commit_counter}:{listing}".encode()).hexdigest()
            self._repos[repo_id] = _Repo(
                repo_id=repo_id,
                author=author or (repo_id.split("/")[0] if "/" in repo_id else repo_id),
                sha=sha,
                files=hub_files,
                downloads=downloads,
                likes=likes,
                trending_score=likes if trending_score is None else trending_score,
                tags=tags,
                gated="manual" if gated is True else gated,
                private=private,
                token=token,
                last_modified=_iso(last_modified),
                created_at=_iso(created_at if created_at is not None else last_modified),
                library_name=library_name if library_name is not None else ("gguf" if "gguf" in tags else None),
                pipeline_tag=pipeline_tag,
                gguf=gguf,
            )
        return sha

    def remove_repo(self, repo_id: str) -> None:
        with self._lock:
            self._repos.pop(repo_id, None)

    def file(self, repo_id: str, filename: str) -> HubFile:
        """The published metadata (sha256, blob id, size, lfs) of a file, for assertions."""
        return self._repos[repo_id].files[filename]

    def commit(self, repo_id: str) -> str:
        return self._repos[repo_id].sha

    def resolve_url(self, repo_id: str, filename: str, revision: str = "main") -> str:
        """The ``/resolve`` URL the client builds for a file (``hf_hub_url`` equivalent)."""
        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"

    def _lfs_url(self, repo: _Repo, hub_file: HubFile) -> str:
        query = urlencode({"repo": repo.repo_id, "file": hub_file.path, "rev": repo.sha})
        return f"{self.cdn_endpoint}/_lfs/{hub_file.sha256}?{query}"

    def _known_tokens(self) -> set[str]:
        return {r.token for r in self._repos.values() if r.token} | self.extra_tokens

    # -- faults ---------------------------------------------------------------------------------------------------

    def set_fault(self, repo_id: str | None = None, filename: str | None = None, **switches: Any) -> Fault:
        """Shortcut for ``hub.faults.set``: ``set_fault("org/r", "m.gguf", drop_after_bytes=1000, times=1)``."""
        return self.faults.set(repo_id, filename, **switches)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- observation ----------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(
        self, repo_id: str | None = None, filename: str | None = None, method: str | None = None
    ) -> list[RequestRecord]:
        return [
            r
            for r in self.requests
            if (repo_id is None or r.repo_id == repo_id)
            and (filename is None or r.filename == filename)
            and (method is None or r.method == method)
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._bytes_served.clear()

    @property
    def bytes_served(self) -> dict[tuple[str, str], int]:
        """Body bytes of file content written so far, keyed by ``(repo_id, filename)``."""
        with self._lock:
            return dict(self._bytes_served)

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _add_bytes(self, key: tuple[str, str], n: int) -> None:
        with self._lock:
            self._bytes_served[key] = self._bytes_served.get(key, 0) + n

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)
