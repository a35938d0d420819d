"""What the bundle leaves out: the parts of Qt the app cannot use, the libraries only those parts
needed, and duplicate copies of llama.cpp's libraries.

PyInstaller's Qt hooks collect every plugin of each Qt module, and then every library those
plugins link to (the GTK theme alone brings cairo, pango, gdk-pixbuf and gio). Dropping a plugin
after the analysis leaves its libraries behind, so :func:`prune` also drops each library that
only dropped files needed. It works on PyInstaller's TOC tuples ``(dest, src, typecode)`` and
takes the link-time imports as a function, so it can be tested without a build.
"""

from __future__ import annotations

import filecmp
import os
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath

Entry = tuple[str, str, str]

# Per folder under PySide6's Qt tree: the plugin stems to drop, or None for the whole folder.
QT_DROPS: dict[str, frozenset[str] | None] = {
    "translations": None,  # Qt's own dialogs in 40 languages; QuantDesk's UI is English
    "plugins/generic": None,  # evdev/tuio input for kiosk devices without a window system
    "plugins/egldeviceintegrations": None,  # EGLFS (no window system) back-ends
    "plugins/imageformats": frozenset({"qtiff", "qwebp", "qicns", "qtga", "qwbmp", "qpdf"}),
    "plugins/platforms": frozenset({"qvnc", "qlinuxfb", "qeglfs", "qminimalegl", "qvkkhrdisplay"}),
    # The GTK3 theme would make the bundle carry (and mismatch) cairo/pango/gio next to the
    # system's GTK; the XDG portal theme gives native file dialogs on GNOME and KDE without them.
    "plugins/platformthemes": frozenset({"qgtk3"}),
    "plugins/platforminputcontexts": frozenset({"qtvirtualkeyboardplugin"}),
}


# Files at the top of Qt's tree (Windows keeps its DLLs there). Software OpenGL (Mesa llvmpipe,
# ~20 MB) and the Direct3D shader compiler serve Qt Quick and QOpenGLWidget; a Widgets app that
# never makes a GL context does not load them.
QT_TOP_DROPS = frozenset({"opengl32sw", "d3dcompiler_47"})

# Libraries that must come from the system, never from the bundle. The Vulkan loader finds the
# GPU's driver (ICD) through the system's own configuration and must match it; the .deb depends
# on libvulkan1 instead (installer/linux_deb.py), and on Windows every GPU driver installs
# vulkan-1.dll into System32.
SYSTEM_ONLY = frozenset({"libvulkan.so.1", "libvulkan.so", "vulkan-1.dll"})


def qt_path(dest: str) -> str | None:
    """``plugins/platforms/libqvnc.so`` for a file in PySide6's Qt tree (Linux and macOS put it
    under ``PySide6/Qt/``, Windows directly under ``PySide6/``); None for anything else."""
    parts = PurePosixPath(dest.replace("\\", "/")).parts
    if "PySide6" not in parts:
        return None
    rest = parts[parts.index("PySide6") + 1:]
    if rest[:1] == ("Qt",):
        rest = rest[1:]
    return "/".join(rest) if rest else None


def stem(name: str) -> str:
    """``qvnc`` for ``libqvnc.so``, ``qvnc.dll`` and ``libqvnc.dylib``."""
    base = PurePosixPath(name.replace("\\", "/")).name.split(".")[0]
    return base.removeprefix("lib")


def is_dropped(dest: str) -> bool:
    if PurePosixPath(dest.replace("\\", "/")).name in SYSTEM_ONLY:
        return True
    path = qt_path(dest)
    if path is None:
        return False
    if "/" not in path:
        return stem(path) in QT_TOP_DROPS
    for folder, stems in QT_DROPS.items():
        if path.startswith(folder + "/"):
            return stems is None or stem(path) in stems
    return False


def _name(entry: Entry) -> str:
    return PurePosixPath(entry[0].replace("\\", "/")).name


def prune(binaries: list[Entry], imports: Callable[[str], Iterable[str]]) -> tuple[list[Entry], list[Entry]]:
    """``(kept, removed)``: the dropped Qt files, plus every library that only they needed.

    ``imports(src)`` gives the names a binary links to (basenames are compared). A library is a
    candidate when a dropped file needs it, directly or through other candidates; it stays when
    anything kept needs it. Python extension modules are never candidates: Python imports them.
    """
    by_name = {_name(e): e for e in binaries if e[2] != "SYMLINK"}

    def closure(start: Iterable[Entry]) -> set[str]:
        seen: set[str] = set()
        todo = [e for e in start if e[2] != "SYMLINK"]
        while todo:
            for imported in imports(todo.pop()[1]):
                name = PurePosixPath(str(imported).replace("\\", "/")).name
                if name in by_name and name not in seen:
                    seen.add(name)
                    todo.append(by_name[name])
        return seen

    dropped = [e for e in binaries if is_dropped(e[0])]
    candidates = {n for n in closure(dropped) if by_name[n][2] != "EXTENSION" and not is_dropped(by_name[n][0])}
    roots = [e for e in binaries if not is_dropped(e[0]) and _name(e) not in candidates]
    unused = candidates - closure(roots)
    kept: list[Entry] = []
    removed: list[Entry] = []
    for entry in binaries:
        link_target = PurePosixPath(entry[1].replace("\\", "/")).name if entry[2] == "SYMLINK" else None
        gone = is_dropped(entry[0]) or _name(entry) in unused or link_target in unused
        (removed if gone else kept).append(entry)
    return kept, removed


def dedupe_copies(binaries: list[Entry], folder: str = "llama_cpp/lib") -> list[Entry]:
    """Wheels cannot hold symlinks, so llama-cpp-python installs ``libllama.so`` and
    ``libllama.so.0`` as two copies of one file. Keep the versioned one (the name the other
    libraries link to) and make the short name a symlink to it. POSIX only."""
    if os.name == "nt":
        return binaries
    inside = [e for e in binaries if e[2] != "SYMLINK" and PurePosixPath(e[0]).parent == PurePosixPath(folder)]
    links: dict[str, Entry] = {}
    for short in inside:
        copies = [e for e in inside if e[0].startswith(short[0] + ".") and filecmp.cmp(short[1], e[1], shallow=False)]
        if copies:
            nearest = min(copies, key=lambda e: len(e[0]))  # libllama.so -> libllama.so.0
            links[short[0]] = (short[0], PurePosixPath(nearest[0]).name, "SYMLINK")
    return [links.get(e[0], e) for e in binaries]


def total_size(entries: Iterable[Entry]) -> int:
    return sum(os.path.getsize(e[1]) for e in entries if e[2] != "SYMLINK" and os.path.isfile(e[1]))
