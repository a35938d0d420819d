"""CLI verbs for finding models on the hub: search and files (with the planner's verdict per file)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.units import fmt_bytes
from quantdesk.cli.output import context_length, emit_json, positive, printable


def _offline_notice(why: str) -> str:
    from quantdesk.catalog.offline import load_catalog

    return f"Offline ({why}): showing the {load_catalog().origin()}."


def cmd_search(args: argparse.Namespace) -> int:
    from quantdesk.catalog.search import search
    from quantdesk.hardware.detect import resolve_hardware
    from quantdesk.planning.picks import rank_search_rows

    found = search(args.text, sort=args.sort, limit=args.limit, offline=args.offline)
    notice = None
    if found.source == "hub":
        rows = [{**r.to_json(), "best": None, "source": "hub"} for r in found.rows]
    else:
        notice = _offline_notice("--offline" if args.offline else "the hub cannot be reached")
        if not args.offline:
            notice += f" ({found.reason})"
        # all the catalog's matches: --fits ranks them before --limit keeps the first (the best pick may
        # not be among the smallest)
        rows = [{**r.to_json(), "params": r.params, "best": None, "source": "catalog"} for r in found.rows]
    if notice:
        print(notice, file=sys.stderr)
    if args.fits:
        rank_search_rows(rows, resolve_hardware(args.hardware), ctx=args.ctx)
    rows = rows[:args.limit]
    if args.json:
        emit_json(rows)
        return 0
    for r in rows:
        badge = f" [{r['publisher']}]" if r["publisher"] else ""
        best = r.get("best")
        fit = f"  best here: {best['quant']} ({best['verdict']}, ~{best['tokens_per_s'] or 0:.0f} tok/s)" if best else ""
        if args.fits and not best:
            fit = "  nothing fits" if "error" not in r else f"  ({r['error']})"
        popularity = (f"{r['downloads']:>10,} downloads {r['likes']:>6} likes" if r["source"] == "hub"
                      else f"{r['params'] / 1e9:>8.1f} B params (catalog)")
        print(f"{printable(r['repo']):60} {popularity}{badge}{printable(fit)}")
    if not rows:
        print("No GGUF repos found.")
    return 0


def _catalog_entries(repo: str, why: Exception | None = None) -> list[dict]:
    from quantdesk.catalog.offline import load_catalog

    model = load_catalog().find(repo)
    if model is None:
        if why is None:  # --offline
            raise QuantDeskError(f"{repo} is not in the offline catalog", "Leave out --offline to ask the hub.")
        raise QuantDeskError(f"{why}; {repo} is not in the offline catalog either",
                             getattr(why, "next_step", None))
    return [{"name": f.path, "quant": f.quant, "size": model.estimated_size(f), "size_estimated": f.size is None,
             "parts": [{"path": f.path, "size": f.size, "sha256": f.sha256}], "confidence": f.confidence}
            for f in model.files]


def cmd_files(args: argparse.Namespace) -> int:
    from quantdesk.catalog.refresh import list_and_remember
    from quantdesk.hardware.detect import resolve_hardware
    from quantdesk.hub.client import publisher_kind
    from quantdesk.hub.errors import HubUnreachable
    from quantdesk.planning.plan import plan_named

    hw = resolve_hardware(args.hardware)
    try:
        if args.offline:
            raise HubUnreachable("--offline")
        entries = [{**e.to_json(), "source": "hub"} for e in list_and_remember(args.repo)]
        offline = False
    except HubUnreachable as exc:
        entries = [{**e, "source": "catalog"} for e in _catalog_entries(args.repo, None if args.offline else exc)]
        print(_offline_notice("--offline" if args.offline else f"the hub cannot be reached: {exc}"), file=sys.stderr)
        offline = True
    if not entries:
        raise QuantDeskError(f"{args.repo} has no GGUF files")
    unplanned = None  # why no file could be planned, when the listing came but no header could be read
    try:
        result = plan_named(args.repo, hw, ctx=args.ctx, offline=offline)
    except HubUnreachable:
        raise
    except QuantDeskError as exc:  # gated headers, broken files: still list what the repo has
        result, unplanned = None, str(exc)
    by_file = {o.file: o for o in result.options} if result else {}
    rows = []
    for e in entries:
        o = by_file.get(e["parts"][0]["path"])
        unsafe = _unsafe_name(e["parts"])
        rows.append({**e, "publisher": publisher_kind(args.repo), "plan": o.to_json() if o else None,
                     **({"refused": unsafe} if unsafe else {})})
    if args.json:
        emit_json(rows)
        return 0
    publisher = publisher_kind(args.repo)
    context = f"at {result.ctx} tokens of context ({result.hardware.source})" if result else "(not planned)"
    print(f"{args.repo}{' [' + publisher + ']' if publisher else ''} {context}")
    for r in rows:
        o = by_file.get(r["parts"][0]["path"])
        verdict = r.get("refused") or (o.summary() if o else "header unreadable")
        mark = "*" if o and o.recommended else " "
        size = ("~" if r.get("size_estimated") else "") + fmt_bytes(r["size"])
        sha = r["parts"][0].get("sha256")
        # names, hashes and reasons come from the hub: printed so no escape sequence reaches the terminal
        print(f" {mark} {printable(r['name']):55} {printable(r['quant'] or '?'):8} {size:>10}  {printable(verdict)}"
              f"{'  ' + str(len(r['parts'])) + ' parts' if len(r['parts']) > 1 else ''}")
        print(f"   {'':55} sha256 {printable(sha) if sha else 'not published (cannot be verified)'}")
    if unplanned:
        print(f"  not planned: {printable(unplanned)}")
    if result and result.recommended:
        print(f"  {result.recommended.reason}")
    for note in result.notes if result else []:
        print(f"  note: {note}")
    return 0


def _unsafe_name(parts: list[dict]) -> str | None:
    """Why ``download`` would refuse this file's name (it would land outside the library), if it would."""
    from quantdesk.hub.client import check_repo_path

    for part in parts:
        try:
            check_repo_path(part["path"])
        except QuantDeskError as exc:
            return f"refused: {exc}"
    return None


