"""Light and dark palettes on Qt's Fusion style, switchable at run time, with matching plot colours."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

_COLOURS = {
    # role: (light, dark)
    QPalette.Window: ("#f3f3f3", "#2b2b2e"),
    QPalette.WindowText: ("#1e1e1e", "#e6e6e6"),
    QPalette.Base: ("#ffffff", "#1f1f22"),
    QPalette.AlternateBase: ("#f0f3f7", "#29292d"),
    QPalette.ToolTipBase: ("#ffffdc", "#3a3a3e"),
    QPalette.ToolTipText: ("#1e1e1e", "#e6e6e6"),
    QPalette.PlaceholderText: ("#8a8a8a", "#8a8a8a"),
    QPalette.Text: ("#1e1e1e", "#e6e6e6"),
    QPalette.Button: ("#e9e9e9", "#35353a"),
    QPalette.ButtonText: ("#1e1e1e", "#e6e6e6"),
    QPalette.BrightText: ("#d0021b", "#ff6b6b"),
    QPalette.Link: ("#1a64c8", "#6aa9ff"),
    QPalette.Highlight: ("#2f6fd1", "#3d7be0"),
    QPalette.HighlightedText: ("#ffffff", "#ffffff"),
}
_DISABLED_TEXT = ("#a0a0a0", "#6e6e6e")
PLOT_COLOURS = {"light": ("w", "k"), "dark": ("#1f1f22", "#e6e6e6")}  # (background, foreground)


def palette(theme: str) -> QPalette:
    """The QPalette of `theme` ("light" or "dark")."""
    column = 1 if theme == "dark" else 0
    result = QPalette()
    for role, colours in _COLOURS.items():
        result.setColor(role, QColor(colours[column]))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        result.setColor(QPalette.Disabled, role, QColor(_DISABLED_TEXT[column]))
    return result


def apply_theme(app: QApplication, theme: str) -> None:
    """Fusion style with the palette of `theme`; plots created afterwards use matching colours
    (pyqtgraph reads its config when a plot is built, so existing plots keep theirs until rebuilt)."""
    app.setStyle(QStyleFactory.create("Fusion"))
    app.setPalette(palette(theme))
    background, foreground = PLOT_COLOURS.get(theme, PLOT_COLOURS["light"])
    pg.setConfigOptions(background=background, foreground=foreground, antialias=True)


def restyle_plots(root, theme: str) -> None:
    """Gives the existing pyqtgraph plots under `root` the colours of `theme`."""
    background, foreground = PLOT_COLOURS.get(theme, PLOT_COLOURS["light"])
    for plot in root.findChildren(pg.PlotWidget):
        plot.setBackground(background)
        item = plot.getPlotItem()
        for name in ("left", "bottom", "right", "top"):
            axis = item.getAxis(name)
            axis.setPen(foreground)
            axis.setTextPen(foreground)
        item.titleLabel.setText(item.titleLabel.text, color=foreground)
