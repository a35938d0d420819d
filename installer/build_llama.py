"""Build llama-cpp-python the way QuantDesk ships it: portable CPU code and a GPU backend.

    python installer/build_llama.py                       # Vulkan (Linux, Windows) / Metal (macOS)
    python installer/build_llama.py --gpu cuda            # CUDA instead (needs the CUDA toolkit)
    python installer/build_llama.py --gpu none            # portable CPU only
    python installer/build_llama.py --install             # ... and install it into this Python

pip's own source build compiles llama.cpp with ``-march=native``: a wheel built on an AVX-512
machine dies with SIGILL on the first token on a CPU without it. Here llama.cpp is built as its
release builds are: ``GGML_NATIVE=OFF``, every backend a loadable library (``GGML_BACKEND_DL``) and
one CPU backend per x86 instruction-set level (``GGML_CPU_ALL_VARIANTS``), the best of which is
chosen at run time (``quantdesk.hardware.ggml_devices.load_backends``).

The wheel is kept in a cache folder keyed by version and options (pip's own wheel cache ignores
``CMAKE_ARGS``, so it would hand a CPU wheel to a Vulkan build); the last line printed is its path.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

# The llama-cpp-python release this project is tested with (and whose ggml structs
# quantdesk/hardware/ggml_devices.py mirrors).
LLAMA_CPP_PYTHON = "0.3.36"
PORTABLE = ["-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"]
GPU_FLAGS = {"vulkan": ["-DGGML_VULKAN=ON"], "cuda": ["-DGGML_CUDA=ON"], "metal": ["-DGGML_METAL=ON"], "none": []}
DEFAULT_GPU = "metal" if sys.platform == "darwin" else "vulkan"
# llama.cpp's Vulkan backend uses VK_EXT_layer_settings (vk::LayerSettingEXT), which Vulkan
# headers older than 1.3.261 lack (Debian 12 has 1.3.239). Debian 13's headers are fetched then,
# verified against the archive's signed index, and unpacked into the cache: nothing is installed.
NEWER_HEADERS = ("http://deb.debian.org/debian", "trixie", "libvulkan-dev")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
VULKAN_DEB_PACKAGES = "glslc libvulkan-dev spirv-headers"
# Installs the CPU variant libraries, which llama-cpp-python's own CMakeLists leaves out of the wheel.
CPU_VARIANTS_CMAKE = Path(__file__).resolve().with_name("llama_cpu_variants.cmake")
# A GGML_BACKEND_DL build registers no backend until asked, and llama.cpp then refuses every model
# ("no backends are loaded"). llama.cpp's own programs ask at start; llama-cpp-python does not, so
# its library loader is taught to, right after it opens libllama: any `import llama_cpp` works.
LOADER_FILE = "llama_cpp/llama_cpp.py"
LOADER_ANCHOR = "_lib = load_shared_library(_lib_base_name, _base_path)\n"
LOADER_PATCH = """
# Added by QuantDesk's installer/build_llama.py: this build ships its backends (the CPU variants,
# Vulkan/CUDA) as libraries; register them now, as llama.cpp's own programs do at start. Looked up
# through libllama, so they reach the libggml copy it links (the wheel also holds libggml.so as a
# separate file, a second copy with a registry of its own); Windows finds them only in ggml.dll.
_ggml_lib = _lib if hasattr(_lib, "ggml_backend_load_all_from_path") else load_shared_library("ggml", _base_path)
_ggml_lib.ggml_backend_reg_count.restype = ctypes.c_size_t
_ggml_lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
_ggml_lib.ggml_backend_load_all_from_path.restype = None
# Registration logs each backend it loads ("ggml_vulkan: No devices found.") to stderr before
# llama-cpp-python installs its own logger: keep only warnings and errors (ggml levels 3 and 4).
@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quantdesk_registration_log(level, text, user_data):
    if level in (3, 4) and text:
        import sys
        sys.stderr.write(text.decode("utf-8", "replace"))
_ggml_lib.ggml_log_set.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_ggml_lib.ggml_log_set(ctypes.cast(_quantdesk_registration_log, ctypes.c_void_p), None)
if _ggml_lib.ggml_backend_reg_count() == 0:
    _ggml_lib.ggml_backend_load_all_from_path(str(_base_path).encode())
