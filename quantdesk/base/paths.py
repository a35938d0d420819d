"""Where QuantDesk keeps its data, and where its bundled resources are.

The data folder comes from platformdirs so each OS gets its usual place; ``QUANTDESK_HOME``
overrides it (tests always set it, users may point it at a bigger disk).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "QuantDesk"


def data_dir() -> Path:
    """The root of everything QuantDesk writes; created on first use."""
    override = os.environ.get("QUANTDESK_HOME")
    root = Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP_NAME, False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def resources_dir() -> Path:
    """The bundled ``resources/`` folder, in a source checkout or a frozen bundle."""
    frozen = getattr(sys, "_MEIPASS", None)
    candidates = [Path(frozen) / "resources"] if frozen else []
    candidates.append(Path(__file__).resolve().parents[2] / "resources")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("QuantDesk's resources folder is missing; reinstall the app")
