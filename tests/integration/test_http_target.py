"""The HTTP target adapter against a real HTTP server on loopback: bodies, keys, failure classes."""

from __future__ import annotations

import base64
import json
import logging
import socket
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from consumers.adapters.http_target import (
    HttpTargetClient,
    JsonlTargetSink,
    safe_url,
    target_from_settings,
)
from fleet.errors import PermanentError, TransientError
from fleet.settings import Settings
from tests.support.http_target_server import HttpTargetServer

pytestmark = pytest.mark.integration


async def test_json_post_carries_the_idempotency_key_and_body(server: HttpTargetServer) -> None:
    client = HttpTargetClient("erp_sync", server.url + "/api")
    try:
        answer = await client.send(
            "POST", "/orders", idempotency_key="woofleet:erp-sync:k1", json={"number": "727"}
        )
    finally:
        await client.aclose()

    assert answer.status == 200 and answer.body == {"ok": True}
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/api/orders")
    assert request.idempotency_key == "woofleet:erp-sync:k1"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {"number": "727"}


async def test_url_credentials_become_basic_auth_and_query_is_sent_on_every_request(
    server: HttpTargetServer,
) -> None:
    url = server.url.replace("http://", "http://sk_test_1:@") + "/?api_secret=s3cret&x=1"
    client = HttpTargetClient("analytics", url)
    try:
        await client.send("PUT", "/a", idempotency_key="k", json={})
        await client.send("DELETE", "/b", idempotency_key="k2")
    finally:
        await client.aclose()

    first, second = server.requests
    assert first.headers["authorization"] == "Basic " + base64.b64encode(b"sk_test_1:").decode()
    assert first.query == second.query == {"api_secret": "s3cret", "x": "1"}
    assert (second.method, second.path, second.body) == ("DELETE", "/b", b"")
    assert "s3cret" not in client.display_url and "sk_test" not in client.display_url


async def test_form_body_is_sent_form_encoded(server: HttpTargetServer) -> None:
    client = HttpTargetClient("payment_capture", server.url)
    try:
        await client.send("POST", "/v1/x", idempotency_key="k", form={"amount_to_capture": "2935"})
    finally:
        await client.aclose()
    assert server.requests[0].form == {"amount_to_capture": "2935"}
    assert server.requests[0].headers["content-type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_server_errors_are_transient(server: HttpTargetServer, status: int) -> None:
    server.answer(status, {"error": "down"})
    client = HttpTargetClient("crm", server.url)
    with pytest.raises(TransientError, match=f"answered {status}") as caught:
        await client.send("POST", "/x", idempotency_key="k", json={})
    await client.aclose()
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_transient_and_say_so(
    server: HttpTargetServer, status: int
) -> None:
    # A refused credential is fixed by a person, never by the order: it must not dead-letter
    server.answer(status, {"error": "invalid api key"})
    client = HttpTargetClient("crm", server.url)
    with pytest.raises(TransientError, match=f"refused woofleet's credentials \\({status}\\)"):
        await client.send("POST", "/x", idempotency_key="k", json={})
    await client.aclose()


async def test_429_retry_after_seconds_becomes_the_retry_hint(server: HttpTargetServer) -> None:
    server.answer(429, {"error": "slow down"}, headers={"Retry-After": "7"})
    client = HttpTargetClient("crm", server.url)
    with pytest.raises(TransientError) as caught:
        await client.send("POST", "/x", idempotency_key="k", json={})
    await client.aclose()
    assert caught.value.retry_after == 7.0
    assert "Retry-After 7s" in str(caught.value)


async def test_503_retry_after_http_date_is_parsed(server: HttpTargetServer) -> None:
    later = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 120, UTC)
    server.answer(503, None, headers={"Retry-After": format_datetime(later, usegmt=True)})
    client = HttpTargetClient("crm", server.url)
    with pytest.raises(TransientError) as caught:
        await client.send("GET", "/x", idempotency_key="k")
    await client.aclose()
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_other_4xx_are_permanent_with_the_targets_answer(
    server: HttpTargetServer, status: int
) -> None:
    server.answer(status, {"error": {"code": "bad_sku", "message": "unknown SKU X-1"}})
    client = HttpTargetClient("erp_sync", server.url)
    with pytest.raises(PermanentError) as caught:
        await client.send("POST", "/orders", idempotency_key="k", json={})
    await client.aclose()
    message = str(caught.value)
    assert f"answered {status}" in message and "unknown SKU X-1" in message
    assert "dead-letter" in message


async def test_a_long_error_answer_is_truncated(server: HttpTargetServer) -> None:
    server.answer(400, {"error": "x" * 5000})
    client = HttpTargetClient("erp_sync", server.url)
    with pytest.raises(PermanentError) as caught:
        await client.send("POST", "/orders", idempotency_key="k", json={})
    await client.aclose()
    assert len(str(caught.value)) < 800


