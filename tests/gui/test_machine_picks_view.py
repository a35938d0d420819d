"""The Hardware page names the best models for the machine from the offline catalog, and opens one
in Discover — a first run with no network already says what to run."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPushButton

from quantdesk.gui.app import MainWindow
from quantdesk.hardware.machine import load_hardware_spec


def _pick_buttons(page) -> list[QPushButton]:
    return [b for b in page.picks_box.findChildren(QPushButton) if b.text() == "Open in Discover"]


def test_picks_follow_the_machine_and_open_in_discover(qtbot, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # no hub: Discover plans from the catalog
    window = MainWindow(load_hardware_spec("nvidia-8gb"))
    qtbot.addWidget(window)
    page = window.hardware_page
    qtbot.waitUntil(lambda: page.picks_box.picks is not None and not page.picks_box.busy, timeout=20_000)
    assert len(_pick_buttons(page)) == 3
    text = " ".join(label.text() for label in page.picks_box.findChildren(QLabel))
    assert "fully on the GPU" in text and "bundled catalog" in text and "no network needed" in text
    eight_gb = [p.repo for p in page.picks_box.picks]

    page.simulate("nvidia-24gb")  # another machine: other picks
    qtbot.waitUntil(lambda: not page.picks_box.busy and [p.repo for p in page.picks_box.picks] != eight_gb,
                    timeout=20_000)
    first = page.picks_box.picks[0]
    from quantdesk.catalog.offline import load_catalog

    assert load_catalog().find(first.repo).params > 20e9  # 24 GB holds a ~30B model at Q4

    _pick_buttons(page)[0].click()
    assert window.current_page() == "discover"
    discover = window.discover_page
    qtbot.waitUntil(lambda: discover.plan is not None, timeout=30_000)
    assert discover.plan.model == first.repo and discover.plan.source == "catalog"
    assert discover.plan.recommended.file == first.option.file  # the same pick, planned the same way


def test_no_picks_is_said_not_left_blank(qtbot):
    from dataclasses import replace

    tiny = replace(load_hardware_spec("cpu-4gb"), ram_total=256 * 2**20, ram_available=128 * 2**20)
    window = MainWindow(tiny)
    qtbot.addWidget(window)
    box = window.hardware_page.picks_box
    qtbot.waitUntil(lambda: box.picks is not None and not box.busy, timeout=20_000)
    assert box.picks == [] and not _pick_buttons(window.hardware_page)
    assert "runs at a usable speed" in box.caption.text()


def test_a_mirror_without_the_catalogs_repos_still_shows_picks_and_says_what_happened(qtbot, fake_hub):
    """Issue 16.5: with HF_ENDPOINT at a mirror that has none of the catalog's repos, the first
    refresh marked them all gone and the page said nothing runs at a usable speed here."""
    from quantdesk.catalog.offline import load_catalog
    from quantdesk.catalog.refresh import refresh_catalog

    load_catalog.cache_clear()
    try:
        result = refresh_catalog()
        assert not result.gone
        window = MainWindow(load_hardware_spec("nvidia-8gb"))
        qtbot.addWidget(window)
        page = window.hardware_page
        qtbot.waitUntil(lambda: page.picks_box.picks is not None and not page.picks_box.busy, timeout=20_000)
        assert len(_pick_buttons(page)) == 3
        caption = page.picks_box.caption.text()
        assert "usable speed" not in caption and f"not on {fake_hub.endpoint}" in caption
    finally:
        load_catalog.cache_clear()
