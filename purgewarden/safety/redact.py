"""Keeps secrets out of logs, messages and the audit log by replacing their values wherever they appear."""

from __future__ import annotations

import logging
import re
from typing import Any


class Redactor:
    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        values = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def scrub(self, text: str) -> str:
        return self._pattern.sub("[REDACTED]", text) if self._pattern else text

    def scrub_values(self, data: Any) -> Any:
        """Every string in JSON-like data scrubbed, keys included: some are API values (object types)."""
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, dict):
            return {self.scrub(key): self.scrub_values(value) for key, value in data.items()}
        if isinstance(data, list):
            return [self.scrub_values(item) for item in data]
        return data


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