def cmd_catalog(args: argparse.Namespace) -> int:
    """Which catalog is shown offline, and refreshing it from the hub."""
    from quantdesk.catalog.offline import load_catalog
    from quantdesk.catalog.refresh import refresh_catalog
    from quantdesk.catalog.refresh_store import refresh_due

    result = None
    if args.action == "refresh":
        def progress(done: int, total: int, repo: str) -> None:
            if not args.json and sys.stderr.isatty():
                print(f"\r  {done}/{total} {repo[:60]:60}", end="", file=sys.stderr, flush=True)

        result = refresh_catalog(progress=progress)
        if not args.json and sys.stderr.isatty():
            print(file=sys.stderr)
    catalog = load_catalog()
    status = {"origin": catalog.origin(), "snapshot": catalog.snapshot, "refreshed_at": catalog.refreshed_at,
              "repos": len(catalog.models), "refreshed_repos": catalog.refreshed_repos,
              "files": sum(len(m.files) for m in catalog.models), "refresh_due": refresh_due()}
    if args.json:
        emit_json({**status, **({"refresh": result.to_json()} if result else {})})
        return 0
    if result is not None:
        print(f"Refreshed {len(result.refreshed)} repos from the hub in {result.seconds:.1f} s"
              + (f"; {len(result.gone)} no longer there" if result.gone else "")
              + (f"; {len(result.failed)} failed (kept their older data)" if result.failed else "")
              + (f"; {len(result.absent)} not on {result.endpoint} (a mirror: kept as they were)"
                 if result.absent else ""))
        for repo, why in sorted(result.failed.items())[:5]:
            print(f"  {repo}: {why}")
    print(f"Offline catalog: {status['origin']}; {status['repos']} repos, {status['files']} files.")
    if result is None and status["refresh_due"]:
        print("  `quantdesk catalog refresh` updates it from the hub (exact sizes and hashes).")
    return 0


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("search", help="search the hub for GGUF models")
    p.add_argument("text")
    p.add_argument("--fits", action="store_true", help="rank models by how well their best quant runs here: usable speed, "
                   "full GPU, then the most capable model")
    p.add_argument("--sort", choices=["downloads", "likes", "recent", "trending"], default="downloads")
    p.add_argument("--limit", type=positive, default=20)
    p.add_argument("--ctx", type=context_length, default=None)
    p.add_argument("--offline", action="store_true", help="use the bundled catalog, not the hub")
    add_common(p)
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("files", help="a repo's GGUF files with the planner's verdict for this machine")
    p.add_argument("repo")
    p.add_argument("--ctx", type=context_length, default=None)
    p.add_argument("--offline", action="store_true", help="use the bundled catalog, not the hub")
    add_common(p)
    p.set_defaults(func=cmd_files)
    p = sub.add_parser("catalog", help="the offline catalog: which one is shown; refresh it from the hub")
    p.add_argument("action", nargs="?", choices=["status", "refresh"], default="status")
    add_common(p)
    p.set_defaults(func=cmd_catalog)
