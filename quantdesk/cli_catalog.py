"""CLI verbs for finding models on the hub: search and files (with the planner's verdict per file)."""

from __future__ import annotations

import argparse
from typing import Callable

from quantdesk.cli import emit_json
from quantdesk.core.errors import QuantDeskError
from quantdesk.core.units import fmt_bytes


def cmd_search(args: argparse.Namespace) -> int:
    from quantdesk.core.hardware import resolve_hardware
    from quantdesk.core.hub import search_gguf_repos
    from quantdesk.core.plan_service import plan_repo

    repos = search_gguf_repos(args.text, sort=args.sort, limit=args.limit)
    rows = [{**r.to_json(), "best": None} for r in repos]
    if args.fits:
        hw = resolve_hardware(args.hardware)
        order = {"full_gpu": 0, "partial": 1, "cpu_only": 2}
        for row in rows:
            try:
                rec = plan_repo(row["repo"], hw, ctx=args.ctx).recommended
            except QuantDeskError as exc:
                row["error"] = str(exc)
                continue
            if rec is not None:
                row["best"] = {"file": rec.file, "quant": rec.quant, "verdict": rec.verdict,
                               "tokens_per_s": rec.tokens_per_s, "quality_loss": rec.quality_loss, "size": rec.size}
        # which model to pick: runnable first, then by how well the best quant runs, then quality
        rows.sort(key=lambda r: (r["best"] is None,
                                 order.get((r["best"] or {}).get("verdict"), 9),
                                 (r["best"] or {}).get("quality_loss") or 9.0,
                                 -r["downloads"]))
    if args.json:
        emit_json(rows)
        return 0
    for r in rows:
        badge = f" [{r['publisher']}]" if r["publisher"] else ""
        best = r.get("best")
        fit = f"  best here: {best['quant']} ({best['verdict']}, ~{best['tokens_per_s'] or 0:.0f} tok/s)" if best else ""
        if args.fits and not best:
            fit = "  nothing fits" if "error" not in r else f"  ({r['error']})"
        print(f"{r['repo']:60} {r['downloads']:>10,} downloads {r['likes']:>6} likes{badge}{fit}")
    if not rows:
        print("No GGUF repos found.")
    return 0


def cmd_files(args: argparse.Namespace) -> int:
    from quantdesk.core.hardware import resolve_hardware
    from quantdesk.core.hub import list_repo_ggufs, publisher_kind
    from quantdesk.core.plan_service import plan_repo

    entries = list_repo_ggufs(args.repo)
    if not entries:
        raise QuantDeskError(f"{args.repo} has no GGUF files")
    result = plan_repo(args.repo, resolve_hardware(args.hardware), ctx=args.ctx)
    by_file = {o.file: o for o in result.options}
    rows = []
    for e in entries:
        o = by_file.get(e.first)
        rows.append({**e.to_json(), "publisher": publisher_kind(args.repo),
                     "plan": o.to_json() if o else None})
    if args.json:
        emit_json(rows)
        return 0
    print(f"{args.repo} at {result.ctx} tokens of context ({result.hardware.source})")
    for r in rows:
        o = by_file.get(r["parts"][0]["path"])
        verdict = o.summary() if o else "header unreadable"
        mark = "*" if o and o.recommended else " "
        print(f" {mark} {r['name']:55} {r['quant'] or '?':8} {fmt_bytes(r['size']):>10}  {verdict}"
              f"{'  ' + str(len(r['parts'])) + ' parts' if len(r['parts']) > 1 else ''}")
    if result.recommended:
        print(f"  {result.recommended.reason}")
    return 0


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("search", help="search the hub for GGUF models")
    p.add_argument("text")
    p.add_argument("--fits", action="store_true", help="rank by the best quant that runs on this machine")
    p.add_argument("--sort", choices=["downloads", "likes", "recent", "trending"], default="downloads")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--ctx", type=int, default=None)
    add_common(p)
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("files", help="a repo's GGUF files with the planner's verdict for this machine")
    p.add_argument("repo")
    p.add_argument("--ctx", type=int, default=None)
    add_common(p)
    p.set_defaults(func=cmd_files)
