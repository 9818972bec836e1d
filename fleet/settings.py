"""Settings, read once from the environment (prefix ``WOOFLEET_``) and passed down."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import AnyUrl, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from contracts.messages import MAX_PRIORITY
from topology.fleet import BREAKER_ALERT_SECONDS, DEFAULT_DLQ_ALERT_THRESHOLD, OUTBOX_ALERT_SECONDS

MIB = 1024 * 1024
#: A list given as comma-separated words in its variable (``a,b``), not as JSON.
CommaList = Annotated[list[str], NoDecode]
#: A mapping given as ``KEY=value`` pairs separated by commas (``THB=15000,JPY=75000``).
CommaMapping = Annotated[dict[str, Decimal], NoDecode]


class Settings(BaseSettings):
    """Every ``WOOFLEET_*`` variable of docs/architecture.md, with the embedded defaults."""

    model_config = SettingsConfigDict(env_prefix="WOOFLEET_", extra="ignore")

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    management_url: SecretStr = SecretStr("http://guest:guest@localhost:15672")
    #: AMQPS: CA bundle and client certificate files for ``amqps://`` URLs.
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None

    #: One secret, or several separated by commas while a secret is being rotated.
    webhook_secret: SecretStr = SecretStr("")
    woo_url: str = ""
    woo_key: SecretStr = SecretStr("")
    woo_secret: SecretStr = SecretStr("")

    state_url: str = "sqlite:///var/woofleet.db"
    invoice_store: str = "file://var/invoices"
    s3_endpoint_url: str | None = None
    smtp_url: SecretStr | None = None
    mail_from: str = "shop@localhost"
    admin_email: str = ""
    var_dir: Path = Path("var")

    #: Payment methods whose orders are only authorised at checkout and captured by woofleet
    #: (comma-separated gateway ids, e.g. ``stripe,stripe_cc``); order meta can also mark it.
    payment_capture_methods: CommaList = Field(default_factory=list)
    #: Loyalty points per whole unit of an order's total.
    loyalty_points_per_unit: Decimal = Decimal("1")

    #: push-notify: the Firebase service-account JSON key (from a Secret); unset = dev sink.
    fcm_credentials_file: Path | None = None
    #: Device registration tokens of the shop's app (comma-separated): one push each.
    fcm_tokens: CommaList = Field(default_factory=list)
    #: An FCM topic the shop's app subscribes to (one push to it), instead of or besides tokens.
    fcm_topic: str = ""
    #: The FCM HTTP v1 API; the project id comes from the key file.
    fcm_url: str = "https://fcm.googleapis.com"

    #: shipping-label: the rate chosen among the carrier's offers (its service level token).
    shipping_service_level: str = "standard"
    #: The address parcels leave from, as the carrier API takes it (JSON object of strings).
    shipping_from: dict[str, str] = Field(default_factory=dict)
    #: The parcel every order ships in (JSON: length, width, height, distance_unit, weight,
    #: mass_unit), until orders carry their own dimensions.
    shipping_parcel: dict[str, str] = Field(
        default_factory=lambda: {
            "length": "30",
            "width": "20",
            "height": "10",
            "distance_unit": "cm",
            "weight": "1",
            "mass_unit": "kg",
        }
    )
    #: The secret the carrier signs tracking webhooks with (HMAC-SHA256 over the body).
    carrier_webhook_secret: SecretStr = SecretStr("")
    #: Mark the order completed in WooCommerce when the carrier reports it delivered.
    shipping_complete_on_delivery: bool = True

    #: The invoice seller block (TOML: name, address, tax_id, email, prefixes); default
    #: ``<var_dir>/seller.toml``. In Kubernetes, mount it from a ConfigMap.
    seller_file: Path | None = None

    #: HTTP targets by normalised name (``erp_sync``), from ``WOOFLEET_<TARGET>_URL`` (see
    #: :class:`_TargetUrls`).
    targets: dict[str, str] = Field(default_factory=dict)

    # -- the ingress (webhook, relay, reconciler) ---------------------------------------------
    #: Largest webhook body accepted (413 above it); WooCommerce orders are a few KiB.
    webhook_max_body_bytes: int = Field(MIB, gt=0)
    #: Largest request head (request line and headers) accepted: 431 above it.
    webhook_max_header_bytes: int = Field(16 * 1024, gt=0)
    #: Seconds a client may take to send its request head (408 after), and then its body.
    webhook_head_seconds: float = Field(10.0, gt=0)
    webhook_body_seconds: float = Field(30.0, gt=0)
    #: Open connections at most; past it, the one that has waited longest for its head goes.
    webhook_max_connections: int = Field(4096, gt=0)
    #: How long a delivery waits for the broker's confirms before answering from the outbox.
    #: 0 (default): answer as soon as the events are committed to the outbox (in order, relayed
    #: from there; on SQLite fsync'd within a second, see publisher.store_sqlite); a delivery
    #: is then never slower than that commit.
    webhook_confirm_wait_seconds: float = Field(0.0, ge=0)
    #: The address WooCommerce delivers to (e.g. https://hooks.shop.example/webhooks/woocommerce),
    #: for the webhook health check; empty: any address ending in /webhooks/woocommerce.
    webhook_endpoint: str = ""
    #: Longest pause between the relay's attempts to reach an absent broker.
    outbox_retry_max_seconds: float = Field(10.0, gt=0)

    priority_default: int = Field(0, ge=0, le=MAX_PRIORITY)
    #: Comma-separated words; a shipping method title containing one makes the order express.
    priority_express_keywords: CommaList = Field(default_factory=lambda: ["express"])
    priority_express: int = Field(4, ge=0, le=MAX_PRIORITY)
    priority_vip_meta_key: str = "_vip_customer"
    priority_vip: int = Field(MAX_PRIORITY, ge=0, le=MAX_PRIORITY)
    priority_high_total: Decimal = Decimal("500")
    #: Per-currency thresholds, e.g. ``THB=15000,JPY=75000``; others use priority_high_total.
    priority_high_total_by_currency: CommaMapping = Field(default_factory=dict)
    priority_high_total_level: int = Field(3, ge=0, le=MAX_PRIORITY)

    #: The reconciler asks for orders modified after (cursor - overlap): same-second changes
    #: and late commits are not lost; what was already handled emits nothing.
    reconcile_overlap_seconds: float = Field(120.0, ge=0)

    #: ``woofleet alerts``: a Slack incoming webhook, and/or any URL that takes a JSON POST.
    slack_webhook_url: SecretStr | None = None
    alert_webhook_url: SecretStr | None = None
    #: The /metrics endpoints ``woofleet alerts`` reads (consumers and webhooks), separated by
    #: commas: ``http://crm:9100/metrics,http://webhook:8080/metrics``.
    metrics_urls: CommaList = Field(default_factory=list)
    #: Dead letters per consumer above which someone is told; JSON overrides per consumer,
    #: e.g. ``{"analytics": 100}``.
    alert_dlq_threshold: int = Field(DEFAULT_DLQ_ALERT_THRESHOLD, ge=0)
    alert_dlq_thresholds: dict[str, int] = Field(default_factory=dict)
    #: Seconds a breaker may stay open, or the outbox keep events, before it is an alert.
    alert_breaker_open_seconds: float = Field(BREAKER_ALERT_SECONDS, ge=0)
    alert_outbox_seconds: float = Field(OUTBOX_ALERT_SECONDS, ge=0)
    #: Seconds a fired alert must stay unseen before it resolves: a condition hovering at its
    #: threshold gives one firing and one resolved message, not a pair every evaluation.
    alert_resolve_seconds: float = Field(60.0, ge=0)
    #: Where ``woofleet alerts --once`` keeps what it already announced between runs;
    #: default ``<var_dir>/alerts.json``.
    alert_state_file: Path | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    sentry_dsn: SecretStr | None = Field(None, validation_alias="SENTRY_DSN")
    #: Enumerated: a typo (``prod``) is refused, never read as development.
    environment: Literal["development", "production"] = "development"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", "environment", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("woo_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator(
        "payment_capture_methods",
        "fcm_tokens",
        "priority_express_keywords",
        "metrics_urls",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [word.strip() for word in value.split(",") if word.strip()]
        return value

    @field_validator("priority_high_total_by_currency", mode="before")
    @classmethod
    def _comma_mapping(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs = {}
        for item in value.split(","):
            if item.strip():
                key, sep, amount = item.partition("=")
                if not sep:
                    raise ValueError(f"expected KEY=value pairs separated by commas, got {item!r}")
                pairs[key.strip().upper()] = amount.strip()
        return pairs

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _TargetUrls(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    def check_shared_state(self) -> None:
        """Refuse SQLite state in production, where replicas must share one outbox and ledger."""
        from fleet.errors import ConfigError
        from fleet.state import backend_of

        if self.environment == "production" and backend_of(self.state_url) == "sqlite":
            raise ConfigError(
                f"WOOFLEET_STATE_URL is {self.state_url} while WOOFLEET_ENVIRONMENT=production: "
                "each replica would keep its own outbox, lifecycle and idempotency ledger on its "
                "own disk (double emails and lost outbox entries). Set WOOFLEET_STATE_URL="
                "postgresql://user@host/db, or WOOFLEET_ENVIRONMENT=development for one process."
            )

    def secret_values(self) -> list[str]:
        """The values of every credential field, for redaction wherever they appear."""
        values: list[str] = []
        for name in type(self).model_fields:
            field = getattr(self, name)
            if not isinstance(field, SecretStr):
                continue
            for raw in field.get_secret_value().split(","):  # rotated secrets: "new,old"
                # a URL's secret is its password; the host stays readable in a log line
                password = urlsplit(raw.strip()).password if "://" in raw else None
                values.append(password or raw.strip())
        for url in self.targets.values():
            values += url_credentials(url)
        return [v for v in values if v]

    def webhook_secrets(self) -> list[bytes]:
        """The accepted webhook secrets, newest first, as WooCommerce signs with them."""
        raw = self.webhook_secret.get_secret_value()
        return [s.strip().encode() for s in raw.split(",") if s.strip()]

    def target_url(self, target: str) -> str | None:
        """``WOOFLEET_<TARGET>_URL`` for an HTTP target, or None for its dev sink."""
        return self.targets.get(target_key(target)) or None


class _TargetUrls(EnvSettingsSource):
    """``targets`` from one ``WOOFLEET_<TARGET>_URL`` per HTTP target: the set of targets is
    open-ended, so they are the ``WOOFLEET_*_URL`` variables that name no field."""

    def __call__(self) -> dict[str, Any]:
        prefix = "WOOFLEET_"
        fields = {f"{prefix}{name}".upper() for name in self.settings_cls.model_fields}
        targets = {
            target_key(key[len(prefix) : -len("_URL")]): value.strip()
            for key, value in ((k.upper(), v) for k, v in self.env_vars.items())
            if key.startswith(prefix)
            and key.endswith("_URL")
            and key not in fields
            and value is not None
        }
        return {"targets": targets} if targets else {}


def _looks_like_a_token(value: str, length: int) -> bool:
    """Long enough, with letters and digits: a key, not a region or a format name."""
    return (
        len(value) >= length and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
    )


def url_credentials(url: str) -> list[str]:
    """What in a target URL may be a credential, whatever its name: the password, query values
    that look like keys (``?key=AIza...``, ``?sig=...``; a name like ``api_secret`` is masked by
    name anyway) and path segments that look like tokens (``/hooks/T0/B1abc...``)."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [v for _, v in parse_qsl(parts.query) if _looks_like_a_token(v, 8)]
    found += [seg for seg in parts.path.split("/") if _looks_like_a_token(seg, 16)]
    return found


def target_key(target: str) -> str:
    """Normalise a target name: ``erp-sync``, ``ERP_SYNC`` and ``erp_sync`` are one target."""
    return target.strip().lower().replace("-", "_")


def redact_url(url: str | AnyUrl) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    parts = urlsplit(str(url))
    if parts.password is None:
        return str(url)
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
