"""Seeds a throwaway QUANTDESK_HOME with a download queue and a library, then renders the Downloads and
Library pages with `quantdesk gui --screenshot` while the test suite's fake hub serves the two
downloads under way. Models are header-only files of real shapes (sparse: no gigabytes written).

    PYTHONPATH=. python docs/screenshots/seed_downloads_library.py docs/screenshots
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="qd-shots-"))
HOME, FILES = WORK / "home", WORK / "files"
os.environ.update(QUANTDESK_HOME=str(HOME), HF_HOME=str(HOME / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
                  HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_IMPLICIT_TOKEN="1", QT_QPA_PLATFORM="offscreen",
                  PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", QUANTDESK_NO_AUTO_REFRESH="1")

from quantdesk.base.settings import models_dir  # noqa: E402
from quantdesk.hub.client import list_repo_ggufs  # noqa: E402
from quantdesk.library.download import partial_path  # noqa: E402
from quantdesk.library.index import Library, sha256_file  # noqa: E402
from quantdesk.library.queue import DownloadQueue  # noqa: E402
from tests.support import gguf_factory as factory  # noqa: E402
from tests.support.fake_hub import FakeHub  # noqa: E402

S = factory.ModelShape
LLAMA32_3B = S(128256, 3072, 28, 24, 8, 8192, 131072, "Llama-3.2-3B-Instruct")
QWEN25_7B = S(152064, 3584, 28, 28, 4, 18944, 32768, "Qwen2.5-7B-Instruct")
QWEN3_4B = S(151936, 2560, 36, 32, 8, 9728, 40960, "Qwen3-4B")
GEMMA2_9B = S(256000, 3584, 42, 16, 8, 14336, 8192, "gemma-2-9b-it")
MISTRAL_7B = S(32768, 4096, 32, 32, 8, 14336, 32768, "Mistral-7B-Instruct-v0.3")
QWEN25_05B = S(151936, 1024, 24, 14, 2, 4864, 32768, "Qwen2.5-0.5B-Instruct")
SMOL_360M = S(49152, 1024, 32, 16, 4, 2560, 8192, "SmolLM2-360M-Instruct")
LLAMA31_8B = S(128256, 4096, 32, 32, 8, 14336, 131072, "Meta-Llama-3.1-8B-Instruct")
NEMO_12B = S(131072, 5120, 40, 32, 8, 14336, 131072, "Mistral-Nemo-Instruct-2407")
PHI35 = S(32064, 3072, 32, 32, 32, 8192, 131072, "Phi-3.5-mini-instruct")

# repo -> (file, shape, quant, served whole?)  Files nobody downloads during the screenshot are served
# as headers only (no gigabytes hashed); the others are sparse files the hub hashes once.
REPOS = {
    "Qwen/Qwen2.5-0.5B-Instruct-GGUF": ("qwen2.5-0.5b-instruct-q4_k_m.gguf", QWEN25_05B, "Q4_K_M", True),
    "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF": ("smollm2-360m-instruct-q8_0.gguf", SMOL_360M, "Q8_0", True),
    "bartowski/Mistral-7B-Instruct-v0.3-GGUF": ("Mistral-7B-Instruct-v0.3-Q5_K_M.gguf", MISTRAL_7B, "Q5_K_M", False),
    "bartowski/Llama-3.2-3B-Instruct-GGUF": ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", LLAMA32_3B, "Q4_K_M", True),
    "Qwen/Qwen2.5-7B-Instruct-GGUF": ("qwen2.5-7b-instruct-q4_k_m.gguf", QWEN25_7B, "Q4_K_M", True),
    "unsloth/Qwen3-4B-GGUF": ("Qwen3-4B-Q4_K_M.gguf", QWEN3_4B, "Q4_K_M", False),
    "bartowski/gemma-2-9b-it-GGUF": ("gemma-2-9b-it-Q4_K_M.gguf", GEMMA2_9B, "Q4_K_M", False),
}


def entry(repo: str):
    return list_repo_ggufs(repo)[0]


def sparse_copy(src: Path, dest: Path, length: int) -> None:
    """The first ``length`` bytes of a header-only file: its header, then a hole (zeros, as the source)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fh:
        head = fh.read(min(length, 8 << 20))
    with dest.open("wb") as out:
        out.write(head)
        out.truncate(length)


def seed_row(db: sqlite3.Connection, repo: str, e, state: str, done: int, error: str | None = None) -> None:
    now = time.time()
    db.execute("INSERT INTO downloads (repo, revision, entry, state, done, total, error, created_at, updated_at)"
               " VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?)",
               (repo, json.dumps(e.to_json()), state, done, e.size, error, now, now))


