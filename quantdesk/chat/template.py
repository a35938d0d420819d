"""Turn a conversation into the prompt text the model was trained on.

The template is the GGUF's own ``tokenizer.chat_template`` (Jinja, as published with the model),
rendered in Jinja's immutable sandbox so a hostile template cannot reach Python objects. Where the
model has none, or it fails to render, a named fallback is used and the caller is told which —
a silently wrong template is the "model talks nonsense" complaint users have about other apps.
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from quantdesk.base.errors import QuantDeskError

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
        return _compile(self.text).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token, eos_token=self.eos_token,
        )


class _Raise(Exception):
    pass


def _raise_exception(message: str) -> None:
    raise _Raise(message)


def _strftime_now(fmt: str) -> str:
    return _dt.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile(text: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return env.from_string(text)


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
        except (TemplateError, _Raise, TypeError, ValueError) as exc:
            try:  # some templates refuse a system message; that is a property, not a failure
                template.render(_PROBE[1:])
                return template
            except Exception:
                pass
            note = (f"the model's chat template failed to render ({type(exc).__name__}: {exc}); "
                    f"using the {fallback} fallback")
    else:
        note = f"this model has no chat template; using the {fallback} fallback"
    return ChatTemplate(fallback, FALLBACKS[fallback], bos, eos, note)


def render_prompt(template: ChatTemplate, messages: list[dict[str, str]]) -> str:
    """Render, merging a system message into the first user turn when the template refuses one."""
    try:
        return template.render(messages)
    except (TemplateError, _Raise) as exc:
        if messages and messages[0]["role"] == "system" and len(messages) > 1:
            system, first, rest = messages[0], messages[1], messages[2:]
            merged = {"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}
            return template.render([merged, *rest])
        raise QuantDeskError(f"the chat template could not render this conversation: {exc}") from exc
