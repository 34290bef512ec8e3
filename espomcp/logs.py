"""Structured logging: one JSON object per line, never a token or a secret."""

from __future__ import annotations

import logging
import sys
from typing import Any

from espomcp import jsontext
from espomcp.timestamps import iso_millis

_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as JSON lines; ``extra={...}`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": iso_millis(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update((key, value) for key, value in record.__dict__.items()
                    if key not in _RESERVED and key[:1] != "_")
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return jsontext.dumps_text(data)


def configure_logging(level: str = "INFO") -> None:
    """Send espomcp's logs to stderr as JSON lines (idempotent).

    Log records stop collecting thread names, multiprocessing names and caller frames (the
    logging HOWTO's "Optimization" switches): no format here or in gunicorn's uses them, and
    they were a fifth of the cost of the per-request log line.
    """
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]  # no findCaller() per record
    root = logging.getLogger("espomcp")
    root.setLevel(level.upper())
    if not any(getattr(h, "_espomcp", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._espomcp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
