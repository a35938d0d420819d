"""Issue 16.4: switching to Dark live darkens everything at once — sidebar, Discover's table, the
chat bubbles, the model strip, the error banner — with readable contrast, judged from pixels of the
window as it is painted (not from what the code meant to set)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QWidget

from quantdesk.gui.app import PAGES, MainWindow
from quantdesk.gui.theme import apply_theme
from quantdesk.hardware.machine import load_hardware_spec
from tests.gui.test_chat_page import FAST


def _luminance(color: QColor) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(color.red()) + 0.7152 * channel(color.green()) + 0.0722 * channel(color.blue())


def _region(window: QWidget, widget: QWidget) -> QImage:
    image = window.grab().toImage()
    top_left = widget.mapTo(window, QPoint(0, 0))
    return image.copy(QRect(top_left, widget.size()))


def _stats(image: QImage, step: int = 3) -> tuple[float, float, float]:
    """(mean, darkest, lightest) relative luminance of the region's pixels."""
    values = [_luminance(image.pixelColor(x, y)) for y in range(0, image.height(), step)
              for x in range(0, image.width(), step)]
    return sum(values) / len(values), min(values), max(values)


def _contrast(lightest: float, darkest: float) -> float:
    return (lightest + 0.05) / (darkest + 0.05)


def _text_contrast(image: QImage) -> float:
    """Contrast of a label's text against its own background: the background is the region's most
    common colour, the text its pixel farthest from it in luminance (anti-aliasing only softens edges)."""
    from collections import Counter

    pixels = [image.pixelColor(x, y) for y in range(image.height()) for x in range(image.width())]
    background = Counter(p.rgb() for p in pixels).most_common(1)[0][0]
    bg = _luminance(QColor.fromRgb(background))
    far = max((_luminance(p) for p in pixels), key=lambda lum: abs(lum - bg))
    return _contrast(max(bg, far), min(bg, far))


def test_a_failed_download_reads_in_the_dark_theme(qtbot):
    """The failed row's sentence was dark red on dark grey: judged from the painted pixels."""
    from quantdesk.gui.widgets.download_row import DownloadRow
    from quantdesk.hub.client import RepoFilePart, RepoGGUF
    from quantdesk.library.queue import DownloadJob

    entry = RepoGGUF("m-Q4_K_M.gguf", "Q4_K_M", [RepoFilePart("m-Q4_K_M.gguf", 1000, "ab" * 32)])
    job = DownloadJob(1, "org/M-GGUF", None, entry, "failed", 500, 1000, "checksum mismatch", None,
                      failure_kind="checksum", failure_details={"file": "m-Q4_K_M.gguf", "expected": "a" * 64,
                                                               "actual": "b" * 64, "received": 1000, "size": 1000})
    try:
        apply_theme(QApplication.instance(), "dark")
        holder = QWidget()
        qtbot.addWidget(holder)
        from quantdesk.gui.theme import themed_style
        from quantdesk.gui.widgets.download_row import row_style

        themed_style(holder, row_style)
        row = DownloadRow(job, holder)
        holder.resize(800, 140)
        row.resize(800, 140)
        holder.show()
        qtbot.wait(30)
        assert "did not match" in row.detail.text()
        image = _region(holder, row.detail)
        assert _stats(image, 1)[0] < 0.25  # a dark row
        assert _text_contrast(image) >= 4.5
    finally:
        apply_theme(QApplication.instance(), "system")


def test_dark_applies_to_every_part_live_with_readable_text(qtbot, llama8b_q4):
    window = MainWindow(load_hardware_spec("nvidia-8gb"))
    qtbot.addWidget(window)
    window.resize(1100, 700)
    window.show()
    qtbot.waitUntil(lambda: len(window._built) == len(PAGES), timeout=30_000)
    discover = window.page("discover")
    discover.open_ref(str(llama8b_q4))
    qtbot.waitUntil(lambda: discover.plan is not None, timeout=20_000)
    chat = window.page("chat")
    cid = chat.store.create(title="Theme check", sampling=FAST.to_json()).id
    chat.store.add_message(cid, "user", "Hello there, how are you?")
    chat.store.add_message(cid, "assistant", "Fine, thanks. **Bold** and `code` too.", status="complete")
    chat.refresh_conversations()
    chat.open_conversation(cid)
    window.context.errors.report("Downloads", "The download of x.gguf did not match the hub's checksum.",
                                 "Retry downloads it again.")
    settings = window.page("settings")
    try:
        settings.theme_combo.setCurrentIndex(settings.theme_combo.findData("dark"))
        qtbot.wait(100)
        checks = {"sidebar": (window, window.sidebar), "error banner": (window, window.banner)}
        for name, (_w, widget) in checks.items():
            mean, darkest, lightest = _stats(_region(window, widget))
            assert mean < 0.2, (name, mean)
            assert _contrast(lightest, darkest) >= 4.5, (name, lightest, darkest)
        window.show_page("discover")
        qtbot.wait(50)
        table = discover.view.table
        mean, darkest, lightest = _stats(_region(window, table.viewport()))
        assert mean < 0.2, ("Discover table", mean)
        assert _contrast(lightest, darkest) >= 4.5
        fit = table.visualItemRect(table.item(0, 3))
        badge = _region(window, table.viewport()).copy(fit)
        mean, darkest, lightest = _stats(badge, 1)
        assert mean < 0.25 and _contrast(lightest, darkest) >= 4.5, ("fit badge", mean, lightest, darkest)
        window.show_page("chat")
        qtbot.wait(50)
        mean, darkest, lightest = _stats(_region(window, chat.transcript.viewport()))
        assert mean < 0.2, ("chat transcript", mean)
        assert _contrast(lightest, darkest) >= 4.5
        mean, _, _ = _stats(_region(window, chat.report_label))
        assert mean < 0.2, ("model strip", mean)
        assert _text_contrast(_region(window, chat.report_label)) >= 4.5
        window.show_page("discover")
        qtbot.wait(50)
        chart = _region(window, discover.view.chart)
        assert _stats(chart)[0] < 0.25, "memory chart"
        assert _text_contrast(_region(window, discover.view.notes)) >= 4.5
    finally:
        apply_theme(QApplication.instance(), "system")
