"""Structured JSON logs on stderr; entry points call `configure` once."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, unquote_plus

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
_STUDENT_PATH = re.compile(r"(/v1/privacy/students/[^/\s?]+/)[^/\s?&]+")
# A query parameter, its name and value as sent (percent-encoded or not).
_QUERY_PARAM = re.compile(r"(?P<lead>[?&])(?P<name>[^=&\s?#]+)=(?P<value>[^&\s#]*)")
STUDENT_PARAMS = frozenset({"student_id"})
REDACTED = "<student>"


def _param(match: re.Match[str]) -> str:
    """A query parameter as the server will read it: `student%5Fid` is `student_id`."""
    if unquote_plus(match["name"]) in STUDENT_PARAMS:
        return f"{match['lead']}{match['name']}={REDACTED}"
    return match[0]


def redact(text: str) -> str:
    """`text` without student ids: in a privacy path, or as a `student_id` query parameter,
    spelled plainly or percent-encoded (the server decodes both to the same id)."""
    text = _QUERY_PARAM.sub(_param, text)
    text = _STUDENT_PATH.sub(rf"\1{REDACTED}", text)
    if "%" in text:  # a path spelled with escapes (`/v1/privacy/%73tudents/…`)
        decoded = unquote(text)
        if _STUDENT_PATH.search(decoded):
            text = _STUDENT_PATH.sub(rf"\1{REDACTED}", decoded)
    return text


class RedactStudentPaths(logging.Filter):
    """Access logs carry request paths; a student id in a path never reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
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
