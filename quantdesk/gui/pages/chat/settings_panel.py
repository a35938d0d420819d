"""Reply settings: the system prompt and sampler for a conversation, saved with it.

:class:`SamplingPanel` is the group box (a system prompt box and one spin box per sampler field);
:class:`SettingsMixin` is the page's side: fill the panel from the conversation (else the model's
defaults) and store what the user changes, a moment after they stop changing it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from quantdesk.chat.sampling import Sampling
from quantdesk.chat.store import Conversation


class SamplingPanel(QGroupBox):
    """The "Reply settings" box; ``changed`` fires at every edit, ``defaults_button`` resets the sampler."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Reply settings", parent)
        self.setAccessibleName("Reply settings panel")
        self.setMinimumWidth(240)
        self.setMaximumWidth(320)
        column = QVBoxLayout(self)
        form = QFormLayout()
        column.addLayout(form)
        column.addStretch(1)
        self.system_edit = QPlainTextEdit()
        self.system_edit.setAccessibleName("System prompt")
        self.system_edit.setPlaceholderText("e.g. You are a concise assistant.")
        self.system_edit.setMaximumHeight(90)
        self.system_edit.textChanged.connect(self._changed)
        form.addRow(QLabel("System prompt:"))
        form.addRow(self.system_edit)

        self.temperature_spin = self._dspin("Temperature", 0.0, 2.0, 0.05)
        self.top_p_spin = self._dspin("Top-p", 0.0, 1.0, 0.01)
        self.top_k_spin = self._ispin("Top-k", 0, 1000)
        self.min_p_spin = self._dspin("Min-p", 0.0, 1.0, 0.01)
        self.repeat_spin = self._dspin("Repeat penalty", 0.0, 2.0, 0.01)
        self.seed_spin = self._ispin("Seed", -1, 2_147_483_647)
        self.seed_spin.setSpecialValueText("random")
        self.max_tokens_spin = self._ispin("Max tokens", 1, 131_072)
        self.max_tokens_spin.setSingleStep(64)
        for label, w in (("Temperature", self.temperature_spin), ("Top-p", self.top_p_spin),
                         ("Top-k", self.top_k_spin), ("Min-p", self.min_p_spin),
                         ("Repeat penalty", self.repeat_spin), ("Seed", self.seed_spin),
                         ("Max tokens", self.max_tokens_spin)):
            form.addRow(label + ":", w)
        self.defaults_button = QPushButton("Model defaults")
        self.defaults_button.setAccessibleName("Reset to model defaults")
        self.defaults_button.setAutoDefault(False)
        self.defaults_button.setToolTip("The sampler the model's publisher recommends, else llama.cpp's")
        form.addRow(self.defaults_button)
        note = QLabel("Saved with this conversation.")
        note.setStyleSheet("color: palette(mid);")
        form.addRow(note)

    def _changed(self, *_: Any) -> None:
        self.changed.emit()

    def _dspin(self, name: str, lo: float, hi: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(decimals)
        s.setAccessibleName(name)
        s.valueChanged.connect(self._changed)
        return s

    def _ispin(self, name: str, lo: int, hi: int) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setAccessibleName(name)
        s.valueChanged.connect(self._changed)
        return s

    def show_sampling(self, s: Sampling) -> None:
        """Put ``s``'s values in the spin boxes (``changed`` fires for each that moves)."""
        for spin, value in ((self.temperature_spin, s.temperature), (self.top_p_spin, s.top_p),
                            (self.top_k_spin, s.top_k), (self.min_p_spin, s.min_p),
                            (self.repeat_spin, s.repeat_penalty), (self.seed_spin, s.seed),
                            (self.max_tokens_spin, s.max_tokens)):
            spin.setValue(value)

    def sampling_over(self, base: Sampling) -> Sampling:
        """The panel's values over ``base`` (which keeps fields the panel has no control for)."""
        return base.with_(temperature=round(self.temperature_spin.value(), 4), top_p=round(self.top_p_spin.value(), 4),
                          top_k=self.top_k_spin.value(), min_p=round(self.min_p_spin.value(), 4),
                          repeat_penalty=round(self.repeat_spin.value(), 4), seed=self.seed_spin.value(),
                          max_tokens=self.max_tokens_spin.value())


class SettingsMixin:
    """The page's reply settings: the panel shows the open conversation's, edits are stored with it."""

    def _effective_sampling(self, conv: Conversation | None) -> Sampling:
        if conv is not None and conv.sampling:
            return Sampling.from_json(conv.sampling)
        return self._model_defaults

    def _populate_settings(self) -> None:
        conv = self._current_conversation()
        s = self._effective_sampling(conv)
        self._populating = True
        try:
            if conv is not None:
                self.system_edit.setPlainText(conv.system_prompt)
            self.settings_panel.show_sampling(s)
        finally:
            self._populating = False

    def panel_sampling(self, base: Sampling) -> Sampling:
        """The panel's values over ``base`` (which keeps fields the panel has no control for)."""
        return self.settings_panel.sampling_over(base)

    def _settings_changed(self, *_: Any) -> None:
        if not self._populating:
            self._settings_timer.start()

    def _flush_settings(self) -> None:
        if self._settings_timer.isActive():
            self._settings_timer.stop()
            self._save_settings()

    def _save_settings(self) -> None:
        """Store changed settings with the conversation (a draft keeps them until its first message)."""
        conv = self._current_conversation()
        if conv is None:
            return
        base = self._effective_sampling(conv)
        sampling = self.panel_sampling(base)
        system = self.system_edit.toPlainText()
        session = self.session if self.session and self.session.conversation_id == conv.id else None
        if sampling != base:
            if session:
                session.set_sampling(sampling)
            else:
                self.store.update(conv.id, sampling=sampling.to_json())
        if system != conv.system_prompt:
            if session:
                session.set_system_prompt(system)
            else:
                self.store.update(conv.id, system_prompt=system)

    def reset_sampling(self) -> None:
        conv = self._current_conversation()
        base = self._effective_sampling(conv)
        self._populating = True
        self.settings_panel.show_sampling(self._model_defaults.with_(ignore_eos=base.ignore_eos))
        self._populating = False
        self._settings_timer.start()
