"""A wall clock the tests can move forward, so retention periods and task progress need no sleeping."""

from __future__ import annotations

import threading
import time


class Clock:
    """Unix time plus an adjustable offset; shared by the emulators of one sandbox."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
