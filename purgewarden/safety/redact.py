"""Keeps secrets out of logs, messages and the audit log by replacing their values wherever they appear."""

from __future__ import annotations

import logging
import re


class Redactor:
    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        values = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def scrub(self, text: str) -> str:
        return self._pattern.sub("[REDACTED]", text) if self._pattern else text


class RedactingFilter(logging.Filter):
    """Applied to the stderr handler: formats the record once, then scrubs it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self._redactor.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redactor.scrub(logging.Formatter().formatException(record.exc_info))
        return True
