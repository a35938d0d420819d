"""The app's identity in every installer, and the icon set in resources/."""

from __future__ import annotations

import configparser
import shutil
import struct
import subprocess
from pathlib import Path

import appmeta
import make_icons
import pytest

import quantdesk

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"


def test_metadata_and_version_come_from_one_place():
    meta = appmeta.load()
    assert meta.version == quantdesk.__version__
    assert meta.name == "QuantDesk" and meta.executable == "quantdesk"
    assert meta.app_id.count(".") >= 2 and " " not in meta.app_id


def test_desktop_entry_launches_the_app_with_its_icon(tmp_path):
    meta = appmeta.load()
    text = appmeta.desktop_entry(meta)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Exec"] == "quantdesk" and entry["Terminal"] == "false"
    assert entry["Icon"] == meta.app_id and entry["Categories"].endswith(";")
    assert entry["StartupWMClass"] == "quantdesk"
    if shutil.which("desktop-file-validate"):
        path = tmp_path / f"{meta.app_id}.desktop"
        path.write_text(text)
        out = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == "", out.stdout  # not even a hint


def test_deb_control_is_well_formed():
    meta = appmeta.load()
    control = appmeta.deb_control(meta, "amd64", 1234, ["libc6 (>= 2.36)", "libgl1"], ["fonts-dejavu-core"])
    lines = control.splitlines()
    fields = dict(line.split(": ", 1) for line in lines if not line.startswith(" "))
    assert fields["Package"] == "quantdesk" and fields["Version"] == quantdesk.__version__
    assert fields["Architecture"] == "amd64" and fields["Installed-Size"] == "1234"
    assert fields["Depends"] == "libc6 (>= 2.36), libgl1" and fields["Recommends"] == "fonts-dejavu-core"
    assert "<" in fields["Maintainer"] and fields["Description"] == meta.summary
    body = lines[lines.index(f"Description: {meta.summary}") + 1:]
    assert body and all(line.startswith(" ") and len(line) <= 80 and line.strip() for line in body)
    assert " ".join(line.strip() for line in body) == meta.description


@pytest.mark.parametrize("python, debian", [("0.1.0", "0.1.0"), ("0.2.0rc1", "0.2.0~rc1"), ("1.0.0b2", "1.0.0~b2")])
def test_deb_version_sorts_prereleases_first(python, debian):
    meta = appmeta.load()
    assert appmeta.deb_version(type(meta)(**{**meta.__dict__, "version": python})) == debian


def test_info_plist_names_the_bundle():
    plist = appmeta.info_plist(appmeta.load())
    assert plist["CFBundleIdentifier"] == "io.github.quantdesk.QuantDesk"
    assert plist["CFBundleShortVersionString"] == quantdesk.__version__ and plist["NSHighResolutionCapable"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_icon_set_has_every_size_painted():
    for size in make_icons.PNG_SIZES:
        assert _png_size(ICONS / f"quantdesk-{size}.png") == (size, size)
    ico = (ICONS / "quantdesk.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    sizes = {(ico[6 + 16 * i] or 256) for i in range(count)}  # a 0 byte means 256
    assert (reserved, kind) == (0, 1) and sizes == set(make_icons.ICO_SIZES)
    icns = (ICONS / "quantdesk.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)


def test_icon_drawing_renders_at_any_size(tmp_path):
    make_icons.render_png(40, tmp_path / "i.png")
    from PySide6.QtGui import QImage

    image = QImage(str(tmp_path / "i.png"))
    assert (image.width(), image.height()) == (40, 40)
    assert image.pixelColor(0, 0).alpha() == 0  # the tile's rounded corner is transparent
    assert image.pixelColor(20, 20).alpha() == 255


@pytest.mark.parametrize("version, numbers", [("0.1.0", (0, 1, 0, 0)), ("1.2.3.4.5", (1, 2, 3, 4)),
                                              ("0.2.0rc1", (0, 2, 0, 0)), ("2.0.dev3", (2, 0, 0, 0)),
                                              ("3", (3, 0, 0, 0))])
def test_windows_numeric_version(version, numbers):
    from dataclasses import replace

    assert appmeta.numeric_version(replace(appmeta.load(), version=version)) == numbers


def test_windows_version_strings_name_the_product_and_the_file():
    meta = appmeta.load()
    strings = appmeta.windows_version_strings(meta, "quantdesk-cli.exe", "QuantDesk command line")
    assert strings["OriginalFilename"] == "quantdesk-cli.exe" and strings["InternalName"] == "quantdesk-cli"
    assert strings["ProductName"] == "QuantDesk" and strings["FileVersion"] == quantdesk.__version__
    assert all(strings.values()), "a blank field shows as blank in Explorer and looks suspect to SmartScreen"


INSTALLER = Path(__file__).resolve().parents[2] / "installer"


def test_the_inno_script_uses_exactly_the_defines_build_py_passes(tmp_path):
    """quantdesk.iss cannot be compiled here; this keeps it in step with what build.py gives it."""
    import re

    script = (INSTALLER / "quantdesk.iss").read_text(encoding="utf-8")
    used = set(re.findall(r"\{#(\w+)\}", script))
    given = set(appmeta.iss_defines(appmeta.load(), tmp_path / "b", tmp_path, tmp_path / "i.ico"))
    assert used == given
    assert re.search(r"^#if Ver < EncodeVer\(6, 3, 0\)", script, re.MULTILINE)  # x64compatible needs 6.3


def test_windows_executable_names_agree_across_spec_script_and_child_launcher():
    from quantdesk.base.child_process import WINDOWS_CONSOLE_EXE

    meta = appmeta.load()
    spec = (INSTALLER / "quantdesk.spec").read_text(encoding="utf-8")
    script = (INSTALLER / "quantdesk.iss").read_text(encoding="utf-8")
    assert f'name="{WINDOWS_CONSOLE_EXE.removesuffix(".exe")}"' in spec  # the console twin children run as
    assert "name=META.name if is_windows" in spec  # QuantDesk.exe, the window
    assert f"{{app}}\\{meta.name}.exe" in script and WINDOWS_CONSOLE_EXE in script
