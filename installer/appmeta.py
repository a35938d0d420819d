"""The app's identity for every installer, from one place: ``resources/metadata.json`` plus
``quantdesk.__version__``.

The spec, the ``.deb`` builder, the macOS ``Info.plist`` and the Inno Setup defines all render
from :class:`AppMeta`, so a new version or a renamed app changes one file, not five.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class AppMeta:
    name: str
    app_id: str
    executable: str
    version: str
    summary: str
    description: str
    vendor: str
    maintainer: str
    license: str
    copyright: str
    desktop_categories: tuple[str, ...]
    keywords: tuple[str, ...]


def read_version(root: Path = ROOT) -> str:
    """``__version__`` from the package source, without importing it (a build may run elsewhere)."""
    text = (root / "quantdesk" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise ValueError("quantdesk/__init__.py has no __version__")
    return match.group(1)


def load(root: Path = ROOT) -> AppMeta:
    data = json.loads((root / "resources" / "metadata.json").read_text(encoding="utf-8"))
    return AppMeta(
        name=data["name"], app_id=data["app_id"], executable=data["executable"], version=read_version(root),
        summary=data["summary"], description=data["description"], vendor=data["vendor"],
        maintainer=data["maintainer"], license=data["license"], copyright=data["copyright"],
        desktop_categories=tuple(data["desktop_categories"]), keywords=tuple(data["keywords"]),
    )


def desktop_entry(meta: AppMeta, exec_path: str | None = None) -> str:
    """The freedesktop ``.desktop`` launcher; the icon is looked up by the app id in the icon theme."""
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        f"Name={meta.name}",
        "GenericName=Local LLM runner",
        f"Comment={meta.summary}",
        f"Exec={exec_path or meta.executable}",
        f"TryExec={exec_path or meta.executable}",
        f"Icon={meta.app_id}",
        "Terminal=false",
        f"Categories={';'.join(meta.desktop_categories)};",
        f"Keywords={';'.join(meta.keywords)};",
        # Qt names the X11 window class after the executable; this ties the window to the launcher.
        f"StartupWMClass={meta.executable}",
        "StartupNotify=true",
    ]
    return "\n".join(lines) + "\n"


def deb_version(meta: AppMeta) -> str:
    """Debian orders ``0.2.0~rc1`` before ``0.2.0``; Python's ``0.2.0rc1`` needs the tilde."""
    return re.sub(r"(\d)((?:a|b|rc|dev)\d*)$", r"\1~\2", meta.version)


def deb_control(meta: AppMeta, arch: str, installed_kib: int, depends: list[str],
                recommends: list[str] | None = None) -> str:
    """``DEBIAN/control``; the long description is folded one space in, as policy wants."""
    body = _fold(meta.description, 78)
    fields = [
        f"Package: {meta.executable}",
        f"Version: {deb_version(meta)}",
        f"Architecture: {arch}",
        f"Maintainer: {meta.maintainer}",
        f"Installed-Size: {installed_kib}",
        f"Depends: {', '.join(depends)}",
        *([f"Recommends: {', '.join(recommends)}"] if recommends else []),
        "Section: science",
        "Priority: optional",
        f"Description: {meta.summary}",
    ]
    return "\n".join(fields + [f" {line}" for line in body]) + "\n"


def numeric_version(meta: AppMeta) -> tuple[int, int, int, int]:
    """Windows version resources hold four numbers: ``0.2.0rc1`` -> ``(0, 2, 0, 0)``."""
    release = re.match(r"\d+(?:\.\d+)*", meta.version)
    numbers = [int(n) for n in release.group(0).split(".")] if release else []
    return tuple((numbers + [0, 0, 0, 0])[:4])  # type: ignore[return-value]


def windows_version_strings(meta: AppMeta, exe_name: str, description: str) -> dict[str, str]:
    """The string table of an ``.exe``'s version resource. Explorer's Details tab shows it, and Task
    Manager names a process by its ``FileDescription``; blank ones also look suspect to SmartScreen."""
    return {
        "CompanyName": meta.vendor,
        "FileDescription": description,
        "FileVersion": meta.version,
        "InternalName": exe_name.rsplit(".", 1)[0],
        "LegalCopyright": meta.copyright,
        "OriginalFilename": exe_name,
        "ProductName": meta.name,
        "ProductVersion": meta.version,
    }


def iss_defines(meta: AppMeta, bundle: Path, output_dir: Path, icon: Path) -> dict[str, str]:
    """The ``/D`` defines ``installer/quantdesk.iss`` expects (a test checks the script uses exactly these)."""
    return {
        "AppName": meta.name, "AppId": meta.app_id, "AppVersion": meta.version,
        "AppNumericVersion": ".".join(map(str, numeric_version(meta))),
        "AppPublisher": meta.vendor, "AppCopyright": meta.copyright,
        "BundleDir": str(bundle), "OutputDir": str(output_dir), "IconFile": str(icon),
    }


def info_plist(meta: AppMeta) -> dict[str, object]:
    """Keys for the macOS bundle's ``Info.plist`` (PyInstaller adds the executable and icon keys)."""
    return {
        "CFBundleName": meta.name,
        "CFBundleDisplayName": meta.name,
        "CFBundleIdentifier": meta.app_id,
        "CFBundleShortVersionString": meta.version,
        "CFBundleVersion": meta.version,
        "NSHumanReadableCopyright": meta.copyright,
        "NSHighResolutionCapable": True,
        "LSApplicationCategoryType": "public.app-category.developer-tools",
        "LSMinimumSystemVersion": "11.0",
    }


def _fold(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return lines + ([current] if current else [])
