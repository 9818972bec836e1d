"""The catalog consumer against a real WooCommerce-like REST server (products batch endpoint)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from consumers import catalog
from consumers.runtime import Supervisor
from contracts.catalog import (
    PriceChange,
    PriceUpdate,
    PriceUpdateCommand,
    ProductData,
    ProductDraft,
    ProductEvent,
    ProductImport,
    ProductImportCommand,
    StockLevel,
    StockSync,
    StockSyncCommand,
)
from contracts.messages import ERROR_HEADER
from fleet.errors import PermanentError, TransientError
from fleet.settings import Settings
from fleet.woo_rest import WooRest
from tests.support.amqp import apply, drain, fast_fleet, publish, wait_until
from tests.support.http_target_server import Answer, HttpTargetServer, Recorded, delivery_for
from tests.support.woo_server import WooServer, WooStore
from topology import names

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def envelope(model: Any, event_type: str, data: Any) -> Any:
    return model(
        event_id=uuid.uuid4(),
        event_type=event_type,
        schema_version=1,
        occurred_at=NOW,
        source="catalog-push",
        data=data,
    )


def prices(*changes: tuple[int, str, str | None]) -> PriceUpdateCommand:
    items = tuple(
        PriceChange(product_id=pid, regular_price=Decimal(r), sale_price=s and Decimal(s))
        for pid, r, s in changes
    )
    return envelope(PriceUpdateCommand, "catalog.price_update", PriceUpdate(items=items))  # type: ignore[no-any-return]


def product(pid: int, sku: str) -> dict[str, Any]:
    return {
        "id": pid,
        "name": f"Product {pid}",
        "sku": sku,
        "regular_price": "10.00",
        "sale_price": "",
        "manage_stock": False,
        "stock_quantity": None,
        "date_modified_gmt": "2026-11-28T04:00:00",
    }


@pytest.fixture
def store() -> WooStore:
    store = WooStore()
    for pid in range(1, 121):
        store.put_product(product(pid, f"SKU-{pid}"))
    return store


@pytest.fixture
def woo_server(store: WooStore) -> Iterator[WooServer]:
    with WooServer(store) as server:
        yield server


@pytest.fixture
async def handler(woo_server: WooServer) -> AsyncIterator[catalog.CatalogHandler]:
    rest = WooRest(woo_server.url, woo_server.store.key, woo_server.store.secret, backoff=0.01)
    handler = catalog.CatalogHandler(rest, retry_delay=0.01)
    yield handler
    await handler.aclose()


def batch_calls(store: WooStore) -> list[dict[str, Any]]:
    return [r for r in store.requests if r["path"].endswith("/batch")]


async def test_a_price_update_is_one_batch_call_that_sets_every_price(
    store: WooStore, handler: catalog.CatalogHandler
) -> None:
    command = prices((1, "12.50", "9.99"), (2, "20.00", None))
    await handler(command, delivery_for("catalog", command))
    assert len(batch_calls(store)) == 1
    assert (store.products[1]["regular_price"], store.products[1]["sale_price"]) == (
        "12.50",
        "9.99",
    )
    assert (store.products[2]["regular_price"], store.products[2]["sale_price"]) == ("20.00", "")


async def test_a_full_command_of_100_items_fits_one_call(
    store: WooStore, handler: catalog.CatalogHandler
) -> None:
    items = tuple(StockLevel(product_id=pid, stock_quantity=pid * 2) for pid in range(1, 101))
    command = envelope(StockSyncCommand, "catalog.stock_sync", StockSync(items=items))
    await handler(command, delivery_for("catalog", command))
    assert len(batch_calls(store)) == 1
    assert all(store.products[p]["stock_quantity"] == p * 2 for p in range(1, 101))
    assert all(store.products[p]["manage_stock"] is True for p in range(1, 101))


async def test_refused_items_are_listed_in_one_permanent_error_and_the_rest_applied(
    store: WooStore, handler: catalog.CatalogHandler
) -> None:
    # Given a price update where one product does not exist
    command = prices((1, "11.00", None), (999, "5.00", None), (3, "13.00", None))
    # When the consumer applies it
    with pytest.raises(PermanentError) as caught:
        await handler(command, delivery_for("catalog", command))
    # Then the good items are applied and the error names the bad one, with WooCommerce's words
    assert store.products[1]["regular_price"] == "11.00"
    assert store.products[3]["regular_price"] == "13.00"
    message = str(caught.value)
    assert "1 of 3 items failed, the other 2 were applied" in message
    assert "product 999 (woocommerce_rest_product_invalid_id: Invalid ID.)" in message
    assert len(batch_calls(store)) == 1  # a refused item is not retried


async def test_an_import_creates_products_and_reports_duplicated_skus(
    store: WooStore, handler: catalog.CatalogHandler
) -> None:
    drafts = (
        ProductDraft(sku="NEW-1", name="New one", regular_price=Decimal("5"), stock_quantity=3),
        ProductDraft(sku="SKU-7", name="Clash", regular_price=Decimal("6")),
    )
    command = envelope(ProductImportCommand, "catalog.product_import", ProductImport(items=drafts))
    with pytest.raises(PermanentError, match=r"sku SKU-7 \(product_invalid_sku"):
        await handler(command, delivery_for("catalog", command))
    [created] = [p for p in store.products.values() if p["sku"] == "NEW-1"]
    assert (created["name"], created["regular_price"], created["stock_quantity"]) == (
        "New one",
        "5",
        3,
    )


async def test_a_store_that_keeps_failing_is_transient(
    store: WooStore, handler: catalog.CatalogHandler
) -> None:
    store.fail_next(503, times=10)
    command = prices((1, "11.00", None))
    with pytest.raises(TransientError, match="503"):
        await handler(command, delivery_for("catalog", command))


async def test_product_updated_is_only_logged(
    store: WooStore, handler: catalog.CatalogHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = ProductData(id=5, name="P", sku="SKU-5", date_modified_gmt=NOW)
    event = envelope(ProductEvent, "product.updated", data)
    await handler(event, delivery_for("catalog", event))
    assert store.requests == []
    assert "product 5 updated in the shop (sku SKU-5, stock not managed); nothing to do" in (
        caplog.text
    )


# -- per-item transient errors and variations: a minimal batch endpoint on the test server ----


@pytest.fixture
def target() -> Iterator[HttpTargetServer]:
    with HttpTargetServer() as server:
        yield server


async def test_items_that_fail_transiently_are_sent_again_on_their_own(
    target: HttpTargetServer,
) -> None:
    # Given a store whose first answer fails item 2 with a database error
    calls: list[list[int]] = []

    def batch(request: Recorded) -> Answer:
        ids = [item["id"] for item in request.json["update"]]
        calls.append(ids)
        busy = {"code": "db_error", "message": "deadlock", "data": {"status": 500}}
        results = [
            {"id": i, "error": busy} if (i == 2 and len(calls) == 1) else {"id": i} for i in ids
        ]
        return Answer(200, {"update": results})

    target.route = batch
    handler = catalog.CatalogHandler(WooRest(target.url, "ck", "cs"), retry_delay=0.01)
    command = prices((1, "1.00", None), (2, "2.00", None), (3, "3.00", None))
    # When the consumer applies the command
    await handler(command, delivery_for("catalog", command))
    await handler.aclose()
    # Then only the failed item went again, and nothing is reported failed
    assert calls == [[1, 2, 3], [2]]


async def test_an_item_that_keeps_failing_transiently_ends_in_the_permanent_list(
    target: HttpTargetServer,
) -> None:
    busy = {"code": "db_error", "message": "deadlock", "data": {"status": 500}}
    target.route = lambda r: Answer(
        200, {"update": [{"id": i["id"], "error": busy} for i in r.json["update"]]}
    )
    handler = catalog.CatalogHandler(
        WooRest(target.url, "ck", "cs"), item_retries=2, retry_delay=0.01
    )
    command = prices((1, "1.00", None))
    with pytest.raises(PermanentError, match=r"product 1 \(db_error: deadlock\)"):
        await handler(command, delivery_for("catalog", command))
    await handler.aclose()
    assert len(target.requests) == 3


async def test_variations_go_to_their_parents_variation_batch(target: HttpTargetServer) -> None:
    target.route = lambda r: Answer(200, {"update": [{"id": i["id"]} for i in r.json["update"]]})
    handler = catalog.CatalogHandler(WooRest(target.url, "ck", "cs"))
    items = (
        StockLevel(product_id=22, variation_id=23, stock_quantity=4),
        StockLevel(product_id=22, variation_id=24, stock_quantity=5),
        StockLevel(product_id=93, stock_quantity=6),
    )
    command = envelope(StockSyncCommand, "catalog.stock_sync", StockSync(items=items))
    await handler(command, delivery_for("catalog", command))
    await handler.aclose()
    by_path = {r.path: r.json["update"] for r in target.requests}
    assert by_path == {
        "/wp-json/wc/v3/products/22/variations/batch": [
            {"id": 23, "manage_stock": True, "stock_quantity": 4},
            {"id": 24, "manage_stock": True, "stock_quantity": 5},
        ],
        "/wp-json/wc/v3/products/batch": [{"id": 93, "manage_stock": True, "stock_quantity": 6}],
    }


async def test_without_a_store_url_the_dev_sink_records_the_calls(tmp_path: Path) -> None:
    handler = catalog.build(Settings(var_dir=tmp_path, targets={}))
    command = prices((1, "1.00", None))
    await handler(command, delivery_for("catalog", command))
    [line] = (tmp_path / "targets" / "catalog.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["path"] == "/wp-json/wc/v3/products/batch"
    assert record["body"] == {"update": [{"id": 1, "regular_price": "1.00", "sale_price": ""}]}


def test_with_a_store_url_build_uses_the_rest_client(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path,
        woo_url="https://shop.example",
        woo_key="ck_x",
        woo_secret="cs_x",
        targets={},
    )
    handler = catalog.build(settings)
    assert isinstance(handler, catalog.CatalogHandler) and isinstance(handler.woo, WooRest)


# -- through the runtime on the real broker ---------------------------------------------------


async def test_in_the_runtime_a_failed_item_dead_letters_its_command_and_duplicates_are_skipped(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    woo_server: WooServer,
    store: WooStore,
) -> None:
    # Given the catalog consumer running against the store
    fleet = fast_fleet("catalog")
    await apply(connection, fleet, vhost)
    woo = {
        "woo_url": woo_server.url,
        "woo_key": SecretStr(store.key),
        "woo_secret": SecretStr(store.secret),
    }
    supervisor = Supervisor(["catalog"], settings.model_copy(update=woo), fleet=fleet)
    await supervisor.start()
    worker = supervisor.workers["catalog"]
    good = prices((1, "21.00", None))
    bad = prices((2, "22.00", None), (999, "1.00", None))
    try:
        # When a good command arrives twice and a command with an unknown product once
        await publish(connection, good)
        await wait_until(lambda: worker.stats["handled"] == 1)
        await publish(connection, good)
        await publish(connection, bad)
        await wait_until(lambda: worker.stats["duplicate"] == 1 and worker.stats["dead"] == 1)
    finally:
        await supervisor.stop(5)
    # Then the good one was applied once, the bad one's good item too, and its command is in
    # the DLQ with the failed item named
    assert store.products[1]["regular_price"] == "21.00"
    assert store.products[2]["regular_price"] == "22.00"
    assert len(batch_calls(store)) == 2
    [dead] = await drain(connection, names.dead_letter_queue("catalog"))
    error = str((dead.headers or {})[ERROR_HEADER])
    assert "PermanentError" in error and "product 999 (woocommerce_rest_product_invalid_id" in error
    assert json.loads(dead.body)["event_id"] == str(bad.event_id)
