"""The window brings a stale offline catalog up to date from the (fake) hub, off the GUI thread."""

from __future__ import annotations

from quantdesk.catalog.offline import load_catalog
from quantdesk.hardware.machine import load_hardware_spec
from tests.conftest import CATALOG_REPO as REPO


def test_the_window_refreshes_a_stale_catalog_in_the_background(hub_with_catalog_repo, monkeypatch, qtbot):
    from quantdesk.gui.app import MainWindow

    monkeypatch.delenv("QUANTDESK_NO_AUTO_REFRESH")
    window = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.context.catalog_refreshed, timeout=60_000) as blocker:
        pass
    assert blocker.args[0].refreshed == [REPO]
    assert load_catalog().find(REPO).hub_status == "ok"
    assert not window.context.refresh_catalog_in_background()  # fresh now: not again
