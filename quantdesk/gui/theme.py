"""The colour scheme: follow the OS, or force light or dark, applied live to the whole app.

Qt 6.8+ can ask the platform for a scheme (``QStyleHints.setColorScheme``); where the platform
does not honour it (older Qt, some Linux desktops, the offscreen platform) the app switches to
Fusion with an explicit palette instead, so the choice always takes effect.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory, QWidget

from quantdesk.base.settings import THEMES

LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
_platform_style: str | None = None  # the style the app started with, restored for "system"


def dark_palette() -> QPalette:
    p = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    for r, color in ((role.Window, "#2b2d30"), (role.WindowText, "#e6e6e6"), (role.Base, "#1e1f22"),
                     (role.AlternateBase, "#2b2d30"), (role.ToolTipBase, "#3c3f41"), (role.ToolTipText, "#e6e6e6"),
                     (role.PlaceholderText, "#8c8c8c"), (role.Text, "#e6e6e6"), (role.Button, "#3c3f41"),
                     (role.ButtonText, "#e6e6e6"), (role.BrightText, "#ff6b6b"), (role.Link, "#6cb6ff"),
                     (role.Highlight, "#2f65ca"), (role.HighlightedText, "#ffffff"), (role.Light, "#4a4d50"),
                     (role.Midlight, "#3c3f41"), (role.Mid, "#2b2d30"), (role.Dark, "#1a1b1d"),
                     (role.Shadow, "#000000")):
        p.setColor(r, QColor(color))
    for r in (role.WindowText, role.Text, role.ButtonText, role.HighlightedText):
        p.setColor(group.Disabled, r, QColor("#7a7a7a"))
    p.setColor(group.Disabled, role.Highlight, QColor("#3c3f41"))
    return p


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def dark_now() -> bool:
    app = QApplication.instance()
    return app is not None and is_dark(app.palette())


def tone(light: str, dark: str) -> str:
    """The colour for the scheme shown now."""
    return dark if dark_now() else light


def themed_style(widget: QWidget, build: Callable[[], str]) -> None:
    """Give ``widget`` the stylesheet ``build()`` makes now, and again whenever the theme changes.

    Kept on the widget itself, not in a global connection: nothing outside the widget tree holds a
    widget (a cycle through a global signal would be collected on whatever thread runs the garbage
    collector, and a widget must only ever be destroyed on the GUI thread)."""
    widget._quantdesk_style = build  # type: ignore[attr-defined]
    widget.setStyleSheet(build())


MUTED = ("#6b7280", "#9198a1")          # secondary text: (light, dark)


def apply_theme(app: QApplication, theme: str) -> None:
    """Switch the running app to ``theme`` (one of ``THEMES``); unknown names follow the system."""
    global _platform_style
    if _platform_style is None:
        _platform_style = app.style().name()
    wanted = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(theme if theme in THEMES else "system")
    hints = app.styleHints()
    if hasattr(hints, "setColorScheme"):  # Qt 6.8+
        if wanted is None:
            hints.unsetColorScheme()
        else:
            hints.setColorScheme(wanted)
    if wanted is None or (hasattr(hints, "colorScheme") and hints.colorScheme() == wanted):
        if app.style().name() != _platform_style:
            app.setStyle(_platform_style)
        app.setPalette(QPalette())  # no roles set: the platform's own palette
        _repolish(app)
        return
    app.setStyle(QStyleFactory.create("Fusion"))
    app.setPalette(dark_palette() if wanted == Qt.ColorScheme.Dark else app.style().standardPalette())
    _repolish(app)


def _repolish(app: QApplication) -> None:
    """Stylesheets resolve ``palette(…)`` when a widget is polished: polish them again with the new
    palette (rebuilt, for those made by ``themed_style``), then let each widget with colours of its own
    (a ``theme_changed`` method: a plan table, a chat transcript) redraw them."""
    for widget in app.allWidgets():
        build = getattr(widget, "_quantdesk_style", None)
        sheet = build() if build is not None else widget.styleSheet()
        if sheet:
            widget.setStyleSheet(sheet)
        hook = getattr(widget, "theme_changed", None)
        if callable(hook):
            hook()
