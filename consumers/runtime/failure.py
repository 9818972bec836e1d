"""What becomes of a failed delivery: the retry/dead-letter decision and the failure headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts.messages import (
    ATTEMPT_HEADER,
    CONSUMER_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
    OUTAGE_RETRIES_HEADER,
    PROBE_FROM_HEADER,
)
from fleet.errors import ContractError, PermanentError, TransientError
from fleet.logging import redact
from topology.fleet import OUTAGE_RETRY_LIMIT, ConsumerPolicy

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


class Action(StrEnum):
    """What becomes of a failed delivery (its Outcome is RETRIED for the first two, DEAD)."""

    #: The next rung of the ladder, ``delay`` seconds later: an attempt counted.
    RETRY = "retry"
    #: An outage tier, ``delay`` seconds later: the target's failure, no attempt counted.
    OUTAGE = "outage"
    #: The dead-letter queue, with a reason.
    DEAD = "dead"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    delay: float = 0.0


def describe(exc: BaseException) -> str:
    """``TypeName: message`` with secrets and emails removed, bounded in length."""
    if isinstance(exc, TimeoutError):
        text = "TimeoutError: the handler did not finish within its timeout"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text)[:MAX_ERROR_TEXT]


def decide(
    policy: ConsumerPolicy,
    attempt: int,
    exc: BaseException,
    *,
    breaker_open: bool = False,
    others_refused: bool = False,
    outage_retries: int = 0,
) -> Verdict:
    """The ladder. Contract errors die at once. While the target's breaker is not closed, a
    failure goes to an outage tier and counts as no attempt. Otherwise a permanent error (a 4xx)
    dies at once, unless ``others_refused`` (the latest call for another delivery failed too: the
    target refuses everything, a changed credential or API), and anything else climbs the
    ladder; once the ladder is spent (or when a Retry-After asks for longer than the ladder
    waits) it waits in the outage tiers, since a failure that may pass (a target down, slow,
    rate-limiting or refusing the credentials) says nothing about the message, until about two
    days of them have passed."""
    if isinstance(exc, ContractError):
        return Verdict(Action.DEAD, describe(exc))
    permanent = isinstance(exc, PermanentError)
    retry_after = exc.retry_after if isinstance(exc, TransientError) else None
    ladder_spent = attempt >= policy.max_attempts or not policy.used_tiers
    # A 4xx waits only when others are refused too; a failure that may pass once its ladder ends,
    # or at once when the target asks for longer than the ladder waits (a 429's Retry-After:
    # retrying sooner only spends attempts on refusals).
    beyond_ladder = retry_after is not None and retry_after > max(policy.used_tiers, default=0)
    outage = breaker_open or (others_refused if permanent else ladder_spent or beyond_ladder)
    if outage and policy.outage_tiers:
        if outage_retries >= OUTAGE_RETRY_LIMIT:
            return Verdict(
                Action.DEAD,
                f"target failing through {outage_retries} outage retries: {describe(exc)}",
            )
        return Verdict(
            Action.OUTAGE, describe(exc), policy.outage_tier_for(outage_retries, retry_after)
        )
    if permanent:
        return Verdict(Action.DEAD, describe(exc))
    if ladder_spent:
        return Verdict(
            Action.DEAD, f"attempts exhausted ({attempt}/{policy.max_attempts}): {describe(exc)}"
        )
    return Verdict(Action.RETRY, describe(exc), policy.tier_for(attempt, retry_after))


def outage_retries_of(headers: dict[str, Any] | None) -> int:
    """Outage retries this message has had (see decide)."""
    try:
        return max(int((headers or {}).get(OUTAGE_RETRIES_HEADER, 0)), 0)
    except (TypeError, ValueError):
        return 0


def failure_headers(
    original: dict[str, Any] | None, *, consumer: str, attempt: int, error: str
) -> dict[str, Any]:
    """The original headers plus the ``woofleet-`` failure headers of docs/architecture.md."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    # A probe's mark (recall.py) holds for the one delivery it was taken early for.
    dropped = (*BROKER_DEATH_HEADERS, PROBE_FROM_HEADER)
    headers = {k: v for k, v in (original or {}).items() if k not in dropped}
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
