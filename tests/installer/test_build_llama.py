"""installer/build_llama.py: the checks that keep a broken or unverified llama.cpp build out."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "installer"))
import build_llama  # noqa: E402

RELEASE = """Origin: Debian
SHA256:
 1111111111111111111111111111111111111111111111111111111111111111  1234 main/binary-amd64/Packages
 2222222222222222222222222222222222222222222222222222222222222222   567 main/binary-amd64/Packages.xz
Acquire-By-Hash: yes
"""


def test_the_package_index_hash_comes_from_the_signed_release_file():
    assert build_llama._signed_sha256(RELEASE, "main/binary-amd64/Packages.xz") == "2" * 64
    with pytest.raises(SystemExit, match="not listed"):
        build_llama._signed_sha256(RELEASE, "main/binary-arm64/Packages.xz")


def _wheel(folder: Path, names: list[str]) -> None:
    with zipfile.ZipFile(folder / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", "w") as whl:
        for name in names:
            whl.writestr(name, b"")


def test_a_wheel_without_cpu_variants_is_refused(tmp_path, capsys):
    _wheel(tmp_path, ["llama_cpp/lib/libggml.so", "llama_cpp/lib/libggml-vulkan.so"])
    with pytest.raises(SystemExit, match="no CPU backend variants"):
        build_llama.check_wheel(tmp_path)
    (tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl").unlink()
    _wheel(tmp_path, ["llama_cpp/lib/libggml-cpu-haswell.so", "llama_cpp/lib/libggml-cpu-x64.so"])
    build_llama.check_wheel(tmp_path)
    assert "2 CPU variants: libggml-cpu-haswell.so, libggml-cpu-x64.so" in capsys.readouterr().out


def test_a_wheel_with_the_crashing_amx_variant_is_refused(tmp_path):
    _wheel(tmp_path, ["llama_cpp/lib/libggml-cpu-haswell.so", "llama_cpp/lib/libggml-cpu-sapphirerapids.so"])
    with pytest.raises(SystemExit, match="AMX CPU variant"):
        build_llama.check_wheel(tmp_path)


def test_the_build_is_portable_and_its_cache_key_follows_the_options(monkeypatch, tmp_path):
    monkeypatch.setattr(build_llama, "check_vulkan_tools", lambda: None)
    monkeypatch.setattr(build_llama, "system_headers_ok", lambda: True)
    vulkan, cpu = build_llama.cmake_args("vulkan", tmp_path), build_llama.cmake_args("none", tmp_path)
    for args in (vulkan, cpu):
        assert {"-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"} <= set(args)
        assert any(a.startswith("-DCMAKE_PROJECT_INCLUDE=") and a.endswith("llama_cpu_variants.cmake") for a in args)
    assert "-DGGML_VULKAN=ON" in vulkan and "-DGGML_VULKAN=ON" not in cpu


def test_the_loader_patch_goes_in_once_right_after_libllama_opens(tmp_path, monkeypatch):
    loader = tmp_path / build_llama.LOADER_FILE
    loader.parent.mkdir(parents=True)
    loader.write_text("import ctypes\n" + build_llama.LOADER_ANCHOR + "ctypes_function = 1\n")
    build_llama.register_backends_on_import(tmp_path)
    build_llama.register_backends_on_import(tmp_path)
    text = loader.read_text()
    assert text.count("ggml_backend_load_all_from_path(") == 1
    assert text.index(build_llama.LOADER_ANCHOR) < text.index("ggml_backend_load_all_from_path(") < text.index(
        "ctypes_function = 1")
    # A changed patch replaces the one an earlier build left in the kept source.
    monkeypatch.setattr(build_llama, "LOADER_PATCH", build_llama.LOADER_PATCH + "# second version\n")
    build_llama.register_backends_on_import(tmp_path)
    text = loader.read_text()
    assert text.count("ggml_backend_load_all_from_path(") == 1 and "# second version" in text


def test_a_loader_that_no_longer_opens_libllama_as_expected_is_refused(tmp_path):
    loader = tmp_path / build_llama.LOADER_FILE
    loader.parent.mkdir(parents=True)
    loader.write_text("_lib = something_else()\n")
    with pytest.raises(SystemExit, match="no longer opens libllama"):
        build_llama.register_backends_on_import(tmp_path)


def test_the_cache_key_follows_the_options_and_the_loader_patch(monkeypatch):
    args = ["-DGGML_NATIVE=OFF"]
    first = build_llama.cache_key("vulkan", args)
    assert first.startswith(f"{build_llama.LLAMA_CPP_PYTHON}-vulkan-") and first == build_llama.cache_key("vulkan", args)
    assert build_llama.cache_key("vulkan", args + ["-DGGML_VULKAN=ON"]) != first
    kept = build_llama.build_key("vulkan", args)
    monkeypatch.setattr(build_llama, "LOADER_PATCH", build_llama.LOADER_PATCH + "# changed\n")
    assert build_llama.cache_key("vulkan", args) != first
    assert build_llama.build_key("vulkan", args) == kept  # the compiled code is reused


def test_the_cache_key_does_not_depend_on_where_the_checkout_is(monkeypatch, tmp_path):
    """CI clones the project to a new folder each time: the same build must be found in the cache."""
    import shutil

    here = build_llama.cache_key("vulkan", build_llama.PORTABLE + [f"-DCMAKE_PROJECT_INCLUDE={build_llama.CPU_VARIANTS_CMAKE}"])
    elsewhere = tmp_path / "clone" / "installer"
    elsewhere.mkdir(parents=True)
    moved = elsewhere / build_llama.CPU_VARIANTS_CMAKE.name
    shutil.copy(build_llama.CPU_VARIANTS_CMAKE, moved)
    monkeypatch.setattr(build_llama, "CPU_VARIANTS_CMAKE", moved)
    there = build_llama.cache_key("vulkan", build_llama.PORTABLE + [f"-DCMAKE_PROJECT_INCLUDE={moved}"])
    assert here == there
    moved.write_text(moved.read_text() + "\n# changed\n")
    assert build_llama.cache_key("vulkan", build_llama.PORTABLE + [f"-DCMAKE_PROJECT_INCLUDE={moved}"]) != here
