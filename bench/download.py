"""Download throughput: ours (parallel ranges, SHA-256 in file order, fsync, verify) against one
plain stream of the same file from the same fake hub, in the same run.

Three measurements, printed as tables:

1. **Throttled per connection** (the fake hub sends each connection at ``--throttle-mb`` MB/s, as
   CDNs do): one plain stream vs ours. Target: ours >= 4x.
2. **Unthrottled loopback**: a plain streamed download without hashing vs ours, ``--runs``
   alternating pairs, median ratio. Target: ours >= 0.95 of plain, or within 10% of this machine's
   SHA-256 rate, whichever is lower (the hash is the ceiling: nothing verified goes faster).
3. **SHA-256 rate** of this machine (hashlib over 256 MiB in memory): that ceiling.

    python bench/download.py [--size-mb 1024] [--throttled-mb 64] [--throttle-mb 8] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from pathlib import Path

from _common import hub_process, scratch_dir, write_gguf_blob  # also puts the repository on sys.path

REPO = "bench/Big-GGUF"


def plain_download(url: str, dest: Path) -> None:
    from huggingface_hub import get_session

    with get_session().stream("GET", url, follow_redirects=True) as response, dest.open("wb") as fh:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())


def ours(home: Path) -> tuple[float, int]:
    """Seconds for download_model, and the most connections it used at once."""
    from quantdesk.hub.client import list_repo_ggufs
    from quantdesk.library.download import DownloadEvent, download_model

    (entry,) = list_repo_ggufs(REPO)
    t0, most = time.perf_counter(), 0
    for item in download_model(REPO, entry):
        if isinstance(item, DownloadEvent):
            most = max(most, item.connections)
    seconds = time.perf_counter() - t0
    for p in (home / "models").rglob("*.gguf"):
        p.unlink()
    return seconds, most


def sha256_rate() -> float:
    data = os.urandom(256 << 20)
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return len(data) / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="unthrottled file size (MiB)")
    parser.add_argument("--throttled-mb", type=int, default=64, help="throttled file size (MiB)")
    parser.add_argument("--throttle-mb", type=float, default=8.0, help="per-connection rate (MB/s)")
    parser.add_argument("--runs", type=int, default=5, help="unthrottled pairs, alternating (default 5)")
    parser.add_argument("--hub-in-process", action="store_true",
                        help="run the fake hub on threads of this process (they then compete for the GIL)")
    args = parser.parse_args()
    work = scratch_dir("qd-dl-bench-")
    home = work / "home"
    os.environ["QUANTDESK_HOME"] = str(home)
    from huggingface_hub import hf_hub_url

    print(f"# fake hub on 127.0.0.1 ({'same process' if args.hub_in_process else 'its own process'}), "
          f"{os.cpu_count()} CPUs")
    # 1. Throttled per connection.
    src = write_gguf_blob(work / "Throttled-Q4_K_M.gguf", args.throttled_mb)
    fault = {"bytes_per_second": args.throttle_mb * 1e6}
    with hub_process(src, args.hub_in_process, fault) as endpoint:
        os.environ["HF_ENDPOINT"] = endpoint
        url = hf_hub_url(REPO, src.name, endpoint=endpoint)
        t0 = time.perf_counter()
        plain_download(url, work / "plain.bin")
        single = time.perf_counter() - t0
        (work / "plain.bin").unlink()
        parallel, most = ours(home)
    size = args.throttled_mb * 2**20
    ratio_throttled = single / parallel
    print(f"\n## {args.throttled_mb} MiB, each connection throttled to {args.throttle_mb:g} MB/s")
    print(f"{'':>14} {'s':>7} {'MB/s':>7} {'connections':>11}")
    print(f"{'one stream':>14} {single:>7.2f} {size / single / 1e6:>7.1f} {1:>11}")
    print(f"{'ours':>14} {parallel:>7.2f} {size / parallel / 1e6:>7.1f} {most:>11}")
    one = size / single
    print(f"one throttled connection's rate x {most} connections = {one * most / 1e6:.1f} MB/s (the ceiling at that "
          f"count); ours reached {size / parallel / (one * most):.0%} of it, ramp-up included")
    print(f"ours / one stream: {ratio_throttled:.2f}x — target >= 4x: {'PASS' if ratio_throttled >= 4 else 'FAIL'}")
    src.unlink()
    # 2. Unthrottled loopback.
    src = write_gguf_blob(work / "Big-Q4_K_M.gguf", args.size_mb)
    rows = []
    with hub_process(src, args.hub_in_process) as endpoint:
        os.environ["HF_ENDPOINT"] = endpoint
        url = hf_hub_url(REPO, src.name, endpoint=endpoint)
        for run in range(args.runs):  # alternate to even out page-cache and CPU-frequency effects
            t0 = time.perf_counter()
            plain_download(url, work / f"plain{run}.bin")
            plain = time.perf_counter() - t0
            (work / f"plain{run}.bin").unlink()
            mine, most = ours(home)
            rows.append((plain, mine, most))
    src.unlink()
    size = args.size_mb * 2**20
    sha_rate = sha256_rate()
    print(f"\n## {args.size_mb} MiB unthrottled")
    print(f"{'run':>3} {'plain s':>8} {'plain MB/s':>10} {'ours s':>8} {'ours MB/s':>10} {'conns':>5} {'ratio':>6}")
    for i, (plain, mine, most) in enumerate(rows):
        print(f"{i:>3} {plain:>8.2f} {size / plain / 1e6:>10.0f} {mine:>8.2f} {size / mine / 1e6:>10.0f} "
              f"{most:>5} {plain / mine:>6.2f}")
    ratio = statistics.median(plain / mine for plain, mine, _ in rows)
    plain_rate = statistics.median(size / plain for plain, _, _ in rows)
    ours_rate = statistics.median(size / mine for _, mine, _ in rows)
    print(f"\n## SHA-256 on this machine: {sha_rate / 1e6:.0f} MB/s")
    target = min(0.95 * plain_rate, 0.9 * sha_rate)
    print(f"median ours {ours_rate / 1e6:.0f} MB/s, plain {plain_rate / 1e6:.0f} MB/s, ratio {ratio:.2f}; "
          f"target {target / 1e6:.0f} MB/s (min of 0.95 x plain, 0.9 x SHA-256): "
          f"{'PASS' if ours_rate >= target else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
