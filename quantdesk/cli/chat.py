"""CLI verbs for the engine: chat, serve, and the stored conversations (chats)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.units import fmt_bytes
from quantdesk.cli.output import context_length, emit_json, port, positive


def resolve_model(key: str) -> tuple[str, str]:
    """(path, display name) for a library name or a path to a .gguf file."""
    from quantdesk.library.index import Library

    found = Library().find(key)
    if found is not None:
        return found.path, found.name
    path = Path(key).expanduser()
    if path.is_file():
        return str(path.resolve()), path.name
    raise QuantDeskError(f"'{key}' is neither a model in the library (see `quantdesk list`) nor a GGUF file")


def _gpu_layers(value: str) -> str | int:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use 'auto' or a number of layers") from None
    if n < 0:
        raise argparse.ArgumentTypeError("the number of GPU layers cannot be negative")
    return n


def start_engine(args: argparse.Namespace, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = "random", quiet: bool = False):
    from quantdesk.chat.load import start_model
    from quantdesk.hardware.detect import resolve_hardware

    path, name = resolve_model(args.model)

    def loading(planned) -> None:
        if not quiet:
            print(f"Loading {name} ({planned.settings.n_ctx} tokens of context)…", file=sys.stderr)

    engine, planned = start_model(path, resolve_hardware(args.hardware), args.ctx, args.kv_type, args.gpu_layers,
                                  args.threads, on_planned=loading, host=host, port=port, api_key=api_key,
                                  cpu_moe=args.cpu_moe)
    report = engine.report
    if not quiet:
        print(f"Loaded in {report.load_s:.1f} s: {report.summary}; {fmt_bytes(report.ram)} RAM in use.",
              file=sys.stderr)
        for note in planned.notes + report.notes:
            print(f"  note: {note}", file=sys.stderr)
    return engine, name


def _sampling(args: argparse.Namespace, base):
    return base.with_(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                      repeat_penalty=args.repeat_penalty, seed=args.seed, max_tokens=args.max_tokens,
                      ignore_eos=True if args.ignore_eos else None)


def _stream(session, events, out_json: bool) -> Any:
    """Print a reply as it streams; Ctrl+C stops the reply, not the program."""
    from quantdesk.chat.engine import Finished, Token
    from quantdesk.chat.session import Notice

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: session.stop())
    finished = None
    try:
        for event in events:
            if isinstance(event, Token) and not out_json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, Notice):
                print(f"\n[{event.text}]", file=sys.stderr)
            elif isinstance(event, Finished):
                finished = event
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    if not out_json:
        sys.stdout.write("\n")
        ppt = f", prompt {finished.prompt_tokens_per_s:.0f} tok/s" if finished.prompt_tokens_per_s else ""
        used = f", context {finished.context_used}/{finished.n_ctx}" if finished.context_used else ""
        print(f"[{finished.tokens} tokens, first after {finished.ttft_s:.2f} s, {finished.tokens_per_s:.1f} tok/s"
              f"{ppt}{used}{', stopped' if finished.finish_reason == 'stopped' else ''}]", file=sys.stderr)
    if finished.error:
        raise QuantDeskError(f"{finished.error}. What was generated is kept; reload the model to go on")
    return finished


def cmd_chat(args: argparse.Namespace) -> int:
    from quantdesk.chat.session import ChatSession
    from quantdesk.chat.store import ChatStore

    store = ChatStore()  # a damaged chats.db is said before a model is loaded for nothing
    engine, name = start_engine(args, quiet=False)
    with engine:
        session = ChatSession(engine, store, args.conversation, model_name=name, system_prompt=args.system)
        session.set_sampling(_sampling(args, session.sampling))
        if session.template.note:
            print(f"  note: chat template: {session.template.note}", file=sys.stderr)
        if args.prompt is not None:
            finished = _stream(session, session.send(args.prompt), args.json)
            if args.json:
                emit_json({"text": finished.text, "tokens": finished.tokens, "ttft_s": round(finished.ttft_s, 4),
                           "tokens_per_s": round(finished.tokens_per_s, 2), "gpu_layers": engine.report.gpu_layers,
                           "finish_reason": finished.finish_reason, "prompt_tokens": finished.prompt_tokens,
                           "prompt_tokens_per_s": finished.prompt_tokens_per_s,
                           "context_used": finished.context_used, "n_ctx": finished.n_ctx,
                           "conversation_id": session.conversation_id, "template": session.template.source,
                           "load": engine.report.to_json()})
            return 0
        return _interactive(session)


HELP = ("Type a message and press Enter. Ctrl+C stops a reply. Commands: /regen (answer again), "
        "/system TEXT (set the system prompt), /new (start a new conversation), /exit.")


def _interactive(session) -> int:
    print(f"Conversation {session.conversation_id}. {HELP}", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        try:
            if text in ("/exit", "/quit"):
                return 0
            if text == "/help":
                print(HELP, file=sys.stderr)
            elif text == "/regen":
                _stream(session, session.regenerate(), False)
            elif text.startswith("/system"):
                session.set_system_prompt(text[len("/system"):].strip())
                print("[system prompt set]", file=sys.stderr)
            elif text == "/new":
                from quantdesk.chat.session import ChatSession

                fresh = ChatSession(session.engine, session.store, model_name=session.conversation.model,
                                    sampling=session.sampling)
                session = fresh
                print(f"[conversation {session.conversation_id}]", file=sys.stderr)
            else:
                _stream(session, session.send(text), False)
        except QuantDeskError as exc:
            print(f"quantdesk: {exc}", file=sys.stderr)
            if not session.engine.alive:
                return 1


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _hide_key_from_process_list(key: str) -> None:
    """Rewrite this process's command line with the key masked (what /proc/PID/cmdline shows)."""
    try:
        import setproctitle
    except ImportError:
        return
    shown = " ".join("********" if part == key else part.replace(key, "********") for part in sys.argv)
    setproctitle.setproctitle(f"quantdesk {shown.split(' ', 1)[1] if ' ' in shown else shown}")


