"""The engine's child process: llama-cpp-python's OpenAI-compatible server for one model.

Run as ``python -m quantdesk.chat.engine_child``; its settings (the API key among them) arrive as
the first line on stdin, never on the command line, which every local user can read in /proc. It
loads the model, binds 127.0.0.1 on the requested port (0: any free one), prints one JSON line on
stdout — ``{"event": "ready", "port": N, "report": {...}}`` or ``{"event": "error", "message": ...}``
— and serves until stopped. llama.cpp's log goes to stderr (the parent keeps it in a file) and is
also read here for what really happened at load: layers offloaded, buffer sizes.

Routes added to llama_cpp.server's app: ``GET /quantdesk/status`` (load report, context in use, the
last request's eval timings) and ``POST /quantdesk/stop``, which ends the generation in progress at
the next token — whether or not its bytes have formed text yet (llama-cpp-python sends nothing, and
so checks nothing, while a multi-byte character is incomplete). A client that disconnects stops its
generation the same way. Requests queue for the one model (at most ``MAX_WAITING`` wait; more get a
429), and chat templates render through the budgeted renderer (``template``). With ``watch_stdin``
the child exits when its stdin closes, so it never outlives a parent that crashed.
"""

import asyncio
import contextvars
import ctypes
import itertools
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from quantdesk.hardware.llama_log import load_report_from_log

_log_lines: list[str] = []
_log_lock = threading.Lock()
_partial = [""]


_protocol = [sys.stdout]


def _emit(event: dict[str, Any]) -> None:
    _protocol[0].write(json.dumps(event) + "\n")
    _protocol[0].flush()


def _own_stdout() -> None:
    """Keep stdout for our JSON lines; whatever native code prints (an abort's backtrace) goes to the log."""
    _protocol[0] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _install_log_capture() -> Any:
    import llama_cpp

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        piece = text.decode("utf-8", "replace")
        sys.stderr.write(piece)
        with _log_lock:
            joined = _partial[0] + piece
            *complete, _partial[0] = joined.split("\n")
            _log_lines.extend(complete)
            del _log_lines[:-4000]

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    return on_log  # the caller keeps it alive: ctypes callbacks must not be collected


def _rss() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        import psutil

        out["VmRSS"] = psutil.Process().memory_info().rss
    return out


def _watch_stdin() -> None:
    try:
        while sys.stdin.readline():
            pass
    finally:
        os._exit(0)


class _EvalTimer:
    """Wraps ``Llama.eval`` to time each batch: exact prompt and generation speeds per request."""

    def __init__(self, llama: Any) -> None:
        self.calls: list[tuple[int, float]] = []
        self._orig = llama.eval
        llama.eval = self

    def __call__(self, tokens: Any) -> None:
        t0 = time.perf_counter()
        self._orig(tokens)
        self.calls.append((len(tokens), time.perf_counter() - t0))
        del self.calls[:-100000]

    def take(self) -> dict[str, Any]:
        calls, self.calls = self.calls, []
        if not calls:
            return {"prompt_tokens": 0, "prompt_s": 0.0, "gen_evals": 0, "gen_s": 0.0}
        (n_prompt, prompt_s), rest = calls[0], calls[1:]
        return {"prompt_tokens": n_prompt, "prompt_s": prompt_s,
                "gen_evals": sum(n for n, _ in rest), "gen_s": sum(s for _, s in rest)}


# Which HTTP request a generation serves: set by the middleware, read in the worker thread that
# runs the generation (Starlette's thread pool carries context variables over).
REQUEST_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("quantdesk_request", default=None)


