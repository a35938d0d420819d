"""The Settings page: models folder move, hub token in the keyring, endpoint, threads, downloads, theme."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtWidgets import QApplication, QWidget

from quantdesk.base.settings import Settings, load_settings, models_dir, save_settings, settings_path
from quantdesk.chat.engine import plan_load
from quantdesk.gui.app import run_app
from quantdesk.gui.context import AppContext
from quantdesk.gui.pages.settings import SettingsPage
from quantdesk.gui.theme import apply_theme, is_dark
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.hub.credentials import hub_token
from quantdesk.library.index import Library, sha256_file

TOKEN = "hf_secretsecretsecret0123"


@pytest.fixture
def ctx():
    return AppContext(load_hardware_spec("cpu-16gb-laptop"))


@pytest.fixture
def page(qtbot, ctx):
    page = SettingsPage(ctx)
    qtbot.addWidget(page)
    yield page
    page.shutdown()


def signals(signal) -> list:
    seen: list = []
    signal.connect(lambda *args: seen.append(args))
    return seen


def test_moving_the_models_folder_moves_the_library(qtbot, page, ctx, tiny_model, tmp_path):
    path = models_dir() / "org" / "Tiny-GGUF" / "tiny-F16.gguf"
    path.parent.mkdir(parents=True)
    shutil.copyfile(tiny_model, path)
    Library().add(files=[{"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}],
                  source="downloaded", repo="org/Tiny-GGUF", quant="F16")
    page.reload()
    assert "1 library model" in page.folder_note.text()
    changed = signals(ctx.library_changed)
    new = tmp_path / "other-disk" / "models"
    page.move_to(str(new))
    qtbot.waitUntil(lambda: not page.moving, timeout=60_000)
    assert ctx.errors.history == [] and changed
    assert page.folder_label.text() == str(new) and models_dir() == new
    (model,) = Library().models()
    assert model.path == str(new / "org" / "Tiny-GGUF" / "tiny-F16.gguf")
    assert Library().verify(model.name)[1] == []
    assert "Moved 1 files" in page.folder_note.text() and page.move_button.isVisibleTo(page)


def test_moving_while_downloads_run_is_refused(qtbot, page, ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(ctx, "downloads_running", lambda: True)
    page.move_to(str(tmp_path / "new"))
    qtbot.waitUntil(lambda: not page.moving, timeout=30_000)
    assert "Downloads are running" in ctx.errors.history[-1].sentence
    assert load_settings().models_dir is None and "not moved" in page.folder_note.text()


def test_token_goes_to_the_keyring_never_to_settings(qtbot, page, ctx, memory_keyring):
    changed = signals(ctx.settings_changed)
    page.token_edit.setText(TOKEN)
    page.save_token()
    assert hub_token() == TOKEN and changed
    assert page.token_edit.text() == ""
    qtbot.waitUntil(lambda: "Stored in Memory Keyring: hf_…0123" in page.token_status.text(), timeout=10_000)
    page.threads_spin.setValue(2)  # the settings file is written again: still no token in it
    assert TOKEN not in page.token_status.text() and TOKEN not in settings_path().read_text(encoding="utf-8")
    assert page.clear_token_button.isEnabled()
    page.clear_token()
    assert hub_token() is None
    qtbot.waitUntil(lambda: "No token" in page.token_status.text(), timeout=10_000)
    assert not page.clear_token_button.isEnabled()


def test_without_a_keyring_the_page_says_to_use_hf_token(qtbot, page, ctx):
    qtbot.waitUntil(lambda: "No OS keyring available here" in page.token_status.text(), timeout=10_000)
    page.token_edit.setText(TOKEN)
    page.save_token()
    assert "no OS keyring" in ctx.errors.history[-1].sentence and "HF_TOKEN" in ctx.errors.history[-1].next_step
    assert hub_token() is None and not settings_path().exists()


def test_token_test_asks_the_hub(qtbot, page, fake_hub):
    fake_hub.extra_tokens.add(TOKEN)
    page.token_edit.setText(TOKEN)
    page.test_token()
    qtbot.waitUntil(lambda: "signed in as fake-user" in page.token_status.text(), timeout=30_000)
    page.token_edit.setText("hf_not_a_real_token_x")
    page.test_token()
    qtbot.waitUntil(lambda: "did not accept the token" in page.token_status.text(), timeout=30_000)


def test_endpoint_is_checked_saved_and_overridden_by_the_environment(page, monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    page.endpoint_edit.setText("hf-mirror.com")
    page.save_endpoint()
    assert "not a hub address" in page.endpoint_note.text() and load_settings().hub_endpoint is None
    page.endpoint_edit.setText("https://hf-mirror.com/")
    page.save_endpoint()
    assert load_settings().hub_endpoint == "https://hf-mirror.com" and page.endpoint_edit.text() == "https://hf-mirror.com"
    assert "go to https://hf-mirror.com" in page.endpoint_note.text()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    page.reload()
    assert "HF_ENDPOINT is set" in page.endpoint_note.text() and "overrides" in page.endpoint_note.text()
    page.endpoint_edit.setText("")
    page.save_endpoint()
    assert load_settings().hub_endpoint is None


def test_threads_and_downloads_apply(page, ctx, tiny_model):
    queue = ctx.downloads.queue  # started: a change must reach the running queue
    page.threads_spin.setValue(3)
    page.downloads_spin.setValue(4)
    assert load_settings().threads == 3 and load_settings().max_concurrent_downloads == 4
    assert queue.max_concurrent == 4
    assert plan_load(tiny_model, load_hardware_spec("cpu-16gb-laptop")).settings.n_threads == 3
    page.threads_spin.setValue(0)  # "Auto"
    assert load_settings().threads is None
    ctx.shutdown()


def test_theme_switch_changes_the_palette_live(qtbot, page):
    app = QApplication.instance()
    probe = QWidget()
    qtbot.addWidget(probe)
    probe.show()
    original = app.palette().window().color().name()
    try:
        page.theme_combo.setCurrentIndex(page.theme_combo.findData("dark"))
        qtbot.waitUntil(lambda: is_dark(probe.palette()), timeout=5_000)
        assert is_dark(app.palette()) and load_settings().theme == "dark"
        page.theme_combo.setCurrentIndex(page.theme_combo.findData("light"))
        qtbot.waitUntil(lambda: not is_dark(probe.palette()), timeout=5_000)
        assert load_settings().theme == "light"
        page.theme_combo.setCurrentIndex(page.theme_combo.findData("system"))
        assert app.palette().window().color().name() == original and load_settings().theme == "system"
    finally:
        apply_theme(app, "system")


def test_the_saved_theme_applies_at_startup(tmp_path):
    app = QApplication.instance()
    save_settings(Settings(theme="dark"))
    try:
        assert run_app(["--screenshot", str(tmp_path / "s.png"), "--page", "settings", "--hardware", "cpu-8gb-laptop"]) == 0
        assert is_dark(app.palette())
    finally:
        apply_theme(app, "system")


def test_the_models_folder_note_counts_imported_models_and_follows_the_library(qtbot, page, ctx, tmp_path,
                                                                                 tiny_model):
    import shutil

    assert "No library models live here yet" in page.folder_note.text()
    elsewhere = tmp_path / "elsewhere-Q8_0.gguf"
    shutil.copy(tiny_model, elsewhere)
    Library().import_file(elsewhere)
    ctx.library_changed.emit()  # as a download or an import on another page says
    assert "imported from other folders" in page.folder_note.text()
    assert "No library models live here yet" not in page.folder_note.text()
