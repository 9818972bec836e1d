"""Sentry set-up: errors only, with secrets and shopper PII scrubbed before anything leaves."""

from __future__ import annotations

from typing import Any

from fleet.logging import redact
from fleet.settings import Settings


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Drop request bodies and local variables; redact every remaining string."""
    event.get("request", {}).pop("data", None)
    for exception in event.get("exception", {}).get("values", []):
        for frame in exception.get("stacktrace", {}).get("frames", []):
            frame.pop("vars", None)
    scrubbed: dict[str, Any] = _scrub(event)
    return scrubbed


def init_sentry(settings: Settings, *, component: str) -> bool:
    """Initialise Sentry when SENTRY_DSN is set; returns whether it is on."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment,
        send_default_pii=False,
        include_local_variables=False,
        before_send=before_send,  # type: ignore[arg-type]
        traces_sample_rate=0.0,
    )
    sentry_sdk.set_tag("component", component)
    return True
