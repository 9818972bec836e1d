"""Where ``woofleet status`` reads the fleet's state from.

* Depths and consumer counts: passive queue declarations over AMQP, exact at that moment (the
  management API's figures are statistics, up to ``collect_statistics_interval`` (5 s) old).
* Unacked counts, rates (averaged over the last minute, from the management API's samples) and
  the head message's timestamp: the management API.
* Breaker states: the consumers' /metrics (``woofleet_breaker_state``).
* Outbox depth, relay lag, kept deliveries: the ingress's /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import aiormq
import httpx
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families

from fleet.logging import rfc3339
from fleet.status import ConsumerStatus, FleetStatus, IngressStatus, StoreWebhooks
from topology import names
from topology.fleet import FleetSpec, build_topology
from topology.management import Management, q

#: Seconds the management API averages rates over.
RATE_WINDOW = 60
_STATES = {0: "closed", 1: "half-open", 2: "open"}


def _waited(now: float, published: float, delay: float | None) -> float:
    """How long the head event has waited for its consumer: a delayed consumer's (such as
    review-request's 7 days) starts when its delay queue hands the event over."""
    return max(now - float(published) - (delay or 0.0), 0.0)


def _avg_rate(queue: dict[str, Any], stat: str) -> float:
    details = (queue.get("message_stats") or {}).get(f"{stat}_details") or {}
    return float(details.get("avg_rate", details.get("rate", 0.0)) or 0.0)


async def _exact_depths(
    connection: AbstractRobustConnection, queue_names: Iterable[str]
) -> dict[str, tuple[int, int]]:
    """queue → (ready messages, consumers), for the queues that exist."""
    found: dict[str, tuple[int, int]] = {}
    channel: AbstractChannel = await connection.channel()
    try:
        for name in queue_names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                # A missing queue closes the channel; it is reported as missing elsewhere.
                channel = await connection.channel()
                continue
            result = queue.declaration_result
            found[name] = (result.message_count or 0, result.consumer_count or 0)
    finally:
        await channel.close()
    return found


def scrape(url: str, timeout: float = 3.0) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A process's /metrics as ``name → [(labels, value)]`` (samples by their full name)."""
    response = httpx.get(url, timeout=timeout)
    response.raise_for_status()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def breaker_states(metrics_urls: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """(consumer → breaker state, errors) from the consumers' /metrics."""
    states: dict[str, str] = {}
    errors = []
    for url in metrics_urls:
        try:
            samples = scrape(url)
        except httpx.HTTPError as exc:
            errors.append(f"{url}: {exc}")
            continue
        for labels, value in samples.get("woofleet_breaker_state", []):
            states[labels.get("consumer", "")] = _STATES.get(int(value), "open")
    return states, errors


def ingress_status(base_url: str) -> IngressStatus:
    url = base_url.rstrip("/")
    try:
        samples = scrape(f"{url}/metrics")
    except httpx.HTTPError as exc:
        return IngressStatus(url, reachable=False, error=str(exc) or type(exc).__name__)

    def value(name: str) -> float | None:
        found = samples.get(name)
        return found[0][1] if found else None

    depth, lag = value("woofleet_outbox_depth"), value("woofleet_outbox_oldest_seconds")
    kept, broker = value("woofleet_ingress_kept_deliveries"), value("woofleet_broker_up")
    aside = value("woofleet_outbox_set_aside_rows")
    return IngressStatus(
        url,
        reachable=True,
        outbox_depth=None if depth is None else int(depth),
        relay_lag=lag,
        kept_deliveries=None if kept is None else int(kept),
        broker_connected=None if broker is None else broker >= 1,
        set_aside_rows=None if aside is None else int(aside),
    )


async def collect(
    connection: AbstractRobustConnection,
    management: Management,
    vhost: str,
    fleet: FleetSpec,
    *,
    metrics_urls: Iterable[str] = (),
    ingress_url: str | None = None,
    webhooks: StoreWebhooks | None = None,
) -> FleetStatus:
    """The fleet's state now: one row per consumer in the table, then ingress and webhooks."""
    by_name = {
        q["name"]: q
        for q in management.get(
            f"/queues/{q(vhost)}",
            msg_rates_age=RATE_WINDOW,
            msg_rates_incr=5,
            columns="name,messages,messages_unacknowledged,head_message_timestamp,message_stats",
        )
    }
    exact = await _exact_depths(
        connection,
        [
            names.HELD_QUEUE,
            *(n for c in fleet.consumers for n in (c.work_queue, c.dead_letter_queue)),
        ],
    )
    breakers, unreachable = breaker_states(metrics_urls)
    now = time.time()
    rows = []
    for consumer in fleet.consumers:
        work = by_name.get(consumer.work_queue, {})
        ready, consumers = exact.get(consumer.work_queue, (0, 0))
        head = work.get("head_message_timestamp")
        rows.append(
            ConsumerStatus(
                consumer=consumer.name,
                priority_class=consumer.priority_class.value,
                ready=ready,
                unacked=int(work.get("messages_unacknowledged", 0) or 0),
                consumers=consumers,
                in_retry=sum(
                    by_name.get(names.retry_queue(consumer.name, d), {}).get("messages", 0) or 0
                    for d in consumer.declared_tiers
                ),
                delayed=by_name.get(names.delay_queue(consumer.name), {}).get("messages", 0) or 0,
                dead=exact.get(consumer.dead_letter_queue, (0, 0))[0],
                oldest_age=_waited(now, head, consumer.delay) if head and ready else None,
                delay_target=consumer.delay_target,
                incoming_rate=_avg_rate(work, "publish"),
                ack_rate=_avg_rate(work, "ack"),
                rate_window=RATE_WINDOW,
                breaker=breakers.get(consumer.name),
            )
        )
    missing = tuple(q.name for q in build_topology(fleet).queues if q.name not in by_name)
    return FleetStatus(
        vhost=vhost,
        checked_at=rfc3339(now),
        consumers=tuple(rows),
        missing_queues=missing,
        ingress=None if ingress_url is None else ingress_status(ingress_url),
        webhooks=webhooks,
        unreachable_metrics=tuple(unreachable),
        held_deliveries=exact[names.HELD_QUEUE][0] if names.HELD_QUEUE in exact else None,
    )
