"""Logging for people at 3 a.m.: one line per event, key=value context, secrets and PII redacted."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# The one scrubbing layer (fleet/scrub.py); ``redact`` is its name where logs and errors use it.
from fleet.scrub import forget_secret_values as forget_secret_values
from fleet.scrub import remember_secret_values as remember_secret_values
from fleet.scrub import scrub

redact = scrub


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
        # Warnings and errors may quote a target's answer: they also lose the values of the
        # shopper in hand (fleet.scrub.shopper). Lines of the happy path are woofleet's own.
        failure = record.levelno >= logging.WARNING
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
            return redact(json.dumps(payload, default=str, ensure_ascii=False), in_hand=failure)
        line = super().format(record)
        if context:
            head, sep, tail = line.partition("\n")
            extra = " ".join(f"{k}={v}" for k, v in context.items())
            line = f"{head}  {extra}{sep}{tail}"
        return redact(line, in_hand=failure)


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
