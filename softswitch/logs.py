"""Logging set-up: human text by default, one JSON object a line with `--log-format json`."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from softswitch.events import Event


class JsonFormatter(logging.Formatter):
    """One JSON line per record; an event logged with `extra={"event": ev}` is inlined."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, Event):
            out["event"] = event.to_dict()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Configure the root logger to write to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # watchfiles reports every change in the dialplan's folder; the node logs the reloads itself.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def log_event(event: Event) -> None:
    """Bus subscriber: every event becomes one log line (one JSON line in json mode)."""
    logging.getLogger("softswitch.event").info(event.kind, extra={"event": event})
