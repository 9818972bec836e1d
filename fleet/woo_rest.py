"""WooCommerce REST v3 client (httpx, async), shared by the publisher and the catalog consumer.

Authentication follows what WooCommerce accepts: HTTP Basic with the consumer key and secret
over HTTPS; over plain HTTP WooCommerce refuses Basic and wants OAuth 1.0a one-legged request
signing (RFC 5849 through oauthlib, HMAC-SHA256 or HMAC-SHA1, parameters in the query
string). 429 and 5xx answers are retried with backoff; 401/403 become
a :class:`~fleet.errors.PermanentError` that names the permission the key lacks.

Errors: :class:`~fleet.errors.TransientError` (may work later: timeouts, refused connections,
429/5xx after the retries), :class:`~fleet.errors.PermanentError` (will not: 4xx).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
import oauthlib.oauth1

from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.retry_after import parse_retry_after
from fleet.settings import Settings

log = logging.getLogger(__name__)

API_PREFIX = "/wp-json/wc/v3"
#: WooCommerce's batch endpoints take at most this many create+update+delete items a call.
BATCH_LIMIT = 100
#: WooCommerce's ``per_page`` maximum.
PAGE_LIMIT = 100

Permission = Literal["read", "write"]
SignatureMethod = Literal["HMAC-SHA256", "HMAC-SHA1"]


def oauth1_signed_url(
    method: str,
    url: str,
    params: Mapping[str, str],
    consumer_key: str,
    consumer_secret: str,
    *,
    signature_method: SignatureMethod = "HMAC-SHA256",
) -> str:
    """``url`` with ``params`` plus the one-legged OAuth 1.0a parameters and signature
    WooCommerce checks (RFC 5849, signed by oauthlib, everything in the query string)."""
    client = oauthlib.oauth1.Client(
        consumer_key,
        client_secret=consumer_secret,
        signature_method=signature_method,
        signature_type=oauthlib.oauth1.SIGNATURE_TYPE_QUERY,
    )
    query = urlencode(params, quote_via=quote)
    signed, _headers, _body = client.sign(f"{url}?{query}" if query else url, http_method=method)
    return str(signed)


def _flat_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            flat[key] = "true" if value else "false"
        elif value is not None:
            flat[key] = str(value)
    return flat


class WooRest:
    """An async client for ``{store}/wp-json/wc/v3``."""

    def __init__(
        self,
        store_url: str,
        consumer_key: str,
        consumer_secret: str,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        verify: bool | str | ssl.SSLContext = True,
        signature_method: SignatureMethod = "HMAC-SHA256",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not store_url:
            raise ConfigError(
                "WOOFLEET_WOO_URL is not set (the store's address, e.g. https://shop.example)"
            )
        if not consumer_key or not consumer_secret:
            raise ConfigError(
                "WOOFLEET_WOO_KEY and WOOFLEET_WOO_SECRET must be set (WooCommerce > Settings > "
                "Advanced > REST API: a key with read or read_write permission)"
            )
        self.store_url = store_url.rstrip("/")
        self._key, self._secret = consumer_key, consumer_secret
        self._https = urlsplit(self.store_url).scheme == "https"
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._signature_method: SignatureMethod = signature_method
        if isinstance(verify, str):  # a CA bundle file (e.g. a store's self-signed certificate)
            verify = ssl.create_default_context(cafile=verify)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            verify=verify,
            transport=transport,
            auth=httpx.BasicAuth(consumer_key, consumer_secret) if self._https else None,
            headers={"User-Agent": "woofleet", "Accept": "application/json"},
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> WooRest:
        return cls(
            settings.woo_url,
            settings.woo_key.get_secret_value(),
            settings.woo_secret.get_secret_value(),
            **kwargs,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> WooRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        return f"{self.store_url}{API_PREFIX}/{path.lstrip('/')}"

    # -- requests ----------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """One call, retried on 429/5xx and transport errors; raises unless 2xx."""
        url = self.url(path)
        permission: Permission = "read" if method.upper() in ("GET", "HEAD") else "write"
        for attempt in range(1, self._attempts + 1):
            query: dict[str, str] | None = _flat_params(params)
            target = url
            if not self._https:
                target = oauth1_signed_url(
                    method,
                    url,
                    query or {},
                    self._key,
                    self._secret,
                    signature_method=self._signature_method,
                )
                query = None  # in the signed URL
            try:
                response = await self._client.request(method, target, params=query, json=json)
            except httpx.TransportError as exc:
                if attempt == self._attempts:
                    raise TransientError(
                        f"WooCommerce at {self.store_url} did not answer {method} {path} "
                        f"({type(exc).__name__}); is the store up?"
                    ) from None
                await self._sleep(attempt, None)
                continue
            if response.status_code < 300:
                return response
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if attempt == self._attempts:
                    raise TransientError(
                        f"WooCommerce answered {response.status_code} to {method} {path} "
                        f"{self._attempts} times; try again later",
                        retry_after=retry_after,
                    )
                log.info(
                    "woocommerce: %s %s answered %d, retrying (attempt %d of %d)",
                    method,
                    path,
                    response.status_code,
                    attempt,
                    self._attempts,
                )
                await self._sleep(attempt, retry_after)
                continue
            raise self._refusal(method, path, response, permission)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _sleep(self, attempt: int, retry_after: float | None) -> None:
        delay = self._backoff * 2 ** (attempt - 1) * (0.5 + random.random())
        await asyncio.sleep(min(retry_after if retry_after is not None else delay, 60.0))

    def _refusal(
        self, method: str, path: str, response: httpx.Response, permission: Permission
    ) -> PermanentError:
        code = _error_code(response)
        if response.status_code in (401, 403):
            needed = "read" if permission == "read" else "read_write (or write)"
            how = (
                "HTTP Basic over HTTPS"
                if self._https
                else "OAuth 1.0a signatures over plain HTTP (check the server clock: ±15 min)"
            )
            return PermanentError(
                f"WooCommerce refused {method} {path} with {response.status_code} ({code}): the "
                f"API key needs {needed} permission and must be active. Authentication used: "
                f"{how}. Check WOOFLEET_WOO_KEY/WOOFLEET_WOO_SECRET in WooCommerce > Settings > "
                "Advanced > REST API."
            )
        return PermanentError(
            f"WooCommerce refused {method} {path} with {response.status_code} ({code})"
        )

    async def get(self, path: str, **params: Any) -> Any:
        return (await self.request("GET", path, params=params)).json()

    async def put(self, path: str, payload: Any) -> Any:
        return (await self.request("PUT", path, json=payload)).json()

    async def post(self, path: str, payload: Any) -> Any:
        return (await self.request("POST", path, json=payload)).json()

    async def batch_products(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /products/batch`` (create/update/delete, at most 100 items together).

        The batch is not atomic: each item of the answer carries either the product or an
        ``error`` object; callers must look at every item.
        """
        count = sum(len(payload.get(k) or ()) for k in ("create", "update", "delete"))
        if count > BATCH_LIMIT:
            raise PermanentError(f"a products batch holds at most {BATCH_LIMIT} items, not {count}")
        result: dict[str, Any] = await self.post("products/batch", dict(payload))
        return result

    async def orders_modified_after(
        self, modified_after: str, *, per_page: int = PAGE_LIMIT
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of orders modified strictly after ``modified_after`` (UTC), oldest first."""
        params: dict[str, Any] = {
            "modified_after": modified_after,
            "dates_are_gmt": True,
            "orderby": "modified",
            "order": "asc",
            "per_page": per_page,
        }
        page, pages = 1, 1
        while page <= pages:
            response = await self.request("GET", "orders", params={**params, "page": page})
            pages = int(response.headers.get("x-wp-totalpages") or 1)
            orders = response.json()
            if not isinstance(orders, list):
                raise PermanentError("GET /orders did not answer a JSON list")
            yield orders
            page += 1

    async def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook of the store (all pages)."""
        found: list[dict[str, Any]] = []
        page, pages = 1, 1
        while page <= pages:
            response = await self.request(
                "GET", "webhooks", params={"per_page": PAGE_LIMIT, "page": page}
            )
            pages = int(response.headers.get("x-wp-totalpages") or 1)
            found.extend(response.json())
            page += 1
        return found


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no JSON body"
    if isinstance(body, dict):
        return str(body.get("code") or "no error code")
    return "no error code"
