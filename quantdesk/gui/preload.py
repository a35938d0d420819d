"""Import the pages' heavy, Qt-free dependencies on a background thread once the window shows.

Building a page on the GUI thread used to mean importing its core first: numpy and gguf for the
planner (0.23 s), jinja2 for chat templates, huggingface_hub and keyring for the token: measured
0.19–0.39 s of frozen window per page in the second after start. Imported here first, a page
build is widget work only. Nothing here touches Qt; a module the GUI thread needs before this
finishes is simply waited for by Python's import lock, as it would have been imported anyway.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("quantdesk.gui")

MODULES = (
    "numpy", "gguf",
    "quantdesk.planning.fit", "quantdesk.planning.plan", "quantdesk.planning.discover",
    "quantdesk.planning.quantize_cost", "quantdesk.quantize.job", "quantdesk.quantize.evaluate",
    "quantdesk.chat.template", "quantdesk.chat.session", "quantdesk.chat.store",
    "quantdesk.hub.credentials", "quantdesk.hub.client", "huggingface_hub", "keyring",
)


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the page that needs it reports the real error itself
            log.debug("preload of %s failed: %s", name, exc)


def _prepare_databases(on_damaged: Callable[[Exception], None] | None = None) -> None:
    """The data folder's SQLite files, created (first run: an fsync each, which waits behind any
    other writing on the disk — measured 0.7 s) and held open here rather than on the GUI thread.
    A damaged one is handed to ``on_damaged`` (the window offers to start a new one)."""
    from quantdesk.base import sqlite_db
    from quantdesk.base.paths import data_dir
    from quantdesk.chat import store as chat_store
    from quantdesk.library import index as library
    from quantdesk.library import queue as download_queue

    for name, schema in (("downloads.db", download_queue.SCHEMA), ("library.db", library.SCHEMA),
                         ("chats.db", chat_store.SCHEMA)):
        try:
            sqlite_db.prepare(data_dir() / name, schema)
        except sqlite_db.DamagedDatabase as exc:
            if on_damaged is not None:
                on_damaged(exc)
        except Exception as exc:  # noqa: BLE001 - the page that opens it reports the real error itself
            log.debug("preparing %s failed: %s", name, exc)


def _recover_quantize_jobs() -> None:
    """Put right what quantize jobs killed with an earlier run left (partial files, unregistered outputs)."""
    try:
        from quantdesk.quantize import journal

        for fixed in journal.recover():
            log.info("%s", fixed.sentence())
    except Exception as exc:  # noqa: BLE001 - the next quantize job tries again
        log.debug("quantize job recovery failed: %s", exc)


def _warm_up(modules: tuple[str, ...], freeze: bool, on_damaged: Callable[[Exception], None] | None) -> None:
    _import_all(modules)
    _prepare_databases(on_damaged)
    _recover_quantize_jobs()
    if freeze:
        # What was just imported lives as long as the process: keep the garbage collector from walking
        # it in every full collection (each one a GUI-thread pause; see MainWindow._settle_heap).
        gc.freeze()


def start_preload(modules: tuple[str, ...] = MODULES, freeze: bool = False,
                  on_damaged: Callable[[Exception], None] | None = None) -> threading.Thread:
    """Start importing ``modules`` and preparing the databases (then, with ``freeze``, take what is
    alive out of the garbage collector's walks); ``thread.is_alive()`` says whether it is still at it.
    ``on_damaged`` is called (on that thread) with each data file found damaged."""
    thread = threading.Thread(target=_warm_up, args=(modules, freeze, on_damaged), name="preload", daemon=True)
    thread.start()
    return thread
