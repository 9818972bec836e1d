"""shipping-label against a carrier aggregator and a WooCommerce store on loopback, through the
runtime on the real broker, and the signed carrier tracking webhook through the real ingress."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from consumers import shipping_label
from consumers.adapters.carrier import DevCarrier, HttpCarrier
from consumers.adapters.http_target import HttpTargetClient
from consumers.adapters.invoice_store import FileInvoiceStore
from consumers.runtime import Supervisor
from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.settings import Settings
from fleet.woo_rest import WooRest
from fleet.woo_writeback import FileWriteBack, RestWriteBack
from publisher.carrier import CARRIER_PATH, carrier_signature
from tests.builders import order_event, woo_order
from tests.integration.test_webhook import Harness, open_harness
from tests.support.amqp import apply, fast_fleet, publish, wait_until
from tests.support.carrier_server import PDF, CarrierServer
from tests.support.http_target_server import delivery_for
from tests.support.woo_server import WooServer, WooStore

pytestmark = pytest.mark.integration

SHIP_FROM = {"name": "Shop", "street1": "1 Silom Rd", "city": "Bangkok", "zip": "10500"}
PARCEL = {"length": "30", "width": "20", "height": "10", "distance_unit": "cm", "weight": "1"}
CARRIER_SECRET = "carrier-secret"
OTHER_ITEM = {"tracking_provider": "dhl", "tracking_number": "JD0001", "tracking_id": "x1"}


@pytest.fixture
def carrier() -> Iterator[CarrierServer]:
    with CarrierServer() as server:
        yield server


@pytest.fixture
def woo() -> Iterator[WooServer]:
    with WooServer(WooStore()) as server:
        server.store.put_order(
            woo_order(
                meta_data=[{"id": 1, "key": "_wc_shipment_tracking_items", "value": [OTHER_ITEM]}]
            )
        )
        yield server


@pytest.fixture
async def handler(
    carrier: CarrierServer, woo: WooServer, tmp_path: Path
) -> AsyncIterator[shipping_label.ShippingLabelHandler]:
    rest = WooRest(woo.url, woo.store.key, woo.store.secret, backoff=0.01)
    made = shipping_label.ShippingLabelHandler(
        HttpCarrier(HttpTargetClient("shipping_label", carrier.url)),
        FileInvoiceStore(tmp_path / "labels"),
        RestWriteBack(rest),
        ship_from=SHIP_FROM,
        parcel=PARCEL,
        service_level="standard",
    )
    yield made
    await made.aclose()


def meta(woo: WooServer, key: str, order_id: int = 11) -> Any:
    return next(m["value"] for m in woo.store.orders[order_id]["meta_data"] if m["key"] == key)


async def test_a_paid_order_gets_one_label_tracking_meta_and_a_customer_note(
    carrier: CarrierServer,
    woo: WooServer,
    handler: shipping_label.ShippingLabelHandler,
    tmp_path: Path,
) -> None:
    event = order_event("order.paid")
    # When the label is bought, and the message is handled again (an ack lost)
    await handler(event, delivery_for("shipping-label", event))
    await handler(event, delivery_for("shipping-label", event, attempt=2))
    # Then the carrier sold one label at the configured service level
    [shipment] = carrier.state.shipments.values()
    assert shipment["address_to"]["street1"] == "969 Market"
    assert shipment["address_from"] == SHIP_FROM and shipment["metadata"] == "order:11"
    [txn] = carrier.state.transactions.values()
    assert txn["rate"].endswith("_standard")
    keys = {k for _, path, k in carrier.state.requests if path == "/transactions"}
    assert keys == {"woofleet:shipping-label:order:11:label:transaction"}
    # The label PDF is stored
    stored = tmp_path / "labels" / "labels" / "11" / f"{txn['tracking_number']}.pdf"
    assert stored.read_bytes() == PDF
    # WooCommerce has the Shipment Tracking item beside the one already there, once
    items = meta(woo, "_wc_shipment_tracking_items")
    assert items[0] == OTHER_ITEM
    assert len(items) == 2
    mine = items[1]
    assert set(mine) == {
        "tracking_provider",
        "custom_tracking_provider",
        "custom_tracking_link",
        "tracking_number",
        "date_shipped",
        "tracking_id",
    }
    assert mine["tracking_number"] == txn["tracking_number"]
    assert mine["custom_tracking_link"] == txn["tracking_url"]
    assert mine["custom_tracking_provider"] == "Thailand Post" and mine["date_shipped"].isdigit()
    assert meta(woo, "_woofleet_shipping_label") == txn["id"]
    [note] = woo.store.notes[11]
    assert note["customer_note"] is True and txn["tracking_url"] in note["note"]


async def test_a_queued_label_is_transient_and_bought_once_when_ready(
    carrier: CarrierServer, handler: shipping_label.ShippingLabelHandler
) -> None:
    carrier.state.queue_next = 1
    event = order_event("order.paid")
    with pytest.raises(TransientError, match="QUEUED"):
        await handler(event, delivery_for("shipping-label", event))
    await handler(event, delivery_for("shipping-label", event, attempt=2))
    assert len(carrier.state.transactions) == 1


async def test_a_refused_label_is_permanent_with_the_carriers_reason(
    carrier: CarrierServer, woo: WooServer, handler: shipping_label.ShippingLabelHandler
) -> None:
    carrier.state.refuse_next = "Address not deliverable"
    event = order_event("order.paid")
    with pytest.raises(PermanentError, match="Address not deliverable"):
        await handler(event, delivery_for("shipping-label", event))
    assert 11 not in woo.store.notes


async def test_no_rate_at_the_service_level_names_the_levels_offered(
    carrier: CarrierServer, woo: WooServer, tmp_path: Path
) -> None:
    made = shipping_label.ShippingLabelHandler(
        HttpCarrier(HttpTargetClient("shipping_label", carrier.url)),
        FileInvoiceStore(tmp_path),
        FileWriteBack(tmp_path / "w.jsonl"),
        ship_from=SHIP_FROM,
        parcel=PARCEL,
        service_level="overnight",
    )
    event = order_event("order.paid")
    with pytest.raises(PermanentError, match="offered: express, standard"):
        await made(event, delivery_for("shipping-label", event))
    await made.aclose()


async def test_an_order_without_a_shipping_address_gets_no_label(
    carrier: CarrierServer, handler: shipping_label.ShippingLabelHandler
) -> None:
    event = order_event("order.paid", shipping={"first_name": "", "last_name": ""})
    await handler(event, delivery_for("shipping-label", event))
    assert carrier.state.requests == []


async def test_a_cancelled_order_voids_its_label_once(
    carrier: CarrierServer, woo: WooServer, handler: shipping_label.ShippingLabelHandler
) -> None:
    paid = order_event("order.paid")
    await handler(paid, delivery_for("shipping-label", paid))
    transaction = meta(woo, "_woofleet_shipping_label")
    cancelled = order_event(
        "order.cancelled",
        status="cancelled",
        meta_data=copy.deepcopy(woo.store.orders[11]["meta_data"]),
    )
    await handler(cancelled, delivery_for("shipping-label", cancelled))
    await handler(cancelled, delivery_for("shipping-label", cancelled, attempt=2))
    assert carrier.state.refunds == [{"transaction": transaction}]
    voided = [n for n in woo.store.notes[11] if "voided" in n["note"]]
    assert len(voided) == 1 and voided[0]["customer_note"] is False


async def test_a_cancelled_order_without_a_label_voids_nothing(
    carrier: CarrierServer, handler: shipping_label.ShippingLabelHandler
) -> None:
    cancelled = order_event("order.cancelled", status="cancelled")
    await handler(cancelled, delivery_for("shipping-label", cancelled))
    assert carrier.state.requests == []


def test_a_carrier_url_without_a_ship_from_address_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, targets={"shipping_label": "https://carrier.example"})
    with pytest.raises(ConfigError, match="WOOFLEET_SHIPPING_FROM"):
        shipping_label.build(settings)


async def test_unconfigured_it_makes_up_labels_in_the_dev_sinks(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path, invoice_store=f"file://{tmp_path}/store", targets={}, woo_url=""
    )
    handler = shipping_label.build(settings)
    assert isinstance(handler, shipping_label.ShippingLabelHandler)
    assert isinstance(handler.carrier, DevCarrier)
    event = order_event("order.paid")
    await handler(event, delivery_for("shipping-label", event))
    await handler.aclose()
    calls = [json.loads(x) for x in (tmp_path / "shipping/carrier.jsonl").read_text().splitlines()]
    assert [c["call"] for c in calls] == ["buy_label"]
    writes = (tmp_path / "woocommerce/writes.jsonl").read_text()
    assert "_wc_shipment_tracking_items" in writes
    assert list((tmp_path / "store/labels/11").glob("DEV*.pdf"))


async def test_the_runtime_buys_one_label_however_often_the_order_is_paid(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    carrier: CarrierServer,
    woo: WooServer,
) -> None:
    settings = settings.model_copy(
        update={
            "targets": {"shipping_label": carrier.url},
            "shipping_from": SHIP_FROM,
            "woo_url": woo.url,
            "woo_key": SecretStr(woo.store.key),
            "woo_secret": SecretStr(woo.store.secret),
        }
    )
    fleet = fast_fleet("shipping-label")
    await apply(connection, fleet, vhost)
    sup = Supervisor(["shipping-label"], settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        event = order_event("order.paid")
        await publish(connection, event)
        await publish(connection, event)
        worker = sup.workers["shipping-label"]
        await wait_until(lambda: worker.stats["handled"] + worker.stats["duplicate"] == 2)
    finally:
        await sup.stop(5)
    assert dict(worker.stats) == {"handled": 1, "duplicate": 1}
    assert len(carrier.state.transactions) == 1
    assert len(meta(woo, "_wc_shipment_tracking_items")) == 2


# -- POST /webhooks/carrier ------------------------------------------------------------------


def tracking_update(status: str, order_id: int = 11, tracking: str = "EF000000001TH") -> bytes:
    return json.dumps(
        {
            "event": "track_updated",
            "data": {
                "tracking_number": tracking,
                "metadata": f"order:{order_id}",
                "tracking_status": {"status": status, "status_date": "2026-12-04T10:00:00Z"},
            },
        }
    ).encode()


async def post_update(harness: Harness, body: bytes, secret: str = CARRIER_SECRET) -> int:
    signature = carrier_signature(body, secret.encode())
    response = await harness.client.post(
        CARRIER_PATH, content=body, headers={"X-Carrier-Signature": f"sha256={signature}"}
    )
    return response.status_code


@pytest.fixture
async def ingress(
    settings: Settings, connection: AbstractRobustConnection, woo: WooServer
) -> AsyncIterator[Harness]:
    async with open_harness(
        settings,
        connection,
        carrier_webhook_secret=SecretStr(CARRIER_SECRET),
        woo_url=woo.url,
        woo_key=SecretStr(woo.store.key),
        woo_secret=SecretStr(woo.store.secret),
    ) as opened:
        yield opened


async def test_a_bad_carrier_signature_is_401_and_writes_nothing(
    ingress: Harness, woo: WooServer
) -> None:
    body = tracking_update("DELIVERED")
    assert await post_update(ingress, body, secret="wrong") == 401
    unsigned = await ingress.client.post(CARRIER_PATH, content=body)
    assert unsigned.status_code == 401
    assert woo.store.requests == []
    assert woo.store.orders[11]["status"] == "processing"


async def test_delivery_completes_the_order_which_yields_order_completed_once(
    ingress: Harness, woo: WooServer
) -> None:
    # Given the paid order as the ingress saw it
    assert (await ingress.send("order.created", woo.store.orders[11])).status_code == 200
    assert [e.routing_key for e in await ingress.events(2)] == ["order.created", "order.paid"]
    # When the carrier reports transit, then delivery (each twice, as carriers repeat)
    for status in ("TRANSIT", "TRANSIT", "DELIVERED", "DELIVERED"):
        assert await post_update(ingress, tracking_update(status)) == 200
    # Then WooCommerce has one note per status and the order is completed
    order = woo.store.orders[11]
    assert order["status"] == "completed"
    mine = [n["note"] for n in woo.store.notes[11] if "Parcel" in n["note"]]
    assert len(mine) == 2 and "in transit" in mine[0] and "delivered" in mine[1]
    shipping = next(
        m["value"] for m in order["meta_data"] if m["key"] == "_woofleet_shipping_status"
    )
    assert shipping["status"] == "delivered"
    # And WooCommerce's delivery of that change drives order.completed exactly once
    for topic in ("order.updated", "order.updated"):
        assert (await ingress.send(topic, copy.deepcopy(order))).status_code == 200
    assert [e.routing_key for e in await ingress.events(1)] == ["order.completed"]
    await ingress.nothing_more()


async def test_other_carrier_statuses_and_foreign_parcels_are_ignored(
    ingress: Harness, woo: WooServer
) -> None:
    assert await post_update(ingress, tracking_update("PRE_TRANSIT")) == 200
    foreign = tracking_update("DELIVERED").replace(b'"order:11"', b'"someone-else"')
    assert await post_update(ingress, foreign) == 200
    assert await post_update(ingress, b"not json") == 400
    assert woo.store.requests == []


async def test_woocommerce_down_is_503_so_the_carrier_retries(
    ingress: Harness, woo: WooServer
) -> None:
    woo.store.fail_next(503, times=10)
    assert await post_update(ingress, tracking_update("TRANSIT")) == 503


async def test_a_paid_order_cancelled_meanwhile_gets_no_label(
    carrier: CarrierServer, woo: WooServer, handler: shipping_label.ShippingLabelHandler
) -> None:
    # Given order.paid still retrying when the order was cancelled (and its void found no label)
    woo.store.orders[11]["status"] = "cancelled"
    event = order_event("order.paid")
    await handler(event, delivery_for("shipping-label", event))
    assert carrier.state.requests == []
