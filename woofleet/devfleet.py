"""The development fleet behind ``woofleet run``: ingress and all consumers in one process.

This is the composition root for development; it is the one module that imports both the
publisher and the consumers (each still knows nothing of the other).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from consumers.runtime.supervisor import Supervisor
from contracts.catalog import StockLevel
from fleet.amqp import connect
from fleet.health import health_routes, serve_in_background
from fleet.settings import Settings, target_key
from publisher.carrier import CARRIER_PATH, carrier_signature
from publisher.http_guard import guarded, limits_of
from publisher.simulate.encoding import delivery
from publisher.simulate.orders import make_order, story
from publisher.webhook import WEBHOOK_PATH, WebhookApp
from topology import names
from topology.apply import apply_fleet, vhost_of
from topology.fleet import CONSUMER_NAMES, DEFAULT_FLEET, FleetSpec, build_topology
from topology.management import Management
from topology.model import QueueRole
from woofleet.catalog import publish as publish_catalog

log = logging.getLogger("woofleet.run")
#: The queues are idle for this long before the demo counts as done.
SETTLE_SECONDS = 1.5
DEMO_TIMEOUT = 120.0


class DevFleet:
    def __init__(
        self,
        settings: Settings,
        *,
        host: str,
        port: int,
        health_port: int,
        fleet: FleetSpec = DEFAULT_FLEET,
    ) -> None:
        self.settings = settings
        self.host, self.port, self.health_port = host, port, health_port
        self.fleet = fleet
        # Wide enough for the summary table when output is piped (rich assumes 80 columns).
        self.console = Console(width=None if sys.stdout.isatty() else 120)

    async def main(self, *, demo_orders: int | None, keep_running: bool) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self._apply_topology()
        supervisor = Supervisor(CONSUMER_NAMES, self.settings, fleet=self.fleet)
        await supervisor.start()
        webhook = WebhookApp(self.settings)
        from starlette.applications import Starlette

        health = Starlette(routes=health_routes(supervisor.ready))
        servers = [
            await serve_in_background(
                webhook.asgi,
                self.host,
                self.port,
                lifespan=True,
                http=guarded(limits_of(self.settings)),
            ),
            await serve_in_background(health, self.host, self.health_port),
        ]
        url = f"http://{self.host}:{self.port}{WEBHOOK_PATH}"
        self.console.print(
            f"woofleet is running: webhook [bold]{url}[/bold], "
            f"health http://{self.host}:{self.health_port}/readyz, "
            f"{len(CONSUMER_NAMES)} consumers, state in {self.settings.var_dir}/"
        )
        code = 0
        try:
            if demo_orders is not None:
                code = await self._demo(url, demo_orders, supervisor)
            if keep_running:
                self.console.print("press Ctrl-C to stop")
                await stop.wait()
        finally:
            self.console.print("stopping: finishing in-flight work")
            await supervisor.stop(10)
            for server, task in reversed(servers):
                server.should_exit = True
                await task
        return code

    async def _apply_topology(self) -> None:
        connection = await connect(self.settings, name="woofleet run: topology")
        try:
            with Management(self.settings.management_url.get_secret_value()) as management:
                report = await apply_fleet(
                    connection,
                    self.fleet,
                    vhost=vhost_of(self.settings.amqp_url.get_secret_value()),
                    management=management,
                )
        finally:
            await connection.close()
        self.console.print(f"topology: {report.summary()}")

    async def _demo(self, url: str, orders: int, supervisor: Supervisor) -> int:
        secret = self.settings.webhook_secrets()[0]
        rng = random.Random(7)
        start = datetime.now(UTC).replace(microsecond=0)
        base_id = int(time.time()) % 1_000_000 * 10
        deliveries = [
            delivery(step.topic, step.order, secret)
            for n in range(orders)
            for step in story(rng, base_id + n, start)
        ]
        self.console.print(
            f"demo: sending {len(deliveries)} signed webhook deliveries for {orders} orders"
        )
        rejected = 0
        async with httpx.AsyncClient(timeout=30) as client:
            for d in deliveries:
                response = await client.post(url, content=d.body, headers=d.headers)
                if response.status_code >= 300:
                    rejected += 1
                    log.error("demo delivery refused: %s %s", response.status_code, response.text)
        # And one bulk catalog command, as `woofleet catalog push --kind stock` would send it.
        levels = [StockLevel(product_id=100 + n, stock_quantity=10 * n) for n in range(1, 4)]
        await publish_catalog(self.settings, "stock", levels)
        await self._wait_until_settled(supervisor)
        async with httpx.AsyncClient(timeout=30) as client:
            captured = await self._authorised_order(
                client, url, secret, base_id + orders, start, supervisor
            )
            delivered = await self._carrier_reports(
                client, url, range(base_id, base_id + orders + 1)
            )
        self._print_summary(supervisor)
        if captured:
            self.console.print(
                f"payment-capture: order {base_id + orders}, authorised on-hold at checkout, "
                "was captured and moved to processing; WooCommerce's echo of that write was its "
                "first order.paid"
            )
        if delivered:
            self.console.print(
                f"carrier: {delivered} parcels reported in transit, then delivered, through "
                f"signed POST {CARRIER_PATH}; their orders were marked completed"
            )
        return 1 if rejected else 0

    async def _authorised_order(
        self,
        client: httpx.AsyncClient,
        url: str,
        secret: bytes,
        order_id: int,
        start: datetime,
        supervisor: Supervisor,
    ) -> bool:
        """A card payment only authorised at checkout (on-hold): payment-capture captures it
        and writes processing back; WooCommerce's echo of that write is played from the dev
        sink's record, as the store would deliver it."""
        order = make_order(random.Random(order_id), order_id, start)
        order.update(status="on-hold", transaction_id=f"pi_{order_id:08d}")
        order["meta_data"].append({"id": 1, "key": "_stripe_charge_captured", "value": "no"})
        d = delivery("order.created", order, secret)
        await client.post(url, content=d.body, headers=d.headers)
        await self._wait_until_settled(supervisor)
        writes = self.settings.var_dir / "woocommerce" / "writes.jsonl"
        lines = writes.read_text(encoding="utf-8").splitlines() if writes.is_file() else []
        changes = [
            c["body"]
            for c in map(json.loads, lines)
            if c["order"] == order_id and c["write"] == "status"
        ]
        if not changes:
            return False
        stamp = (start + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
        order.update(status=changes[-1]["status"], date_modified_gmt=stamp, date_paid_gmt=stamp)
        order["meta_data"] += changes[-1]["meta_data"]
        d = delivery("order.updated", order, secret)
        await client.post(url, content=d.body, headers=d.headers)
        await self._wait_until_settled(supervisor)
        return True

    async def _carrier_reports(self, client: httpx.AsyncClient, url: str, ids: range) -> int:
        """Play the carrier: a signed tracking update per label the dev carrier made."""
        secret = self.settings.carrier_webhook_secret.get_secret_value().encode()
        calls = self.settings.var_dir / "shipping" / "carrier.jsonl"
        if not secret or not calls.is_file():
            return 0
        endpoint = url.replace(WEBHOOK_PATH, CARRIER_PATH)
        delivered = 0
        for line in calls.read_text(encoding="utf-8").splitlines():
            call = json.loads(line)
            if call.get("call") != "buy_label":
                continue
            metadata = str(call["body"]["shipment"].get("metadata", ""))
            if metadata.removeprefix("order:") not in {str(i) for i in ids}:
                continue  # a label from an earlier run
            for status in ("TRANSIT", "DELIVERED"):
                update = {
                    "event": "track_updated",
                    "data": {
                        "tracking_number": call["body"]["label"]["tracking_number"],
                        "metadata": metadata,
                        "tracking_status": {
                            "status": status,
                            "status_date": datetime.now(UTC).isoformat(timespec="seconds"),
                        },
                    },
                }
                body = json.dumps(update).encode()
                signature = carrier_signature(body, secret)
                response = await client.post(
                    endpoint, content=body, headers={"X-Carrier-Signature": signature}
                )
                if response.status_code >= 300:
                    log.error("demo carrier update refused: %s", response.status_code)
            delivered += 1
        return delivered

    async def _wait_until_settled(self, supervisor: Supervisor) -> None:
        """Until every work and retry queue is empty and no handler runs, for a moment."""
        assert supervisor.connection is not None
        queues = _watched_queues(self.fleet)
        deadline = time.monotonic() + DEMO_TIMEOUT
        quiet_since: float | None = None
        async with supervisor.connection.channel() as channel:
            while time.monotonic() < deadline:
                depth = 0
                for name in queues:
                    queue = await channel.declare_queue(name, passive=True)
                    depth += queue.declaration_result.message_count or 0
                busy = depth or any(w.in_flight for w in supervisor.workers.values())
                if busy:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= SETTLE_SECONDS:
                    return
                await asyncio.sleep(0.1)
        log.warning("demo: queues did not settle within %.0fs", DEMO_TIMEOUT)

    def _print_summary(self, supervisor: Supervisor) -> None:
        table = Table(title="what each consumer did")
        for column in ("consumer", "handled", "duplicates", "retried", "dead-lettered", "output"):
            table.add_column(column)
        for name, worker in supervisor.workers.items():
            s = worker.stats
            table.add_row(
                name,
                str(s["handled"]),
                str(s["duplicate"]),
                str(s["retried"]),
                str(s["dead"]),
                _output_of(name, self.settings) if s["handled"] else "-",
            )
        self.console.print(table)
        writes = self.settings.var_dir / "woocommerce" / "writes.jsonl"
        if not self.settings.woo_url and writes.is_file():
            self.console.print(
                f"written back to WooCommerce (dev sink): {sum(1 for _ in writes.open())} "
                f"notes, status changes and meta in {writes}"
            )
        delayed = names.delay_queue("review-request")
        self.console.print(
            f"review-request emails wait 7 days in {delayed} (a delay queue), "
            "as they would in production."
        )


def _watched_queues(fleet: FleetSpec) -> list[str]:
    """Work and retry queues: the delay queue holds review requests for days by design."""
    return [
        q.name for q in build_topology(fleet).queues if q.role in (QueueRole.WORK, QueueRole.RETRY)
    ]


def _output_of(consumer: str, settings: Settings) -> str:
    """Where the dev sinks put what this consumer would have sent."""
    var_dir = settings.var_dir
    store = settings.invoice_store
    paths = {
        "order-email": var_dir / "mail",
        "review-request": var_dir / "mail",
        "invoice": Path(store.removeprefix("file://")) if store.startswith("file://") else None,
        "push-notify": var_dir / "push" / "fcm.jsonl",
        "shipping-label": var_dir / "shipping" / "carrier.jsonl",
    }
    path = paths.get(consumer, var_dir / "targets" / f"{target_key(consumer)}.jsonl")
    if path is None:
        return store
    if path.is_dir():
        return f"{sum(1 for p in path.rglob('*') if p.is_file())} files in {path}/"
    if path.is_file():
        return f"{sum(1 for _ in path.open())} requests in {path}"
    return "-"
