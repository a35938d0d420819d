"""Draw QuantDesk's icon with QPainter and write the icon set into ``resources/icons/``.

Run ``python installer/make_icons.py`` after changing the drawing; the results are committed, so
a build needs neither this script nor Pillow. Each PNG is painted at its own size (not scaled down
from 512 px) so the small ones stay sharp. ``.ico`` (Windows) and ``.icns`` (macOS) are packed from
those PNGs with Pillow.

The picture: a chat bubble on an indigo-to-teal tile, holding four bars of falling height — the
quant levels from 8 bits down to 2, the app's job in one glance.
"""

from __future__ import annotations

import sys
from pathlib import Path

PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512)
ICON_DIR = Path(__file__).resolve().parents[1] / "resources" / "icons"
BASENAME = "quantdesk"


def render_png(size: int, path: Path) -> None:
    """Paint the icon on a ``size``×``size`` transparent canvas and save it as PNG."""
    from PySide6.QtCore import QPointF, QRectF, Qt
    from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter, QPainterPath

    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(size / 100.0, size / 100.0)  # draw in a 100×100 design space
    p.setPen(Qt.PenStyle.NoPen)

    tile = QRectF(4, 4, 92, 92)
    gradient = QLinearGradient(QPointF(4, 4), QPointF(96, 96))
    gradient.setColorAt(0.0, QColor("#4338ca"))
    gradient.setColorAt(1.0, QColor("#0f9f8f"))
    p.setBrush(gradient)
    p.drawRoundedRect(tile, 20, 20)

    bubble = QPainterPath()
    bubble.addRoundedRect(QRectF(17, 20, 66, 50), 12, 12)
    tail = QPainterPath()
    tail.moveTo(30, 66)
    tail.lineTo(26, 82)
    tail.lineTo(46, 68)
    tail.closeSubpath()
    p.setBrush(QColor("#ffffff"))
    p.drawPath(bubble.united(tail))

    colors = ("#4338ca", "#3656c0", "#2275a8", "#0f9f8f")
    heights = (34, 26, 18, 10)
    width, gap, left, base = 9.0, 5.0, 26.0, 61.0
    for i, (height, color) in enumerate(zip(heights, colors, strict=True)):
        p.setBrush(QColor(color))
        p.drawRoundedRect(QRectF(left + i * (width + gap), base - height, width, height), 2.5, 2.5)
    p.end()
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")


def pack_ico_icns(icon_dir: Path) -> None:
    """``.ico`` and ``.icns`` from the PNG set (Pillow picks the closest painted size for each)."""
    from PIL import Image

    images = {s: Image.open(icon_dir / f"{BASENAME}-{s}.png").convert("RGBA") for s in PNG_SIZES}
    images[256].save(icon_dir / f"{BASENAME}.ico", format="ICO", sizes=[(s, s) for s in ICO_SIZES],
                     append_images=[images[s] for s in ICO_SIZES if s != 256])
    images[512].save(icon_dir / f"{BASENAME}.icns", format="ICNS",
                     append_images=[images[s] for s in ICNS_SIZES if s != 512])


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ICON_DIR
    out.mkdir(parents=True, exist_ok=True)
    for size in PNG_SIZES:
        render_png(size, out / f"{BASENAME}-{size}.png")
    pack_ico_icns(out)
    print(f"icons written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
