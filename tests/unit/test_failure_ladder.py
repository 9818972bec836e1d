"""The retry/dead-letter decision, as a pure function of policy, attempt and error."""

from __future__ import annotations

from dataclasses import replace

from consumers.runtime.failure import (
    attempt_of,
    decide,
    describe,
    failure_headers,
    outage_retries_of,
)
from fleet.errors import ContractError, PermanentError, TransientError
from topology.fleet import DEFAULT_FLEET, OUTAGE_RETRY_LIMIT

PAYMENT = DEFAULT_FLEET.consumer("payment-capture")  # 5 attempts, tiers 1 2 4 8 16


def test_transient_errors_climb_the_ladder_then_wait_in_the_outage_tiers() -> None:
    error = TransientError("gateway 503")
    verdicts = [decide(PAYMENT, attempt, error) for attempt in range(1, 6)]
    assert [(v.action, v.delay) for v in verdicts] == [
        ("retry", 1),
        ("retry", 2),
        ("retry", 4),
        ("retry", 8),
        ("outage", 30),
    ]
    # without outage tiers the ladder's end is a dead letter
    plain = replace(PAYMENT, outage_tiers=())
    verdict = decide(plain, 5, error)
    assert verdict.action == "dead"
    assert verdict.reason == "attempts exhausted (5/5): TransientError: gateway 503"


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
    # without outage tiers the ladder's longest rung is the most it can wait
    plain = replace(PAYMENT, outage_tiers=())
    assert decide(plain, 1, TransientError("429", retry_after=600)).delay == 8


def test_a_retry_after_beyond_the_ladder_waits_in_an_outage_tier_spending_no_attempt() -> None:
    # A target that asks for ten minutes: retrying after 8 s only spends attempts on refusals
    verdict = decide(PAYMENT, 1, TransientError("429", retry_after=600))
    assert (verdict.action, verdict.delay) == ("outage", 600)
    verdict = decide(PAYMENT, 1, TransientError("503", retry_after=100))
    assert (verdict.action, verdict.delay) == ("outage", 120)


def test_a_consumer_with_one_attempt_has_no_ladder_but_waits_out_an_outage() -> None:
    catalog = DEFAULT_FLEET.consumer("catalog")
    assert catalog.used_tiers == ()
    assert decide(catalog, 1, TransientError("woo 503")).action == "outage"
    assert decide(catalog, 1, PermanentError("woo 400")).action == "dead"


# outages: the target looks down, so a failure says nothing about the message ---------------------


def test_a_failure_while_the_breaker_is_open_is_an_outage_retry_not_an_attempt() -> None:
    for error in (TransientError("503"), PermanentError("400"), TimeoutError()):
        verdict = decide(PAYMENT, 5, error, breaker_open=True)
        assert (verdict.action, verdict.delay) == ("outage", 30)


def test_outage_retries_climb_minutes_up_to_an_hour_and_stay_there() -> None:
    error = TransientError("connection refused")
    delays = [
        decide(PAYMENT, 1, error, breaker_open=True, outage_retries=n).delay for n in range(8)
    ]
    assert delays == [30, 120, 600, 1800, 3600, 3600, 3600, 3600]
    last = decide(PAYMENT, 1, error, breaker_open=True, outage_retries=OUTAGE_RETRY_LIMIT)
    assert last.action == "dead" and "outage retries" in last.reason


def test_a_4xx_for_one_order_among_successes_still_dies_at_once() -> None:
    assert decide(PAYMENT, 1, PermanentError("400")).action == "dead"
    assert decide(PAYMENT, 1, PermanentError("400"), others_refused=False).action == "dead"
    assert decide(PAYMENT, 1, ContractError("bad"), breaker_open=True).action == "dead"


def test_a_4xx_while_other_orders_are_refused_too_waits_out_the_outage() -> None:
    # a changed credential or API: the target refuses everything, not this order
    verdict = decide(PAYMENT, 1, PermanentError("400"), others_refused=True)
    assert (verdict.action, verdict.delay) == ("outage", 30)


def test_without_outage_tiers_an_outage_meets_the_ladder() -> None:
    plain = replace(PAYMENT, outage_tiers=())
    assert decide(plain, 5, TransientError("503"), breaker_open=True).action == "dead"


def test_outage_retries_are_read_from_their_header() -> None:
    assert outage_retries_of({"woofleet-outage-retries": 3}) == 3
    assert outage_retries_of({"woofleet-outage-retries": "x"}) == 0
    assert outage_retries_of(None) == 0


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
