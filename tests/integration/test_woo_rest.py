"""fleet.woo_rest against a real HTTP(S) server that checks credentials as WooCommerce does."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from fleet.errors import PermanentError, TransientError
from fleet.woo_rest import WooRest
from tests.support.woo_server import WooServer, WooStore

pytestmark = pytest.mark.integration

ORDER = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "data/woocommerce/order-created.docs-create-paid-order-727.json"
    ).read_text()
)


def orders(count: int, modified: str = "2026-11-28T05:00:00") -> list[dict[str, Any]]:
    made = []
    for i in range(count):
        order = copy.deepcopy(ORDER)
        order.update(id=1000 + i, date_modified_gmt=modified)
        made.append(order)
    return made


@pytest.fixture(params=["https-basic", "http-oauth1-sha256", "http-oauth1-sha1"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[WooServer, WooRest]]:
    https = request.param.startswith("https")
    with WooServer(WooStore(), https=https) as srv:
        method: Literal["HMAC-SHA256", "HMAC-SHA1"] = (
            "HMAC-SHA1" if request.param.endswith("sha1") else "HMAC-SHA256"
        )
        client = WooRest(
            srv.url,
            srv.store.key,
            srv.store.secret,
            verify=srv.ca_file or True,
            backoff=0.01,
            signature_method=method,
        )
        yield srv, client


async def test_reads_and_writes_with_the_auth_woocommerce_wants(
    server: tuple[WooServer, WooRest],
) -> None:
    srv, client = server
    srv.store.put_order(ORDER)
    async with client:
        got = await client.get("orders/727")
        assert got["id"] == 727
        updated = await client.put(
            "orders/727", {"meta_data": [{"key": "_erp_sync_id", "value": "E-1"}]}
        )
        assert {"key": "_erp_sync_id", "value": "E-1"}.items() <= updated["meta_data"][-1].items()
    assert {r["auth"] for r in srv.store.requests} == {"basic" if srv.https else "oauth1"}


async def test_query_values_with_spaces_and_non_ascii_are_signed_as_sent(
    server: tuple[WooServer, WooRest],
) -> None:
    # The signature covers the query as the server decodes it: encoding must agree both ways.
    srv, client = server
    async with client:
        assert await client.get("orders", search="สมชาย & co/~x", status="any") == []
    assert srv.store.requests[-1]["auth"] in ("basic", "oauth1")


async def test_pages_follow_total_pages(server: tuple[WooServer, WooRest]) -> None:
    srv, client = server
    for order in orders(250):
        srv.store.put_order(order)
    async with client:
        pages = [page async for page in client.orders_modified_after("2026-11-28T04:59:59")]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert len({o["id"] for p in pages for o in p}) == 250


async def test_wrong_secret_is_a_permanent_error_naming_the_key(
    server: tuple[WooServer, WooRest],
) -> None:
    srv, _ = server
    async with WooRest(srv.url, srv.store.key, "cs_wrong", verify=srv.ca_file or True) as bad:
        with pytest.raises(PermanentError, match="WOOFLEET_WOO_KEY") as info:
            await bad.get("orders")
    assert "cs_wrong" not in str(info.value)


async def test_read_only_key_writing_names_read_write_permission() -> None:
    with WooServer(WooStore(permission="read"), https=False) as srv:
        srv.store.put_order(ORDER)
        async with WooRest(srv.url, srv.store.key, srv.store.secret) as client:
            assert (await client.get("orders/727"))["id"] == 727
            with pytest.raises(PermanentError, match="read_write"):
                await client.put("orders/727", {"customer_note": "x"})


async def test_basic_auth_over_plain_http_is_refused_like_woocommerce() -> None:
    import httpx

    with WooServer(WooStore(), https=False) as srv:
        async with httpx.AsyncClient() as raw:
            response = await raw.get(
                f"{srv.url}/wp-json/wc/v3/orders", auth=(srv.store.key, srv.store.secret)
            )
    assert response.status_code == 401


async def test_429_and_5xx_are_retried_with_backoff() -> None:
    with WooServer(WooStore(), https=False) as srv:
        srv.store.put_order(ORDER)
        srv.store.fail_next(429, 1, retry_after=0.05)
        srv.store.fail_next(503, 2)
        async with WooRest(srv.url, srv.store.key, srv.store.secret, backoff=0.01) as client:
            assert (await client.get("orders/727"))["id"] == 727
        assert len(srv.store.requests) == 4
        srv.store.fail_next(502, 10)
        async with WooRest(
            srv.url, srv.store.key, srv.store.secret, backoff=0.01, attempts=3
        ) as client:
            with pytest.raises(TransientError, match="502"):
                await client.get("orders/727")


async def test_unreachable_store_is_transient() -> None:
    async with WooRest("http://127.0.0.1:9", "ck", "cs", attempts=2, backoff=0.01) as client:
        with pytest.raises(TransientError, match="did not answer"):
            await client.get("orders")


async def test_batch_products_at_most_100_with_per_item_errors() -> None:
    with WooServer(WooStore(), https=True) as srv:
        srv.store.put_product(
            {
                "id": 93,
                "name": "Woo Single #1",
                "sku": "WOO-1",
                "stock_quantity": 3,
                "manage_stock": True,
                "date_created_gmt": "2026-01-01T00:00:00",
                "date_modified_gmt": "2026-01-01T00:00:00",
            }
        )
        async with WooRest(
            srv.url, srv.store.key, srv.store.secret, verify=srv.ca_file or True
        ) as client:
            result = await client.batch_products(
                {"update": [{"id": 93, "stock_quantity": 7}, {"id": 404, "stock_quantity": 1}]}
            )
            assert result["update"][0]["stock_quantity"] == 7
            assert result["update"][1]["error"]["code"] == "woocommerce_rest_product_invalid_id"
            with pytest.raises(PermanentError, match="at most 100"):
                await client.batch_products({"update": [{"id": i} for i in range(101)]})
        assert srv.store.products[93]["stock_quantity"] == 7
