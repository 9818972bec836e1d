"""Logging for people at 3 a.m.: one line per event, key=value context, secrets and PII redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

#: Never in a log line: URL passwords, emails, bearer tokens, credentials by key name.
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.I),
        r"\g<scheme>\g<user>:***@",
    ),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<email>"),
    (
        re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?\S+"),
        r"\1***",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (
        # Any key that *contains* a credential word: api_secret, client_secret, access_token,
        # apikey, X-Api-Key (a word boundary before "secret" let the prefixed names through).
        re.compile(
            r"(?i)(?<![\w-])([\w-]*(?:secret|password|passwd|token|api[_-]?key)[\w-]*)"
            r"([\"']?\s*[:=]\s*[\"']?)[^\s,;&\"']+"
        ),
        r"\1\2***",
    ),
)


#: Values of the configured secrets, masked wherever they appear (an echoed answer, a URL).
_SECRET_VALUES: set[str] = set()
#: Shorter values would mask ordinary words; real credentials are longer.
_MIN_SECRET_LENGTH = 6


def remember_secret_values(values: Iterable[str]) -> None:
    """Mask these values in every later :func:`redact` call, whatever key carries them."""
    _SECRET_VALUES.update(v for v in values if len(v) >= _MIN_SECRET_LENGTH)


def forget_secret_values() -> None:
    """Drop the remembered values (tests; a process keeps its secrets for its lifetime)."""
    _SECRET_VALUES.clear()


def redact(text: str) -> str:
    """Remove credentials and email addresses from a string bound for a log or an error report."""
    # longest first, so a secret containing another is masked whole
    for value in sorted(_SECRET_VALUES, key=len, reverse=True):
        text = text.replace(value, "***")
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def rfc3339(timestamp: float) -> str:
    """``2026-12-04T21:20:49.123Z``: UTC, milliseconds, what log pipelines parse without a hint."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RedactingFormatter(logging.Formatter):
    """``2026-11-28 05:14:29 INFO  consumers.runtime  message  key=value ...`` — redacted."""

    def __init__(self, json_lines: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s  %(message)s", "%Y-%m-%d %H:%M:%S")
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        context: dict[str, Any] = getattr(record, "context", None) or {}
        if self.json_lines:
            payload = {
                "time": rfc3339(record.created),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                **context,
            }
            if record.exc_info:
                payload["exception"] = self.formatException(record.exc_info)
            return redact(json.dumps(payload, default=str, ensure_ascii=False))
        line = super().format(record)
        if context:
            head, sep, tail = line.partition("\n")
            extra = " ".join(f"{k}={v}" for k, v in context.items())
            line = f"{head}  {extra}{sep}{tail}"
        return redact(line)


class ContextAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger that carries key=value context (consumer, message id, order) on every line."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.setdefault("extra", {})
        extra["context"] = {**(self.extra or {}), **extra.get("context", {})}
        return msg, kwargs


def with_context(logger: logging.Logger, **context: Any) -> ContextAdapter:
    return ContextAdapter(logger, context)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(json_lines=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The AMQP and HTTP libraries are chatty at INFO about things that are not news.
    for noisy in ("aiormq", "aio_pika", "pika", "httpx", "botocore", "boto3", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # aiormq logs every failed connect at ERROR with a traceback-like repr; woofleet reports a
    # missing broker itself, in one line that says what to do (see fleet.amqp).
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    # pika (the relay's publisher) logs seven ERROR lines per failed connect; the same applies.
    for workflow in ("base_connection", "utils.connection_workflow", "utils.io_services_utils"):
        logging.getLogger(f"pika.adapters.{workflow}").setLevel(logging.CRITICAL)
