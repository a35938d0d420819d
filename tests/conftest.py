"""Test-wide isolation: every test gets its own data folder and never reaches a real hub."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
os.environ.pop("QUANTDESK_HARDWARE", None)
os.environ.pop("HF_TOKEN", None)
os.environ["QUANTDESK_NO_AUTO_REFRESH"] = "1"  # windows in tests never call the hub on their own
os.environ["QUANTDESK_NO_SELFTEST"] = "1"  # nor start llama.cpp on their own (tests/gui/test_hardware_page.py does)

import pytest  # noqa: E402

from tests.support import gguf_factory as factory  # noqa: E402
from tests.support.software_gpu import software_gpu, two_software_gpus  # noqa: E402, F401 - fixtures: GPU tests


@pytest.fixture(autouse=True)
def _collect_garbage_on_the_main_thread():
    """As the app does (gui/collector.py): the cyclic collector never runs on a worker thread, where it
    would destroy a test's leftover Qt objects off their thread (a segfault later, in the event loop);
    each test's garbage is collected here, on the main thread, when it ends."""
    import gc

    gc.disable()
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "qd-home"
    monkeypatch.setenv("QUANTDESK_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    yield home


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(models_dir):
    """A real, loadable F16 llama model with random weights (~3 MB)."""
    return factory.write_model(models_dir / "tiny-F16.gguf", factory.TINY, "F16")


@pytest.fixture(scope="session")
def small_model(models_dir):
    return factory.write_model(models_dir / "small-F16.gguf", factory.SMALL, "F16", seed=1)


@pytest.fixture(scope="session")
def llama8b_q4(models_dir):
    """A header-only Llama-3-8B-shaped Q4_K_M file: real header, sparse 4.6 GiB body."""
    return factory.write_header_only(models_dir / "Llama-3-8B-shaped-Q4_K_M.gguf", factory.LLAMA3_8B, "Q4_K_M")


@pytest.fixture
def fake_hub(monkeypatch):
    """A running fake hub; HF_ENDPOINT points at it for in-process code and child processes."""
    from tests.support.fake_hub import FakeHub

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


CATALOG_REPO = "bartowski/Qwen2.5-0.5B-Instruct-GGUF"  # a repo of the bundled offline catalog


@pytest.fixture
def hub_with_catalog_repo(fake_hub, tmp_path):
    """The fake hub publishing one bundled-catalog repo (header-only real-shaped files); the catalog
    cache is cleared around the test so refreshed data never leaks between tests."""
    from quantdesk.catalog.offline import load_catalog

    files = {"Qwen2.5-0.5B-Instruct-Q4_K_M.gguf": (factory.QWEN25_05B, "Q4_K_M"),
             "Qwen2.5-0.5B-Instruct-Q8_0.gguf": (factory.QWEN25_05B, "Q8_0")}
    factory.add_header_only_repo(fake_hub, CATALOG_REPO, tmp_path, files)
    load_catalog.cache_clear()
    yield fake_hub
    load_catalog.cache_clear()


@pytest.fixture
def memory_keyring():
    """A working OS keyring for one test (the default null backend stores nothing)."""
    import keyring

    from tests.support.memory_keyring import MemoryKeyring

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)
