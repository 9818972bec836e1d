"""The mail port: one ``Mailer`` protocol, SMTP and Amazon SES adapters, and a file dev sink.

``WOOFLEET_SMTP_URL`` chooses the adapter:

- ``smtp://user:pass@host:587`` — STARTTLS is required (the connection fails without it)
- ``smtps://user:pass@host:465`` — implicit TLS
- ``smtp+insecure://127.0.0.1:1025`` — plain text, for a relay on loopback or in the pod
- ``ses://eu-west-1`` — Amazon SES (sesv2), credentials from the usual AWS chain;
  ``?endpoint_url=http://…`` points it at an SES-compatible endpoint
- unset — :class:`FileMailSink` writes ``.eml`` files under ``<var_dir>/mail``

``smtp`` and ``smtps`` accept ``?cafile=PATH`` for a private CA and ``?timeout=SECONDS``.
Failures become :class:`~fleet.errors.TransientError` (refused, timeouts, 4xx replies, throttling)
or :class:`~fleet.errors.PermanentError` (5xx replies such as an unknown recipient). Addresses are
masked in those messages: they end up in logs and dead-letter headers.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import os
import re
import ssl
import time
import uuid
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.settings import Settings, redact_url

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"[^\s<>\"'@]+@[^\s<>\"'@]+")


def mask_addresses(text: str) -> str:
    """Server replies often quote the recipient: keep shopper addresses out of logs and headers."""
    return _ADDRESS.sub("<address>", text)


class Mailer(Protocol):
    """Sends one fully built message; raises TransientError or PermanentError when it cannot."""

    #: What this mailer is, for log lines ("smtp://mail.example.com:587"): no secrets.
    description: str

    async def send(self, message: EmailMessage) -> None: ...

    async def aclose(self) -> None: ...


def recipients_of(message: EmailMessage) -> list[str]:
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return [addr for _, addr in getaddresses(fields) if addr]


def _reply_error(code: int, text: str, what: str) -> TransientError | PermanentError:
    answer = f"{what}: SMTP {code} {mask_addresses(text.strip())}"
    if 400 <= code < 500:
        return TransientError(f"{answer}; the server asks to try again later")
    return PermanentError(f"{answer}; fix the message or the address, then replay it")


def _transient(exc: BaseException, what: str) -> TransientError:
    # Refused, reset, TLS handshake and timeouts: the server may well be back later.
    reason = mask_addresses(str(exc)) or type(exc).__name__
    return TransientError(f"{what}: {reason}")


class SmtpMailer:
    """SMTP through aiosmtplib: one connection per message, so no state survives a failure."""

    def __init__(
        self,
        hostname: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: str = "starttls",
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 20.0,
    ) -> None:
        if tls not in ("starttls", "implicit", "none"):
            raise ValueError(f"tls must be starttls, implicit or none, not {tls!r}")
        self.hostname, self.port = hostname, port
        self.username, self.password = username, password
        self.tls, self.tls_context, self.timeout = tls, tls_context, timeout
        scheme = {"starttls": "smtp", "implicit": "smtps", "none": "smtp+insecure"}[tls]
        self.description = f"{scheme}://{hostname}:{port}"

    @classmethod
    def from_url(cls, url: str, *, tls_context: ssl.SSLContext | None = None) -> SmtpMailer:
        parts = urlsplit(url)
        tls = {"smtp": "starttls", "smtps": "implicit", "smtp+insecure": "none"}.get(parts.scheme)
        if tls is None or not parts.hostname:
            raise ConfigError(
                f"WOOFLEET_SMTP_URL {redact_url(url)!r} is not smtp://, smtps://, "
                "smtp+insecure:// or ses:// with a host"
            )
        query = parse_qs(parts.query)
        if tls_context is None and "cafile" in query:
            tls_context = ssl.create_default_context(cafile=query["cafile"][0])
        return cls(
            parts.hostname,
            parts.port or {"starttls": 587, "implicit": 465, "none": 25}[tls],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            tls_context=tls_context,
            timeout=float(query.get("timeout", ["20"])[0]),
        )

    async def send(self, message: EmailMessage) -> None:
        what = f"sending through {self.description}"
        try:
            await aiosmtplib.send(
                message,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.tls == "implicit",
                start_tls=self.tls == "starttls",
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.code < 500:
                raise _reply_error(exc.code, exc.message, what) from exc
            raise PermanentError(
                f"{what}: login refused (SMTP {exc.code}); check the user and password in "
                "WOOFLEET_SMTP_URL, then replay the dead letters"
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            worst = max(exc.recipients, key=lambda r: r.code)
            raise _reply_error(worst.code, worst.message, what) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_error(exc.code, exc.message, what) from exc
        except aiosmtplib.SMTPException as exc:
            if not isinstance(exc, aiosmtplib.SMTPNotSupported) and "not supported" not in str(exc):
                raise _transient(exc, what) from exc
            # The server lacks STARTTLS or AUTH: sending in clear text or without a login instead
            # would leak the password and the shopper's mail, so this waits for the operator.
            raise PermanentError(
                f"{what}: {exc}; check the scheme, port and login of WOOFLEET_SMTP_URL against "
                "what the server offers (smtp+insecure:// only for a relay on loopback)"
            ) from exc
        except (TimeoutError, OSError) as exc:
            raise _transient(exc, what) from exc

    async def aclose(self) -> None:
        return None


_SES_TRANSIENT = {
    "TooManyRequestsException",
    "LimitExceededException",
    "Throttling",
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
}


class SesMailer:
    """Amazon SES v2 ``SendEmail`` with the raw MIME message; boto3 runs in a worker thread."""

    def __init__(
        self, region: str | None = None, *, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        import boto3
        from botocore.config import Config

        # Few boto retries: the runtime's retry tiers are the place for waiting.
        self._client: SESV2Client = client or boto3.client(
            "sesv2",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=20),
        )
        self.description = f"ses://{self._client.meta.region_name}" + (
            f" at {endpoint_url}" if endpoint_url else ""
        )

    async def send(self, message: EmailMessage) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        raw = message.as_bytes(policy=email.policy.SMTP)
        sender = message["Sender"] or message["From"]
        sender_addr = getaddresses([str(sender)])[0][1]
        try:
            await asyncio.to_thread(
                self._client.send_email,
                FromEmailAddress=sender_addr,
                Destination={"ToAddresses": recipients_of(message)},
                Content={"Raw": {"Data": raw}},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            text = mask_addresses(exc.response.get("Error", {}).get("Message", ""))
            answer = f"SES SendEmail: {code} {text}".strip()
            if code in _SES_TRANSIENT or code.endswith("Throttling"):
                raise TransientError(answer) from exc
            raise PermanentError(
                f"{answer}; fix the message or the SES setup, then replay it"
            ) from exc
        except NoCredentialsError as exc:
            raise PermanentError(
                f"SES SendEmail: {exc}; give the consumer AWS credentials"
            ) from exc
        except BotoCoreError as exc:
            raise TransientError(f"SES SendEmail: {exc}") from exc

    async def aclose(self) -> None:
        self._client.close()


class FileMailSink:
    """Dev sink: writes each message as an ``.eml`` file instead of sending it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"FileMailSink({directory})"

    async def send(self, message: EmailMessage) -> None:
        # One file per send, duplicates included: the sink shows what a real server would get.
        raw = message.as_bytes(policy=email.policy.SMTP)
        path = await asyncio.to_thread(self._write, raw)
        log.info("dev sink: wrote %s", path)

    def _write(self, raw: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        path = self.directory / f"{name}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(raw)
        os.replace(tmp, path)  # readers never see half a message
        return path

    async def aclose(self) -> None:
        return None


def mailer_from_settings(settings: Settings) -> Mailer:
    """The configured mailer (SMTP or SES), else the dev sink under ``<var_dir>/mail``."""
    url = settings.smtp_url.get_secret_value() if settings.smtp_url else ""
    mailer: Mailer
    if not url:
        mailer = FileMailSink(settings.var_dir / "mail")
    elif url.startswith("ses:"):
        parts = urlsplit(url)
        endpoint = parse_qs(parts.query).get("endpoint_url", [None])[0]
        mailer = SesMailer(parts.hostname or None, endpoint_url=endpoint)
    else:
        mailer = SmtpMailer.from_url(url)
    log.info("mail goes through %s", mailer.description)
    return mailer
