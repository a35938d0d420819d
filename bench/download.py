"""Download throughput: our verified download vs a plain streamed download, same fake hub, same run.

A 1 GB file is served by the fake hub on 127.0.0.1. The reference streams it with the same
``huggingface_hub`` session to a file without hashing; ours is ``download_model`` (SHA-256 while
streaming on a writer thread, fsync, verify, move). Target: ours >= 0.95 of the plain speed.

    python bench/download.py [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _common import hub_process, scratch_dir  # also puts the repository on sys.path


def plain_download(url: str, dest: Path) -> None:
    from huggingface_hub import get_session

    with get_session().stream("GET", url, follow_redirects=True) as response, dest.open("wb") as fh:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5, help="pairs of downloads, alternating (default 5)")
    parser.add_argument("--hub-in-process", action="store_true",
                        help="run the fake hub on threads of this process (they then compete for the GIL)")
    args = parser.parse_args()
    work = scratch_dir("qd-dl-bench-")
    src = work / "Big-Q4_K_M.gguf"
    with src.open("wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(args.size_mb):
            fh.write(block)
    os.environ["QUANTDESK_HOME"] = str(work / "home")
    # The hub in its own process, as the real hub is another machine: in this one its server threads
    # would take the interpreter lock from the client being measured.
    with hub_process(src, args.hub_in_process) as endpoint:
        os.environ["HF_ENDPOINT"] = endpoint
        from huggingface_hub import hf_hub_url

        from quantdesk.hub.client import list_repo_ggufs
        from quantdesk.library.download import download_model

        (entry,) = list_repo_ggufs("bench/Big-GGUF")
        url = hf_hub_url("bench/Big-GGUF", src.name, endpoint=endpoint)
        rows = []
        for run in range(args.runs):  # alternate to even out page-cache and CPU-frequency effects
            t0 = time.perf_counter()
            plain_download(url, work / f"plain{run}.bin")
            plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _item in download_model("bench/Big-GGUF", entry):
                pass
            ours = time.perf_counter() - t0
            for p in (work / "home" / "models").rglob("*.gguf"):
                p.unlink()
            (work / f"plain{run}.bin").unlink()
            rows.append((plain, ours))
    size = args.size_mb * 2**20
    print(f"# {args.size_mb} MiB from the fake hub on 127.0.0.1 "
          f"({'same process' if args.hub_in_process else 'its own process'}), {os.cpu_count()} CPUs")
    print(f"{'run':>3} {'plain s':>8} {'plain MB/s':>10} {'ours s':>8} {'ours MB/s':>10} {'ratio':>6}")
    for i, (plain, ours) in enumerate(rows):
        print(f"{i:>3} {plain:>8.2f} {size / plain / 1e6:>10.0f} {ours:>8.2f} {size / ours / 1e6:>10.0f} {plain / ours:>6.2f}")
    ratio = statistics.median(plain / ours for plain, ours in rows)
    print(f"median ratio (ours speed / plain speed): {ratio:.2f} — target >= 0.95: {'PASS' if ratio >= 0.95 else 'FAIL'}")
    src.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
