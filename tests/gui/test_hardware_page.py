"""Hardware page: the llama.cpp self-test runs in the background and says whether the GPU is used."""

from __future__ import annotations

from quantdesk.gui.pages.hardware import HardwarePage


def _selftest_text(qtbot) -> tuple[HardwarePage, str]:
    page = HardwarePage()
    qtbot.addWidget(page)
    page.run_selftest()
    assert "checking" in page.acceleration.text()
    qtbot.waitUntil(lambda: page.selftest_result is not None, timeout=300_000)
    return page, page.acceleration.text()


def test_the_cpu_self_test_says_llama_cpp_works_here(qtbot, monkeypatch):
    monkeypatch.delenv("GGML_VK_VISIBLE_DEVICES", raising=False)
    page, text = _selftest_text(qtbot)
    assert page.selftest_result.ok and page.selftest_result.tokens == 8
    assert text.startswith("✓ llama.cpp on the CPU") and "working; no GPU found" in text


def test_with_a_gpu_the_page_says_which_backend_and_device_work(qtbot, software_gpu):
    page, text = _selftest_text(qtbot)
    assert page.selftest_result.ok and page.selftest_result.gpu_layers == page.selftest_result.total_layers
    assert text.startswith("✓ GPU acceleration: Vulkan on llvmpipe") and text.endswith(": working")


def _texts(page) -> list[str]:
    from quantdesk.gui.visible_text import visible_text

    return visible_text(page)


def test_no_gpu_is_said_once_and_the_figures_say_what_is_left_for_a_model(qtbot):
    from quantdesk.hardware.machine import load_hardware_spec
    from quantdesk.planning.margins import ram_for_models, vram_for_models

    page = HardwarePage()
    qtbot.addWidget(page)
    cpu = load_hardware_spec("cpu-8gb-laptop")
    page.show_hardware(cpu)
    text = "\n".join(_texts(page))
    assert text.lower().count("no supported gpu") == 1
    assert "for a model" in text and "safety margin" in text
    from quantdesk.base.units import fmt_bytes

    assert f"{fmt_bytes(ram_for_models(cpu))} for a model" in text  # the figure Discover plans with
    gpu = load_hardware_spec("nvidia-8gb")
    page.show_hardware(gpu)
    text = "\n".join(_texts(page))
    assert f"{fmt_bytes(vram_for_models(gpu.gpus[0]))} for a model" in text
