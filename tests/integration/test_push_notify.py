"""push-notify against a loopback server speaking FCM HTTP v1 and the OAuth token endpoint."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from consumers import push_notify
from consumers.adapters.push import (
    REFRESH_MARGIN,
    FcmClient,
    FilePushSink,
    PushResult,
    ServiceAccount,
)
from consumers.runtime import Supervisor
from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.settings import Settings
from tests.builders import order_event
from tests.support.amqp import apply, fast_fleet, publish, wait_until
from tests.support.fcm_server import PROJECT, FcmServer
from tests.support.http_target_server import HttpTargetServer, delivery_for

pytestmark = pytest.mark.integration

TOKENS = ["tok-phone-aaaaaaaaaaaa", "tok-tablet-bbbbbbbbbbb"]


@pytest.fixture
def fcm(server: HttpTargetServer) -> FcmServer:
    return FcmServer(server)


def fcm_settings(fcm: FcmServer, tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "fcm_credentials_file": fcm.write_key(tmp_path),
        "fcm_tokens": ",".join(TOKENS),
        "fcm_topic": "",
        "fcm_url": fcm.server.url,
        "var_dir": tmp_path / "var",
        "targets": {},
        **changes,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def handler(fcm: FcmServer, tmp_path: Path) -> AsyncIterator[push_notify.PushNotifyHandler]:
    built = push_notify.build(fcm_settings(fcm, tmp_path))
    assert isinstance(built, push_notify.PushNotifyHandler)
    yield built
    await built.aclose()


async def test_a_paid_order_is_one_push_per_token_and_topic_with_one_cached_access_token(
    fcm: FcmServer, tmp_path: Path
) -> None:
    # Given two device tokens and a topic
    handler = push_notify.build(fcm_settings(fcm, tmp_path, fcm_topic="shop-orders"))
    try:
        # When two paid orders are handled
        first, second = order_event("order.paid"), order_event("order.paid", id=12, number="12")
        await handler(first, delivery_for("push-notify", first))
        await handler(second, delivery_for("push-notify", second))
    finally:
        await handler.aclose()  # type: ignore[attr-defined]
    # Then each order went to each token and the topic, under one access token
    addresses = [m.get("token") or f"topic:{m['topic']}" for m in fcm.sent]
    assert addresses == [*TOKENS, "topic:shop-orders"] * 2
    assert fcm.token_requests == 1
    message = fcm.sent[0]
    assert message["notification"] == {"title": "Order #11 paid", "body": "49.98 EUR · 2 items"}
    assert message["data"] == {
        "event": "order.paid",
        "order_id": "11",
        "order_number": "11",
        "total": "49.98",
        "currency": "EUR",
    }
    # one collapse key per order, the same on every platform and address
    collapse = message["android"]["collapse_key"]
    assert message["apns"]["headers"]["apns-collapse-id"] == collapse
    assert {m["android"]["collapse_key"] for m in fcm.sent[:3]} == {collapse}
    assert fcm.sent[3]["android"]["collapse_key"] != collapse
    # and nothing that identifies the shopper leaves
    assert "@" not in json.dumps(fcm.sent)


async def test_the_access_token_is_renewed_shortly_before_it_expires(
    fcm: FcmServer, tmp_path: Path
) -> None:
    fcm.token_lifetime = 600
    now = [time.time() - 400]
    client = FcmClient(
        ServiceAccount.from_file(fcm.write_key(tmp_path)),
        base_url=fcm.server.url,
        clock=lambda: now[0],
    )
    try:
        assert await client.send({"token": TOKENS[0]}) is PushResult.SENT
        now[0] += 600 - REFRESH_MARGIN - 1
        assert await client.send({"token": TOKENS[0]}) is PushResult.SENT
        assert fcm.token_requests == 1  # still well within its life
        now[0] += 2
        assert await client.send({"token": TOKENS[0]}) is PushResult.SENT
    finally:
        await client.aclose()
    assert fcm.token_requests == 2
    bearers = {r.headers["authorization"] for r in fcm.sends()}
    assert len(bearers) == 2


async def test_a_token_fcm_revoked_is_replaced_and_the_push_still_goes_out(
    fcm: FcmServer, handler: push_notify.PushNotifyHandler
) -> None:
    event = order_event("order.paid")
    await handler(event, delivery_for("push-notify", event))
    fcm.revoke_tokens()
    second = order_event("order.paid", id=12, number="12")
    await handler(second, delivery_for("push-notify", second))
    assert fcm.token_requests == 2
    assert len(fcm.sent) == 4


async def test_an_unregistered_token_is_dropped_and_not_retried(
    fcm: FcmServer, handler: push_notify.PushNotifyHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # Given FCM says the tablet's token is no longer registered
    fcm.fail(TOKENS[1], "UNREGISTERED")
    event = order_event("order.paid")
    # When an order is pushed: no error, so no retry
    await handler(event, delivery_for("push-notify", event))
    # Then the phone got it, the tablet's token is dropped with a warning naming it shortly
    assert [m["token"] for m in fcm.sent] == [TOKENS[0]]
    assert handler.unregistered == {TOKENS[1]}
    assert "tok-tabl… is no longer registered" in caplog.text
    assert TOKENS[1] not in caplog.text
    # And the next order is not sent to it at all
    second = order_event("order.paid", id=12, number="12")
    await handler(second, delivery_for("push-notify", second))
    assert [r.json["message"]["token"] for r in fcm.sends()] == [TOKENS[0], TOKENS[1], TOKENS[0]]


@pytest.mark.parametrize(
    ("code", "headers", "retry_after"),
    [
        ("UNAVAILABLE", {"Retry-After": "7"}, 7.0),
        ("INTERNAL", {}, None),
        ("QUOTA_EXCEEDED", {}, 60.0),
        ("QUOTA_EXCEEDED", {"Retry-After": "120"}, 120.0),
    ],
)
async def test_transient_fcm_errors_retry_only_the_addresses_still_owed(
    fcm: FcmServer,
    handler: push_notify.PushNotifyHandler,
    code: str,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    # Given FCM fails the tablet's push once with a transient error
    fcm.fail(TOKENS[1], code, headers=headers)
    event = order_event("order.paid")
    delivery = delivery_for("push-notify", event)
    # When the order is pushed, it fails transiently, with FCM's backoff hint
    with pytest.raises(TransientError) as raised:
        await handler(event, delivery)
    assert code in str(raised.value) and "tok-tabl…" in str(raised.value)
    assert raised.value.retry_after == retry_after
    # And on the retry only the tablet is sent to: the phone does not get it twice
    await handler(event, delivery_for("push-notify", event, attempt=2))
    assert [m["token"] for m in fcm.sent] == TOKENS


async def test_invalid_argument_is_permanent_with_fcms_message(
    fcm: FcmServer, handler: push_notify.PushNotifyHandler
) -> None:
    fcm.fail(TOKENS[0], "INVALID_ARGUMENT")
    event = order_event("order.paid")
    with pytest.raises(PermanentError, match="not a valid FCM registration token"):
        await handler(event, delivery_for("push-notify", event))
    assert [m["token"] for m in fcm.sent] == [TOKENS[1]]  # the other address still got it


async def test_a_refused_service_account_key_is_permanent_and_says_what_to_check(
    fcm: FcmServer, handler: push_notify.PushNotifyHandler
) -> None:
    fcm.refuse_grants()
    event = order_event("order.paid")
    with pytest.raises(PermanentError, match=r"invalid_grant.*WOOFLEET_FCM_CREDENTIALS_FILE"):
        await handler(event, delivery_for("push-notify", event))
    assert fcm.sends() == []


async def test_an_unreachable_fcm_is_transient(fcm: FcmServer, tmp_path: Path) -> None:
    from tests.support.net import free_port

    settings = fcm_settings(fcm, tmp_path, fcm_url=f"http://127.0.0.1:{free_port()}")
    handler = push_notify.build(settings)
    event = order_event("order.paid")
    try:
        with pytest.raises(TransientError, match="FCM unreachable"):
            await handler(event, delivery_for("push-notify", event))
    finally:
        await handler.aclose()  # type: ignore[attr-defined]


def test_a_key_file_that_is_no_service_account_key_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a service-account key"):
        ServiceAccount.from_file(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        ServiceAccount.from_file(tmp_path / "missing.json")
    assert "PRIVATE KEY" not in repr(
        ServiceAccount("p", "e", "u", "k", "-----BEGIN PRIVATE KEY-----")
    )


def test_fcm_without_a_token_or_topic_is_a_config_error(fcm: FcmServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WOOFLEET_FCM_TOKENS"):
        push_notify.build(fcm_settings(fcm, tmp_path, fcm_tokens=""))


async def test_unconfigured_it_records_pushes_in_the_dev_sink(tmp_path: Path) -> None:
    handler = push_notify.build(Settings(var_dir=tmp_path / "var", targets={}))
    assert isinstance(handler, push_notify.PushNotifyHandler)
    assert isinstance(handler.push, FilePushSink)
    event = order_event("order.paid")
    await handler(event, delivery_for("push-notify", event))
    [line] = (tmp_path / "var" / "push" / "fcm.jsonl").read_text(encoding="utf-8").splitlines()
    message = json.loads(line)["message"]
    assert message["topic"] == push_notify.DEV_TOPIC
    assert message["notification"]["title"] == "Order #11 paid"


@pytest.fixture
def fcm_on_loopback() -> Iterator[HttpTargetServer]:
    with HttpTargetServer() as running:
        yield running


async def test_the_runtime_pushes_a_paid_order_once_however_often_it_is_delivered(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    fcm_on_loopback: HttpTargetServer,
    tmp_path: Path,
) -> None:
    # Given push-notify run by the runtime from its module, FCM on loopback
    fcm = FcmServer(fcm_on_loopback)
    settings = settings.model_copy(
        update={
            "fcm_credentials_file": fcm.write_key(tmp_path),
            "fcm_tokens": [TOKENS[0]],
            "fcm_url": fcm.server.url,
        }
    )
    fleet = fast_fleet("push-notify")
    await apply(connection, fleet, vhost)
    sup = Supervisor(["push-notify"], settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        # When the same paid order is published twice
        event = order_event("order.paid")
        await publish(connection, event)
        await publish(connection, event)
        worker = sup.workers["push-notify"]
        await wait_until(lambda: worker.stats["handled"] + worker.stats["duplicate"] == 2)
    finally:
        await sup.stop(5)
    # Then the phone got one notification, for that project
    assert dict(worker.stats) == {"handled": 1, "duplicate": 1}
    assert [m["token"] for m in fcm.sent] == [TOKENS[0]]
    assert fcm.sends()[0].path == f"/v1/projects/{PROJECT}/messages:send"


async def test_with_every_token_unregistered_it_warns_that_nothing_was_sent(
    fcm: FcmServer, handler: push_notify.PushNotifyHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for token in TOKENS:
        fcm.fail(token, "UNREGISTERED")
    first = order_event("order.paid")
    await handler(first, delivery_for("push-notify", first))
    second = order_event("order.paid", id=12, number="12")
    await handler(second, delivery_for("push-notify", second))
    assert len(fcm.sends()) == 2  # the second order asked FCM nothing
    assert "order 12: every device token is unregistered" in caplog.text
