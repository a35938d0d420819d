"""What the bundle leaves out of Qt, and the libraries that go with it."""

from __future__ import annotations

import os

import bundle_filter as bf
import pytest


@pytest.mark.parametrize("dest, dropped", [
    ("PySide6/Qt/translations/qtbase_de.qm", True),
    ("PySide6/translations/qtbase_de.qm", True),  # Windows layout: no Qt/ level
    ("PySide6/Qt/plugins/platforms/libqvnc.so", True),
    ("PySide6/plugins/platforms/qvnc.dll", True),
    ("PySide6/Qt/plugins/platforms/libqxcb.so", False),
    ("PySide6/Qt/plugins/platforms/libqoffscreen.so", False),
    ("PySide6/Qt/plugins/platforms/libqwayland.so", False),
    ("PySide6/plugins/platforms/qwindows.dll", False),
    ("PySide6/Qt/plugins/platforms/libqcocoa.dylib", False),
    ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", True),
    ("PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", False),
    ("PySide6/Qt/plugins/imageformats/libqtiff.so", True),
    ("PySide6/Qt/plugins/imageformats/libqjpeg.so", False),
    ("PySide6/Qt/plugins/generic/libqevdevmouseplugin.so", True),
    ("PySide6/Qt/lib/libQt6Widgets.so.6", False),
    ("libqvnc.so", False),  # only inside PySide6's tree
    ("PySide6/opengl32sw.dll", True),  # Windows: software OpenGL, ~20 MB a Widgets app never loads
    ("PySide6/d3dcompiler_47.dll", True),
    ("PySide6/Qt6Widgets.dll", False),
    ("PySide6/QtWidgets.pyd", False),
    ("PySide6/QtCore.abi3.so", False),
])
def test_is_dropped(dest, dropped):
    assert bf.is_dropped(dest) is dropped


def test_prune_takes_libraries_only_dropped_plugins_needed():
    imports = {
        "/s/qgtk3": ["libgtk-3.so.0", "libcairo.so.2", "libQt6Gui.so.6"],
        "/s/cairo": ["libpixman-1.so.0", "libfreetype.so.6"],
        "/s/pixman": [],
        "/s/freetype": [],
        "/s/qtgui": ["libfreetype.so.6"],
        "/s/qxcb": ["libQt6Gui.so.6"],
        "/s/ext": ["libcairo.so.2"],
        "/s/pyext": [],
    }
    binaries = [
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", "/s/qgtk3", "BINARY"),
        ("libcairo.so.2", "/s/cairo", "BINARY"),
        ("libpixman-1.so.0", "/s/pixman", "BINARY"),
        ("libfreetype.so.6", "/s/freetype", "BINARY"),
        ("PySide6/Qt/lib/libQt6Gui.so.6", "/s/qtgui", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/s/qxcb", "BINARY"),
        ("libpixman-1.so", "libpixman-1.so.0", "SYMLINK"),
        ("cairo_ext.so", "/s/pyext", "EXTENSION"),
    ]
    kept, removed = bf.prune(binaries, lambda src: imports[src])
    assert {e[0] for e in removed} == {"PySide6/Qt/plugins/platformthemes/libqgtk3.so", "libcairo.so.2",
                                       "libpixman-1.so.0", "libpixman-1.so"}
    # freetype stays: Qt itself links it; the extension module stays: Python imports it.
    assert {e[0] for e in kept} == {"libfreetype.so.6", "PySide6/Qt/lib/libQt6Gui.so.6",
                                    "PySide6/Qt/plugins/platforms/libqxcb.so", "cairo_ext.so"}

    binaries.append(("other.so", "/s/ext", "BINARY"))  # now something kept needs cairo (and so pixman)
    kept, removed = bf.prune(binaries, lambda src: imports[src])
    assert {e[0] for e in removed} == {"PySide6/Qt/plugins/platformthemes/libqgtk3.so"}


@pytest.mark.skipif(os.name == "nt", reason="symlinks are POSIX-only in the bundle")
def test_dedupe_copies_links_identical_copies_to_the_versioned_name(tmp_path):
    for name, data in [("libllama.so", b"A" * 100), ("libllama.so.0", b"A" * 100), ("libmtmd.so", b"B"),
                       ("libggml.so", b"C" * 10), ("libggml.so.0", b"D" * 10)]:
        (tmp_path / name).write_bytes(data)
    binaries = [(f"llama_cpp/lib/{n}", str(tmp_path / n), "BINARY")
                for n in ("libllama.so", "libllama.so.0", "libmtmd.so", "libggml.so", "libggml.so.0")]
    out = bf.dedupe_copies(binaries + [("libc_ext.so", str(tmp_path / "libmtmd.so"), "EXTENSION")])
    assert ("llama_cpp/lib/libllama.so", "libllama.so.0", "SYMLINK") in out
    assert ("llama_cpp/lib/libllama.so.0", str(tmp_path / "libllama.so.0"), "BINARY") in out
    # different content is not a copy; files outside the folder are not touched
    assert ("llama_cpp/lib/libggml.so", str(tmp_path / "libggml.so"), "BINARY") in out
    assert sum(e[2] == "SYMLINK" for e in out) == 1 and len(out) == 6
