"""A model another page holds (loaded in Chat, read or written by a running quantize) is not pulled
away: a delete or a models-folder move unloads it from Chat first and is refused while Quantize runs."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtWidgets import QMessageBox

from quantdesk.base.settings import Settings, load_settings, models_dir, save_settings
from quantdesk.gui.app import MainWindow
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.library.index import Library, sha256_file

TIMEOUT = 120_000


@pytest.fixture
def window(qtbot):
    w = MainWindow(load_hardware_spec("cpu-16gb-laptop"))
    qtbot.addWidget(w)
    yield w
    w.close()


def library_model(source_file, repo: str = "org/Tiny-GGUF"):
    path = models_dir() / repo / source_file.name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_file, path)
    return Library().add(files=[{"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}],
                         source="downloaded", repo=repo, quant="F16")


def load_in_chat(qtbot, window, model) -> None:
    chat = window.chat_page
    chat.set_context(512)
    with qtbot.waitSignal(chat.model_loaded, timeout=TIMEOUT):
        window.open_in_chat(model.path)
    assert chat.engine is not None and window.context.model_users() == {"Chat": {model.path}}


def test_deleting_a_model_loaded_in_chat_unloads_it_first(qtbot, window, tiny_model, monkeypatch):
    model = library_model(tiny_model)
    load_in_chat(qtbot, window, model)
    chat, library = window.chat_page, window.pages["library"]
    engine = chat.engine
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda parent, title, text, *a: asked.append(text) or QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(window.context.library_changed, timeout=TIMEOUT):
        library.delete_model(model.name)
    assert "It is loaded in Chat: it is unloaded there first." in asked[0]
    assert chat.engine is None and window.context.model_users() == {}
    assert "was deleted or moved" in chat.report_label.text()
    qtbot.waitUntil(lambda: not engine.alive, timeout=30_000)  # its child process really ended
    assert Library().models() == [] and not (models_dir() / "org" / "Tiny-GGUF").joinpath(tiny_model.name).exists()
    assert window.context.errors.history == []


def test_moving_the_models_folder_unloads_chats_model_and_says_so(qtbot, window, tiny_model, tmp_path):
    model = library_model(tiny_model)
    load_in_chat(qtbot, window, model)
    settings = window.pages["settings"]
    new = tmp_path / "elsewhere" / "models"
    settings.move_to(str(new))
    assert window.chat_page.engine is None
    qtbot.waitUntil(lambda: not settings.moving, timeout=TIMEOUT)
    assert window.context.errors.history == [] and models_dir() == new
    assert "Chat unloaded its model for the move" in settings.folder_note.text()
    (moved,) = Library().models()
    assert moved.path == str(new / "org" / "Tiny-GGUF" / tiny_model.name)


def test_a_running_quantize_keeps_its_source_and_the_models_folder(qtbot, window, small_model, tmp_path):
    save_settings(Settings(threads=1))  # IQ4_XS on one thread: long enough to act while it runs
    source = library_model(small_model, "org/Small-GGUF")
    quantize = window.pages["quantize"]
    quantize.context.quantize_requested.emit(source.path, "IQ4_XS")
    qtbot.waitUntil(lambda: quantize.last_check is not None and quantize.quantize_button.isEnabled(), timeout=60_000)
    quantize.start()
    qtbot.waitUntil(lambda: quantize.log.rowCount() >= 1, timeout=60_000)
    held = window.context.model_users()["Quantize"]
    assert source.path in held and str(quantize.last_check.preflight.output) in held

    window.pages["library"].delete_model(source.name, confirm=False)
    report = window.context.errors.history[-1]
    assert report.where == "Library" and f"A quantize job is using {source.name}." == report.sentence
    assert Library().find(source.name) is not None and small_model.exists()

    settings = window.pages["settings"]
    settings.move_to(str(tmp_path / "elsewhere"))
    assert not settings.moving and load_settings().models_dir is None
    assert "A quantize job is reading or writing in the models folder" in window.context.errors.history[-1].sentence

    quantize.cancel()
    qtbot.waitUntil(lambda: not quantize.running, timeout=60_000)
    assert window.context.model_users() == {}
