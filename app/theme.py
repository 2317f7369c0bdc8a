"""Light and dark themes on Qt's Fusion style, switchable at run time: the palette and colours come from
`resources/themes/palette.toml`, widget styles from `light.qss` / `dark.qss`, plots follow."""

from __future__ import annotations

import tomllib
from importlib import resources

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

THEMES = ("light", "dark")
_FOLDER = resources.files("resources") / "themes"
_THEMES = tomllib.loads((_FOLDER / "palette.toml").read_text(encoding="utf-8"))
_current = "light"


def current_theme() -> str:
    return _current


def colour(name: str, theme: str | None = None) -> QColor:
    """A named colour of the theme (`short_term_window`, `error`, `plot_background`, ...)."""
    return QColor(_THEMES[theme or _current]["colours"][name])


def stylesheet(theme: str) -> str:
    return (_FOLDER / f"{theme}.qss").read_text(encoding="utf-8")


def palette(theme: str) -> QPalette:
    """The QPalette of `theme` ("light" or "dark")."""
    roles = _THEMES[theme]["palette"]
    result = QPalette()
    for name, value in roles.items():
        if name != "Disabled":
            result.setColor(getattr(QPalette.ColorRole, name), QColor(value))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        result.setColor(QPalette.Disabled, role, QColor(roles["Disabled"]))
    return result


def apply_theme(app: QApplication, theme: str) -> None:
    """Fusion style with the palette and stylesheet of `theme`; plots created afterwards use its colours
    (pyqtgraph reads its config when a plot is built; `restyle_plots` updates existing ones)."""
    global _current
    _current = theme if theme in THEMES else "light"
    app.setStyle(QStyleFactory.create("Fusion"))
    app.setPalette(palette(_current))
    app.setStyleSheet(stylesheet(_current))
    pg.setConfigOptions(background=colour("plot_background").name(), foreground=colour("plot_foreground").name(),
                        antialias=True)


LEGEND_ALPHA = 190  # of 255: the curves behind a legend stay visible


def style_plot(plot: pg.PlotWidget, theme: str | None = None) -> None:
    """Gives a plot the colours of `theme` (default: the current one): background, axes, title, legend
    background and text. Labels already drawn keep their colour unless drawn again: their text is set anew."""
    background, foreground = colour("plot_background", theme).name(), colour("plot_foreground", theme).name()
    plot.setBackground(background)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(foreground)
        axis.setTextPen(foreground)
    item.titleLabel.setText(item.titleLabel.text, color=foreground)
    if item.legend is not None:
        legend_background = colour("plot_background", theme)
        legend_background.setAlpha(LEGEND_ALPHA)
        item.legend.setBrush(pg.mkBrush(legend_background))
        item.legend.setLabelTextColor(foreground)  # for labels added later
        for _sample, label in item.legend.items:
            label.setText(label.text, color=foreground)


def restyle_plots(root, theme: str) -> None:
    """Gives the existing pyqtgraph plots under `root` the colours of `theme`."""
    for plot in root.findChildren(pg.PlotWidget):
        style_plot(plot, theme)


def repolish(widget) -> None:
    """Re-applies the stylesheet to `widget` after a dynamic property its rules select on has changed."""
    widget.style().unpolish(widget)
    widget.style().polish(widget)


def app_icon():
    """The application's icon at every size in resources/icons (the SVG for any other size)."""
    from PySide6.QtGui import QIcon, QPixmap

    icon = QIcon()
    icons = resources.files("resources") / "icons"
    for entry in icons.iterdir():
        if entry.name.endswith(".png"):
            pixmap = QPixmap()
            pixmap.loadFromData(entry.read_bytes())
            icon.addPixmap(pixmap)
    return icon
