"""The Library page with real widgets and generated models: import by drag and drop, verify, delete,
and the hand-offs to Chat, Quantize and the file manager."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QMimeData, QObject, QPointF, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from quantdesk.base.settings import models_dir
from quantdesk.gui.context import AppContext
from quantdesk.gui.pages.library import LibraryPage
from quantdesk.gui.widgets.library_model import SOURCE, VERIFIED
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.library.index import Library

TIMEOUT = 60_000


@pytest.fixture
def context():
    ctx = AppContext(load_hardware_spec("cpu-16gb-laptop"))
    yield ctx
    ctx.shutdown()


@pytest.fixture
def page(qtbot, context):
    p = LibraryPage(context)
    qtbot.addWidget(p)
    p.resize(1000, 600)
    p.show()
    yield p
    p.shutdown()


@pytest.fixture
def user_folder(tmp_path, tiny_model):
    """A folder of the user's own models: one good, one broken, in subfolders."""
    folder = tmp_path / "lmstudio-models"
    (folder / "someorg" / "Tiny-GGUF").mkdir(parents=True)
    good = folder / "someorg" / "Tiny-GGUF" / "tiny-F16.gguf"
    shutil.copy(tiny_model, good)
    (folder / "broken").mkdir()
    (folder / "broken" / "broken-Q4_K_M.gguf").write_bytes(b"this is not a GGUF file" * 1000)
    return folder


def drop(page: LibraryPage, *paths) -> bool:
    """Drag the paths over the page and drop them, as a file manager would; returns whether the drag
    was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(page.rect().center())
    enter = QDragEnterEvent(page.rect().center(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, event)
    return True


def idle(qtbot, page: LibraryPage) -> None:
    qtbot.waitUntil(lambda: page.task is None, timeout=TIMEOUT)


def cell(page: LibraryPage, row: int, column: int) -> str:
    return page.table_model.index(row, column).data()


def test_dropping_a_folder_imports_the_models_and_reports_the_broken_file(qtbot, page, context, user_folder):
    assert page.empty.isVisibleTo(page) and not page.table.isVisibleTo(page)
    with qtbot.waitSignal(context.library_changed, timeout=TIMEOUT):
        assert drop(page, user_folder)
    idle(qtbot, page)
    (model,) = Library().models()
    assert model.path == str(user_folder / "someorg" / "Tiny-GGUF" / "tiny-F16.gguf") and model.source == "imported"
    assert page.table_model.rowCount() == 1 and cell(page, 0, SOURCE) == "imported"
    assert cell(page, 0, VERIFIED).startswith("✓") and page.table.isVisibleTo(page)
    assert page.selected().name == model.name and "Imported tiny-F16" in page.status.text()
    report = context.errors.history[-1]
    assert report.where == "Library" and "1 file was not imported: broken-Q4_K_M.gguf" in report.sentence
    assert "GGUF" in report.sentence and report.next_step


def test_a_drop_without_gguf_files_is_refused(page, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert not drop(page, text)


def test_verify_detects_a_corrupted_file_and_marks_it_not_verified(qtbot, page, context, user_folder):
    path = user_folder / "someorg" / "Tiny-GGUF" / "tiny-F16.gguf"
    model = Library().import_file(path)
    context.library_changed.emit()
    page.verify(model.name)
    idle(qtbot, page)
    assert "every file matches" in page.status.text() and cell(page, 0, VERIFIED).startswith("✓")
    with path.open("r+b") as fh:  # one flipped byte, as a failing disk would leave it
        fh.seek(100_000)
        byte = fh.read(1)[0]
        fh.seek(100_000)
        fh.write(bytes([byte ^ 0x01]))
    with qtbot.waitSignal(context.library_changed, timeout=TIMEOUT):
        page.verify(model.name)
        assert page.task_strip.isVisibleTo(page) and cell(page, 0, VERIFIED) == "checking…"
    idle(qtbot, page)
    assert cell(page, 0, VERIFIED) == "✗ does not match" and not Library().get(model.name).verified
    assert "does not match the recorded" in page.table_model.index(0, VERIFIED).data(Qt.ItemDataRole.ToolTipRole)
    report = context.errors.history[-1]
    assert f"Verification failed for {model.name}" in report.sentence and str(path) in report.sentence
    assert "download it again" in report.next_step


def test_an_import_can_be_cancelled_midway(qtbot, page, llama8b_q4):
    """A 4.6 GiB (sparse) model takes a while to hash; Cancel stops it and nothing is recorded."""
    assert drop(page, llama8b_q4)
    qtbot.waitUntil(lambda: page.task_strip.bar.value() > 0, timeout=TIMEOUT)
    assert not page.verify_action.isEnabled() and not page.import_button.isEnabled()
    page.task_strip.cancel_button.click()
    idle(qtbot, page)
    assert Library().models() == [] and "cancelled" in page.status.text().lower()
    assert not page.task_strip.isVisibleTo(page) and page.import_button.isEnabled()


def test_delete_asks_first_then_removes_the_files_and_the_row(qtbot, page, context, tiny_model, monkeypatch):
    path = models_dir() / "someorg" / "Tiny-GGUF" / "tiny-F16.gguf"
    path.parent.mkdir(parents=True)
    shutil.copy(tiny_model, path)
    Library().add(files=[{"path": str(path), "size": path.stat().st_size, "sha256": "x"}], source="downloaded",
                  repo="someorg/Tiny-GGUF", quant="F16")
    context.library_changed.emit()
    assert page.select("tiny-F16")
    asked: list[str] = []

    def answer_no(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer_no)
    page.delete_action.trigger()
    assert len(asked) == 1 and "cannot be undone" in asked[0] and path.exists()
    with qtbot.waitSignal(context.library_changed, timeout=TIMEOUT):
        page.delete_model("tiny-F16", confirm=False)
    assert not path.exists() and Library().models() == [] and page.table_model.rowCount() == 0


def test_removing_an_imported_model_keeps_the_users_file(qtbot, page, context, user_folder):
    path = user_folder / "someorg" / "Tiny-GGUF" / "tiny-F16.gguf"
    model = Library().import_file(path)
    with qtbot.waitSignal(context.library_changed, timeout=TIMEOUT):
        page.delete_model(model.name, confirm=False)
    assert path.exists() and Library().models() == []


class _UrlCatcher(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


def test_chat_quantize_and_show_in_folder_hand_the_model_on(qtbot, page, context, user_folder):
    path = user_folder / "someorg" / "Tiny-GGUF" / "tiny-F16.gguf"
    model = Library().import_file(path)
    context.library_changed.emit()
    assert page.selected().name == model.name
    with qtbot.waitSignal(context.open_in_chat, timeout=5_000) as chat:
        page.chat_action.trigger()
    assert chat.args == [str(path)]
    with qtbot.waitSignal(context.quantize_requested, timeout=5_000) as quantize:
        page.quantize_action.trigger()
    assert quantize.args == [model.name, ""]
    catcher = _UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        page.folder_action.trigger()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [u.toLocalFile() for u in catcher.urls] == [str(path.parent)]
