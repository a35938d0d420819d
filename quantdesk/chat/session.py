"""A conversation with the loaded model: template, context fitting, streaming and persistence.

Qt-free; the CLI and the chat pane drive the same object. Every event a caller sees has
already been written to the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from quantdesk.base.errors import QuantDeskError
from quantdesk.chat.engine import Engine, Finished, Token
from quantdesk.chat.sampling import Sampling, defaults_for
from quantdesk.chat.store import ChatStore, Conversation, Message
from quantdesk.chat.template import ChatTemplate, render_prompt

HISTORY_STATUSES = ("complete", "stopped", "interrupted")
MIN_REPLY_TOKENS = 64


@dataclass
class Notice:
    """Something the user should know about this reply (context trimmed, template fallback)."""
    text: str


ChatEvent = Token | Notice | Finished


class ChatSession:
    def __init__(self, engine: Engine, store: ChatStore, conversation_id: int | None = None, *,
                 model_name: str | None = None, system_prompt: str | None = None,
                 sampling: Sampling | None = None) -> None:
        if engine.report is None:
            raise QuantDeskError("the model is not loaded")
        self.engine = engine
        self.store = store
        raw = engine.report.raw
        metadata = dict(raw.get("metadata", {}))
        self.template: ChatTemplate = engine.template or Engine._choose_template(raw)
        self.add_bos = bool(raw.get("add_bos", True))
        self.model_defaults = defaults_for(metadata)
        if conversation_id is None:
            conv = store.create(model=model_name, system_prompt=system_prompt or "",
                                sampling=(sampling or self.model_defaults).to_json())
        else:
            conv = store.get(conversation_id)
            changes: dict[str, Any] = {}
            if system_prompt is not None:
                changes["system_prompt"] = system_prompt
            if sampling is not None:
                changes["sampling"] = sampling.to_json()
            if changes:
                store.update(conv.id, **changes)
        self.conversation_id = conv.id

    # --- state -----------------------------------------------------------------------------
    @property
    def conversation(self) -> Conversation:
        return self.store.get(self.conversation_id)

    @property
    def sampling(self) -> Sampling:
        return Sampling.from_json(self.conversation.sampling or self.model_defaults.to_json())

    def set_sampling(self, sampling: Sampling) -> None:
        self.store.update(self.conversation_id, sampling=sampling.to_json())

    def set_system_prompt(self, text: str) -> None:
        self.store.update(self.conversation_id, system_prompt=text)

    def stop(self) -> None:
        self.engine.stop_generation()

    # --- turns -----------------------------------------------------------------------------
    def send(self, text: str) -> Iterator[ChatEvent]:
        if not text.strip():
            raise QuantDeskError("nothing to send")
        conv = self.conversation
        if not conv.messages and conv.title == "New chat":
            self.store.rename(conv.id, _title_from(text))
        self.store.add_message(self.conversation_id, "user", text)
        yield from self._reply()

    def regenerate(self) -> Iterator[ChatEvent]:
        """Answer the last message again; the earlier answers stay, to flip back to (``show_version``)."""
        messages = self.conversation.messages
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            raise QuantDeskError("there is no message to answer yet")
        old = next((m for m in messages[messages.index(last_user) + 1:] if m.role == "assistant"), None)
        earlier: list[dict] = []
        if old is not None and (old.content or old.versions):
            earlier = list(old.versions) or [old.as_version()]
            if old.versions:
                earlier[old.version] = old.as_version()
        self.store.truncate_after(self.conversation_id, last_user.id)
        yield from self._reply(earlier)

    def show_version(self, message_id: int, index: int) -> None:
        """Show another of a regenerated reply's answers (it is what the next reply builds on)."""
        self.store.show_version(message_id, index)

    def edit(self, message_id: int, text: str) -> Iterator[ChatEvent]:
        """Change a user turn, forget everything after it, and answer again."""
        message = next((m for m in self.conversation.messages if m.id == message_id), None)
        if message is None or message.role != "user":
            raise QuantDeskError("only your own messages in this conversation can be edited")
        self.store.update_message(message_id, content=text)
        self.store.truncate_after(self.conversation_id, message_id)
        yield from self._reply()

    # --- the reply -------------------------------------------------------------------------
    def _history(self, conv: Conversation) -> list[Message]:
        return [m for m in conv.messages if m.status in HISTORY_STATUSES and m.role in ("user", "assistant")]

    def _render(self, system: str, history: list[Message]) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + \
                   [{"role": m.role, "content": m.content} for m in history]
        prompt, self.template = render_prompt(self.template, messages)
        if self.add_bos and self.template.bos_token and prompt.startswith(self.template.bos_token):
            prompt = prompt[len(self.template.bos_token):]  # llama.cpp adds BOS itself; never twice
        return prompt

    def fit_prompt(self, conv: Conversation, reply_tokens: int) -> tuple[str, int, int]:
        """The prompt that leaves room for the reply, dropping the oldest turns as needed.

        Returns (prompt, prompt tokens, messages dropped). The system prompt is always kept.
        """
        n_ctx = self.engine.report.n_ctx if self.engine.report else 0
        history = self._history(conv)
        budget = n_ctx - min(reply_tokens, max(MIN_REPLY_TOKENS, n_ctx // 4))
        dropped = 0
        while True:
            prompt = self._render(conv.system_prompt, history)
            n = self.engine.tokenize(prompt)
            if n <= budget:
                return prompt, n, dropped
            if len(history) <= 1:
                raise QuantDeskError(
                    f"this message needs {n} tokens but the context holds {n_ctx} (with room for a reply); "
                    "shorten it or reload the model with a longer context")
            cut = 1
            while cut < len(history) - 1 and history[cut].role != "user":
                cut += 1  # never start the history with an orphaned reply
            history = history[cut:]
            dropped += cut

    def _reply(self, earlier: list[dict] | None = None) -> Iterator[ChatEvent]:
        conv = self.conversation
        sampling = Sampling.from_json(conv.sampling or self.model_defaults.to_json())
        if self.template.note:
            yield Notice(f"Chat template: {self.template.note}.")
        told = self.template.note
        prompt, n_prompt, dropped = self.fit_prompt(conv, sampling.max_tokens)
        if self.template.note and self.template.note != told:  # the model's template gave up on this conversation
            yield Notice(f"Chat template: {self.template.note}.")
        if dropped:
            yield Notice(f"The conversation is longer than the {self.engine.report.n_ctx}-token context: "
                         f"the oldest {dropped} message{'s' if dropped != 1 else ''} "
                         "were left out of this reply (the system prompt is kept).")
        n_ctx = self.engine.report.n_ctx
        sampling = sampling.with_(max_tokens=max(1, min(sampling.max_tokens, n_ctx - n_prompt)))
        reply = self.store.add_message(self.conversation_id, "assistant", "", status="streaming")
        text = ""
        finished: Finished | None = None
        try:
            for event in self.engine.complete(prompt, sampling, self.template.stop, prompt_tokens=n_prompt):
                if isinstance(event, Token):
                    text += event.text
                    self.store.update_message(reply.id, content=text)
                else:
                    finished = event
                    if event.note:
                        yield Notice(f"{event.note[0].upper()}{event.note[1:]}.")
                yield event
        finally:
            if finished is None:  # the consumer went away or an error escaped: keep what came
                self.store.update_message(reply.id, content=text, status="stopped")
                if earlier:  # and the answers it was regenerating
                    self.store.set_versions(reply.id, [*earlier, {"content": text, "status": "stopped",
                                                                 "figures": None}], len(earlier))
        status = {"stopped": "stopped", "crashed": "interrupted"}.get(finished.finish_reason, "complete")
        figures = finished.to_json()
        figures.pop("text", None)
        figures["dropped_messages"] = dropped
        self.store.update_message(reply.id, content=finished.text, status=status, figures=figures)
        if earlier:
            versions = [*earlier, {"content": finished.text, "status": status, "figures": figures}]
            self.store.set_versions(reply.id, versions, len(versions) - 1)


def _title_from(text: str, limit: int = 48) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
