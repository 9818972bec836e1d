"""HTTP targets: the external systems consumers talk to (payment gateway, ERP, warehouse, ...).

One port, :class:`HttpTarget`, with two adapters:

* :class:`HttpTargetClient` — JSON (or form) requests over ``httpx.AsyncClient`` to the URL in
  ``WOOFLEET_<TARGET>_URL``. Every request carries an ``Idempotency-Key`` header. Failures are
  classified here, at the boundary:

  - timeout, connection error, 5xx, 408, 425, 429 → :class:`TransientError` (a 429's or 503's
    ``Retry-After`` becomes ``retry_after``);
  - any other 4xx, or a 3xx (redirects are not followed: a moved API is a configuration
    problem) → :class:`PermanentError` carrying the status and a truncated body, so the
    target's answer lands in the dead letter.

* :class:`JsonlTargetSink` — the dev sink used when no URL is set: it appends what it would
  have sent (method, path, headers with the idempotency key, body) as one JSON line to
  ``var/targets/<target>.jsonl`` and answers 200.

Credentials go in the URL (``https://user:secret@erp.example/api``, sent as HTTP Basic) or in
its query string (``?api_secret=…``, added to every request). Logs show neither, and never a
request or response body: those carry shopper data.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import certifi
import httpx

from consumers.adapters.target_metrics import observe_request
from fleet.errors import PermanentError, TransientError
from fleet.retry_after import parse_retry_after
from fleet.scrub import scrub
from fleet.settings import Settings, target_key

log = logging.getLogger("consumers.http_target")

DEFAULT_TIMEOUT = 10.0
#: How much of a target's error answer travels in the exception (and so in the dead letter).
ANSWER_LIMIT = 500
USER_AGENT = "woofleet/0.1"
#: 4xx answers that mean "not now" rather than "never".
TRANSIENT_4XX = frozenset({408, 425, 429})
#: Refused credentials: never one order's fault, and fixed by a person, not by the data. They
#: retry (and feed the breaker) until the credential is fixed, instead of dead-lettering.
AUTH_REFUSED = frozenset({401, 403})


@dataclass(frozen=True)
class TargetResponse:
    """A target's answer: status and the body parsed as JSON (None when empty or not JSON)."""

    status: int
    body: Any = None


class HttpTarget(Protocol):
    """The port every HTTP-target consumer talks through."""

    name: str

    async def send(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> TargetResponse:
        """Send one request; ``accept`` lists error statuses to return instead of raising."""
        ...

    async def aclose(self) -> None: ...


def safe_url(url: str) -> str:
    """The URL without user info or query string: what logs and error messages may show."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, _netloc(parts), parts.path, "", ""))


def _netloc(parts: SplitResult) -> str:
    """Host and port without user info (IPv6 hosts keep their brackets)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds; every client can share one context.
    return ssl.create_default_context(cafile=certifi.where())


def _answer(response: httpx.Response) -> str:
    # Scrubbed whole before it is cut: a value the cut falls in would lose what marks it as
    # a value (its closing quote) and keep part of itself.
    text = scrub(response.text.strip().replace("\n", " "))
    if len(text) > ANSWER_LIMIT:
        text = text[:ANSWER_LIMIT] + "…"
    return text or "(empty body)"


def _parse_body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _transient_outcome(exc: TransientError) -> str:
    """``timeout``, ``unreachable`` (no answer) or ``transient`` (a 5xx, 408, 425 or 429)."""
    if isinstance(exc.__cause__, httpx.TimeoutException):
        return "timeout"
    return "unreachable" if exc.__cause__ is not None else "transient"


class HttpTargetClient:
    """An :class:`HttpTarget` over HTTP(S) with the error classification above."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        parts = urlsplit(url)
        auth = None
        if parts.username is not None:
            # Percent-encoded in the URL (a secret may hold "@" or ":"); sent decoded.
            auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
        base = urlunsplit((parts.scheme, _netloc(parts), parts.path.rstrip("/"), "", ""))
        self.display_url = base
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=base,
            auth=auth,
            params=httpx.QueryParams(parts.query),
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            verify=_tls_context(),
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> TargetResponse:
        where = f"{self.name} {method} {path}"
        started = time.monotonic()
        outcome = "error"
        try:
            answer = await self._request(method, path, where, idempotency_key, json, form, accept)
            outcome = "ok"
            return answer
        except TransientError as exc:
            outcome = _transient_outcome(exc)
            raise
        except PermanentError:
            outcome = "rejected"
            raise
        finally:
            observe_request(self.name, outcome, time.monotonic() - started)

    async def _request(
        self,
        method: str,
        path: str,
        where: str,
        idempotency_key: str,
        json: Any,
        form: Mapping[str, str] | None,
        accept: Collection[int],
    ) -> TargetResponse:
        started = time.monotonic()
        try:
            response = await self._client.request(
                method,
                path.lstrip("/"),
                json=json,
                data=form,
                headers={"Idempotency-Key": idempotency_key},
            )
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"{where}: no answer within {self.timeout:g}s ({type(exc).__name__}); "
                f"will retry — check that {self.display_url} is up"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(
                f"{where}: cannot reach {self.display_url} ({type(exc).__name__}: {exc}); "
                "will retry"
            ) from exc
        elapsed = time.monotonic() - started
        status = response.status_code
        log.debug("%s → %d in %.0f ms", where, status, elapsed * 1000)
        if status < 300 or status in accept:
            return TargetResponse(status, _parse_body(response))
        if status in AUTH_REFUSED:
            raise TransientError(
                f"{where} refused woofleet's credentials ({status}): {_answer(response)}; "
                f"check the credential configured for {self.display_url}; will retry"
            )
        if status >= 500 or status in TRANSIENT_4XX:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            hint = f", Retry-After {retry_after:g}s" if retry_after is not None else ""
            raise TransientError(
                f"{where} answered {status}{hint}: {_answer(response)}; will retry",
                retry_after=retry_after,
            )
        raise PermanentError(
            f"{where} answered {status}: {_answer(response)} — retrying cannot fix this; "
            "fix the data or the target, then replay from the dead-letter queue"
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class JsonlTargetSink:
    """Dev sink: records each request it would have sent as a JSON line; nothing leaves the host."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._lock = asyncio.Lock()

    async def send(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> TargetResponse:
        record = {
            "at": datetime.now(UTC).isoformat(),
            "target": self.name,
            "method": method,
            "path": path,
            "headers": {"Idempotency-Key": idempotency_key},
            "body": dict(form) if form is not None else json,
        }
        line = _json_line(record)
        async with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line)
        return TargetResponse(200, None)

    async def aclose(self) -> None:
        return None


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def target_from_settings(
    settings: Settings, name: str, *, timeout: float = DEFAULT_TIMEOUT
) -> HttpTarget:
    """The real client when ``WOOFLEET_<NAME>_URL`` is set, else the dev sink; logs which."""
    key = target_key(name)
    url = settings.target_url(key)
    if url:
        client = HttpTargetClient(key, url, timeout=timeout)
        log.info("target %s: HTTP at %s (timeout %gs)", key, client.display_url, timeout)
        return client
    path = settings.var_dir / "targets" / f"{key}.jsonl"
    log.info(
        "target %s: no WOOFLEET_%s_URL set; recording requests to %s (dev sink)",
        key,
        key.upper(),
        path,
    )
    return JsonlTargetSink(key, path)
