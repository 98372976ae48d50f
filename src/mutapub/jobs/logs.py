"""Logging of the job: readable lines on a terminal, or one JSON object per line for journald and shippers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
import time
from typing import IO, Any

LOGGER = "mutapub.jobs"
# Attributes every LogRecord has; anything else was passed with `extra=` and is a field of the event.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields given with `extra=` on a log call."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(fields(record))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`HH:MM:SS level message` for people; fields are already in the message."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{stamp} {level}{record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _NoStepStarts(logging.Filter):
    """Plain text logs show a step when it ends, with its time and counts, not when it starts."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) != "step-start"


class TickerHandler(logging.StreamHandler):
    """On a terminal, a line showing the running step and its elapsed seconds, replaced by each record."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._status = ""
        self._since = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self._clear()
            if getattr(record, "event", None) == "step-start":
                # not a line of its own: the ticker shows it until the step's end is logged
                self._status = record.getMessage().rstrip(" …")
            else:
                super().emit(record)
                self._status = ""
            self._since = time.monotonic()

    def _clear(self) -> None:
        if self._status:
            self.stream.write("\r\x1b[K")

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self._status:
                    self.stream.write(f"\r\x1b[K  … {self._status} {time.monotonic() - self._since:.0f} s")
                    self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._clear()
            self._status = ""
        super().close()


def configure(fmt: str = "text", level: str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send mutapub's job logs to `stream` (stderr) as text or JSON lines; returns the handler."""
    stream = stream or sys.stderr
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif stream.isatty():
        handler = TickerHandler(stream)
        handler.setFormatter(TextFormatter())
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter())
        handler.addFilter(_NoStepStarts())
    root = logging.getLogger("mutapub")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    # APScheduler logs its own wake-ups; its warnings (misfires, errors) are worth keeping.
    aps = logging.getLogger("apscheduler")
    aps.handlers = [handler]
    aps.setLevel(logging.WARNING)
    aps.propagate = False
    return handler
