"""A WooCommerce REST v3 server on loopback that behaves as FACTS.md documents (for tests).

Not a mock of the client: a real HTTP(S) server with WooCommerce's rules, so the client's
requests are checked the way a store would check them.

* Authentication: HTTP Basic (or ``consumer_key``/``consumer_secret`` in the query) over HTTPS
  only; over plain HTTP only OAuth 1.0a one-legged signatures (HMAC-SHA1/-SHA256, verified with
  oauthlib, timestamp within 15 min, nonces never reused). Keys have ``read``, ``write`` or
  ``read_write`` permission and get WooCommerce's 401 answers otherwise.
* ``GET /orders``: ``modified_after`` strictly greater, at 1 s resolution, read in the site's
  time zone (UTC+7 here) unless ``dates_are_gmt=true``; ``orderby=modified|id|date``,
  ``order``, ``per_page`` 1-100, ``page``; ``X-WP-Total``, ``X-WP-TotalPages``, ``Link``.
* ``GET/PUT /orders/{id}`` and ``/products/{id}`` (a PUT stamps ``date_modified``; an order's
  status change stamps ``date_paid`` on entering processing/completed and ``date_completed`` on
  completed, and adds WooCommerce's system note "Order status changed from A to B."),
* ``GET/POST /orders/{id}/notes`` (``type=any|customer|internal``; 201 with the new note; a
  note neither appears in the order body nor changes ``date_modified``),
  ``POST /products/batch`` (at most 100 items, per-item errors, not atomic),
  ``GET /webhooks``, ``PUT /webhooks/{id}`` (re-enabling keeps ``failure_count``).
* ``fail_next(status, times)`` makes the next requests answer 429/5xx, like a busy store.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import math
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import uvicorn
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PREFIX = "/wp-json/wc/v3"
SITE_TZ = dt.timezone(dt.timedelta(hours=7))
GMT_FORMAT = "%Y-%m-%dT%H:%M:%S"


def gmt_now() -> str:
    return dt.datetime.now(dt.UTC).strftime(GMT_FORMAT)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "data": {"status": status}}, status)


@dataclass
class WooStore:
    """The store's data and rules; tests read and change it directly."""

    key: str = "ck_test_0123456789"
    secret: str = "cs_test_9876543210"
    permission: str = "read_write"
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    batch_limit: int = 100
    requests: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[tuple[int, float | None]] = field(default_factory=list)
    _nonces: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def put_order(self, order: dict[str, Any]) -> None:
        with self._lock:
            self.orders[order["id"]] = copy.deepcopy(order)

    def put_product(self, product: dict[str, Any]) -> None:
        with self._lock:
            self.products[product["id"]] = copy.deepcopy(product)

    def _next_failure(self) -> tuple[int, float | None] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None


