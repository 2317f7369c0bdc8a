"""The Qt binding keeps Python's reference counts: PySide6 6.12.0 on Python 3.11 loses a reference to
True on every Signal.emit() (and to None on every processEvents()), so that a GUI which updates plots for
a few minutes aborts with "Fatal Python error: bool_dealloc". pyproject.toml excludes that release;
this test tells when an installed binding has the fault (Python 3.12+ is immune: True and None are
immortal there)."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QCoreApplication, QObject, Signal

needs_mortal_singletons = pytest.mark.skipif(sys.version_info >= (3, 12),
                                             reason="True and None are immortal from Python 3.12")


class _Emitter(QObject):
    happened = Signal(int)


@needs_mortal_singletons
def test_signal_emit_keeps_the_reference_count_of_true(qtbot):
    emitter = _Emitter()
    received = []
    emitter.happened.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(20):
        emitter.happened.emit(i)
    assert len(received) == 20
    assert sys.getrefcount(True) - before > -10, "the installed PySide6 leaks references to True on emit"


@needs_mortal_singletons
def test_process_events_keeps_the_reference_count_of_none(qtbot):
    before = sys.getrefcount(None)
    for _ in range(20):
        QCoreApplication.processEvents()
    assert sys.getrefcount(None) - before > -10, "the installed PySide6 leaks references to None"
