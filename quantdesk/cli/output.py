"""What every verb prints the same way: JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(data: Any) -> None:
    """``data`` as indented JSON on stdout: the documented ``--json`` contract."""
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
