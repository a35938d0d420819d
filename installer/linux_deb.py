"""The Debian package: the PyInstaller folder under ``/usr/lib/quantdesk``, a ``quantdesk`` command,
a desktop launcher and the icon set.

No maintainer scripts: the desktop database and the icon cache are refreshed by the triggers of
desktop-file-utils and hicolor-icon-theme when their folders change. The package is built with
``dpkg-deb --root-owner-group`` under fakeroot, so no root is needed to build it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from appmeta import ROOT, AppMeta, deb_control, desktop_entry

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)

# What the bundle needs from the system, by package (Debian 12 / Ubuntu names). PyInstaller
# bundles every other library it links to; these it leaves out on purpose (libc, the GL/EGL driver
# stack, libxcb itself) or could not find on a build machine without a desktop (the xcb utility
# libraries of Qt's X11 plugin). The fontconfig library is bundled, its configuration is not.
# `python installer/build.py linux` checks the list against the bundle (missing_system_libs).
# libvulkan1: the Vulkan loader, which llama.cpp's Vulkan backend links (the bundle never carries it).
DEPENDS = ["libegl1", "libgl1", "libxcb1", "libxcb-icccm4", "libxcb-keysyms1", "libfontconfig1", "libvulkan1"]
# Wayland sessions use these when present; X11 (or XWayland) works without them. Mesa's Vulkan
# drivers are what AMD and Intel GPUs need for the GPU backend (NVIDIA's driver brings its own).
RECOMMENDS = ["libwayland-client0", "libwayland-cursor0", "libwayland-egl1", "fonts-dejavu-core",
              "mesa-vulkan-drivers"]
# Sonames each DEPENDS/RECOMMENDS entry (or libc6) provides, for the check.
PROVIDES = {
    "libc6": ("ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libc.so.6", "libdl.so.2", "libm.so.6",
              "libpthread.so.0", "librt.so.1", "libresolv.so.2", "libutil.so.1"),
    "libegl1": ("libEGL.so.1",), "libgl1": ("libGL.so.1",), "libxcb1": ("libxcb.so.1",),
    "libxcb-icccm4": ("libxcb-icccm.so.4",), "libxcb-keysyms1": ("libxcb-keysyms.so.1",),
    "libfontconfig1": ("libfontconfig.so.1",), "libwayland-client0": ("libwayland-client.so.0",),
    "libwayland-cursor0": ("libwayland-cursor.so.0",), "libwayland-egl1": ("libwayland-egl.so.1",),
    "libvulkan1": ("libvulkan.so.1",), "mesa-vulkan-drivers": (),
}
_GLIBC = re.compile(rb"GLIBC_2\.(\d+)")

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: {name}

Files: *
Copyright: {copyright}
License: {license}

Comment: /usr/lib/{exe} also holds the components the app runs on, each under its own
 license: CPython (PSF-2.0), Qt 6 and PySide6 (LGPL-3.0, as shared libraries that can be
 replaced), llama.cpp and llama-cpp-python (MIT), NumPy with OpenBLAS (BSD-3-Clause),
 FastAPI, Starlette, uvicorn, pydantic (MIT/BSD), huggingface_hub (Apache-2.0), Jinja2 (BSD-3-Clause).
"""


def deb_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def stage(meta: AppMeta, bundle: Path, root: Path) -> Path:
    """Lay out the package's file tree under ``root`` and return it (``DEBIAN/control`` included)."""
    if root.exists():
        shutil.rmtree(root)
    exe = meta.executable
    libdir = root / "usr" / "lib" / exe
    shutil.copytree(bundle, libdir, symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True)
    # Relative, so the command also works in a tree unpacked with `dpkg -x` into any folder.
    os.symlink(f"../lib/{exe}/{exe}", root / "usr" / "bin" / exe)
    share = root / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    (share / "applications" / f"{meta.app_id}.desktop").write_text(desktop_entry(meta), encoding="utf-8")
    icons = ROOT / "resources" / "icons"
    for size in ICON_SIZES:
        target = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        target.mkdir(parents=True)
        shutil.copyfile(icons / f"quantdesk-{size}.png", target / f"{meta.app_id}.png")
    doc = share / "doc" / exe
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT.format(name=meta.name, copyright=meta.copyright,
                                                    license=meta.license, exe=exe), encoding="utf-8")
    _normalize_modes(root)
    (root / "DEBIAN").mkdir()
    missing = missing_system_libs(libdir)
    if missing:
        raise RuntimeError(f"the bundle links to {', '.join(missing)}, which no package in DEPENDS provides")
    depends = [f"libc6 (>= 2.{glibc_floor(libdir)})", *DEPENDS]
    control = deb_control(meta, deb_arch(), _installed_kib(root), depends, RECOMMENDS)
    (root / "DEBIAN" / "control").write_text(control, encoding="utf-8")
    return root


def build_deb(root: Path, out: Path) -> Path:
    """``dpkg-deb --build`` (xz, as every dpkg since Debian 6 reads) under fakeroot when present."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)]
    if shutil.which("fakeroot"):
        cmd = ["fakeroot", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def _elf_files(bundle: Path) -> list[Path]:
    out = []
    for dirpath, _, files in os.walk(bundle):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink() and path.is_file():
                with open(path, "rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        out.append(path)
    return out


def _needed(path: Path) -> list[str]:
    """The DT_NEEDED sonames of an ELF file, from readelf (binutils, like strip)."""
    out = subprocess.run(["readelf", "-d", str(path)], check=False, capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def missing_system_libs(bundle: Path) -> list[str]:
    """Sonames the bundle links to that it does not carry and no declared package provides."""
    elves = _elf_files(bundle)
    carried = {p.name for p in elves} | {p.name for p in bundle.rglob("*") if p.is_symlink()}
    provided = {so for sonames in PROVIDES.values() for so in sonames}
    needed = {so for path in elves for so in _needed(path)}
    return sorted(needed - carried - provided)


def glibc_floor(bundle: Path) -> int:
    """The newest ``GLIBC_2.N`` symbol version any bundled binary asks for: the oldest libc it runs on."""
    floor = 17
    for path in _elf_files(bundle):
        floor = max([floor, *(int(m) for m in _GLIBC.findall(path.read_bytes()))])
    return floor


def _normalize_modes(root: Path) -> None:
    """0755 for folders and executables, 0644 for the rest: what dpkg installs is what we set."""
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)


def _installed_kib(root: Path) -> int:
    total = sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(root) for f in files)
    return (total + 1023) // 1024
