"""Child process: list the devices llama.cpp's backends register here, as one JSON line on stdout.

Run by :mod:`quantdesk.hardware.backend_probe` so that a GPU driver that crashes or hangs while
its backend starts takes down only this process.
"""

from __future__ import annotations

import json
import sys

from quantdesk.hardware.ggml_devices import cpu_variant, list_devices, llama_lib_dir


def _engine_like_rss() -> int | None:
    """Resident bytes of this process once it holds what a model process holds before any model:
    llama-cpp-python and numpy on top of the backends just registered. Every GPU driver the
    backend's loader found is mapped in too (Mesa's software Vulkan driver alone adds ~60 MiB),
    which is why the planner asks this machine instead of using a constant."""
    try:
        import llama_cpp  # noqa: F401 - imported for its memory
        import psutil
    except Exception:  # noqa: BLE001 - no figure is better than no probe
        return None
    return int(psutil.Process().memory_info().rss)


def main() -> int:
    lib_dir = llama_lib_dir()
    if lib_dir is None:
        print(json.dumps({"error": "llama-cpp-python's libraries were not found"}))
        return 1
    devices = list_devices(lib_dir)
    print(json.dumps({"devices": [d.to_json() for d in devices], "cpu_variant": cpu_variant(),
                      "process_ram": _engine_like_rss()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
