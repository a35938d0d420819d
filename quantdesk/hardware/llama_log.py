"""What llama.cpp says it did while loading a model, read from its log.

Its log is the only place that names each buffer by device ("Vulkan0 model buffer size = 9.38 MiB",
"CPU_REPACK model buffer size", "Vulkan0 KV buffer size") and how many layers it offloaded; the
engine's load report and ``selftest`` read it here.
"""

from __future__ import annotations

import re
from typing import Any

_OFFLOAD = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_BUFFER = re.compile(r"(\S+) (model|KV|compute|RS) buffer size\s*=\s*([\d.]+) MiB")
# a tensor a buffer-type override moved (llama.cpp logs each at debug level)
_OVERRIDDEN = re.compile(r"tensor (\S+) \((\d+) MiB \S+\) buffer type overridden to (\S+)")


def load_report_from_log(lines: list[str]) -> dict[str, Any]:
    """What llama.cpp says it did: layers on GPU, each buffer by device, and each tensor an override
    moved (name → buffer type)."""
    report: dict[str, Any] = {"gpu_layers": 0, "total_layers": None, "buffers": {}, "overridden": {}}
    for line in lines:
        if m := _OVERRIDDEN.search(line):
            report["overridden"][m.group(1)] = m.group(3)
        elif m := _OFFLOAD.search(line):
            report["gpu_layers"], report["total_layers"] = int(m.group(1)), int(m.group(2))
        elif m := _BUFFER.search(line):
            device, kind, mib = m.group(1).rstrip(":"), m.group(2), float(m.group(3))
            key = f"{device} {kind}"
            report["buffers"][key] = report["buffers"].get(key, 0) + int(mib * 1024 * 1024)
    return report
