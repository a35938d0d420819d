"""Renders the Chat page at 1000×640 with a real model loaded and served: a generated tiny model
(random weights, so its words are noise), a conversation whose last reply was regenerated (two
answers, "answer 2 of 2"), and the Server panel open and serving on a free port. ``--dark`` renders
it in the dark theme. Everything runs in a throwaway QUANTDESK_HOME.

    PYTHONPATH=. python docs/screenshots/shot_chat.py docs/screenshots/chat.png [--dark]
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="qd-shot-chat-"))
os.environ.update(QUANTDESK_HOME=str(WORK / "home"), QT_QPA_PLATFORM="offscreen", QUANTDESK_NO_AUTO_REFRESH="1",
                  QUANTDESK_NO_SELFTEST="1", HF_ENDPOINT="http://127.0.0.1:9",
                  PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")

from PySide6.QtWidgets import QApplication  # noqa: E402

from quantdesk.chat.sampling import Sampling  # noqa: E402
from quantdesk.gui.app import MainWindow  # noqa: E402
from quantdesk.gui.theme import apply_theme  # noqa: E402
from quantdesk.hardware.detect import resolve_hardware  # noqa: E402
from quantdesk.library.index import Library  # noqa: E402
from tests.support import gguf_factory as factory  # noqa: E402

NO_BYTES = {str(i): -100.0 for i in range(3, 259)}  # random weights: keep the noise printable


def wait(app: QApplication, until, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if not until():
        raise SystemExit("timed out")


def main(out: str, dark: bool) -> int:
    model = factory.write_model(WORK / "Demo-Chat-1B-Q8_0.gguf", factory.SMALL, "F16", seed=7)
    Library().import_file(model)
    app = QApplication([])
    if dark:
        apply_theme(app, "dark")
    window = MainWindow(resolve_hardware())
    window.resize(1000, 640)
    window.show()
    window.show_page("chat")
    page = window.chat_page
    page.select_model(str(model))
    page.ctx_combo.setCurrentIndex(page.ctx_combo.findData(2048))
    page.load_model()
    wait(app, lambda: page.model_ready and not page.loading, 120)
    sampling = Sampling(max_tokens=60, seed=3, temperature=0.7, logit_bias=NO_BYTES)
    cid = page.store.create(title="Lighthouse keepers", sampling=sampling.to_json()).id
    page.refresh_conversations()
    page.open_conversation(cid)
    page.input.setPlainText("What did a lighthouse keeper do all night?")
    page.send()
    wait(app, lambda: not page.streaming, 120)
    page.regenerate()
    wait(app, lambda: not page.streaming, 120)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page.server_toggle.click()
    page.server_port.setValue(port)
    page.toggle_server()
    wait(app, lambda: page.serving is not None and page.model_ready, 120)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    window.grab().save(out)
    window.close()
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], "--dark" in sys.argv[2:]))
