"""AutoMLP Studio engine: everything that is not Qt.

Store, importers, sequences, model, search, training, evaluation, recommendation, export and CLI.
Usable from scripts, tests and servers without a display; never imports PySide6 or pyqtgraph.
"""

__version__ = "0.1.0"
