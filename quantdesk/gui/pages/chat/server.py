"""The loaded model as an OpenAI-compatible server for other programs, started and stopped here.

The model's process already is llama.cpp's OpenAI-compatible server, on 127.0.0.1, a random port
and a random key, for the window alone. Serving means loading it again on the port the user
chose (and, if asked, on every network address), with a key the user can copy: the chat goes on
through the same process. The panel shows the address, the key and how many requests other
programs made. A port that is taken is said, and the model is loaded back as it was.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QCheckBox, QFrame, QGridLayout, QLabel, QLineEdit, QPushButton, QSpinBox

from quantdesk.gui.tasks import run_task

DEFAULT_PORT = 8000


@dataclass(frozen=True)
class Serving:
    host: str
    port: int
    key: str

    def url(self) -> str:
        shown = "127.0.0.1" if self.host == "127.0.0.1" else _lan_address()
        return f"http://{shown}:{self.port}/v1"


def _lan_address() -> str:
    """This computer's address on its network, as another computer would use it."""
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _served(count: int) -> str:
    return f"{count:,} request{'s' if count != 1 else ''} served"


class ServerMixin:
    """The Chat page's server panel (built by ``_build_server``) and what its buttons do."""

    def _build_server(self) -> QFrame:
        self.serving: Serving | None = None
        self._serve_wanted: Serving | None = None  # asked for: applied by the next load
        self._served_task: Any = None
        self.server_key = secrets.token_urlsafe(24)
        panel = QFrame()
        panel.setObjectName("serverPanel")
        panel.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(panel)
        grid.setContentsMargins(8, 6, 8, 6)
        self.server_status = QLabel()
        self.server_status.setWordWrap(True)
        self.server_status.setAccessibleName("Server status")
        self.server_port = QSpinBox()
        self.server_port.setRange(1024, 65535)
        self.server_port.setValue(DEFAULT_PORT)
        self.server_port.setAccessibleName("Server port")
        self.server_lan = QCheckBox("Reachable from other computers on this network")
        self.server_lan.setAccessibleName("Serve on the network")
        self.server_key_edit = QLineEdit(self.server_key)
        self.server_key_edit.setReadOnly(True)
        self.server_key_edit.setAccessibleName("Server API key")
        self.server_button = QPushButton("Start server")
        self.server_button.setAccessibleName("Start or stop the server")
        self.server_button.clicked.connect(lambda _=False: self.toggle_server())
        copy_url = QPushButton("Copy URL")
        copy_url.setAccessibleName("Copy server URL")
        copy_url.clicked.connect(lambda _=False: self._copy(self.server_url_text()))
        copy_key = QPushButton("Copy key")
        copy_key.setAccessibleName("Copy server key")
        copy_key.clicked.connect(lambda _=False: self._copy(self.server_key))
        grid.addWidget(QLabel("Port:"), 0, 0)
        grid.addWidget(self.server_port, 0, 1)
        grid.addWidget(self.server_lan, 0, 2, 1, 2)
        grid.addWidget(self.server_button, 0, 4)
        grid.addWidget(QLabel("Key:"), 1, 0)
        grid.addWidget(self.server_key_edit, 1, 1, 1, 2)
        grid.addWidget(copy_key, 1, 3)
        grid.addWidget(copy_url, 1, 4)
        grid.addWidget(self.server_status, 2, 0, 1, 5)
        grid.setColumnStretch(2, 1)
        panel.hide()
        self._show_server_state()
        return panel

    def server_url_text(self) -> str:
        serving = self.serving or Serving("0.0.0.0" if self.server_lan.isChecked() else "127.0.0.1",
                                          self.server_port.value(), self.server_key)
        return serving.url()

    def _copy(self, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.status_label.setText("Copied to the clipboard.")

    def toggle_server(self) -> None:
        """Start serving the loaded model on the chosen port, or stop; either reloads the model."""
        if self._streaming:
            self.status_label.setText("Wait for the reply to end (or stop it) to start or stop the server.")
            return
        if self.serving is None and self._serve_wanted is None:
            if self.engine is None:
                self.show_error("Load a model first: the server serves the model loaded here.")
                return
            host = "0.0.0.0" if self.server_lan.isChecked() else "127.0.0.1"
            self._serve_wanted = Serving(host, self.server_port.value(), self.server_key)
        else:
            self._serve_wanted = None
        self.reload_model()

    def engine_options(self) -> dict[str, Any]:
        """What the next load passes to the engine: the server's address and key, when serving."""
        wanted = self._serve_wanted
        if wanted is None:
            return {}
        return {"host": wanted.host, "port": wanted.port, "api_key": wanted.key}

    def _server_loaded(self) -> None:
        """A load succeeded: it serves what was asked for."""
        self.serving = self._serve_wanted
        self._show_server_state()

    def _server_load_failed(self, error: Exception) -> bool:
        """A load failed: if it was for serving, say so and load the model back without it (True)."""
        if self._serve_wanted is None:
            self.serving = None
            self._show_server_state()
            return False
        wanted, self._serve_wanted, self.serving = self._serve_wanted, None, None
        self._show_server_state()
        self.show_error(f"The server could not start on port {wanted.port} ({error}); the model is loaded "
                        "again for this window only. Pick another port and Start again.")
        self.reload_model()
        return True

    def _show_server_state(self) -> None:
        serving = self.serving
        self.server_button.setText("Stop server" if serving else "Start server")
        for w in (self.server_port, self.server_lan):
            w.setEnabled(serving is None)
        if serving is None:
            self.server_status.setText("Off. Start it to let other programs (editors, scripts, other apps) use "
                                       "the model loaded here through the OpenAI API, with the key above.")
            return
        where = "this computer only" if serving.host == "127.0.0.1" else "every computer on this network"
        self.server_status.setText(f"Serving at <b>{serving.url()}</b> for {where} · requests need the key · "
                                   f"{_served(getattr(self, '_served_count', 0))}")

    def _poll_served(self) -> None:
        """Ask the model process how many requests other programs made (every few seconds while serving)."""
        if self.serving is None or self.engine is None or self._served_task is not None:
            return
        engine = self.engine

        def done(count: int) -> None:
            self._served_task = None
            self._served_count = count
            self._show_server_state()

        def failed(_error: Exception) -> None:
            self._served_task = None

        self._served_task = run_task(lambda _: engine.served(), done, failed, owner=self)
