"""SIGTERM, what a batch system sends at a time limit, stops the grid as Ctrl-C does.

`sigterm_stops()` makes SIGTERM raise `Terminated` (a KeyboardInterrupt) in the main thread while
the command runs; the command then notes its stopped runs and exits 143. A light module: the
command line installs it before importing torch.
"""
from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the grid stops as on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_stops():
    """SIGTERM raises `Terminated` in the main thread within (which is where signals arrive);
    elsewhere (a thread) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
