"""The package layers hold: checked by import-linter's contract in pyproject.toml, and by importing
every module below the GUI with Qt blocked. The contract is also shown to fail on a copy of the tree
with one forbidden import added, so a silently passing linter would be caught."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import quantdesk

ROOT = Path(__file__).resolve().parents[1]
BELOW_GUI = ["base", "hardware", "gguf", "hub", "catalog", "library", "planning", "chat", "quantize"]


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """import-linter over the ``quantdesk`` package found in ``tree`` (its pyproject's contracts)."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"})


def test_the_layer_contract_is_kept():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "quantdesk", tree / "quantdesk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _add_import(tree: Path, module: str, line: str) -> Path:
    path = tree / (module.replace(".", "/") + ".py")
    original = path.read_text()
    path.write_text(original + f"\n\ndef _injected():\n    {line}\n")
    return path


@pytest.mark.parametrize(("module", "line", "expected"), [
    # a module below the GUI imports Qt (even lazily, inside a function)
    ("quantdesk.base.units", "from PySide6.QtCore import QObject", "quantdesk.base is not allowed to import PySide6"),
    # a lower layer imports a higher one
    ("quantdesk.hub.client", "from quantdesk.planning.plan import plan_named",
     "quantdesk.hub is not allowed to import quantdesk.planning"),
    # siblings of one layer import each other
    ("quantdesk.library.index", "from quantdesk.catalog.offline import load_catalog",
     "quantdesk.library is not allowed to import quantdesk.catalog"),
])
def test_the_contract_fails_on_a_forbidden_import(tree_copy, module, line, expected):
    path = _add_import(tree_copy, module, line)
    original = path.read_text()
    try:
        out = lint_imports(tree_copy)
    finally:
        path.write_text(original.split("\n\ndef _injected():")[0])
    assert out.returncode != 0
    assert expected in out.stdout, out.stdout[-3000:]


def test_every_module_below_the_gui_imports_with_qt_blocked():
    modules = sorted(m.name for pkg in BELOW_GUI
                     for m in pkgutil.walk_packages([str(Path(quantdesk.__file__).parent / pkg)], f"quantdesk.{pkg}."))
    assert "quantdesk.planning.fit" in modules and "quantdesk.chat.engine" in modules and len(modules) > 30
    code = (
        "import sys, importlib\n"
        "for name in ('PySide6', 'shiboken6'): sys.modules[name] = None\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "assert not any(k.startswith('PySide6') and sys.modules[k] for k in sys.modules)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