class WooApp:
    def __init__(self, store: WooStore, https: bool) -> None:
        self.store, self.https = store, https
        p = PREFIX
        self.asgi = Starlette(
            routes=[
                Route(f"{p}/orders", self.list_orders, methods=["GET"]),
                Route(f"{p}/orders/{{id:int}}", self.order, methods=["GET", "PUT"]),
                Route(f"{p}/orders/{{id:int}}/notes", self.order_notes, methods=["GET", "POST"]),
                Route(f"{p}/products/batch", self.batch_products, methods=["POST"]),
                Route(f"{p}/products/{{id:int}}", self.product, methods=["GET", "PUT"]),
                Route(f"{p}/webhooks", self.list_webhooks, methods=["GET"]),
                Route(f"{p}/webhooks/{{id:int}}", self.webhook, methods=["GET", "PUT"]),
            ]
        )

    # -- authentication, as WC_REST_Authentication does it ------------------------------------
    def _authenticate(self, request: Request) -> JSONResponse | None:
        store = self.store
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "auth": None,
        }
        store.requests.append(record)
        failure = store._next_failure()
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return JSONResponse({"code": "busy", "message": "try later"}, status, headers=headers)
        if self.https:
            key, secret = self._basic(request)
            record["auth"] = "basic"
            if (key, secret) != (store.key, store.secret):
                return _error(
                    401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources."
                )
        else:
            record["auth"] = "oauth1"
            refusal = self._check_oauth(request)
            if refusal is not None:
                return refusal
        writing = request.method not in ("GET", "HEAD")
        if writing and store.permission == "read":
            return _error(
                401,
                "woocommerce_rest_authentication_error",
                "The API key provided does not have write permissions.",
            )
        if not writing and store.permission == "write":
            return _error(
                401,
                "woocommerce_rest_authentication_error",
                "The API key provided does not have read permissions.",
            )
        return None

    @staticmethod
    def _basic(request: Request) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            key, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return key, secret
        q = request.query_params
        return q.get("consumer_key", ""), q.get("consumer_secret", "")

    def _check_oauth(self, request: Request) -> JSONResponse | None:
        q = dict(request.query_params)
        if "oauth_consumer_key" not in q:
            # WooCommerce ignores Basic credentials on plain HTTP.
            return _error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if q["oauth_consumer_key"] != self.store.key:
            return _error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        method = q.get("oauth_signature_method", "")
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            return _error(401, "woocommerce_rest_authentication_error", "Invalid signature method.")
        if abs(time.time() - int(q.get("oauth_timestamp", "0"))) > 15 * 60:
            return _error(401, "woocommerce_rest_authentication_error", "Invalid timestamp.")
        params = oauth_signature.collect_parameters(
            uri_query=request.url.query, exclude_oauth_signature=True
        )
        base_uri = oauth_signature.base_string_uri(str(request.url.replace(query="")))
        base = oauth_signature.signature_base_string(
            request.method, base_uri, oauth_signature.normalize_parameters(params)
        )
        sign = (
            oauth_signature.sign_hmac_sha256_with_client
            if method == "HMAC-SHA256"
            else oauth_signature.sign_hmac_sha1_with_client
        )
        client = SimpleNamespace(client_secret=self.store.secret, resource_owner_secret="")
        if sign(base, client) != q.get("oauth_signature"):
            return _error(
                401,
                "woocommerce_rest_authentication_error",
                "Invalid signature - provided signature does not match.",
            )
        nonce = q.get("oauth_nonce", "")
        with self.store._lock:
            if not nonce or nonce in self.store._nonces:
                return _error(
                    401,
                    "woocommerce_rest_authentication_error",
                    "Invalid nonce - nonce has already been used.",
                )
            self.store._nonces.add(nonce)
        return None

    # -- orders -----------------------------------------------------------------------------
    async def list_orders(self, request: Request) -> Response:
        if (refusal := self._authenticate(request)) is not None:
            return refusal
        q = request.query_params
        per_page = int(q.get("per_page", "10"))
        if not 1 <= per_page <= 100:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): per_page")
        page = int(q.get("page", "1"))
        with self.store._lock:
            orders = [copy.deepcopy(o) for o in self.store.orders.values()]
        if "modified_after" in q:
            after = dt.datetime.fromisoformat(q["modified_after"]).replace(microsecond=0)
            if after.tzinfo is None:
                after = after.replace(
                    tzinfo=dt.UTC if q.get("dates_are_gmt") == "true" else SITE_TZ
                )
            orders = [o for o in orders if _gmt(o["date_modified_gmt"]) > after]
        orderby = q.get("orderby", "date")
        sort_field = {"modified": "date_modified_gmt", "date": "date_created_gmt"}.get(orderby)
        orders.sort(key=lambda o: (o[sort_field], o["id"]) if sort_field else (o["id"],))
        if q.get("order", "desc") == "desc":
            orders.reverse()
        total = len(orders)
        pages = max(1, math.ceil(total / per_page)) if total else 0
        chunk = orders[(page - 1) * per_page : page * per_page]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        if page < pages:
            nxt = urlencode(
                {k: v for k, v in q.items() if not k.startswith("oauth_")} | {"page": page + 1}
            )
            headers["Link"] = f'<{request.url.replace(query=nxt)}>; rel="next"'
        return JSONResponse(chunk, headers=headers)

    async def order(self, request: Request) -> Response:
        return await self._single(
            request, self.store.orders, "woocommerce_rest_shop_order_invalid_id"
        )

    async def order_notes(self, request: Request) -> Response:
        if (refusal := self._authenticate(request)) is not None:
            return refusal
        ident = request.path_params["id"]
        store = self.store
        with store._lock:
            if ident not in store.orders:
                return _error(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
        if request.method == "GET":
            kind = request.query_params.get("type", "any")
            with store._lock:
                notes = [
                    copy.deepcopy(n)
                    for n in store.notes.get(ident, [])
                    if kind == "any" or n["customer_note"] == (kind == "customer")
                ]
            return JSONResponse(list(reversed(notes)))  # newest first, as WooCommerce lists
        payload = await request.json()
        if not payload.get("note"):
            return _error(400, "rest_missing_callback_param", "Missing parameter(s): note")
        with store._lock:
            note = _add_note(
                store, ident, str(payload["note"]), bool(payload.get("customer_note", False))
            )
        return JSONResponse(copy.deepcopy(note), 201)

    async def product(self, request: Request) -> Response:
        return await self._single(
            request, self.store.products, "woocommerce_rest_product_invalid_id"
        )

    async def _single(
        self, request: Request, table: dict[int, dict[str, Any]], invalid: str
    ) -> Response:
        if (refusal := self._authenticate(request)) is not None:
            return refusal
        ident = request.path_params["id"]
        with self.store._lock:
            if ident not in table:
                return _error(404, invalid, "Invalid ID.")
            if request.method == "PUT":
                changes = await request.json()
                before = table[ident].get("status")
                _apply(table[ident], changes)
                if table is self.store.orders and before != table[ident].get("status"):
                    _status_changed(self.store, table[ident], str(before))
            return JSONResponse(copy.deepcopy(table[ident]))

    # -- products/batch -----------------------------------------------------------------------
    async def batch_products(self, request: Request) -> Response:
        if (refusal := self._authenticate(request)) is not None:
            return refusal
        payload = await request.json()
        count = sum(len(payload.get(k) or ()) for k in ("create", "update", "delete"))
        if count > self.store.batch_limit:
            return _error(
                413,
                "rest_request_entity_too_large",
                f"Unable to accept more than {self.store.batch_limit} items for this request.",
            )
        result: dict[str, list[dict[str, Any]]] = {}
        products = self.store.products
        with self.store._lock:
            if payload.get("create"):
                result["create"] = [self._create(item) for item in payload["create"]]
            if payload.get("update"):
                result["update"] = []
                for item in payload["update"]:
                    pid = item.get("id")
                    if pid not in products:
                        result["update"].append(
                            _item_error(pid, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                        )
                    else:
                        _apply(products[pid], {k: v for k, v in item.items() if k != "id"})
                        result["update"].append(copy.deepcopy(products[pid]))
            if payload.get("delete"):
                result["delete"] = [
                    copy.deepcopy(products.pop(pid))
                    if pid in products
                    else _item_error(pid, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                    for pid in payload["delete"]
                ]
        return JSONResponse(result)

    def _create(self, item: dict[str, Any]) -> dict[str, Any]:
        products = self.store.products
        if not item.get("name"):
            return _item_error(0, "woocommerce_rest_missing_name", "Missing parameter(s): name")
        if item.get("sku") and any(p.get("sku") == item["sku"] for p in products.values()):
            return _item_error(0, "product_invalid_sku", "Invalid or duplicated SKU.")
        pid = max(products, default=1000) + 1
        now = gmt_now()
        products[pid] = {
            "id": pid,
            "type": "simple",
            "status": "publish",
            "manage_stock": False,
            "stock_quantity": None,
            "stock_status": "instock",
            "price": item.get("regular_price", ""),
            "date_created_gmt": now,
            "date_modified_gmt": now,
            **item,
        }
        return copy.deepcopy(products[pid])

    # -- webhooks -----------------------------------------------------------------------------
    async def list_webhooks(self, request: Request) -> Response:
        if (refusal := self._authenticate(request)) is not None:
            return refusal
        with self.store._lock:
            hooks = [
                copy.deepcopy(h)
                for h in sorted(self.store.webhooks.values(), key=lambda h: h["id"])
            ]
        return JSONResponse(hooks, headers={"X-WP-Total": str(len(hooks)), "X-WP-TotalPages": "1"})

    async def webhook(self, request: Request) -> Response:
        return await self._single(
            request, self.store.webhooks, "woocommerce_rest_webhook_invalid_id"
        )


def _apply(resource: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if key == "meta_data":
            existing = {m["key"]: m for m in resource.setdefault("meta_data", [])}
            for meta in value:
                existing[meta["key"]] = {"id": len(existing) + 1, **meta}
            resource["meta_data"] = list(existing.values())
        else:
            resource[key] = value
    if "date_modified_gmt" in resource:
        resource["date_modified_gmt"] = resource["date_modified"] = gmt_now()


def _add_note(store: WooStore, order_id: int, text: str, customer: bool) -> dict[str, Any]:
    notes = store.notes.setdefault(order_id, [])
    now = gmt_now()
    note = {
        "id": 9000 + sum(len(n) for n in store.notes.values()),
        "author": "WooCommerce" if not customer else "system",
        "date_created": now,
        "date_created_gmt": now,
        "note": text,
        "customer_note": customer,
    }
    notes.append(note)
    return note


def _status_changed(store: WooStore, order: dict[str, Any], before: str) -> None:
    """What WC_Order::status_transition does besides the status: dates and a system note."""
    status, now = order["status"], gmt_now()
    if status in ("processing", "completed") and not order.get("date_paid_gmt"):
        order["date_paid"] = order["date_paid_gmt"] = now
    if status == "completed":
        order["date_completed"] = order["date_completed_gmt"] = now
    _add_note(store, order["id"], f"Order status changed from {before} to {status}.", False)


def _item_error(ident: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": ident, "error": {"code": code, "message": message, "data": {"status": 400}}}


def _gmt(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 / localhost: (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class WooServer:
    """Runs a :class:`WooStore` on uvicorn in a thread; ``url`` is its base address."""

    def __init__(self, store: WooStore | None = None, *, https: bool = False) -> None:
        self.store = store or WooStore()
        self.https = https
        self.ca_file: str | None = None
        self._dir = tempfile.TemporaryDirectory()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        ssl: dict[str, Any] = {}
        if https:
            cert, key = self_signed_certificate(Path(self._dir.name))
            self.ca_file = str(cert)
            ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        config = uvicorn.Config(
            WooApp(self.store, https).asgi, log_level="warning", lifespan="off", **ssl
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> WooServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the WooCommerce test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
        self._dir.cleanup()