@pytest.mark.parametrize("cut_at", range(476, 500, 3))
async def test_an_answer_cut_at_its_limit_leaves_no_part_of_a_value(
    server: HttpTargetServer, cut_at: int
) -> None:
    # The answer is scrubbed whole, then cut: cut first, the value the cut falls in loses
    # its closing quote and its tail (the street name) no longer looks like a field's value.
    padding = "x" * (cut_at - len('{"error": "", "address_1": "42 '))
    server.answer(400, {"error": padding, "address_1": "42 Plantedstraat Noord"})
    client = HttpTargetClient("erp_sync", server.url)
    with pytest.raises(PermanentError) as caught:
        await client.send("POST", "/orders", idempotency_key="k", json={})
    await client.aclose()
    assert "Planted" not in str(caught.value), str(caught.value)[-80:]


async def test_accepted_statuses_are_returned_not_raised(server: HttpTargetServer) -> None:
    server.answer(404, {"error": "no such fulfilment"})
    client = HttpTargetClient("warehouse", server.url)
    answer = await client.send("DELETE", "/f/1", idempotency_key="k", accept=(404,))
    await client.aclose()
    assert answer.status == 404 and answer.body == {"error": "no such fulfilment"}


async def test_a_hanging_target_times_out_as_transient(server: HttpTargetServer) -> None:
    server.hang(3.0)
    client = HttpTargetClient("warehouse", server.url, timeout=0.3)
    with pytest.raises(TransientError, match=r"no answer within 0.3s"):
        await client.send("POST", "/f", idempotency_key="k", json={})
    await client.aclose()


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpTargetClient("warehouse", f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="cannot reach"):
        await client.send("POST", "/f", idempotency_key="k", json={})
    await client.aclose()


async def test_logs_never_show_bodies_or_credentials(
    server: HttpTargetServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = HttpTargetClient("crm", server.url.replace("http://", "http://u:pw@"))
    await client.send("PUT", "/c/1", idempotency_key="k", json={"email": "shopper@example.com"})
    server.answer(422, {"error": "bad email shopper@example.com"})
    with pytest.raises(PermanentError):
        await client.send("PUT", "/c/1", idempotency_key="k", json={"email": "shopper@example.com"})
    await client.aclose()
    assert "shopper@example.com" not in caplog.text
    assert "pw" not in caplog.text.replace("PUT", "")


async def test_the_dev_sink_appends_what_it_would_have_sent(tmp_path: Path) -> None:
    sink = JsonlTargetSink("erp_sync", tmp_path / "targets" / "erp_sync.jsonl")
    await sink.send("POST", "/orders", idempotency_key="k1", json={"n": 1})
    await sink.send("POST", "/pay", idempotency_key="k2", form={"amount": "5"})

    lines = [
        json.loads(x) for x in (tmp_path / "targets" / "erp_sync.jsonl").read_text().splitlines()
    ]
    assert [(x["method"], x["path"], x["headers"], x["body"]) for x in lines] == [
        ("POST", "/orders", {"Idempotency-Key": "k1"}, {"n": 1}),
        ("POST", "/pay", {"Idempotency-Key": "k2"}, {"amount": "5"}),
    ]


def test_the_factory_picks_the_client_when_a_url_is_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(var_dir=tmp_path, targets={"erp_sync": "https://u:secret@erp.example/api"})

    real = target_from_settings(settings, "erp-sync")
    sink = target_from_settings(settings, "warehouse")

    assert isinstance(real, HttpTargetClient) and real.display_url == "https://erp.example/api"
    assert isinstance(sink, JsonlTargetSink)
    assert sink.path == tmp_path / "targets" / "warehouse.jsonl"
    assert "target erp_sync: HTTP at https://erp.example/api" in caplog.text
    assert "no WOOFLEET_WAREHOUSE_URL set" in caplog.text and "dev sink" in caplog.text
    assert "secret" not in caplog.text


def test_the_factory_reads_target_urls_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WOOFLEET_ERP_SYNC_URL", "https://erp.example/")
    assert isinstance(
        target_from_settings(Settings(var_dir=tmp_path), "erp_sync"), HttpTargetClient
    )


def test_safe_url_drops_credentials_and_query() -> None:
    assert safe_url("https://sk:@api.example:8443/v1?api_secret=x") == "https://api.example:8443/v1"
    assert safe_url("http://u:p@[::1]:8080/x") == "http://[::1]:8080/x"


async def test_percent_encoded_credentials_are_sent_decoded(server: HttpTargetServer) -> None:
    client = HttpTargetClient("crm", server.url.replace("http://", "http://api%40crm:p%3Ass@"))
    await client.send("GET", "/x", idempotency_key="k")
    await client.aclose()
    expected = base64.b64encode(b"api@crm:p:ss").decode()
    assert server.requests[0].headers["authorization"] == f"Basic {expected}"
