"""Property-based: whatever the body and headers, never a 5xx, never a publish without a valid
signature."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fleet.amqp import connect
from fleet.settings import Settings
from publisher.signature import sign
from publisher.simulate.encoding import delivery
from publisher.webhook import WEBHOOK_PATH, WebhookApp
from tests.integration.test_webhook import (
    SECRET,
    SOURCE,
    Captured,
    capture_events,
    load,
    sentinel_order,
    webhook_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")
ORDER = load("order-created.docs-create-paid-order-727.json")
TOPICS = [
    "order.created",
    "order.updated",
    "order.deleted",
    "order.restored",
    "product.created",
    "product.updated",
    "coupon.created",
    "action.woocommerce_x",
    "",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def order_bodies(draw: st.DrawFn) -> bytes:
    """The real order with a few fields replaced, dropped or retyped, or anything at all."""
    kind = draw(st.sampled_from(["mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    order = copy.deepcopy(ORDER)
    order["id"] = draw(st.integers(1, 50))
    for key in draw(st.lists(st.sampled_from(sorted(ORDER)), max_size=3)):
        if draw(st.booleans()):
            order.pop(key, None)
        else:
            order[key] = draw(json_values)
    return json.dumps(order, ensure_ascii=draw(st.booleans())).encode()


class LoopThread:
    """One event loop in a thread, holding the started app across hypothesis examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class World:
    def __init__(self, settings: Settings) -> None:
        self.settings = webhook_settings(settings)
        self.inbox: asyncio.Queue[Captured] = asyncio.Queue()
        self.accepted_events = 0

    async def start(self) -> None:
        self.connection = await connect(self.settings, name="test webhook properties")
        self.channel = await capture_events(self.connection, self.inbox)
        self.app = WebhookApp(self.settings)
        await self.app.start()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app.asgi), base_url="http://t"
        )

    async def stop(self) -> None:
        await self.client.aclose()
        await self.app.stop()
        await self.channel.close()
        await self.connection.close()

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(WEBHOOK_PATH, content=body, headers=headers)

    async def published(self) -> int:
        """How many events reached the broker before a sentinel order sent after every
        delivery (the outbox publishes oldest first, on one channel)."""
        sentinel = sentinel_order()
        item = delivery("order.created", sentinel, SECRET, source=SOURCE)
        response = await self.client.post(WEBHOOK_PATH, content=item.body, headers=item.headers)
        assert response.status_code == 200, response.text
        count = 0
        while (await asyncio.wait_for(self.inbox.get(), 20)).body["data"]["id"] != sentinel["id"]:
            count += 1
        return count


@pytest.fixture
def world(settings: Settings) -> Iterator[tuple[LoopThread, World]]:
    runner = LoopThread()
    state = World(settings)
    runner.run(state.start())
    yield runner, state
    # Nothing reached the broker beyond what accepted, signed deliveries reported.
    published = runner.run(state.published())
    runner.run(state.stop())
    runner.close()
    assert published == state.accepted_events > 0


@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=order_bodies(),
    topic=st.sampled_from(TOPICS) | st.text(max_size=30),
    signature_kind=st.sampled_from(["valid", "wrong-secret", "garbage", "missing"]),
    garbage=st.text(max_size=60),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]
    ),
)
def test_never_5xx_and_never_publishes_unsigned(
    world: tuple[LoopThread, World],
    body: bytes,
    topic: str,
    signature_kind: str,
    garbage: str,
    content_type: str,
) -> None:
    runner, state = world
    headers = {
        "X-WC-Webhook-Topic": topic.encode("ascii", "ignore").decode(),
        "Content-Type": content_type,
    }
    if signature_kind == "valid":
        headers["X-WC-Webhook-Signature"] = sign(body, SECRET)
    elif signature_kind == "wrong-secret":
        headers["X-WC-Webhook-Signature"] = sign(body, b"wrong")
    elif signature_kind == "garbage":
        headers["X-WC-Webhook-Signature"] = garbage.encode("ascii", "ignore").decode() or "x"
    response = runner.run(state.post(body, headers))
    assert response.status_code < 500, response.text
    if signature_kind != "valid":
        assert response.status_code in (200, 401), response.text
        if response.status_code == 200:
            assert response.json() == {"ping": "ok"}
    elif response.status_code == 200 and "events" in response.json():
        state.accepted_events += len(response.json()["events"])
