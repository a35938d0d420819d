"""The engine's child process: llama-cpp-python's OpenAI-compatible server for one model.

Run as ``python -m quantdesk.chat.engine_child SETTINGS_JSON``. It loads the model, binds
127.0.0.1 on the requested port (0: any free one), prints one JSON line on stdout —
``{"event": "ready", "port": N, "report": {...}}`` or ``{"event": "error", "message": ...}`` — and
serves until stopped. llama.cpp's log goes to stderr (the parent keeps it in a file) and is also
read here for what really happened at load: layers offloaded, buffer sizes.

Two routes are added to llama_cpp.server's app: ``GET /quantdesk/status`` (load report, context
in use, the last request's eval timings). With ``watch_stdin`` the child exits when its stdin
closes, so it never outlives a parent that crashed.
"""

import ctypes
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


def _piece(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return llama._model.token_to_piece(token, special=True).decode("utf-8", "replace")


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0])
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

        model_settings = ModelSettings(verbose=True, logits_all=False, **settings["model"])
        server_settings = ServerSettings(host=settings.get("host", "127.0.0.1"), port=settings.get("port", 0),
                                         api_key=settings.get("api_key"), interrupt_requests=True)
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
    with _log_lock:
        report = load_report_from_log(list(_log_lines))
    if report["total_layers"] is None:  # CPU-only builds do not log the offload line
        block_count = llama.metadata.get(f"{llama.metadata.get('general.architecture', 'llama')}.block_count")
        report["total_layers"] = int(block_count) + 1 if str(block_count or "").isdigit() else None
    report.update({
        "load_s": load_s, "n_ctx": llama.n_ctx(), "n_vocab": llama.n_vocab(),
        "gpu_offload_supported": bool(llama_cpp.llama_supports_gpu_offload()),
        "requested_gpu_layers": settings["model"].get("n_gpu_layers", 0),
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
        return {"report": report, "n_tokens": llama.n_tokens, "memory": _rss(), "last": timer.take()}

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
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[sock])
    del keep
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
