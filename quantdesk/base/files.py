"""Writing files so that a crash or a second process never leaves half of one."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any, **dump_args: Any) -> None:
    """Replace ``path`` with ``data`` as JSON in one step.

    The temporary file is unique to this process and thread, so two writers racing each other each
    replace the whole file (the last one wins) instead of renaming each other's half-written copy.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data, **dump_args), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
