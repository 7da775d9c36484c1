"""The audit log: one JSON line per preview, refusal, confirmation and outcome.

Destructive outcomes are fsynced before the tool returns, so a crash right after a deletion cannot
lose the record of it. Every line passes through the redactor: no secret reaches the file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from purgewarden.safety.redact import Redactor

logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self._redactor = redactor
        self._lock = threading.Lock()
        self._file: Any = None

    def record(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
        line = self._redactor.scrub(json.dumps(entry, default=str, separators=(",", ":")))
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line + "\n")
                self._file.flush()
                if durable:
                    os.fsync(self._file.fileno())
            except OSError:
                # The operation already happened; losing the audit line must be loud, not fatal.
                logger.exception("could not write the audit log at %s", self.path)
                if durable:
                    raise

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
