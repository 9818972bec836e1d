"""Are the store's webhooks still delivering to us? (for ``woofleet status``)

WooCommerce disables a webhook after 7 failed deliveries in a row and never retries, so a
webhook that went ``disabled`` silently stops the flow of events until someone re-enables it.
Re-enabling does not reset its failure count: the next single failure disables it again, so
make sure the ingress answers first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fleet.errors import WoofleetError
from fleet.settings import Settings
from fleet.woo_rest import WooRest
from publisher.webhook import WEBHOOK_PATH

#: Topics without which lifecycle events are missed (refunds come as order.updated).
REQUIRED_TOPICS = ("order.created", "order.updated")


@dataclass(frozen=True)
class WebhookProblem:
    webhook_id: int
    name: str
    status: str
    topic: str
    delivery_url: str
    problem: str
    fix: str


@dataclass
class WebhookReport:
    store: str
    checked: int = 0
    problems: list[WebhookProblem] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not (self.problems or self.missing_topics or self.error)


def points_at_us(delivery_url: str, expected_url: str) -> bool:
    if expected_url:
        return delivery_url.rstrip("/") == expected_url.rstrip("/")
    return urlsplit(delivery_url).path.rstrip("/").endswith(WEBHOOK_PATH)


def _fix_status(hook: dict[str, Any], store: str) -> str:
    reenable = (
        f"re-enable it: PUT {store}/wp-json/wc/v3/webhooks/{hook.get('id')} "
        '{"status": "active"} (or WooCommerce > Settings > Advanced > Webhooks)'
    )
    if hook.get("status") == "disabled":
        return (
            "WooCommerce disabled it after repeated failed deliveries. Check that the ingress "
            "answers from the store's network (GET /healthz), then " + reenable + ". Its failure "
            "count is not reset: one more failure disables it again. Then run "
            "`woofleet reconcile --once` to recover the events it missed."
        )
    return f"an administrator paused it; {reenable}, then run `woofleet reconcile --once`"


def assess(hooks: list[dict[str, Any]], store: str, expected_url: str = "") -> WebhookReport:
    """Which webhooks are not active or do not point at the ingress, and missing topics."""
    report = WebhookReport(store=store, checked=len(hooks))
    covered: set[str] = set()
    for hook in hooks:
        url, status, topic = (str(hook.get(k) or "") for k in ("delivery_url", "status", "topic"))
        ours = points_at_us(url, expected_url)
        if not ours and not expected_url and not topic.startswith(("order.", "product.")):
            continue  # someone else's webhook for other resources
        hook_id, name = int(hook.get("id") or 0), str(hook.get("name") or "")
        if not ours:
            where = expected_url or f"a URL ending in {WEBHOOK_PATH}"
            problem = f"delivers to {url or '(nothing)'}, not to woofleet"
            fix = (
                f"set its delivery URL to {where} "
                f'(PUT {store}/wp-json/wc/v3/webhooks/{hook_id} {{"delivery_url": "..."}})'
            )
        elif status != "active":
            problem, fix = f"is {status or 'not active'}", _fix_status(hook, store)
        else:
            covered.add(topic)
            continue
        report.problems.append(WebhookProblem(hook_id, name, status, topic, url, problem, fix))
    report.missing_topics = [t for t in REQUIRED_TOPICS if t not in covered]
    return report


async def check_webhooks_async(client: WooRest, expected_url: str = "") -> WebhookReport:
    try:
        hooks = await client.webhooks()
    except WoofleetError as exc:
        return WebhookReport(store=client.store_url, error=str(exc))
    return assess(hooks, client.store_url, expected_url)


def check_webhooks(settings: Settings, expected_url: str | None = None) -> WebhookReport:
    """List the store's webhooks (GET /webhooks) and report the ones that need a person."""
    expected = expected_url if expected_url is not None else settings.webhook_endpoint

    async def run() -> WebhookReport:
        try:
            client = WooRest.from_settings(settings, attempts=2)
        except WoofleetError as exc:
            return WebhookReport(store=settings.woo_url, error=str(exc))
        async with client:
            return await check_webhooks_async(client, expected)

    return asyncio.run(run())


def format_report(report: WebhookReport) -> str:
    if report.error:
        return f"webhooks: could not check {report.store}: {report.error}"
    lines = [f"webhooks: {report.checked} on {report.store}"]
    if report.ok:
        lines[0] += ", all active and delivering to woofleet"
    for p in report.problems:
        lines.append(f"  webhook {p.webhook_id} {p.name!r} ({p.topic}) {p.problem}")
        lines.append(f"    fix: {p.fix}")
    if report.missing_topics:
        lines.append(
            "  no active webhook to woofleet for "
            + ", ".join(report.missing_topics)
            + f": create one per topic with delivery URL ending in {WEBHOOK_PATH}"
        )
    return "\n".join(lines)
