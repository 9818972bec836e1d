"""The real ``woofleet webhook`` on loopback: signed bodies of any shape are answered 2xx
(kept when they cannot be used), and ``woofleet ingress list|show|replay`` and ``woofleet
status`` show and replay what was kept."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from publisher.events import resource_of, resource_of_topic
from publisher.signature import sign
from publisher.simulate.encoding import wp_json_encode
from publisher.store import PublisherStore
from publisher.stores import open_store
from tests.integration.test_cli import woofleet
from tests.integration.test_webhook import Captured, capture_events, load
from tests.support.net import free_port

pytestmark = pytest.mark.integration

SECRET = "loopback-secret"
ORDER = load("order-created.docs-create-paid-order-727.json")
HANDLED = ["order.created", "order.updated", "order.restored", "product.created"]


class Webhook:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def post(self, topic: str, body: bytes) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Source": "https://shop.example/",
            "X-WC-Webhook-Signature": sign(body, SECRET.encode()),
        }
        return self.client.post("/webhooks/woocommerce", content=body, headers=headers)


@pytest.fixture
def webhook(cli_env: dict[str, str]) -> Iterator[Webhook]:
    port = free_port()
    env = {**cli_env, "WOOFLEET_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "woofleet.main", "webhook", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    hook = Webhook(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if hook.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the webhook never answered /healthz"
            time.sleep(0.1)
        yield hook
    finally:
        hook.client.close()
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["abc", "1969-07-20T20:17:40", "0001-01-01T00:00:00", "shipped", "-0"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = sorted(ORDER)
LINE_FIELDS = sorted(ORDER["line_items"][0])


@st.composite
def signed_bodies(draw: st.DrawFn) -> bytes:
    """The real order with fields replaced or dropped (also inside a line item and a refund),
    a value nested ~990 deep, or any JSON at all."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "deep"]))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    order = copy.deepcopy(ORDER)
    order["id"] = draw(st.integers(1, 10**12) | st.integers(-(2**65), 2**65))
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            order.pop(key, None)
        else:
            order[key] = draw(json_values)
    lines = order.get("line_items")
    # A mutation above may have replaced the lines with any JSON: change a line only if one is left.
    if draw(st.booleans()) and isinstance(lines, list) and lines and isinstance(lines[0], dict):
        lines[0][draw(st.sampled_from(LINE_FIELDS))] = draw(json_values)
    if draw(st.booleans()):
        refund_id = draw(st.integers(1, 99) | st.integers(-(2**65), 2**65) | json_values)
        order["refunds"] = [{"id": refund_id, "total": draw(json_values)}]
    body = wp_json_encode(order)
    if kind == "deep":
        body = body.replace(b'"customer_note":""', b'"customer_note":' + b"[" * 990 + b"]" * 990)
    return body


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=signed_bodies(), data=st.data())
def test_a_signed_body_is_never_refused_nor_a_5xx(
    webhook: Webhook, body: bytes, data: st.DataObject
) -> None:
    # Under a topic of its own resource, as WooCommerce sends it (a body whose fields name no
    # resource, under any topic): answered 2xx, whatever its shape
    resource = resource_of_body(body)
    own = [t for t in HANDLED if resource in (None, resource_of_topic(t))]
    topic = data.draw(st.sampled_from(own))
    response = webhook.post(topic, body)
    assert response.status_code in (200, 202), (response.status_code, response.text)
    # and under another resource's topic, refused with 400 (the signature does not cover the
    # topic header): nothing of a resource's body goes out under another's name
    if resource is not None:
        other = data.draw(st.sampled_from([t for t in HANDLED if t not in own]))
        refused = webhook.post(other, body)
        assert refused.status_code == 400, (other, refused.status_code, refused.text)
        assert refused.json()["error"].endswith(f"body under topic {other}"), refused.text


