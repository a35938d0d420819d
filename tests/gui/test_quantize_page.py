"""The Quantize page against the real quantizer on generated models, offscreen."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt

from quantdesk.base.settings import Settings, save_settings
from quantdesk.gui.app import MainWindow
from quantdesk.gui.context import AppContext
from quantdesk.gui.pages.quantize import QuantizePage
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.library.index import Library
from quantdesk.quantize.quantizer import partial_path
from tests.support import gguf_factory as factory


@pytest.fixture
def ctx():
    return AppContext(load_hardware_spec("cpu-16gb-laptop"))


@pytest.fixture
def page(qtbot, ctx):
    page = QuantizePage(ctx)
    qtbot.addWidget(page)
    yield page
    page.shutdown()


def pick(qtbot, page: QuantizePage, source, preset: str, output=None) -> None:
    qtbot.waitUntil(lambda: page.types_loaded, timeout=30_000)
    page.source_combo.setEditText(str(source))
    assert page.set_type(preset)
    if output is not None:
        page.output_edit.setText(str(output))
    qtbot.waitUntil(lambda: page.last_check is not None or "Can't run" in page.preflight.verdict.text(),
                    timeout=30_000)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_kills_the_quantizer_and_leaves_nothing(qtbot, page, ctx, small_model, tmp_path):
    save_settings(Settings(threads=1))  # IQ4_XS on one thread: seconds, time to cancel midway
    out = tmp_path / "work" / "slow.gguf"
    pick(qtbot, page, small_model, "IQ4_XS", out)
    assert page.last_check.ok and page.last_check.preflight.threads == 1
    qtbot.mouseClick(page.quantize_button, Qt.MouseButton.LeftButton)
    assert page.running and page.cancel_button.isVisibleTo(page) and not page.source_combo.isEnabled()
    qtbot.waitUntil(lambda: page.log.rowCount() >= 1, timeout=60_000)
    pid = page.child_pid
    assert pid is not None and partial_path(out).exists()  # it was really writing
    ctx.quantize_requested.emit("other/Repo-GGUF", "Q8_0")  # another page asks meanwhile: refused, said so
    assert page.source == str(small_model) and "Another quantize job" in ctx.errors.history[-1].sentence
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.running and page.quantize_button.isEnabled(), timeout=60_000)
    assert gone(pid)
    assert list(out.parent.iterdir()) == [] and Library().models() == []
    assert "Cancelled" in page.status.text() and len(ctx.errors.history) == 1  # the cancel is no error
    assert page.source_combo.isEnabled() and page.quantize_button.isVisibleTo(page)


def test_a_finished_job_is_in_the_library_with_its_report(qtbot, page, ctx, tiny_model):
    changed, chats, pages = [], [], []
    ctx.library_changed.connect(lambda: changed.append(1))
    ctx.open_in_chat.connect(chats.append)
    ctx.show_page.connect(pages.append)
    pick(qtbot, page, tiny_model, "Q8_0")
    page.eval_check.setChecked(True)
    qtbot.waitUntil(lambda: page.quantize_button.isEnabled(), timeout=30_000)
    assert page.last_check.eval_ram > 0 and page.preflight.values["Evaluation"].isVisibleTo(page)
    page.start()
    qtbot.waitUntil(lambda: not page.running, timeout=180_000)
    assert ctx.errors.history == [], ctx.errors.history
    (model,) = Library().models()
    assert model.source == "quantized" and model.quant == "Q8_0" and model.path == page.output_model
    assert changed and page.progress.value() == 1000
    assert page.log.rowCount() == len(factory.tensor_shapes(factory.TINY))
    report = {page.report.table.item(r, 0).text(): page.report.table.item(r, 1).text()
              for r in range(page.report.table.rowCount())}
    assert {"KL divergence, mean", "Top-1 agreement", "Perplexity, source", "Perplexity, Q8_0"} <= set(report)
    assert report["Top-1 agreement"].endswith("%")
    assert model.name in page.result_label.text()
    qtbot.mouseClick(page.open_chat_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(page.show_library_button, Qt.MouseButton.LeftButton)
    assert chats == [model.path] and pages == ["library"]
    assert not page.quantize_button.isEnabled()  # the same job again would overwrite its own output
    page.recheck()  # the same inputs again are refused, and the way out is named
    qtbot.waitUntil(lambda: "already exists" in page.preflight.verdict.text(), timeout=30_000)
    assert "Replace the output file" in page.preflight.verdict.text()
    page.eval_check.setChecked(False)
    page.replace_check.setChecked(True)  # run it again over its earlier result
    qtbot.waitUntil(lambda: page.quantize_button.isEnabled(), timeout=30_000)
    page.start()
    qtbot.waitUntil(lambda: not page.running, timeout=180_000)
    assert ctx.errors.history == [] and [m.path for m in Library().models()] == [model.path]
    assert model.name in page.result_label.text()


def test_refused_types_are_shown_disabled_with_the_reason(qtbot, page, tiny_model):
    qtbot.waitUntil(lambda: page.types_loaded, timeout=30_000)  # llama.cpp's list loads off the GUI thread
    assert page.type_combo.isEnabled() and page.preset == "Q4_K_M"
    model = page.type_combo.model()
    index = page.type_combo.findData("IQ2_XS", Qt.ItemDataRole.UserRole)
    assert index > 0 and not model.item(index).isEnabled()
    assert "importance matrix" in model.item(index).text()
    assert model.item(page.type_combo.findData("Q4_K_M", Qt.ItemDataRole.UserRole)).isEnabled()
    pick(qtbot, page, tiny_model, "IQ2_XS")
    assert "Can't run" in page.preflight.verdict.text() and "importance matrix" in page.preflight.verdict.text()
    assert not page.quantize_button.isEnabled()


@pytest.mark.parametrize("kind,needle", [("garbage", "not a GGUF file"), ("quantized", "already quantized"),
                                         ("missing", "no such file")])
def test_inputs_that_cannot_be_quantized_say_why(qtbot, page, tmp_path, tiny_model, kind, needle):
    path = tmp_path / f"{kind}.gguf"
    if kind == "garbage":
        path.write_bytes(b"definitely not a model")
    elif kind == "quantized":
        factory.write_header_only(path, factory.TINY, "Q8_0")
    pick(qtbot, page, path, "Q4_K_M")
    assert "Can't run" in page.preflight.verdict.text() and needle in page.preflight.verdict.text()
    assert not page.quantize_button.isEnabled()


def test_a_job_too_big_for_this_computer_shows_which_limit_even_while_simulating(qtbot, page, ctx, tmp_path):
    """The job runs here: its pre-flight measures this computer, not the machine the app simulates
    (a simulated 4 GB laptop must not refuse it for memory, nor a simulated disk pass it)."""
    import shutil

    shape = factory.scaled(factory.LLAMA3_70B, n_embd=16384, n_layer=126, n_head=128, n_ff=53248,
                           name="Llama-405B-shaped")
    big = factory.write_header_only(tmp_path / "l405b-F16.gguf", shape, "F16")  # 0.8 TB, sparse
    ctx.set_hardware(load_hardware_spec("cpu-4gb"))
    pick(qtbot, page, big, "Q4_K_M")
    if shutil.disk_usage(tmp_path).free < 200 * 2**30:  # (a machine with more than that free sees it pass)
        assert not page.last_check.ok and not page.quantize_button.isEnabled()
        assert "not enough disk space" in page.preflight.verdict.text()
        assert "✗" in page.preflight.values["Disk"].text()
    memory = page.preflight.values["Memory"].text()
    assert "preset:cpu-4gb" not in memory and "this machine" in memory
    assert "runs on this computer" in page.preflight.verdict.text()


def test_a_request_from_another_page_fills_the_job_and_shows_the_page(qtbot, tiny_model):
    window = MainWindow(load_hardware_spec("cpu-16gb-laptop"))
    qtbot.addWidget(window)
    page = window.pages["quantize"]
    window.context.quantize_requested.emit(str(tiny_model), "q5_k_m")  # maybe before the type list is loaded
    assert window.current_page() == "quantize" and page.source == str(tiny_model)
    qtbot.waitUntil(lambda: page.quantize_button.isEnabled(), timeout=30_000)
    assert page.preset == "Q5_K_M"
    assert page.last_check.kind == "file" and page.last_check.preflight.output.name == "tiny-Q5_K_M.gguf"


def test_a_hub_repo_is_checked_from_its_header_then_downloaded_and_quantized(qtbot, page, ctx, fake_hub,
                                                                             tiny_model):
    repo = "org/Tiny-GGUF"
    fake_hub.add_repo(repo, {"Tiny-F16.gguf": tiny_model})
    pick(qtbot, page, repo, "Q8_0")
    assert page.last_check.kind == "repo" and page.last_check.download_bytes == tiny_model.stat().st_size
    assert "downloaded first" in page.preflight.values["Input"].text() and Library().models() == []
    page.start()
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert ctx.errors.history == [], ctx.errors.history
    assert fake_hub.bytes_served[(repo, "Tiny-F16.gguf")] >= tiny_model.stat().st_size
    assert {m.source for m in Library().models()} == {"downloaded", "quantized"}


def test_a_request_reaches_a_quantize_page_not_built_yet(qtbot, tiny_model):
    window = MainWindow(load_hardware_spec("cpu-16gb-laptop"))
    qtbot.addWidget(window)
    window._builder.stop()  # as if the user asked within the first second, before the lazy build
    assert "quantize" not in window._built
    window.context.quantize_requested.emit(str(tiny_model), "Q8_0")
    page = window.pages["quantize"]
    assert page.source == str(tiny_model) and window.current_page() == "quantize"
    qtbot.waitUntil(lambda: page.types_loaded and page.preset == "Q8_0", timeout=30_000)
    page.shutdown()


def test_a_checkpoint_folder_is_checked_converted_quantized_and_registered(qtbot, page, ctx, tmp_path):
    from quantdesk.base.settings import models_dir
    from tests.support.checkpoint_factory import write_llama_checkpoint

    folder = tmp_path / "my-finetune"
    write_llama_checkpoint(folder, shards=2, bf16=True)
    pick(qtbot, page, folder, "Q8_0")
    assert page.last_check.kind == "checkpoint", page.preflight.verdict.text()
    assert "converted first" in page.preflight.values["Input"].text()
    assert "its GGUF once converted" in page.preflight.values["Input"].text()
    qtbot.waitUntil(lambda: page.quantize_button.isEnabled(), timeout=30_000)
    shown, on_event = [], page._on_event

    def record(ev) -> None:  # what the page says after each event of the job
        on_event(ev)
        shown.append(page.current.text())

    page._on_event = record
    page.start()
    qtbot.waitUntil(lambda: not page.running, timeout=180_000)
    assert any(t.startswith("Converting the checkpoint to GGUF") for t in shown), shown[:5]
    assert ctx.errors.history == [], ctx.errors.history
    (model,) = Library().models()
    assert model.source == "converted+quantized" and model.quant == "Q8_0" and model.path == page.output_model
    assert page.progress.value() == 1000 and "my-finetune-Q8_0.gguf" in page.result_label.text()
    assert not any((models_dir() / ".converting").iterdir())


def test_a_checkpoint_the_converter_cannot_take_says_why_on_the_page(qtbot, page, tmp_path):
    import json

    from tests.support.checkpoint_factory import write_llama_checkpoint

    folder = tmp_path / "neox"
    write_llama_checkpoint(folder, architecture="GPTNeoXForCausalLM")
    pick(qtbot, page, folder, "Q8_0")
    qtbot.waitUntil(lambda: "GPTNeoXForCausalLM" in page.preflight.verdict.text(), timeout=30_000)
    assert not page.quantize_button.isEnabled()
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["GPTNeoXForCausalLM"]
