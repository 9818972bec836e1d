"""Send simulated deliveries to a webhook at a fixed rate and summarise what came back."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from fleet.errors import ConfigError
from publisher.simulate.encoding import Delivery, delivery
from publisher.simulate.orders import story

DEFAULT_URL = "http://127.0.0.1:8080/webhooks/woocommerce"
MAX_ORDERS = 100_000


@dataclass(frozen=True)
class SimulationPlan:
    orders: int
    rate: float
    url: str = DEFAULT_URL
    secret: bytes = b""
    source: str = "https://shop.example/"
    seed: int = 1
    first_order_id: int = 100_000
    concurrency: int = 64
    max_seconds: float = 300.0


@dataclass
class SimulationResult:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    events: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def require_loopback(url: str) -> None:
    """Simulated load goes to this machine unless the operator says otherwise."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ConfigError(
        f"{url} is not a loopback address; simulated orders go to this machine only "
        "(pass --allow-remote to send them elsewhere, to a store you run)"
    )


def deliveries(plan: SimulationPlan) -> Iterator[Delivery]:
    """Every order's story, interleaved across orders the way a busy store's queue sends them."""
    rng = random.Random(plan.seed)
    start = datetime.now(UTC).replace(microsecond=0)
    stories = [
        story(rng, plan.first_order_id + i, start) for i in range(min(plan.orders, MAX_ORDERS))
    ]
    position = 0
    while stories:
        # Each round sends the next step of a window of orders, so one order's deliveries
        # stay in order while many orders are in flight together.
        window = stories[:16]
        for steps in window:
            step = steps.pop(0)
            position += 1
            yield delivery(
                step.topic,
                step.order,
                plan.secret,
                source=plan.source,
                delivery_id=f"{position:032x}",
            )
        stories = [s for s in window if s] + stories[16:]


def count_deliveries(plan: SimulationPlan) -> int:
    return sum(1 for _ in deliveries(plan))


async def run_simulation(
    plan: SimulationPlan, *, on_response: Callable[[], None] | None = None
) -> SimulationResult:
    """POST every delivery at ``plan.rate`` per second (open loop), at most ``max_seconds``."""
    if not plan.secret:
        raise ConfigError("no webhook secret: set WOOFLEET_WEBHOOK_SECRET (the ingress's secret)")
    result = SimulationResult()
    slots = asyncio.Semaphore(plan.concurrency)
    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    started = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def send(client: httpx.AsyncClient, item: Delivery) -> None:
        begin = time.perf_counter()
        try:
            response = await client.post(plan.url, content=item.body, headers=item.headers)
        except httpx.HTTPError:
            result.failed += 1
        else:
            result.latencies.append(time.perf_counter() - begin)
            result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
            if 200 <= response.status_code < 300:
                result.accepted += 1
                with contextlib.suppress(ValueError, AttributeError):
                    result.events += len(response.json().get("events", []))
            else:
                result.rejected += 1
        finally:
            slots.release()
            if on_response is not None:
                on_response()

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for index, item in enumerate(deliveries(plan)):
            due = started + index / plan.rate
            now = time.perf_counter()
            if now - started > plan.max_seconds:
                result.stopped_early = True
                break
            if due > now:
                await asyncio.sleep(due - now)
            await slots.acquire()
            result.sent += 1
            task = asyncio.create_task(send(client, item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started
    return result
