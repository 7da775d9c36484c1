"""The audit log: one JSON line per preview, refusal, confirmation and outcome.

Durable records (a confirmation, an outcome) are fsynced before the tool goes on, so a crash right after a
deletion cannot lose the record of it, and a durable record that cannot be written raises `OSError`, so the
kernel refuses rather than acting unrecorded. Every line passes through the redactor: no secret reaches it.

The sink is a file (`PURGEWARDEN_AUDIT_LOG`, default `audit.jsonl` in the state directory), or the process's
`stdout` or `stderr` (a container's log collector). Only regular files are fsynced: a pipe, a terminal or
a character device has nothing to sync and answers `fsync` with EINVAL. A file sink is reopened by path
on the next record after `request_reopen()` (the server calls it on SIGHUP), so logrotate can move it away.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from purgewarden.safety.redact import Redactor

logger = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
"""Audit sinks that are the process's own streams rather than files."""


def stream_of(path: Path | str) -> str | None:
    """`stdout` or `stderr` when the configured sink names one of the process's streams, else None."""
    name = str(path)
    return name if name in STREAMS else None


class AuditLog:
    _generation: ClassVar[int] = 0
    """Bumped by `request_reopen()`; a file opened under an older generation is reopened before the next line."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self._redactor = redactor
        self._lock = threading.Lock()
        self._stream = stream_of(path)
        self._fd: int | None = None
        self._owned = False  # a file the log opened (and closes), not a stream it borrows
        self._syncable = False  # a regular file: fsync means something
        self._opened_in = 0

    @classmethod
    def request_reopen(cls) -> None:
        """Reopen every file sink before its next line (safe from a signal handler: it takes no lock)."""
        cls._generation += 1

    def record(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
        line = self._redactor.scrub(json.dumps(entry, default=str, separators=(",", ":")))
        data = (line + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = self._open()
                while data:
                    data = data[os.write(fd, data) :]
                if durable and self._syncable:
                    os.fsync(fd)
            except OSError:
                # A durable record is raised, so the kernel refuses before acting; any other line is lost
                # loudly (logged), because what it records has already happened.
                logger.exception("could not write the audit log at %s", self.path)
                if durable:
                    raise

    def _open(self) -> int:
        if self._fd is not None and self._owned and self._opened_in != AuditLog._generation:
            self._close()
            logger.info("reopening the audit log at %s", self.path)
        if self._fd is None:
            if self._stream is not None:
                stream = sys.stdout if self._stream == "stdout" else sys.stderr
                stream.flush()  # what was buffered before goes first
                self._fd, self._owned = stream.fileno(), False
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                self._fd, self._owned = os.open(self.path, flags, 0o666), True  # as open("a"): umask applies
            self._syncable = stat.S_ISREG(os.fstat(self._fd).st_mode)
            self._opened_in = AuditLog._generation
        return self._fd

    def _close(self) -> None:
        if self._fd is not None and self._owned:
            os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close()
