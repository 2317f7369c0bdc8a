"""AutoMLP Studio desktop application: a thin PySide6 + pyqtgraph shell over `engine`."""
