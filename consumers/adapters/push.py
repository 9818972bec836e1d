"""Push notifications to the shop's mobile app: Firebase Cloud Messaging HTTP v1, or a dev sink.

One port, :class:`PushSender` (``send(message) -> PushResult``, ``aclose()``), two adapters chosen
by :func:`push_from_settings`:

* :class:`FcmClient` — ``POST {WOOFLEET_FCM_URL}/v1/projects/<project>/messages:send`` with an
  OAuth 2.0 access token that :class:`AccessTokens` mints from the service-account key
  (JWT-bearer grant, RS256) and caches until shortly before it expires. FCM's errors are
  classified as FCM documents them (its ``FcmError.errorCode``, else the HTTP status):

  - ``UNREGISTERED`` → :attr:`PushResult.UNREGISTERED`: the token is gone for good; the caller
    drops it, nothing is retried;
  - ``QUOTA_EXCEEDED``, ``UNAVAILABLE``, ``INTERNAL`` (and a timeout, a refused connection, any
    429/5xx) → :class:`TransientError`, ``retry_after`` from ``Retry-After`` (FCM asks for at
    least a minute after ``QUOTA_EXCEEDED``);
  - ``INVALID_ARGUMENT``, ``SENDER_ID_MISMATCH``, ``THIRD_PARTY_AUTH_ERROR`` (and any other 4xx)
    → :class:`PermanentError` with FCM's message.

* :class:`FilePushSink` — the dev sink used when ``WOOFLEET_FCM_CREDENTIALS_FILE`` is unset: one
  JSON line per message it would have sent, in ``<var_dir>/push/fcm.jsonl``.

Neither the key, an access token nor a whole device token ever reaches a log line.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt

from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.retry_after import parse_retry_after
from fleet.settings import Settings

log = logging.getLogger("consumers.push")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: An access token is renewed this many seconds before it expires, so none expires in flight.
REFRESH_MARGIN = 300.0
#: Lifetime asked of an assertion; Google accepts at most an hour.
ASSERTION_LIFETIME = 3600
TIMEOUT = 10.0
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
TRANSIENT_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})
#: FCM: after QUOTA_EXCEEDED without Retry-After, wait at least a minute.
QUOTA_BACKOFF = 60.0


class PushResult(enum.Enum):
    SENT = "sent"
    #: The device token is no longer registered: drop it, never retry it.
    UNREGISTERED = "unregistered"


class PushSender(Protocol):
    async def send(self, message: dict[str, Any]) -> PushResult:
        """Send one FCM ``message`` (with ``token`` or ``topic``) or raise a HandlerError."""

    async def aclose(self) -> None: ...


def short(address: str) -> str:
    """A device token shortened for logs: enough to recognise, too little to use."""
    return address if len(address) <= 12 else f"{address[:8]}…"


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a Google service-account JSON key that the JWT-bearer grant needs."""

    project_id: str
    client_email: str
    token_uri: str
    private_key_id: str
    private_key: str = field(repr=False)

    @classmethod
    def from_file(cls, path: Path) -> ServiceAccount:
        where = f"WOOFLEET_FCM_CREDENTIALS_FILE={path}"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read ({exc.strerror}); mount the key") from None
        except ValueError:
            raise ConfigError(f"{where} is not JSON: expected a service-account key") from None
        wanted = ("project_id", "client_email", "private_key", "token_uri")
        missing = [k for k in wanted if not isinstance(raw, dict) or not raw.get(k)]
        if missing or raw.get("type") != "service_account":
            raise ConfigError(
                f"{where} is not a service-account key (lacks {', '.join(missing) or 'type'}); "
                "download one from the Firebase console: Project settings > Service accounts"
            )
        return cls(
            project_id=raw["project_id"],
            client_email=raw["client_email"],
            token_uri=raw["token_uri"],
            private_key_id=raw.get("private_key_id", ""),
            private_key=raw["private_key"],
        )


