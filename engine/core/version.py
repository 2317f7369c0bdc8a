"""The release of AutoMLP Studio, recorded with every run and bundle."""

__version__ = "0.1.0"
