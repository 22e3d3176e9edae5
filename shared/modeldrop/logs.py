"""Structured JSON logs in Cloud Logging's format: severity, message and our fields."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

FIELDS = ("deployment_id", "model", "state", "event", "folder", "duration_ms")


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per line; Cloud Logging reads `severity` and `message` from it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if "deployment_id" in entry:
            entry["logging.googleapis.com/labels"] = {"deployment_id": entry["deployment_id"]}
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: int = logging.INFO) -> None:
    """Send modeldrop's logs to stdout as JSON lines (idempotent)."""
    logger = logging.getLogger("modeldrop")
    if any(isinstance(h.formatter, CloudLoggingFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"modeldrop.{name}")
