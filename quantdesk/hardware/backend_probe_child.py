"""Child process: list the devices llama.cpp's backends register here, as one JSON line on stdout.

Run by :mod:`quantdesk.hardware.backend_probe` so that a GPU driver that crashes or hangs while
its backend starts takes down only this process.
"""

from __future__ import annotations

import json
import sys

from quantdesk.hardware.ggml_devices import cpu_variant, list_devices, llama_lib_dir


def main() -> int:
    lib_dir = llama_lib_dir()
    if lib_dir is None:
        print(json.dumps({"error": "llama-cpp-python's libraries were not found"}))
        return 1
    devices = list_devices(lib_dir)
    print(json.dumps({"devices": [d.to_json() for d in devices], "cpu_variant": cpu_variant()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
