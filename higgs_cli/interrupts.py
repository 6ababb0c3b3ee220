"""Holding Ctrl-C, SIGTERM and SIGHUP back while a native extension imports, so a signal never aborts the process.

A KeyboardInterrupt raised while a C++ extension (onnx's nanobind module, torch) runs Python code during its
own import crosses C++ frames that cannot carry it: the process dies with SIGABRT ("terminate called after
throwing an instance of 'nanobind::python_error'") or by SIGINT after printing that it stopped cleanly. These
imports take a second or two, so the signal is held for that long and delivered, with its usual handler, as
soon as the import is done.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_HELD = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def held() -> Iterator[None]:
    """Delay the terminating signals until the block ends, then deliver the first one that came (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals; nothing to hold
        return
    caught: list[int] = []
    previous = {}
    for sig in _HELD:
        handler = signal.getsignal(sig)
        if handler in (signal.SIG_IGN, None):  # ignored stays ignored; None: set outside Python, leave it alone
            continue
        previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])  # runs the restored handler now: KeyboardInterrupt, Terminated or exit


def heavy_import(name: str) -> ModuleType:
    """Import a module that loads native code, with the terminating signals held until it is done."""
    if name in sys.modules:  # imported, or importing in another thread: import_module waits for that to finish
        return importlib.import_module(name)
    with held():
        return importlib.import_module(name)
