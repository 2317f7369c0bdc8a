"""Renders resources/icons/automlp.svg to the PNG sizes window managers ask for (run after editing it):
`QT_QPA_PLATFORM=offscreen python scripts/render_icons.py`."""

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

FOLDER = Path(__file__).resolve().parents[1] / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256)

if __name__ == "__main__":
    app = QGuiApplication([])
    renderer = QSvgRenderer(str(FOLDER / "automlp.svg"))
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        image.save(str(FOLDER / f"automlp-{size}.png"))
