"""Every HTTP-target consumer, one behaviour suite: build, failure classes, idempotency keys."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from consumers import analytics, crm, erp_sync, loyalty, payment_capture, stock, warehouse
from consumers.adapters.http_target import HttpTarget, HttpTargetClient, JsonlTargetSink
from consumers.runtime.handler import AnyEnvelope, Handler
from fleet.errors import PermanentError, TransientError
from fleet.settings import Settings
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    module: ModuleType
    target: str
    #: An event this consumer turns into a request.
    event: Callable[[], AnyEnvelope]
    handler: Callable[[HttpTarget], Handler]

    def __str__(self) -> str:
        return self.target

    @property
    def consumer(self) -> str:
        """The consumer's name: the target key with dashes (``payment_capture``)."""
        return self.target.replace("_", "-")


CASES = [
    Case(
        payment_capture,
        "payment_capture",
        lambda: order_event(
            "order.paid",
            transaction_id="pi_3Nabc",
            meta_data=[{"id": 1, "key": "_authorized_only", "value": "yes"}],
        ),
        payment_capture.PaymentCaptureHandler,
    ),
    Case(stock, "stock", lambda: order_event("order.paid"), stock.StockHandler),
    Case(erp_sync, "erp_sync", lambda: order_event("order.paid"), erp_sync.ErpSyncHandler),
    Case(warehouse, "warehouse", lambda: order_event("order.paid"), warehouse.WarehouseHandler),
    Case(analytics, "analytics", lambda: order_event("order.paid"), analytics.AnalyticsHandler),
    Case(crm, "crm", lambda: order_event("order.paid"), crm.CrmHandler),
    Case(
        loyalty,
        "loyalty",
        lambda: order_event(
            "order.completed", customer_id=5, date_completed_gmt="2026-11-28T05:00:00"
        ),
        loyalty.LoyaltyHandler,
    ),
]


async def call(handler: Handler, case: Case, event: AnyEnvelope, **delivery: Any) -> None:
    await handler(event, delivery_for(case.consumer, event, **delivery))


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_build_uses_the_http_target_when_its_url_is_set(
    case: Case, server: HttpTargetServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given WOOFLEET_<TARGET>_URL points at the test server
    caplog.set_level(logging.INFO)
    settings = Settings(var_dir=tmp_path, targets={case.target: server.url + "/api"})
    # When the module's build() makes the handler and it handles its event
    handler = case.module.build(settings)
    event = case.event()
    await handler(event, delivery_for(case.consumer, event))
    await handler.aclose()
    # Then one request reached the server, with the delivery's idempotency key (CRM: two)
    assert server.requests, "no request reached the target"
    expected = delivery_for(case.consumer, event).idempotency_key
    assert all(r.idempotency_key.startswith(expected) for r in server.requests)  # type: ignore[union-attr]
    assert all(r.path.startswith("/api/") for r in server.requests)
    assert f"target {case.target}: HTTP at {server.url}/api" in caplog.text


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_build_falls_back_to_the_dev_sink(case: Case, tmp_path: Path) -> None:
    handler = case.module.build(Settings(var_dir=tmp_path, targets={}))
    assert isinstance(handler.target, JsonlTargetSink)
    event = case.event()
    await handler(event, delivery_for(case.consumer, event))
    lines = (tmp_path / "targets" / f"{case.target}.jsonl").read_text().splitlines()
    key = delivery_for(case.consumer, event).idempotency_key
    assert lines and all(json.loads(x)["headers"]["Idempotency-Key"].startswith(key) for x in lines)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("status", [500, 503])
async def test_a_server_error_is_transient(
    case: Case, status: int, server: HttpTargetServer
) -> None:
    server.answer(status, {"error": "maintenance"})
    handler = case.handler(HttpTargetClient(case.target, server.url))
    with pytest.raises(TransientError, match=str(status)):
        await call(handler, case, case.event())
    await handler.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_429_is_transient_with_the_retry_after_hint(
    case: Case, server: HttpTargetServer
) -> None:
    server.answer(429, {"error": "rate limited"}, headers={"Retry-After": "12"})
    handler = case.handler(HttpTargetClient(case.target, server.url))
    with pytest.raises(TransientError) as caught:
        await call(handler, case, case.event())
    await handler.aclose()  # type: ignore[attr-defined]
    assert caught.value.retry_after == 12.0


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_hanging_target_is_transient(case: Case, server: HttpTargetServer) -> None:
    server.hang(2.0)
    handler = case.handler(HttpTargetClient(case.target, server.url, timeout=0.2))
    with pytest.raises(TransientError, match="no answer within"):
        await call(handler, case, case.event())
    await handler.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_4xx_is_permanent_and_carries_the_answer(
    case: Case, server: HttpTargetServer
) -> None:
    server.answer(422, {"error": {"code": "invalid", "message": "field x is invalid"}})
    handler = case.handler(HttpTargetClient(case.target, server.url))
    with pytest.raises(PermanentError, match=r"422.*field x is invalid"):
        await call(handler, case, case.event())
    await handler.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_redelivery_sends_the_same_request_with_the_same_key(
    case: Case, server: HttpTargetServer
) -> None:
    handler = case.handler(HttpTargetClient(case.target, server.url))
    event = case.event()
    await call(handler, case, event)
    first = list(server.requests)
    server.reset()
    await call(handler, case, event, attempt=2)
    await handler.aclose()  # type: ignore[attr-defined]
    assert [(r.path, r.idempotency_key, r.body) for r in server.requests] == [
        (r.path, r.idempotency_key, r.body) for r in first
    ]
