"""Structured JSON logs on stderr; entry points call `configure` once."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with `extra=` fields as keys."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


# Client libraries that log every connection and request at INFO: ours stay readable unless
# DEBUG is asked for.
CHATTY = ("kafka", "httpx", "httpcore")

# Paths that name a student (the privacy endpoints): the id is cut before anything is logged.
_STUDENT_PATH = re.compile(r"(/v1/privacy/students/[^/\s?]+/|[?&]student_id=)[^/\s?&]+")


class RedactStudentPaths(logging.Filter):
    """Access logs carry request paths; a student id in a path never reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _STUDENT_PATH.sub(r"\1<student>", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _STUDENT_PATH.sub(r"\1<student>", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactStudentPaths())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if level.upper() == "DEBUG" else "WARNING")