def library_model(path: Path, shape, quant: str, **fields) -> None:
    factory.write_header_only(path, shape, quant)
    files = [{"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}]
    Library().add(files=files, quant=quant, **fields)


def main(out: Path) -> None:
    hub = FakeHub().start()
    os.environ["HF_ENDPOINT"] = hub.endpoint
    sources = {}
    for repo, (name, shape, quant, whole) in REPOS.items():
        if whole:
            sources[repo] = factory.write_header_only(FILES / name, shape, quant)
            hub.add_repo(repo, {name: sources[repo]})
        else:
            factory.add_header_only_repo(hub, repo, FILES, {name: (shape, quant)})
    # real downloads: one done (into the library), one failed on a corrupted byte
    queue = DownloadQueue(max_concurrent=1)
    queue.add("Qwen/Qwen2.5-0.5B-Instruct-GGUF", entry("Qwen/Qwen2.5-0.5B-Instruct-GGUF"))
    smol = "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF"
    hub.set_fault(smol, REPOS[smol][0], corrupt_byte_at=48_213_771)
    queue.add(smol, entry(smol))
    assert queue.wait(300)
    queue.shutdown()
    # the rest as the queue records them: cancelled, two under way (partials on disk), paused, queued
    with sqlite3.connect(HOME / "downloads.db") as db:
        seed_row(db, "bartowski/Mistral-7B-Instruct-v0.3-GGUF", entry("bartowski/Mistral-7B-Instruct-v0.3-GGUF"),
                 "cancelled", 0)
        for repo, fraction in (("bartowski/Llama-3.2-3B-Instruct-GGUF", 0.38), ("Qwen/Qwen2.5-7B-Instruct-GGUF", 0.12)):
            e = entry(repo)
            done = int(e.size * fraction)
            sparse_copy(sources[repo], partial_path(repo, e.first), done)
            seed_row(db, repo, e, "downloading", done)
        e = entry("unsloth/Qwen3-4B-GGUF")
        seed_row(db, "unsloth/Qwen3-4B-GGUF", e, "paused", int(e.size * 0.61))
        seed_row(db, "bartowski/gemma-2-9b-it-GGUF", entry("bartowski/gemma-2-9b-it-GGUF"), "queued", 0)
    db.close()
    # the library beyond the download: a download of last week, a local quant, an LM Studio import,
    # and one whose file changed on disk since (verify found it)
    models = models_dir()
    library_model(models / "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
                  LLAMA31_8B, "Q4_K_M", source="downloaded", repo="bartowski/Meta-Llama-3.1-8B-Instruct-GGUF")
    library_model(models / "quantized/Llama-3.2-3B-Instruct-Q5_K_M.gguf", LLAMA32_3B, "Q5_K_M",
                  source="quantized", repo="bartowski/Llama-3.2-3B-Instruct-GGUF", source_sha256="9f" * 32)
    library_model(FILES / "lmstudio/models/lmstudio-community/Mistral-Nemo-Instruct-2407-GGUF/"
                  "Mistral-Nemo-Instruct-2407-Q4_K_M.gguf", NEMO_12B, "Q4_K_M", source="imported")
    phi = models / "bartowski/Phi-3.5-mini-instruct-GGUF/Phi-3.5-mini-instruct-Q4_K_M.gguf"
    library_model(phi, PHI35, "Q4_K_M", source="downloaded", repo="bartowski/Phi-3.5-mini-instruct-GGUF")
    with phi.open("r+b") as fh:
        fh.seek(1_500_000_000)
        fh.write(b"\x01")
    Library().verify(phi.stem)
    # the screenshots, while the hub serves the two downloads at a realistic pace
    hub.set_fault("bartowski/Llama-3.2-3B-Instruct-GGUF", bytes_per_second=38_000_000)
    hub.set_fault("Qwen/Qwen2.5-7B-Instruct-GGUF", bytes_per_second=21_000_000)
    out.mkdir(parents=True, exist_ok=True)
    for page, settle in (("downloads", 8), ("library", 1.5)):  # 1.5 s: the other pages are built (badge)
        (HOME / "window-state.ini").unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "quantdesk", "gui", "--screenshot", str(out / f"{page}.png"),
                        "--page", page, "--hardware", "nvidia-12gb", "--settle", str(settle)], check=True)
    hub.stop()


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
