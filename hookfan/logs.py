"""Logging for every process: JSON lines or console text, with structured fields.

Records carry ids, route, backend, status, attempt and duration as ``extra`` fields; no code path
logs a body or a header value, and exceptions are logged by class, not by message.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pythonjsonlogger import json as jsonlogger

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "error": logging.ERROR}
QUIET = ("urllib3", "kubernetes.client.rest", "leaderelection")
"""Kept at warning whatever ``--log-level`` says: libraries whose debug lines carry request
targets (paths with query strings, which may hold secrets), and the ``kubernetes`` client's
leader election, which logs every round at info (hookfan logs each change of leader)."""
PER_TASK = ("celery.worker.strategy", "celery.app.trace")
"""Celery's "Task received" / "Task succeeded" lines repeat hookfan's own ``attempt`` line (which
carries the ids, route, backend and outcome); shown only at debug, they cost ~8 % worker CPU."""
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


class JsonFormatter(jsonlogger.JsonFormatter):
    """python-json-logger's formatter with hookfan's fields: ``ts`` (UTC, milliseconds),
    ``level``, ``logger``, ``msg``, the record's ``extra`` fields, and ``error`` (an exception's
    class, never its message or traceback). Values it cannot encode are written as ``str``."""

    _second = -1
    _prefix = ""

    def __init__(self) -> None:
        super().__init__(json_default=str)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        log_data["ts"] = f"{self._prefix}.{int(record.msecs):03d}Z"
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["msg"] = record.getMessage()
        log_data.update(fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            log_data["error"] = record.exc_info[0].__name__

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's naming
        # Only the class is logged (add_fields): a traceback is never even formatted.
        return ""


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in fields(record).items())
        base = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} " \
               f"{record.levelname.lower():5} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            extra += f" error={record.exc_info[0].__name__}"
        return f"{base} {extra}".rstrip()


def setup(level: str = "info", encoding: str = "json") -> None:
    """Configure the root logger once for this process (Celery's and gunicorn's loggers too)."""
    # No record ever shows its caller, thread or process (see the formatters): skip finding
    # them for every line (the logging module's documented optimisation switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if encoding == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    logging.captureWarnings(True)  # a library's warning is a log line too, in the same format
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in PER_TASK:
        logging.getLogger(name).setLevel(logging.DEBUG if root.level <= logging.DEBUG
                                          else logging.WARNING)