"""


def cache_dir() -> Path:
    if os.environ.get("QUANTDESK_BUILD_CACHE"):
        return Path(os.environ["QUANTDESK_BUILD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quantdesk-build"


def fail(message: str) -> None:
    raise SystemExit(f"build_llama: {message}")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - fixed Debian URLs
        return response.read()


def sdist(work: Path) -> Path:
    """llama-cpp-python's source from PyPI (pip checks the index's hash), unpacked once."""
    src = work / f"llama_cpp_python-{LLAMA_CPP_PYTHON}"
    if (src / "pyproject.toml").is_file():
        return src
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(work)], check=True)
    with tarfile.open(work / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz") as tar:
        tar.extractall(work, filter="data")
    return src


def register_backends_on_import(src: Path) -> None:
    """Apply LOADER_PATCH to the unpacked source (see there why), always to the file as shipped.

    The source is unpacked once and kept: an earlier build's patch is replaced, never stacked."""
    loader = src / LOADER_FILE
    pristine = loader.with_name(loader.name + ".orig")
    if not pristine.is_file():
        shutil.copyfile(loader, pristine)
    text = pristine.read_text()
    if LOADER_ANCHOR not in text:
        fail(f"{LOADER_FILE} of llama-cpp-python {LLAMA_CPP_PYTHON} no longer opens libllama as expected")
    loader.write_text(text.replace(LOADER_ANCHOR, LOADER_ANCHOR + LOADER_PATCH, 1))


def system_headers_ok() -> bool:
    structs = Path("/usr/include/vulkan/vulkan_structs.hpp")
    return structs.is_file() and "LayerSettingEXT" in structs.read_text(errors="replace")


def _signed_sha256(index_text: str, name: str) -> str:
    """The SHA256 of ``name`` in a Release file's SHA256 section."""
    section = index_text.split("SHA256:", 1)[1]
    for line in section.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return parts[0]
        if line and not line.startswith(" "):
            break
    fail(f"{name} is not listed in the archive's Release file")
    return ""


def newer_vulkan_headers(work: Path) -> Path:
    """Debian trixie's Vulkan headers, each download checked: InRelease by the archive keyring (gpgv),
    Packages.xz by InRelease, the .deb by Packages."""
    root = work / "vulkan-headers"
    if (root / "usr/include/vulkan/vulkan_structs.hpp").is_file():
        return root / "usr/include"
    mirror, suite, package = NEWER_HEADERS
    release = fetch(f"{mirror}/dists/{suite}/InRelease")
    if shutil.which("gpgv") and DEBIAN_KEYRING.is_file():
        signed = work / "InRelease"
        signed.write_bytes(release)
        subprocess.run(["gpgv", "--keyring", str(DEBIAN_KEYRING), str(signed)], check=True, capture_output=True)
    else:
        fail("gpgv and the Debian archive keyring are needed to verify the Vulkan headers "
             "(or install Vulkan headers 1.3.261 or newer and try again)")
    packages_xz = fetch(f"{mirror}/dists/{suite}/main/binary-amd64/Packages.xz")
    if hashlib.sha256(packages_xz).hexdigest() != _signed_sha256(release.decode(), "main/binary-amd64/Packages.xz"):
        fail("the archive's package index does not match its signed Release file")
    stanza = next((s for s in lzma.decompress(packages_xz).decode().split("\n\n")
                   if re.search(rf"^Package: {package}$", s, re.M)), None)
    if stanza is None:
        fail(f"{package} is not in Debian {suite}")
    fields = dict(re.findall(r"^(Filename|SHA256|Version): (.+)$", stanza, re.M))
    deb = fetch(f"{mirror}/{fields['Filename']}")
    if hashlib.sha256(deb).hexdigest() != fields["SHA256"]:
        fail(f"{fields['Filename']} does not match the archive's index")
    deb_path = work / Path(fields["Filename"]).name
    deb_path.write_bytes(deb)
    subprocess.run(["dpkg-deb", "-x", str(deb_path), str(root)], check=True)
    print(f"build_llama: Vulkan headers {fields['Version']} from Debian {suite} (verified)", flush=True)
    return root / "usr/include"