def resource_of_body(body: bytes) -> str | None:
    """The resource a body's fields name, as the webhook reads them; None for a body it keeps
    whatever the topic (not JSON to its parser, or no integer id)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
        return None
    return resource_of(payload)


def kept_count(cli_env: dict[str, str]) -> list[str]:
    result = woofleet("ingress", "list", env=cli_env)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("#")]


async def store_of(cli_env: dict[str, str]) -> PublisherStore:
    return await open_store(cli_env["WOOFLEET_STATE_URL"])


async def test_kept_deliveries_are_listed_shown_counted_and_replayed_once(
    webhook: Webhook, cli_env: dict[str, str], connection: AbstractRobustConnection
) -> None:
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    # Given a delivery the webhook cannot use (its refund total is not a number)
    broken = copy.deepcopy(ORDER) | {"id": 4242, "refunds": [{"id": 1, "total": "n/a"}]}
    body = wp_json_encode(broken)
    response = webhook.post("order.updated", body)
    assert response.status_code == 202
    kept_id = response.json()["kept"]
    # Then it is listed, shown whole, counted by /metrics and by `woofleet status`
    [line] = kept_count(cli_env)
    assert line.startswith(f"#{kept_id} ") and "order.updated" in line and "id=4242" in line
    shown = woofleet("ingress", "show", str(kept_id), env=cli_env)
    assert shown.returncode == 0
    assert "x-wc-webhook-topic: order.updated" in shown.stdout
    assert shown.stdout.rstrip().endswith(body.decode())
    assert "woofleet_webhook_kept_total 1.0" in webhook.client.get("/metrics").text
    status = woofleet("status", "--ingress", webhook.url, "--json", env=cli_env)
    assert status.returncode == 1, status.stderr
    report = json.loads(status.stdout)
    assert report["ingress"]["kept_deliveries"] == 1
    assert "kept_deliveries" in {f["kind"] for f in report["findings"]}
    # When the cause is fixed (here: the stored body repaired, as a newer woofleet would read
    # it) and it is replayed, twice
    repaired = wp_json_encode(copy.deepcopy(ORDER) | {"id": 4242})
    store = await store_of(cli_env)
    try:
        await _replace_body(store, kept_id, repaired)
    finally:
        await store.close()
    first = woofleet("ingress", "replay", str(kept_id), env=cli_env)
    second = woofleet("ingress", "replay", "--all", env=cli_env)
    # Then each lifecycle step is published once, and nothing is left kept
    assert first.returncode == 0, first.stderr
    assert f"#{kept_id}: replayed: order.created order.paid" in first.stdout
    assert second.returncode == 0 and second.stdout == ""
    events = [await asyncio.wait_for(inbox.get(), 10) for _ in range(2)]
    assert [e.routing_key for e in events] == ["order.created", "order.paid"]
    again = woofleet("ingress", "replay", str(kept_id), env=cli_env)
    assert "replayed: nothing new" in again.stdout
    assert kept_count(cli_env) == []
    await channel.close()


async def test_replaying_what_still_cannot_be_used_keeps_it(
    webhook: Webhook, cli_env: dict[str, str]
) -> None:
    response = webhook.post("order.created", b"[1, 2]")
    kept_id = response.json()["kept"]
    result = woofleet("ingress", "replay", str(kept_id), env=cli_env)
    assert result.returncode == 1
    assert f"#{kept_id}: still kept: the body is not an object with an id" in result.stdout
    assert len(kept_count(cli_env)) == 1


def test_replay_without_ids_says_what_to_pass(cli_env: dict[str, str]) -> None:
    result = woofleet("ingress", "replay", env=cli_env)
    assert result.returncode == 2 and "--all" in result.stderr


async def _replace_body(store: Any, kept_id: int, body: bytes) -> None:
    # A test-only repair of the stored row, on the SQLite file the CLI uses.
    store._db.execute("UPDATE publisher_kept SET body = ? WHERE id = ?", (body, kept_id))