class StopSwitch:
    """Ends a generation at the next sampled token by sampling end-of-generation instead:
    llama-cpp-python then finishes the reply as for a natural stop (``finish_reason`` "stop", the
    stream closed properly), within one token of being asked — whether or not text was flowing."""

    def __init__(self, llama: Any) -> None:
        self.lock = threading.Lock()
        self.requested = threading.Event()
        self.running = 0
        self.active: int | None = None      # the request whose generation runs
        self.abandoned: set[int] = set()     # requests whose client left before their turn came
        eog = [t for t in (llama.token_eos(), llama._model.token_eot()) if t is not None and t >= 0]
        self.eog = eog[0] if eog else 0
        self.budget: int | None = None
        self._sample, self._generate, self._create_completion = llama.sample, llama.generate, llama.create_completion
        llama.sample, llama.generate, llama.create_completion = self.sample, self.generate, self.create_completion

    def create_completion(self, *args: Any, **kwargs: Any) -> Any:
        """Note the request's ``max_tokens``: the one generation it starts is held to it (requests
        run one at a time, under the server's lock, so the next generation is this one's)."""
        max_tokens = kwargs.get("max_tokens", args[1] if len(args) > 1 else 16)
        self.budget = int(max_tokens) if isinstance(max_tokens, int) and max_tokens > 0 else None
        return self._create_completion(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """llama-cpp-python's generation, stoppable, and ended at ``max_tokens`` even while the
        reply's last bytes are an unfinished character (its own check is skipped then, so such a
        reply ran on to the end of the context)."""
        request, budget, self.budget = REQUEST_ID.get(), self.budget, None
        with self.lock:
            if request is not None and request in self.abandoned:
                return  # nobody is waiting for this one any more
            self.requested.clear()  # a stop asked for before this generation is not meant for it
            self.running += 1
            self.active = request
        inner = self._generate(*args, **kwargs)
        try:
            token, count = next(inner), 0
            while True:
                count += 1
                sent = yield token
                if budget is not None and count >= budget:
                    return  # finish_reason stays "length"
                token = inner.send(sent)
        except StopIteration as end:
            return end.value
        finally:
            inner.close()
            with self.lock:
                self.running -= 1
                self.active = None

    def sample(self, *args: Any, **kwargs: Any) -> int:
        token = self._sample(*args, **kwargs)
        if self.requested.is_set():
            self.requested.clear()
            return self.eog
        return token

    def stop(self, request: int | None = None) -> str:
        """Stop the running generation (``request`` None), or that request's, whether it runs now or
        has yet to start. Says which: "running" (it ends at the next token), "queued" (it will not
        start) or "idle" (nothing was generating)."""
        with self.lock:
            if request is not None and self.active != request:
                self.abandoned.add(request)
                return "queued"
            if self.running:
                self.requested.set()
                return "running"
            return "idle"

    def forget(self, request: int) -> None:
        with self.lock:
            self.abandoned.discard(request)


MAX_WAITING = 32  # generations queued behind the running one before new ones get a 429
SERVED = [0]      # completion requests from other programs than the app


class Requests:
    """The generation requests in flight, by the name a client gave one (``X-QuantDesk-Request``), so
    a Stop ends that reply and no other program's; a name stopped before its request arrived is
    stopped when it does."""

    def __init__(self) -> None:
        self.by_name: dict[str, int] = {}
        self.stopped_early: set[str] = set()
        self.stopped_early_order: list[str] = []  # bounded: names that never arrive are forgotten


def _queue_and_disconnects(app: Any, switch: StopSwitch, requests: Requests, app_token: str) -> Any:
    """ASGI middleware: a client that disconnects from a generation stops it, running or queued (the
    server itself notices only when it sends a text piece), too many waiting get a 429, and answered
    requests of other programs than the window (which sends its secret ``app_token``) are counted."""
    waiting, ids = [0], itertools.count(1)

    async def middleware(scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or not str(scope.get("path", "")).endswith("completions"):
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        from_app = bool(app_token) and headers.get(b"x-quantdesk-client", b"").decode(errors="replace") == app_token
        name = headers.get(b"x-quantdesk-request", b"").decode(errors="replace")
        if waiting[0] > MAX_WAITING:
            body = json.dumps({"error": {"message": f"the model is busy: {waiting[0]} requests are waiting for it; "
                                                    "try again shortly", "type": "busy"}}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5")]})
            await send({"type": "http.response.body", "body": body})
            return
        request = next(ids)
        done = asyncio.Event()
        watcher: list[asyncio.Task] = []

        async def watch() -> None:  # uvicorn answers every waiting receive() when the client leaves
            message = await receive()
            if message.get("type") == "http.disconnect" and not done.is_set():
                switch.stop(request)

        async def receive_body() -> dict:
            message = await receive()
            if message.get("type") == "http.request" and not message.get("more_body") and not watcher:
                watcher.append(asyncio.ensure_future(watch()))
            elif message.get("type") == "http.disconnect" and not done.is_set():
                switch.stop(request)
            return message

        async def send_watched(message: dict) -> None:
            if message.get("type") == "http.response.start" and message.get("status") == 200 and not from_app:
                SERVED[0] += 1  # answered for another program (the window shows how many)
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                done.set()
            await send(message)

        waiting[0] += 1
        token = REQUEST_ID.set(request)
        if name:
            requests.by_name[name] = request
            if name in requests.stopped_early:
                requests.stopped_early.discard(name)
                switch.stop(request)
        try:
            await app(scope, receive_body, send_watched)
        finally:
            done.set()
            for task in watcher:
                task.cancel()
            REQUEST_ID.reset(token)
            switch.forget(request)
            if name:
                requests.by_name.pop(name, None)
            waiting[0] -= 1

    return middleware


def _budgeted_chat_handler(llama: Any, report: dict[str, Any]) -> Any:
    """/v1/chat/completions renders the template through the budgeted renderer (a hostile template
    cannot wedge the server), falling back to ChatML with a line in the log."""
    from llama_cpp import llama_chat_format

    from quantdesk.chat.template import ChatTemplate, render_prompt, template_for

    chosen = template_for(dict(report.get("metadata", {})))
    template = ChatTemplate(chosen.source, chosen.text, report.get("bos_text", ""), report.get("eos_text", ""),
                            chosen.note)
    if template.note:
        print(f"quantdesk: chat template: {template.note}", file=sys.stderr)

    def formatter(*, messages: list[dict[str, Any]], **_: Any) -> Any:
        plain = [{"role": str(m.get("role", "user")), "content": _text_of(m.get("content"))} for m in messages]
        prompt, used = render_prompt(template, plain)
        if used is not template:
            print(f"quantdesk: chat template: {used.note}", file=sys.stderr)
        bos = template.bos_token
        return llama_chat_format.ChatFormatterResponse(
            prompt=prompt, stop=[s for s in [*used.stop, template.eos_token] if s],
            added_special=bool(bos and prompt.startswith(bos)) or not report.get("add_bos", True))

    return llama_chat_format.chat_formatter_to_chat_completion_handler(formatter)


def _text_of(content: Any) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _defer_template_compiles() -> None:
    """llama-cpp-python compiles every chat template in the model's metadata while loading it, in
    this process, and Jinja folds constant expressions as it compiles: ``{{ 'x' * 10**10 }}`` would
    take this process down before it served a byte. Templates are rendered by the budgeted renderer
    instead (``_budgeted_chat_handler``), so its formatter is replaced by one that compiles nothing."""
    from llama_cpp import llama_chat_format

    class NotCompiled:
        def __init__(self, template: str, *args: Any, **kwargs: Any) -> None:
            self.template = template

        def to_chat_handler(self) -> Any:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise ValueError("this chat format is served through QuantDesk's template renderer")
            return refuse

    llama_chat_format.Jinja2ChatFormatter = NotCompiled


def _gpu_backends() -> list[str]:
    """The GPU backends this build registered, found a device or not ("vulkan", "cuda"…)."""
    try:
        from quantdesk.hardware.ggml_devices import registered_backends

        return [b for b in registered_backends() if b not in ("cpu", "blas", "rpc")]
    except Exception:  # noqa: BLE001 - only the load report's wording depends on it
        return []


def _read_settings(argv: list[str]) -> dict[str, Any]:
    """From stdin's first line (argv is readable by every local user); argv still works for tools."""
    if argv:
        return json.loads(argv[0])
    return json.loads(sys.stdin.readline())


def _piece(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    # llama-cpp-python 0.3.36 returns its whole 32-byte buffer: the piece, then NULs
    return llama._model.token_to_piece(token, special=True).rstrip(b"\0").decode("utf-8", "replace")


def main(argv: list[str]) -> int:
    settings = _read_settings(argv)
    _own_stdout()
    keep = _install_log_capture()
    from quantdesk.hardware.ggml_devices import load_backends

    load_backends()  # a portable build registers its CPU variant and GPU backends only when asked
    if settings.get("watch_stdin"):
        threading.Thread(target=_watch_stdin, daemon=True).start()
    try:
        import llama_cpp
        import llama_cpp.server.app as server_app
        import uvicorn
        from fastapi import Request
        from fastapi.responses import JSONResponse
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings

        _defer_template_compiles()
        model_args = dict(settings["model"])
        cpu_moe_layers = int(model_args.pop("cpu_moe_layers", 0) or 0)
        expert_pattern = None
        if cpu_moe_layers > 0:
            from quantdesk.chat.expert_override import keep_experts_in_ram

            expert_pattern = keep_experts_in_ram(cpu_moe_layers)
        model_settings = ModelSettings(verbose=True, logits_all=False, **model_args)
        server_settings = ServerSettings(host=settings.get("host", "127.0.0.1"), port=settings.get("port", 0),
                                         api_key=settings.get("api_key"), interrupt_requests=False)
        t0 = time.perf_counter()
        app = create_app(server_settings=server_settings, model_settings=[model_settings])
        load_s = time.perf_counter() - t0
    except Exception as exc:  # the model failed to load: tell the parent why, in a sentence
        with _log_lock:
            errors = [line for line in _log_lines if "error" in line.lower() or "failed" in line.lower()]
        detail = errors[-1].strip() if errors else ""
        _emit({"event": "error", "message": str(exc) or type(exc).__name__, "detail": detail})
        return 2

    llama = server_app._llama_proxy._current_model  # the one model this child serves
    timer = _EvalTimer(llama)
    switch = StopSwitch(llama)
    requests = Requests()
    with _log_lock:
        report = load_report_from_log(list(_log_lines))
    if report["total_layers"] is None:  # CPU-only builds do not log the offload line
        block_count = llama.metadata.get(f"{llama.metadata.get('general.architecture', 'llama')}.block_count")
        report["total_layers"] = int(block_count) + 1 if str(block_count or "").isdigit() else None
    report.update({
        "load_s": load_s, "n_ctx": llama.n_ctx(), "n_vocab": llama.n_vocab(),
        "gpu_offload_supported": bool(llama_cpp.llama_supports_gpu_offload()),
        "gpu_backends": _gpu_backends(),
        "requested_gpu_layers": settings["model"].get("n_gpu_layers", 0),
        "cpu_moe_layers": cpu_moe_layers, "expert_pattern": expert_pattern,
        "memory": _rss(), "pid": os.getpid(),
        "add_bos": bool(llama._model.add_bos_token()),
        "eog_tokens": sorted({t for t in (llama.token_eos(), llama._model.token_eot()) if t >= 0}),
        "bos_text": _piece(llama, llama.token_bos()), "eos_text": _piece(llama, llama.token_eos()),
        "metadata": {k: v for k, v in llama.metadata.items()
                     if k == "tokenizer.chat_template" or k.startswith("general.sampling.")
                     or k in ("general.name", "general.architecture")},
    })

    def authorized(request: Request) -> bool:
        key = settings.get("api_key")
        return not key or request.headers.get("authorization") == f"Bearer {key}"

    @app.get("/quantdesk/status")
    async def status(request: Request) -> Any:
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return {"report": report, "n_tokens": llama.n_tokens, "memory": _rss(), "last": timer.take(),
                "served": SERVED[0]}

    @app.get("/quantdesk/served")
    async def served(request: Request) -> Any:  # for a window polling: leaves the reply timings alone
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return {"served": SERVED[0]}

    @app.post("/quantdesk/stop")
    async def stop(request: Request) -> Any:
        """Stop one reply: the request named in the body's ``request`` (the window names its own), else
        whatever generates now. Answers its state: running (ends at the next token), queued, idle."""
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            name = str((await request.json()).get("request") or "")
        except ValueError:
            name = ""
        if not name:
            return {"state": switch.stop()}
        if name in requests.by_name:
            return {"state": switch.stop(requests.by_name[name])}
        requests.stopped_early.add(name)  # its request has not arrived yet: it will not generate
        requests.stopped_early_order.append(name)
        while len(requests.stopped_early_order) > 256:
            requests.stopped_early.discard(requests.stopped_early_order.pop(0))
        return {"state": "queued"}

    llama.chat_handler = _budgeted_chat_handler(llama, report)

    sock = socket.socket(socket.AF_INET6 if ":" in server_settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((server_settings.host, server_settings.port))
    except OSError as exc:
        _emit({"event": "error", "message": f"cannot listen on {server_settings.host}:{server_settings.port}: "
                                            f"{exc.strerror or exc}"})
        return 3
    sock.listen(64)
    port = sock.getsockname()[1]
    _emit({"event": "ready", "port": port, "report": report})
    config = uvicorn.Config(_queue_and_disconnects(app, switch, requests, str(settings.get("app_token") or "")),
                            log_level="warning", timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[sock])
    del keep
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
