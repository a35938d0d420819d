"""Renders the Quantize page after a real job: a generated F16 llama model (random weights, ~300 MB)
quantized to Q4_K_M by llama.cpp, with the quality evaluation, in a throwaway QUANTDESK_HOME.

    PYTHONPATH=. python docs/screenshots/shot_quantize.py docs/screenshots/quantize.png
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="qd-shot-quantize-"))
os.environ.update(QUANTDESK_HOME=str(WORK / "home"), QT_QPA_PLATFORM="offscreen", QUANTDESK_NO_AUTO_REFRESH="1",
                  HF_ENDPOINT="http://127.0.0.1:9", PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")

from PySide6.QtWidgets import QApplication  # noqa: E402

from quantdesk.gui.app import MainWindow  # noqa: E402
from quantdesk.hardware.detect import resolve_hardware  # noqa: E402
from tests.support import gguf_factory as factory  # noqa: E402

SHAPE = factory.ModelShape(n_vocab=32000, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=2816,
                           n_ctx_train=2048, name="demo-160m")


def wait(app: QApplication, until, seconds: float, why=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if not until():
        raise SystemExit(f"timed out: {why()}")


def main(out: str) -> int:
    source = factory.write_model(WORK / "demo-160m-F16.gguf", SHAPE, "F16")
    app = QApplication([])
    window = MainWindow(resolve_hardware())
    window.show()
    window.context.quantize_requested.emit(str(source), "Q4_K_M")
    page = window.pages["quantize"]
    page.eval_check.setChecked(True)
    wait(app, lambda: page.last_check is not None and page.quantize_button.isEnabled(), 60,
         lambda: f"{page.source!r} {page.preset!r} {page.preflight.verdict.text()}")
    page.start()
    wait(app, lambda: not page.running, 600)
    for _ in range(20):
        app.processEvents()
    window.grab().save(out)
    print(f"wrote {out}: {page.status.text()} {page.result_label.text()}")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1] if len(sys.argv) > 1 else "quantize.png")
    sys.stdout.flush()
    os._exit(code)