class AccessTokens:
    """OAuth 2.0 access tokens for FCM, minted by the JWT-bearer grant and cached until near
    expiry; concurrent callers share one request."""

    def __init__(
        self,
        account: ServiceAccount,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account, self._client, self._clock = account, client, clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def assertion(self) -> str:
        """The signed JWT that asks the token endpoint for an FCM-scoped access token."""
        now = int(self._clock())
        claims = {
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        headers = {"kid": self.account.private_key_id} if self.account.private_key_id else None
        return jwt.encode(claims, self.account.private_key, algorithm="RS256", headers=headers)

    async def get(self) -> str:
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._token, lifetime = await self._mint()
                self._renew_at = self._clock() + max(lifetime - REFRESH_MARGIN, lifetime / 2)
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (FCM refused it): the next :meth:`get` mints a new one."""
        self._token = None

    async def _mint(self) -> tuple[str, float]:
        try:
            response = await self._client.post(
                self.account.token_uri,
                data={"grant_type": JWT_BEARER, "assertion": self.assertion()},
            )
        except httpx.HTTPError as exc:
            raise TransientError(
                f"OAuth token endpoint unreachable: {type(exc).__name__}"
            ) from None
        body = _json(response)
        if response.is_success and isinstance(body.get("access_token"), str):
            return body["access_token"], float(body.get("expires_in", 3600))
        reason = f"{body.get('error', response.status_code)}: {body.get('error_description', '')}"
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise TransientError(
                f"OAuth token endpoint answered {response.status_code} ({reason.strip()})",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        raise PermanentError(
            f"OAuth token endpoint refused the service-account key ({reason.strip()}); "
            "check WOOFLEET_FCM_CREDENTIALS_FILE and that the key is not revoked"
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def fcm_error(body: dict[str, Any]) -> tuple[str, str]:
    """FCM's error code (its FcmError detail, else the google.rpc status) and message."""
    error = body.get("error")
    if not isinstance(error, dict):
        return "", ""
    code = str(error.get("status", ""))
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR_TYPE:
            code = str(detail.get("errorCode") or code)
    return code, str(error.get("message", ""))


def classify(response: httpx.Response) -> PushResult:
    """FCM's answer as a result, or the HandlerError it means (see the module docstring)."""
    if response.is_success:
        return PushResult.SENT
    code, message = fcm_error(_json(response))
    if code == "UNREGISTERED":
        return PushResult.UNREGISTERED
    status = response.status_code
    what = f"FCM answered {status} {code or '(no error code)'}: {message or '(no message)'}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if code == "QUOTA_EXCEEDED" and retry_after is None:
        retry_after = QUOTA_BACKOFF
    if code in TRANSIENT_CODES or status in (408, 429) or status >= 500:
        raise TransientError(what, retry_after=retry_after)
    raise PermanentError(what)


class FcmClient:
    """:class:`PushSender` over FCM HTTP v1 with the classification above."""

    def __init__(
        self,
        account: ServiceAccount,
        *,
        base_url: str = "https://fcm.googleapis.com",
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.tokens = AccessTokens(account, self._client, clock=clock)
        self.endpoint = f"{base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"

    async def send(self, message: dict[str, Any]) -> PushResult:
        response = await self._post(message)
        if response.status_code == 401 and fcm_error(_json(response))[0] == "UNAUTHENTICATED":
            # The cached token was revoked or expired early: one more try with a fresh one.
            self.tokens.invalidate()
            response = await self._post(message)
        return classify(response)

    async def _post(self, message: dict[str, Any]) -> httpx.Response:
        token = await self.tokens.get()
        try:
            return await self._client.post(
                self.endpoint,
                json={"message": message},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.TimeoutException:
            raise TransientError("FCM did not answer in time") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"FCM unreachable: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


class FilePushSink:
    """The dev sink: appends each message it would have sent to ``<var_dir>/push/fcm.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, message: dict[str, Any]) -> PushResult:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"message": message}, sort_keys=True) + "\n")
        return PushResult.SENT

    async def aclose(self) -> None:
        return None


def push_from_settings(settings: Settings) -> PushSender:
    """FCM when ``WOOFLEET_FCM_CREDENTIALS_FILE`` is set, else the dev sink; logs which."""
    if settings.fcm_credentials_file is None:
        sink = FilePushSink(settings.var_dir / "push" / "fcm.jsonl")
        log.info("push: no WOOFLEET_FCM_CREDENTIALS_FILE; recording pushes to %s", sink.path)
        return sink
    account = ServiceAccount.from_file(settings.fcm_credentials_file)
    client = FcmClient(account, base_url=settings.fcm_url)
    log.info("push: FCM HTTP v1 for project %s as %s", account.project_id, account.client_email)
    return client