def check_vulkan_tools() -> None:
    missing = [tool for tool in ("glslc",) if not shutil.which(tool)]
    spirv = any(Path(p).is_file() for p in ("/usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake",
                                            "/usr/lib/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake"))
    if missing or not spirv or not Path("/usr/include/vulkan/vulkan.h").is_file():
        fail(f"a Vulkan build needs glslc, the Vulkan headers and SPIRV-Headers: on Debian/Ubuntu "
             f"`sudo apt install {VULKAN_DEB_PACKAGES}`; elsewhere the Vulkan SDK")


def cmake_args(gpu: str, work: Path) -> list[str]:
    args = PORTABLE + GPU_FLAGS[gpu] + [f"-DCMAKE_PROJECT_INCLUDE={CPU_VARIANTS_CMAKE}"]
    if gpu == "vulkan" and sys.platform.startswith("linux"):
        check_vulkan_tools()
        if not system_headers_ok():
            args.append(f"-DVulkan_INCLUDE_DIR={newer_vulkan_headers(work)}")
    return args


def _digest(*parts: str) -> str:
    # The checkout's own path (in -DCMAKE_PROJECT_INCLUDE) does not change the wheel: keyed by the file's
    # name here (its contents are a part of their own), so a clone elsewhere (CI) finds the cached build.
    where = str(CPU_VARIANTS_CMAKE.parent)
    parts = tuple(p.replace(where, "<checkout>/installer") for p in parts)
    return hashlib.sha256(" ".join([LLAMA_CPP_PYTHON, sys.platform, *parts]).encode()).hexdigest()[:12]


def cache_key(gpu: str, args: list[str]) -> str:
    """The cached wheel's folder name: everything that changes what the wheel contains."""
    return f"{LLAMA_CPP_PYTHON}-{gpu}-{_digest(*args, LOADER_PATCH, CPU_VARIANTS_CMAKE.read_text())}"


def build_key(gpu: str, args: list[str]) -> str:
    """The kept CMake folder's name: only what the compiled code depends on (not the Python patch)."""
    return f"{gpu}-{_digest(*args, CPU_VARIANTS_CMAKE.read_text())}"


def build(gpu: str) -> Path:
    work = cache_dir()
    work.mkdir(parents=True, exist_ok=True)
    args = cmake_args(gpu, work)
    out = work / "wheels" / cache_key(gpu, args)
    found = sorted(out.glob("llama_cpp_python-*.whl")) if out.is_dir() else []
    if found:
        print(f"build_llama: cached {found[-1]}", flush=True)
        return found[-1]
    src = sdist(work)
    register_backends_on_import(src)
    env = dict(os.environ, CMAKE_ARGS=" ".join(args),
               CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2)))
    print(f"build_llama: building llama-cpp-python {LLAMA_CPP_PYTHON} with {env['CMAKE_ARGS']}", flush=True)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    # A kept build folder: a rebuild after a failure or an option change compiles only what changed.
    build_dir = work / "cmake-build" / build_key(gpu, args)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(tmp),
                    f"--config-settings=build-dir={build_dir}", str(src)], check=True, env=env)
    check_wheel(tmp)
    tmp.rename(out)  # only a finished build is ever found in the cache
    return next(out.glob("llama_cpp_python-*.whl"))


def check_wheel(folder: Path) -> None:
    """A portable wheel must carry its CPU backends (without them nothing runs at all)."""
    import zipfile

    wheel = next(folder.glob("llama_cpp_python-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    variants = sorted({n.rsplit("/", 1)[-1] for n in names
                       if re.search(r"llama_cpp/lib/(lib)?ggml-cpu-[a-z0-9_]+\.(so|dll|dylib)$", n)})
    if not variants:
        fail(f"{wheel.name} has no CPU backend variants: the portable build is broken")
    if any(re.search(r"llama_cpp/lib/(lib)?ggml-cpu-sapphirerapids\.", n) for n in names):
        fail(f"{wheel.name} ships the AMX CPU variant (sapphirerapids), which crashes: see llama_cpu_variants.cmake")
    print(f"build_llama: {len(variants)} CPU variants: {', '.join(variants)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", choices=sorted(GPU_FLAGS), default=DEFAULT_GPU)
    parser.add_argument("--install", action="store_true", help="install the wheel into this Python")
    args = parser.parse_args(argv)
    wheel = build(args.gpu)
    if args.install:
        subprocess.run([sys.executable, "-m", "pip", "install", "--force-reinstall", "--no-deps", str(wheel)],
                       check=True)
    print(wheel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
