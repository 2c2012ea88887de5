"""The terminal: log lines of every service and function, each prefixed with who wrote it."""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()
WIDTH = 18


def line(source: str, text: str) -> None:
    """Write one line; whole lines only, so concurrent writers never interleave mid-line."""
    with _lock:
        sys.stdout.write(f"{source[:WIDTH]:<{WIDTH}} | {text.rstrip()}\n")
        sys.stdout.flush()
