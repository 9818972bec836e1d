"""The retry/dead-letter decision, as a pure function of policy, attempt and error."""

from __future__ import annotations

from dataclasses import replace

from consumers.runtime.failure import attempt_of, decide, describe, failure_headers
from fleet.errors import ContractError, PermanentError, TransientError
from topology.fleet import DEFAULT_FLEET

PAYMENT = DEFAULT_FLEET.consumer("payment-capture")  # 5 attempts, tiers 1 2 4 8 16


def test_transient_errors_climb_the_tiers_until_attempts_are_exhausted() -> None:
    error = TransientError("gateway 503")
    verdicts = [decide(PAYMENT, attempt, error) for attempt in range(1, 6)]
    assert [(v.action, v.delay) for v in verdicts] == [
        ("retry", 1),
        ("retry", 2),
        ("retry", 4),
        ("retry", 8),
        ("dead", 0.0),
    ]
    assert verdicts[-1].reason == "attempts exhausted (5/5): TransientError: gateway 503"


def test_permanent_and_contract_errors_die_at_once() -> None:
    assert decide(PAYMENT, 1, PermanentError("card declined")).action == "dead"
    assert decide(PAYMENT, 1, ContractError("bad")).action == "dead"


def test_unexpected_errors_and_timeouts_are_retried() -> None:
    assert decide(PAYMENT, 1, KeyError("x")).action == "retry"
    verdict = decide(PAYMENT, 2, TimeoutError())
    assert verdict.action == "retry" and verdict.delay == 2
    assert describe(TimeoutError()).startswith("TimeoutError: the handler did not finish")


def test_a_retry_after_hint_picks_a_tier_at_least_that_long() -> None:
    assert decide(PAYMENT, 1, TransientError("429", retry_after=3)).delay == 4
    assert decide(PAYMENT, 1, TransientError("429", retry_after=600)).delay == 8


def test_a_consumer_with_one_attempt_never_retries() -> None:
    catalog = DEFAULT_FLEET.consumer("catalog")
    assert catalog.used_tiers == ()
    assert decide(catalog, 1, TransientError("woo 503")).action == "dead"


def test_failure_headers_keep_the_first_failure_and_drop_broker_death_headers() -> None:
    first = failure_headers(
        {"woofleet-schema-version": 1}, consumer="stock", attempt=1, error="TransientError: x"
    )
    second = failure_headers(
        {**first, "x-death": [{"count": 1}]}, consumer="stock", attempt=2, error="TransientError: y"
    )
    assert second["woofleet-first-failed-at"] == first["woofleet-first-failed-at"]
    assert second["woofleet-attempt"] == 2 and "x-death" not in second
    assert second["woofleet-schema-version"] == 1
    assert (
        attempt_of(second) == 3
        and attempt_of(None) == 1
        and attempt_of({"woofleet-attempt": "x"}) == 1
    )


def test_describe_bounds_and_redacts_the_error_text() -> None:
    text = describe(RuntimeError("smtp://u:pw@mail/ " + "x" * 5000))
    assert "pw@" not in text and len(text) <= 2000
    assert replace(PAYMENT, max_attempts=1).used_tiers == ()