def serve_api_key(args: argparse.Namespace) -> str | None:
    """The key ``serve`` requires: from ``--api-key-file`` (``-``: the first line of stdin), or
    ``--api-key`` with a warning (a command line is visible to every local user). A non-loopback
    address without a key is refused unless ``--insecure-no-key`` says it is meant."""
    key = args.api_key
    if args.api_key_file:
        try:
            text = sys.stdin.readline() if args.api_key_file == "-" else Path(args.api_key_file).read_text()
        except OSError as exc:
            raise QuantDeskError(f"cannot read the API key from {args.api_key_file}: {exc.strerror or exc}") from None
        key = text.strip()
        if not key:
            raise QuantDeskError(f"{args.api_key_file} holds no API key")
    elif key:
        _hide_key_from_process_list(key)
        print("quantdesk: warning: --api-key was visible to other users of this machine in the process list "
              "while QuantDesk started (it is hidden now); prefer --api-key-file FILE (or - for stdin)",
              file=sys.stderr)
    if not key and not _is_loopback(args.host) and not args.insecure_no_key:
        raise QuantDeskError(
            f"refusing to serve on {args.host} without an API key: anyone who can reach this machine could use the "
            "model", "Add --api-key-file FILE (a key only you know), or --insecure-no-key if that is really meant.")
    return key or None


def cmd_serve(args: argparse.Namespace) -> int:
    api_key = serve_api_key(args)
    engine, name = start_engine(args, host=args.host, port=args.port, api_key=api_key, quiet=args.json)
    url = f"http://{engine.host}:{engine.port}/v1"
    if args.json:
        emit_json({"url": url, "port": engine.port, "model": name, "load": engine.report.to_json()})
        sys.stdout.flush()
    else:
        print(f"Serving {name} at {url} (OpenAI-compatible: /v1/chat/completions, /v1/completions, /v1/models). "
              "Ctrl+C stops.", file=sys.stderr)
    try:
        code = engine.wait()
    except KeyboardInterrupt:
        engine.stop()
        return 0
    if code:
        raise QuantDeskError(engine.death_message())
    return 0


