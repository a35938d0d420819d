"""Turn a conversation into the prompt text the model was trained on.

The template is the GGUF's own ``tokenizer.chat_template`` (Jinja, as published with the model),
rendered in Jinja's immutable sandbox so a hostile template cannot reach Python objects — and in a
child process with a time budget, capped memory and a bounded output (``template_child``), so one
that loops, recurses or prints gigabytes cannot hang or crash the window or the model's server.
Where the model has none, or it fails to render, a named fallback is used and the caller is told
which — a silently wrong template is the "model talks nonsense" complaint users have about other apps.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from quantdesk.base.child_process import kill_tree, spawn_module
from quantdesk.base.errors import QuantDeskError

RENDER_SECONDS = 2.0          # a real template renders in milliseconds
STARTUP_SECONDS = 60.0        # starting the renderer (not counted in a render's budget)
MAX_PROMPT_CHARS = 4 << 20    # far past any context window


class TemplateRenderError(QuantDeskError):
    """The template failed, or ran over a budget (``kind``: error, timeout, too_large, memory, recursion)."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


class TemplateRenderer:
    """A long-lived renderer child; killed and started afresh when a render runs over its time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()

    def render(self, template: str, context: dict[str, Any], timeout: float = RENDER_SECONDS,
               max_chars: int = MAX_PROMPT_CHARS) -> str:
        request = json.dumps({"template": template, "context": context, "max_chars": max_chars}) + "\n"
        with self._lock:
            proc = self._running()
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                line = self._answers.get(timeout=timeout)
            except queue.Empty:
                self._restart()
                raise TemplateRenderError(f"it took longer than {timeout:g} s to render (a loop that does not end?)",
                                          "timeout") from None
            except OSError:
                line = None
            if not line:
                self._restart()
                raise TemplateRenderError("the template renderer stopped while rendering it", "memory")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise TemplateRenderError(answer.get("message", "it failed"), answer.get("kind", "error"))
        return answer["text"]

    def _running(self) -> subprocess.Popen:
        """The renderer, started (and waited for: a slow start, e.g. a frozen app's first run under a
        virus scanner, must not count against a template's time budget)."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = spawn_module("quantdesk.chat.template_child", None)
            self._answers = queue.Queue()
            threading.Thread(target=self._read, args=(self._proc, self._answers), daemon=True,
                             name="template-answers").start()
            try:
                ready = self._answers.get(timeout=STARTUP_SECONDS)
            except queue.Empty:
                ready = None
            if not ready or not json.loads(ready).get("ready"):
                self._restart()
                raise TemplateRenderError("the template renderer did not start", "error")
        return self._proc

    @staticmethod
    def _read(proc: subprocess.Popen, answers: "queue.Queue[str | None]") -> None:
        for line in proc.stdout:
            answers.put(line)
        answers.put(None)

    def _restart(self) -> None:
        if self._proc is not None:
            kill_tree(self._proc)
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if stream:
                    stream.close()
        self._proc = None

    def close(self) -> None:
        with self._lock:
            self._restart()


_shared: list[TemplateRenderer] = []
_shared_lock = threading.Lock()


def renderer() -> TemplateRenderer:
    """The process's one renderer, started on first use."""
    with _shared_lock:
        if not _shared:
            _shared.append(TemplateRenderer())
        return _shared[0]


# ChatML is the most widely trained-on format; a plain transcript is the last resort.
FALLBACKS: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}
FALLBACK_STOPS: dict[str, list[str]] = {"chatml": ["<|im_end|>", "<|im_start|>"]}


@dataclass(frozen=True)
class ChatTemplate:
    source: str          # "model" or the fallback's name
    text: str
    bos_token: str = ""
    eos_token: str = ""
    note: str | None = None   # told to the user when a fallback is in use

    @property
    def stop(self) -> list[str]:
        """Extra stop strings; the model's own end-of-turn tokens stop generation by themselves."""
        return list(FALLBACK_STOPS.get(self.source, []))

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return renderer().render(self.text, {"messages": messages, "add_generation_prompt": add_generation_prompt,
                                             "bos_token": self.bos_token, "eos_token": self.eos_token})

    def fallback(self, why: str, name: str = "chatml") -> "ChatTemplate":
        """The named fallback, with a note saying why the model's own template is not used."""
        return ChatTemplate(name, FALLBACKS[name], self.bos_token, self.eos_token,
                            f"the model's chat template {why}; using the {name} fallback")


def _token_text(metadata: dict[str, Any], key: str) -> str:
    tokens = metadata.get("tokenizer.ggml.tokens")
    index = metadata.get(f"tokenizer.ggml.{key}_token_id")
    if isinstance(tokens, list) and isinstance(index, int) and 0 <= index < len(tokens):
        return str(tokens[index])
    return ""


_PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
          {"role": "assistant", "content": "a"}, {"role": "user", "content": "v"}]


def template_for(metadata: dict[str, Any], fallback: str = "chatml") -> ChatTemplate:
    """The model's template when it renders a normal conversation, else the named fallback."""
    bos, eos = _token_text(metadata, "bos"), _token_text(metadata, "eos")
    text = metadata.get("tokenizer.chat_template")
    if isinstance(text, str) and text.strip():
        template = ChatTemplate("model", text, bos, eos)
        try:
            template.render(_PROBE)
            return template
        except TemplateRenderError as exc:
            if exc.kind == "error":
                try:  # some templates refuse a system message; that is a property, not a failure
                    template.render(_PROBE[1:])
                    return template
                except TemplateRenderError:
                    pass
            return template.fallback(_failed(exc), fallback)
    else:
        note = f"this model has no chat template; using the {fallback} fallback"
    return ChatTemplate(fallback, FALLBACKS[fallback], bos, eos, note)


def _failed(exc: TemplateRenderError) -> str:
    return f"failed to render ({exc})" if exc.kind == "error" else f"was stopped: {exc}"


def render_prompt(template: ChatTemplate, messages: list[dict[str, str]]) -> tuple[str, ChatTemplate]:
    """Render, merging a system message into the first user turn when the template refuses one.

    A template that runs over a budget on this conversation is replaced by the named fallback: the
    template actually used comes back with the prompt (its ``note`` says why, for the user).
    """
    try:
        return template.render(messages), template
    except TemplateRenderError as exc:
        if exc.kind != "error":
            if template.source != "model":
                raise QuantDeskError(f"the chat template could not render this conversation: {exc}") from exc
            fallback = template.fallback(_failed(exc))
            return fallback.render(messages), fallback
        if messages and messages[0]["role"] == "system" and len(messages) > 1:
            system, first, rest = messages[0], messages[1], messages[2:]
            merged = {"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}
            try:
                return template.render([merged, *rest]), template
            except TemplateRenderError:
                pass
        raise QuantDeskError(f"the chat template could not render this conversation: {exc}") from exc
