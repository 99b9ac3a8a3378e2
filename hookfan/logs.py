"""Logging for every process: JSON lines or console text, with structured fields.

Records carry ids, route, backend, status, attempt and duration as ``extra`` fields; no code path
logs a body or a header value, and exceptions are logged by class, not by message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "error": logging.ERROR}
QUIET = ("urllib3", "kubernetes.client.rest")
"""Libraries whose debug lines carry request targets (paths with query strings, which may hold
secrets): kept at warning whatever ``--log-level`` says."""
PER_TASK = ("celery.worker.strategy", "celery.app.trace")
"""Celery's "Task received" / "Task succeeded" lines repeat hookfan's own ``attempt`` line (which
carries the ids, route, backend and outcome); shown only at debug, they cost ~8 % worker CPU."""
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


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
