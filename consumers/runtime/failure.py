"""What becomes of a failed delivery: the retry/dead-letter decision and the failure headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts.messages import (
    ATTEMPT_HEADER,
    CONSUMER_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
)
from fleet.errors import ContractError, PermanentError, TransientError
from fleet.logging import redact
from topology.fleet import ConsumerPolicy

#: Times a delivery's handling may start and never finish (the process died, or its connection
#: went) before it is taken for what kills its consumer and dead-lettered. Only handling that
#: started counts: deliveries merely prefetched when a process is killed come back uncounted.
CRASH_LIMIT = 5
#: Longest woofleet-error header kept: enough for a target's answer, bounded for the broker.
MAX_ERROR_TEXT = 2000
#: Headers the broker adds on dead-lettering; woofleet's own headers carry the history instead.
BROKER_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


@dataclass(frozen=True)
class Verdict:
    """``retry`` after ``delay`` seconds, or ``dead`` (to the DLQ) with a reason."""

    action: str
    reason: str
    delay: float = 0.0


def describe(exc: BaseException) -> str:
    """``TypeName: message`` with secrets and emails removed, bounded in length."""
    if isinstance(exc, TimeoutError):
        text = "TimeoutError: the handler did not finish within its timeout"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(text)[:MAX_ERROR_TEXT]


def decide(policy: ConsumerPolicy, attempt: int, exc: BaseException) -> Verdict:
    """The ladder: permanent or contract errors die at once; anything else retries until the
    consumer's attempts are used up, then dies."""
    if isinstance(exc, ContractError | PermanentError):
        return Verdict("dead", describe(exc))
    if attempt >= policy.max_attempts or not policy.used_tiers:
        return Verdict(
            "dead", f"attempts exhausted ({attempt}/{policy.max_attempts}): {describe(exc)}"
        )
    retry_after = exc.retry_after if isinstance(exc, TransientError) else None
    return Verdict("retry", describe(exc), policy.tier_for(attempt, retry_after))


def failure_headers(
    original: dict[str, Any] | None, *, consumer: str, attempt: int, error: str
) -> dict[str, Any]:
    """The original headers plus the ``woofleet-`` failure headers of docs/architecture.md."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    headers = {k: v for k, v in (original or {}).items() if k not in BROKER_DEATH_HEADERS}
    headers[ATTEMPT_HEADER] = attempt
    headers[ERROR_HEADER] = error
    headers.setdefault(FIRST_FAILED_HEADER, now)
    headers[LAST_FAILED_HEADER] = now
    headers[CONSUMER_HEADER] = consumer
    return headers


def attempt_of(headers: dict[str, Any] | None) -> int:
    """This delivery's attempt number: one more than the failures its headers record."""
    try:
        return int((headers or {}).get(ATTEMPT_HEADER, 0)) + 1
    except (TypeError, ValueError):
        return 1


def copy_message(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """The same body and properties, with new headers: what retry tiers, DLQs and replays carry."""
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )
