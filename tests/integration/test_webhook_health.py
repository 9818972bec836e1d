"""Webhook health: which of the store's webhooks no longer deliver to woofleet, and the fix."""

from __future__ import annotations

from pydantic import SecretStr

from fleet.settings import Settings
from publisher.webhook_health import assess, check_webhooks, format_report
from tests.support.woo_server import WooServer, WooStore

OURS = "https://hooks.shop.example/webhooks/woocommerce"


def hook(hook_id: int, topic: str, status: str = "active", url: str = OURS) -> dict[str, object]:
    return {
        "id": hook_id,
        "name": f"woofleet {topic}",
        "status": status,
        "topic": topic,
        "delivery_url": url,
        "resource": topic.split(".")[0],
        "event": topic.split(".")[1],
    }


def test_disabled_and_misdirected_webhooks_are_reported_with_the_fix() -> None:
    store = WooStore(permission="read")
    store.webhooks = {
        1: hook(1, "order.created"),
        2: hook(2, "order.updated", status="disabled"),
        3: hook(3, "product.updated", url="https://old-host.example/hooks/woo"),
        4: hook(4, "coupon.updated", url="https://zapier.example/x"),
    }
    with WooServer(store, https=False) as server:
        settings = Settings(
            woo_url=server.url, woo_key=SecretStr(store.key), woo_secret=SecretStr(store.secret)
        )
        report = check_webhooks(settings, expected_url="")
    assert not report.ok and report.checked == 4
    assert [(p.webhook_id, p.problem) for p in report.problems] == [
        (2, "is disabled"),
        (3, "delivers to https://old-host.example/hooks/woo, not to woofleet"),
    ]
    assert report.missing_topics == ["order.updated"]
    text = format_report(report)
    assert '{"status": "active"}' in text and "not reset" in text
    assert store.secret not in text


def test_all_active_is_ok_and_an_unreachable_store_is_an_error_not_a_crash() -> None:
    report = assess([hook(1, "order.created"), hook(2, "order.updated")], "https://shop.example")
    assert report.ok and "all active" in format_report(report)
    settings = Settings(
        woo_url="http://127.0.0.1:9", woo_key=SecretStr("ck"), woo_secret=SecretStr("cs")
    )
    broken = check_webhooks(settings, expected_url=OURS)
    assert broken.error and "did not answer" in format_report(broken)