def cmd_chats(args: argparse.Namespace) -> int:
    from quantdesk.chat.store import ChatStore

    store = ChatStore()
    action = args.action
    if action in ("list", "search"):
        if action == "search" and not args.args:
            raise QuantDeskError("search needs some text")
        convs = store.list(" ".join(args.args) if action == "search" else None)
        if args.json:
            emit_json([{"id": c.id, "title": c.title, "model": c.model, "updated_at": c.updated_at} for c in convs])
        else:
            for c in convs:
                print(f"{c.id:5}  {c.title[:60]:60}  {c.model or ''}")
            if not convs:
                print("no conversations", file=sys.stderr)
        return 0
    if not args.args:
        raise QuantDeskError(f"`chats {action}` needs a conversation id")
    try:
        cid = int(args.args[0])
    except ValueError:
        raise QuantDeskError(f"'{args.args[0]}' is not a conversation id") from None
    if action == "show":
        conv = store.get(cid)
        if args.json:
            emit_json(conv.to_json())
        else:
            sys.stdout.write(store.export_markdown(cid))
    elif action == "rename":
        store.rename(cid, " ".join(args.args[1:]))
    elif action == "rm":
        store.delete(cid)
    elif action == "export":
        text = store.export_json(cid) if args.format == "json" else store.export_markdown(cid)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    return 0


def _add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a library model name or a path to a .gguf file")
    p.add_argument("--ctx", type=context_length, default=None, help="context length (default: the planner's)")
    p.add_argument("--gpu-layers", type=_gpu_layers, default="auto", metavar="auto|N",
                   help="layers on the GPU (default: the planner's split for this machine)")
    p.add_argument("--cpu-moe", type=_gpu_layers, default="auto", metavar="auto|N",
                   help="mixture-of-experts models: keep the routed experts of the first N layers in RAM, the rest "
                        "on the GPU (default: the planner's choice for this machine; 0: none)")
    p.add_argument("--kv-type", default="f16", choices=["f16", "q8_0", "q4_0"], help="KV cache type")
    p.add_argument("--threads", type=positive, default=None, help="CPU threads (default: the Settings choice, else physical cores)")


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("chat", help="chat with a model (one reply with --prompt, else interactive)")
    _add_load_args(p)
    p.add_argument("--prompt", help="send this one message, stream the reply and exit")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--conversation", type=int, default=None, metavar="ID", help="continue a stored conversation")
    p.add_argument("--max-tokens", type=positive, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--repeat-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-turn (for benchmarks)")
    add_common(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", help="serve a model on an OpenAI-compatible HTTP API")
    _add_load_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="port (0: any free one)")
    p.add_argument("--api-key", default=None, help="require this bearer token (visible in the process list: "
                                                    "prefer --api-key-file)")
    p.add_argument("--api-key-file", default=None, metavar="FILE",
                   help="require the bearer token read from FILE (- reads it from stdin)")
    p.add_argument("--insecure-no-key", action="store_true",
                   help="allow a non-loopback --host without an API key (anyone on the network can use it)")
    add_common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chats", help="stored conversations: list, search, show, rename, rm, export")
    p.add_argument("action", nargs="?", default="list", choices=["list", "search", "show", "rename", "rm", "export"])
    p.add_argument("args", nargs="*", help="conversation id (and new title for rename; text for search)")
    p.add_argument("--format", choices=["md", "json"], default="md", help="export format")
    p.add_argument("-o", "--output", default=None, help="export to this file")
    add_common(p)
    p.set_defaults(func=cmd_chats)
