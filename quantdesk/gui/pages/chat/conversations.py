"""The Chat page's conversations: the list (newest first, searchable), open, new, rename, delete, export.

Every conversation lives in the ``ChatStore``; a new one is a draft until its first message, so no
empty chats pile up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog, QListWidgetItem, QMessageBox

from quantdesk.base.errors import QuantDeskError
from quantdesk.gui.pages.chat.delegate import SUBTITLE_ROLE
from quantdesk.gui.pages.chat.workers import sentence


def when(ts: float) -> str:
    """Today's chats by time, older ones by date."""
    now = time.localtime()
    t = time.localtime(ts)
    if t.tm_year == now.tm_year and t.tm_yday == now.tm_yday:
        return time.strftime("%H:%M", t)
    return time.strftime("%b %d" if t.tm_year == now.tm_year else "%Y-%m-%d", t)


class ConversationsMixin:
    """The conversation list and what its buttons do."""

    def refresh_conversations(self) -> None:
        """All stored conversations newest first, filtered by the search box."""
        query = self.search_edit.text().strip() or None
        try:
            conversations = self.store.list(query)
        except QuantDeskError as exc:
            self.show_error(f"The chat history could not be read: {exc}")
            return
        self.conversation_list.blockSignals(True)
        self.conversation_list.clear()
        for conv in conversations:
            subtitle = " · ".join(x for x in (when(conv.updated_at), conv.model or "") if x)
            item = QListWidgetItem(conv.title)
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            item.setData(SUBTITLE_ROLE, subtitle)
            item.setToolTip(f"{conv.title}\n{conv.model or 'no model recorded'}\n"
                            f"last change {time.strftime('%Y-%m-%d %H:%M', time.localtime(conv.updated_at))}")
            self.conversation_list.addItem(item)
            if conv.id == self.conversation_id:
                self.conversation_list.setCurrentItem(item)
        self.conversation_list.blockSignals(False)
        if query and not conversations:
            self.status_label.setText(f"No chat matches “{query}”.")
        elif query:
            self.status_label.setText(f"{len(conversations)} chat{'s' if len(conversations) != 1 else ''} "
                                      f"match “{query}”.")
        self._update_actions()

    def conversation_ids(self) -> list[int]:
        return [self.conversation_list.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.conversation_list.count())]

    def _list_selection_changed(self, current: QListWidgetItem | None, _previous: Any) -> None:
        if current is not None:
            self.open_conversation(current.data(Qt.ItemDataRole.UserRole))

    def open_conversation(self, conversation_id: int) -> None:
        if self._streaming:
            return
        self._flush_settings()
        self.conversation_id = conversation_id
        self.cancel_edit()
        self._notices, self._notice_conversation = [], None
        self.session = None
        self._ensure_session()
        for i in range(self.conversation_list.count()):
            item = self.conversation_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == conversation_id:
                self.conversation_list.blockSignals(True)
                self.conversation_list.setCurrentItem(item)
                self.conversation_list.blockSignals(False)
        self._populate_settings()
        self.render(force=True, to_bottom=True)
        self._update_actions()

    def new_conversation(self) -> None:
        """A blank draft: the conversation is stored with its first message (no empty chats pile up)."""
        if self._streaming:
            return
        self._flush_settings()
        self.conversation_id = None
        self.session = None
        self.cancel_edit()
        self._notices, self._notice_conversation = [], None
        self.conversation_list.blockSignals(True)
        self.conversation_list.clearSelection()
        self.conversation_list.setCurrentItem(None)
        self.conversation_list.blockSignals(False)
        self._populating = True
        self.system_edit.setPlainText("")
        self._populating = False
        self._populate_settings()
        self.render(force=True)
        self._update_actions()
        self.input.setFocus()

    def rename_conversation(self, title: str | None = None) -> None:
        if self.conversation_id is None:
            return
        try:
            conv = self.store.get(self.conversation_id)
            if title is None:
                title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=conv.title)
                if not ok:
                    return
            self.store.rename(conv.id, title)
        except QuantDeskError as exc:
            self.show_error(f"{sentence(str(exc))} Type a title and try again.")
            return
        self.refresh_conversations()

    def delete_conversation(self, confirm: bool = True) -> None:
        if self.conversation_id is None or self._streaming:
            return
        try:
            conv = self.store.get(self.conversation_id)
        except QuantDeskError:
            self.refresh_conversations()
            return
        if confirm:
            answer = QMessageBox.question(
                self, "Delete conversation",
                f"Delete “{conv.title}” and its {len(conv.messages)} messages? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.store.delete(conv.id)
        self.conversation_id = None
        self.show_first_conversation()
        self.status_label.setText(f"Deleted “{conv.title}”.")

    def show_first_conversation(self) -> None:
        """The list afresh, opened at its first conversation (a new one when there is none)."""
        self.session = None
        self.refresh_conversations()
        if self.conversation_list.count():
            self.open_conversation(self.conversation_list.item(0).data(Qt.ItemDataRole.UserRole))
        else:
            self.new_conversation()

    def _export_dialog(self, fmt: str) -> None:
        if self.conversation_id is None:
            return
        title = self.store.get(self.conversation_id).title
        stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "conversation"
        suffix, kind = (".md", "Markdown (*.md)") if fmt == "md" else (".json", "JSON (*.json)")
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", str(Path.home() / f"{stem}{suffix}"), kind)
        if path:
            self.export_conversation(path, fmt)

    def export_conversation(self, path: str | Path, fmt: str = "md") -> bool:
        """Write the conversation as Markdown (``md``) or JSON (``json``); says where, or why not."""
        if self.conversation_id is None:
            self.show_error("Pick a conversation to export first.")
            return False
        try:
            text = (self.store.export_json(self.conversation_id) if fmt == "json"
                    else self.store.export_markdown(self.conversation_id))
            Path(path).write_text(text, encoding="utf-8")
        except (OSError, QuantDeskError) as exc:
            self.show_error(f"Could not export to {path}: {exc}. Choose another folder and try again.")
            return False
        self.status_label.setText(f"Exported to {path}.")
        return True

