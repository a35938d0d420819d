"""CLI verbs for the hub and the library: download, list, verify, rm, import."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.units import fmt_bytes
from quantdesk.catalog.refresh import list_and_remember
from quantdesk.cli.output import context_length, emit_json, positive
from quantdesk.hub.client import RepoGGUF


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, event) -> None:
        now = time.monotonic()
        if event.state == "downloading" and now - self.last < (0.1 if self.tty else 2.0) and event.done < event.total:
            return
        self.last = now
        frac = event.done / event.total if event.total else 1.0
        bar = "#" * int(30 * frac)
        eta = f" ETA {event.eta:.0f}s" if event.eta else ""
        speed = f" {event.speed / 2**20:.1f} MiB/s" if event.speed else ""
        if event.connections > 1:
            speed += f" ({event.connections} connections)"
        text = (f"{event.state:11} {event.file[:40]:40} [{bar:30}] {frac:6.1%} "
                f"{fmt_bytes(event.done)}/{fmt_bytes(event.total)}{speed}{eta} {event.message}")
        sys.stderr.write(("\r" + text.ljust(120)) if self.tty else text + "\n")
        checking = event.state == "verifying" and event.message  # re-hashing a resumed part: one line, updated
        if self.tty and event.state in ("done", "verifying", "retrying") and not checking:
            sys.stderr.write("\n")
        sys.stderr.flush()


def choose_entry(repo_id: str, entries: list[RepoGGUF], quant: str | None, best: bool, ctx: int | None,
                 hardware: str | None) -> RepoGGUF:
    if best:
        from quantdesk.hardware.detect import resolve_hardware
        from quantdesk.planning.plan import plan_repo

        result = plan_repo(repo_id, resolve_hardware(hardware), ctx=ctx)
        rec = result.recommended
        if rec is None:
            raise QuantDeskError(f"no file of {repo_id} runs on this machine at {result.ctx} tokens of context")
        print(f"{rec.quant}: {rec.reason}", file=sys.stderr)
        return next(e for e in entries if e.first == rec.file)
    if quant:
        matches = [e for e in entries if (e.quant or "").upper() == quant.upper()]
        if not matches:
            raise QuantDeskError(f"{repo_id} has no {quant.upper()} file; it has: "
                                 + ", ".join(sorted({e.quant or e.name for e in entries})))
        return matches[0]
    if len(entries) == 1:
        return entries[0]
    raise QuantDeskError(f"{repo_id} has {len(entries)} GGUF files; choose one with --quant "
                         f"({', '.join(sorted({e.quant or e.name for e in entries}))}) or --best")


def cmd_download(args: argparse.Namespace) -> int:
    from quantdesk.library.download import DownloadEvent, download_model
    from quantdesk.library.index import Library

    entries = list_and_remember(args.repo, args.revision)
    if not entries:
        raise QuantDeskError(f"{args.repo} has no GGUF files")
    entry = choose_entry(args.repo, entries, args.quant, args.best, args.ctx, args.hardware)
    model = _already_installed(args.repo, entry)
    if model is not None:
        files = [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in model.files]
        if not args.json:
            print(f"{model.name} is already in the library; its files were re-checked against the hub's SHA-256",
                  file=sys.stderr)
    else:
        bar = ProgressBar()
        results = []
        for item in download_model(args.repo, entry, args.revision):
            if isinstance(item, DownloadEvent):
                bar.update(item)
            else:
                results = item
        files = [{"path": str(r.path), "size": r.size, "sha256": r.sha256} for r in results]
        model = Library().add(files=files, source="downloaded", repo=args.repo, quant=entry.quant)
    if args.json:
        emit_json({"files": [dict(f, verified=True) for f in files], "name": model.name})
    else:
        print(f"{model.name}: {fmt_bytes(model.size)} verified (sha256 {model.sha256[:16]}…) and added to the library")
    return 0


def _already_installed(repo: str, entry: RepoGGUF):
    """The library's model for exactly this hub file (every part, same hashes) when its files still
    hash right — then downloading it again would only cost time; None otherwise."""
    from quantdesk.library.index import Library
    from quantdesk.planning.discover import installed

    model = installed(repo, entry)
    if model is None or sorted(f["sha256"] for f in model.files) != sorted((p.sha256 or "").lower() for p in entry.parts):
        return None
    _, problems = Library().verify(model.name)
    return None if problems else model


def cmd_list(args: argparse.Namespace) -> int:
    from quantdesk.library.index import Library
    from quantdesk.quantize import journal

    for fixed in journal.recover():  # a quantize job killed after it finished: its output is adopted here
        print(f"quantdesk: note: {fixed.sentence()}", file=sys.stderr)

    models = Library().models()
    if args.json:
        emit_json([m.to_json() for m in models])
        return 0
    if not models:
        print("The library is empty: `quantdesk download REPO --best` or `quantdesk import PATH`.")
        return 0
    for m in models:
        verified = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.verified_at)) if m.verified_at else "never"
        print(f"{m.name:50} {m.quant or '?':8} {fmt_bytes(m.size):>10} {m.source:10} {m.repo or '-':40} "
              f"verified {verified}")
    print(f"{len(models)} models, {fmt_bytes(sum(m.size for m in models))} on disk")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from quantdesk.library.index import Library

    model, problems = Library().verify(args.model)
    if args.json:
        emit_json({"name": model.name, "ok": not problems, "problems": problems})
    elif not problems:
        print(f"{model.name}: all {len(model.files)} file(s) match their recorded SHA-256")
    for p in problems:
        print(f"quantdesk: {p}", file=sys.stderr)
    return 0 if not problems else 1


def cmd_rm(args: argparse.Namespace) -> int:
    from quantdesk.library.index import Library

    model = Library().remove(args.model, delete_files=not args.keep_files)
    print(f"removed {model.name}" + (" (files kept: imported or --keep-files)"
                                     if args.keep_files or model.source == "imported" else ""))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Register GGUF files in place (a file or a folder, e.g. LM Studio's or the HF cache); split models
    once, models already in the library reported as such, broken files reported and left out."""
    from pathlib import Path

    from quantdesk.library.index import Library

    outcome = Library().import_paths([Path(args.path).expanduser()])
    failed = [f"{path}: {why}" for path, why in outcome.failed]
    if args.json:
        emit_json({"imported": [m.to_json() for m in outcome.imported], "failed": failed,
                   "already": [m.to_json() for m in outcome.known]})
    else:
        for m in outcome.imported:
            print(f"imported {m.name} ({m.quant}, {fmt_bytes(m.size)})")
        for m in outcome.known:
            print(f"already in the library: {m.name}")
        if not (outcome.imported or outcome.known or failed):
            print(f"no .gguf files found in {args.path}", file=sys.stderr)
    for f in failed:
        print(f"quantdesk: not imported: {f}", file=sys.stderr)
    return 1 if failed and not (outcome.imported or outcome.known) else 0


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("download", help="download a verified GGUF from the hub into the library")
    p.add_argument("repo")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quant", help="quant label, e.g. Q4_K_M")
    group.add_argument("--best", action="store_true", help="the planner's recommendation for this machine")
    p.add_argument("--ctx", type=context_length, default=None)
    p.add_argument("--revision", default=None)
    add_common(p)
    p.set_defaults(func=cmd_download)
    p = sub.add_parser("list", help="installed models")
    add_common(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("verify", help="re-hash a library model against its recorded SHA-256")
    p.add_argument("model")
    add_common(p)
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("rm", help="remove a model from the library (and its files, unless imported)")
    p.add_argument("model")
    p.add_argument("--keep-files", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("import", help="register existing GGUF files (a file or a folder) without copying")
    p.add_argument("path")
    add_common(p)
    p.set_defaults(func=cmd_import)
    register_downloads(sub, add_common)
    p = sub.add_parser("repair", help="check QuantDesk's data files; set a damaged one aside and start a new one")
    p.add_argument("which", nargs="*", default=[], metavar="chats|library|downloads",
                   help="which data files (default: all three)")
    add_common(p)
    p.set_defaults(func=cmd_repair)


def cmd_repair(args: argparse.Namespace) -> int:
    """Check chats.db, library.db and downloads.db; a damaged one is kept beside itself as
    NAME.damaged-STAMP and a new one started (the library from the models folder's files)."""
    from quantdesk.base import sqlite_db
    from quantdesk.base.paths import data_dir
    from quantdesk.library.index import restart_damaged_library

    names = ["chats", "library", "downloads"]
    unknown = [w for w in args.which if w not in names]
    if unknown:
        raise QuantDeskError(f"no data file called {', '.join(unknown)}; choose from {', '.join(names)}")
    report: dict[str, dict] = {}
    for name in args.which or names:
        path = data_dir() / f"{name}.db"
        try:
            sqlite_db.check_intact(path)
            report[name] = {"state": "ok" if path.exists() else "absent", "path": str(path)}
            continue
        except sqlite_db.DamagedDatabase as exc:
            damage = str(exc)
        if name == "library":
            aside, outcome = restart_damaged_library(path)
            report[name] = {"state": "replaced", "path": str(path), "kept_as": str(aside), "damage": damage,
                            "models_found": len(outcome.imported),
                            "unreadable": [{"path": str(p), "reason": why} for p, why in outcome.failed]}
        else:
            aside = sqlite_db.set_aside(path)
            report[name] = {"state": "replaced", "path": str(path), "kept_as": str(aside), "damage": damage}
    if args.json:
        emit_json(report)
        return 0
    for name, row in report.items():
        if row["state"] != "replaced":
            print(f"{name}.db: {'fine' if row['state'] == 'ok' else 'not created yet'} ({row['path']})")
            continue
        extra = {"library": f"; {row.get('models_found', 0)} models in the models folder are listed again",
                 "downloads": "; queued downloads must be added again (their partial files are kept and resume)",
                 "chats": "; stored conversations start empty"}[name]
        print(f"{name}.db was damaged; it is kept as {row['kept_as']} and a new one was started{extra}")
    return 0


def cmd_downloads(args: argparse.Namespace) -> int:
    """The app's persistent download queue, headless: list, add, run, resume, pause, cancel, rm."""
    from quantdesk.library.queue import DownloadQueue

    queue = DownloadQueue(max_concurrent=args.concurrency, autostart=False)
    action, ids = args.action, [int(x) for x in args.ids]
    if action == "add":
        if not args.repo:
            raise QuantDeskError("`downloads add` needs a repo id")
        entries = list_and_remember(args.repo)
        entry = choose_entry(args.repo, entries, args.quant, args.best, args.ctx, args.hardware)
        job = queue.add(args.repo, entry)
        print(f"queued #{job.id}: {args.repo} {entry.name}", file=sys.stderr)
    elif action in ("resume", "pause", "cancel", "rm"):
        if not ids:
            raise QuantDeskError(f"`downloads {action}` needs a download id (see `quantdesk downloads`)")
        for job_id in ids:
            {"resume": queue.resume, "pause": queue.pause, "cancel": queue.cancel, "rm": queue.remove}[action](job_id)
    if action in ("run", "resume") or (action == "add" and args.now):
        bars: dict[int, float] = {}

        def show(job) -> None:
            now = time.monotonic()
            if job.state == "downloading" and now - bars.get(job.id, 0) < 2.0:
                return
            bars[job.id] = now
            frac = job.done / job.total if job.total else 1.0
            extra = f" — {job.error}" if job.error else ""
            print(f"#{job.id} {job.state:11} {job.entry.name[:48]:48} {frac:6.1%} {fmt_bytes(job.done)}"
                  f"/{fmt_bytes(job.total)}{extra}", file=sys.stderr)

        queue.listener = show
        queue.start()
        try:
            queue.wait()
        except KeyboardInterrupt:
            queue.shutdown()
            print("stopped; `quantdesk downloads run` resumes", file=sys.stderr)
            return 130
    jobs = queue.jobs()
    if args.json:
        emit_json([j.to_json() for j in jobs])
    elif action in ("list", "run", "resume", "add"):
        for j in jobs:
            extra = f"  {j.error}" if j.error else (f"  -> {j.model}" if j.model else "")
            print(f"#{j.id:<4} {j.state:11} {j.repo:40} {j.entry.name:48} {fmt_bytes(j.done)}/{fmt_bytes(j.total)}"
                  f"{extra}")
        if not jobs:
            print("No downloads.", file=sys.stderr)
    return 0 if all(j.state != "failed" for j in jobs if j.id in ids or not ids) else 1


def register_downloads(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("downloads", help="the persistent download queue: list, add, run, resume, pause, cancel, rm")
    p.add_argument("action", nargs="?", default="list", choices=["list", "add", "run", "resume", "pause", "cancel", "rm"])
    p.add_argument("ids", nargs="*", help="download ids (resume, pause, cancel, rm)")
    p.add_argument("--repo", help="add: the hub repo")
    p.add_argument("--quant", help="add: which quant")
    p.add_argument("--best", action="store_true", help="add: the planner's pick for this machine")
    p.add_argument("--ctx", type=context_length, default=None)
    p.add_argument("--now", action="store_true", help="add: and run the queue until it is empty")
    p.add_argument("--concurrency", type=positive, default=2, help="downloads at a time (default 2)")
    add_common(p)
    p.set_defaults(func=cmd_downloads)
