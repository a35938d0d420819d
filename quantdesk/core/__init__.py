"""Qt-free core of QuantDesk. Nothing in this package may import PySide6."""
