"""The .deb's layout and control file, built from a stand-in bundle (the real one: test_linux_package.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import appmeta
import linux_deb
import pytest

pytestmark = pytest.mark.skipif(not (shutil.which("dpkg-deb") and shutil.which("readelf")),
                                reason="needs a Debian-family system with binutils")


def _fake_bundle(tmp_path: Path) -> Path:
    """A folder shaped like PyInstaller's: the launcher (a real ELF that only needs libc) and _internal/."""
    bundle = tmp_path / "bundle"
    (bundle / "_internal" / "resources").mkdir(parents=True)
    shutil.copy2(shutil.which("true"), bundle / "quantdesk")
    (bundle / "_internal" / "resources" / "catalog.json").write_text("{}")
    os.symlink("resources/catalog.json", bundle / "_internal" / "catalog-link.json")
    return bundle


def test_stage_lays_out_command_launcher_icons_and_control(tmp_path):
    meta = appmeta.load()
    root = linux_deb.stage(meta, _fake_bundle(tmp_path), tmp_path / "root")
    command = root / "usr" / "bin" / "quantdesk"
    assert os.readlink(command) == "../lib/quantdesk/quantdesk"  # relative: works under any unpack root
    assert command.resolve() == (root / "usr" / "lib" / "quantdesk" / "quantdesk").resolve()
    assert os.access(command, os.X_OK) and subprocess.run([str(command)]).returncode == 0
    assert (root / "usr/lib/quantdesk/_internal/catalog-link.json").is_symlink()  # links survive the copy
    desktop = (root / "usr/share/applications" / f"{meta.app_id}.desktop").read_text()
    assert "Exec=quantdesk\n" in desktop and f"Icon={meta.app_id}\n" in desktop
    for size in linux_deb.ICON_SIZES:
        assert (root / f"usr/share/icons/hicolor/{size}x{size}/apps/{meta.app_id}.png").is_file()
    assert "License: MIT" in (root / "usr/share/doc/quantdesk/copyright").read_text()
    control = (root / "DEBIAN" / "control").read_text()
    assert f"Version: {appmeta.deb_version(meta)}\n" in control
    assert f"Architecture: {linux_deb.deb_arch()}\n" in control
    depends = next(line for line in control.splitlines() if line.startswith("Depends: "))
    assert depends.startswith("Depends: libc6 (>= 2.") and "libxcb-icccm4" in depends
    assert oct(os.stat(root / "usr/share/applications").st_mode & 0o777) == "0o755"
    assert oct(os.stat(root / "usr/lib/quantdesk/_internal/resources/catalog.json").st_mode & 0o777) == "0o644"


def test_build_deb_makes_a_package_dpkg_reads(tmp_path):
    meta = appmeta.load()
    root = linux_deb.stage(meta, _fake_bundle(tmp_path), tmp_path / "root")
    deb = linux_deb.build_deb(root, tmp_path / "out" / "q.deb")
    field = subprocess.run(["dpkg-deb", "--field", str(deb), "Package", "Version"],
                           capture_output=True, text=True, check=True).stdout
    assert field.splitlines() == ["Package: quantdesk", f"Version: {appmeta.deb_version(meta)}"]
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "root/root" in listing and "./usr/bin/quantdesk -> ../lib/quantdesk/quantdesk" in listing
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
    assert subprocess.run([str(unpacked / "usr/bin/quantdesk")]).returncode == 0


def test_glibc_floor_reads_the_bundle(tmp_path):
    assert 17 <= linux_deb.glibc_floor(_fake_bundle(tmp_path)) <= 60


def test_a_library_nobody_provides_stops_the_build(tmp_path):
    """An extension module that links a library the bundle lacks (here: one from this Python) is caught."""
    bundle = _fake_bundle(tmp_path)
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or "/nonexistent")
    provided = {so for names in linux_deb.PROVIDES.values() for so in names}
    for ext in sorted(dynload.glob("*.so")):
        extra = set(linux_deb._needed(ext)) - provided - {p.name for p in bundle.rglob("*")}
        if extra:
            break
    else:
        pytest.skip(f"every extension of {sys.executable} links only libc")
    shutil.copy2(ext, bundle / "_internal" / ext.name)
    assert set(linux_deb.missing_system_libs(bundle)) == extra
    with pytest.raises(RuntimeError, match="no package in DEPENDS provides"):
        linux_deb.stage(appmeta.load(), bundle, tmp_path / "root")
