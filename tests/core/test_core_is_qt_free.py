import pkgutil
import subprocess
import sys

import quantdesk.core


def test_every_core_module_imports_with_pyside6_blocked():
    modules = sorted(m.name for m in pkgutil.walk_packages(quantdesk.core.__path__, "quantdesk.core."))
    assert "quantdesk.core.planner" in modules and len(modules) > 8
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
