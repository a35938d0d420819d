"""The installer's build scripts are plain scripts in ``installer/`` (not a package: PyPI's
``installer`` would clash); the tests import them the way the scripts import each other."""

from __future__ import annotations

import sys
from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parents[2] / "installer"
if str(INSTALLER_DIR) not in sys.path:
    sys.path.insert(0, str(INSTALLER_DIR))
