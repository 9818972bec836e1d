"""Settings, read once from the environment (prefix ``WOOFLEET_``) and passed down."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AnyUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    payment_capture_methods: str = ""
    #: Loyalty points per whole unit of an order's total.
    loyalty_points_per_unit: Decimal = Decimal("1")

    #: push-notify: the Firebase service-account JSON key (from a Secret); unset = dev sink.
    fcm_credentials_file: Path | None = None
    #: Device registration tokens of the shop's app (comma-separated): one push each.
    fcm_tokens: str = ""
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

    #: HTTP targets by normalised name (``erp_sync``), from ``WOOFLEET_<TARGET>_URL``.
    targets: dict[str, str] = Field(default_factory=dict)

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

    def webhook_secrets(self) -> list[bytes]:
        """The accepted webhook secrets, newest first, as WooCommerce signs with them."""
        raw = self.webhook_secret.get_secret_value()
        return [s.strip().encode() for s in raw.split(",") if s.strip()]

    def target_url(self, target: str) -> str | None:
        """``WOOFLEET_<TARGET>_URL`` for an HTTP target, or None for its dev sink."""
        return self.targets.get(target_key(target)) or None

    @model_validator(mode="before")
    @classmethod
    def _collect_targets(cls, values: Any) -> Any:
        # One WOOFLEET_<TARGET>_URL per HTTP target: the set of targets is open-ended, so they
        # are gathered from the environment here, once, instead of being declared as fields.
        if isinstance(values, dict) and "targets" not in values:
            known = {f"WOOFLEET_{name.upper()}" for name in cls.model_fields}
            values = dict(values)
            values["targets"] = {
                target_key(key[len("WOOFLEET_") : -len("_URL")]): value.strip()
                for key, value in os.environ.items()
                if key.startswith("WOOFLEET_") and key.endswith("_URL") and key not in known
            }
        return values


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
