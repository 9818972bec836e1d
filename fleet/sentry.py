"""Sentry set-up: errors only, with secrets and shopper PII scrubbed before anything leaves."""

from __future__ import annotations

from typing import Any

from fleet.scrub import scrub_data
from fleet.settings import Settings

#: The consumer runtime logs each dead letter at ERROR and reports it itself, tagged
#: (SentryMiddleware): the log line's own event would be a second one for the same failure.
_REPORTED_ELSEWHERE = (("consumers.runtime", "dead-lettered to"),)


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """One event per failure, scrubbed: request bodies, cookies and local variables dropped,
    every remaining value through the one scrubbing layer (breadcrumbs, contexts, log entries)."""
    message = str((event.get("logentry") or {}).get("message") or "")
    for logger, words in _REPORTED_ELSEWHERE:
        if event.get("logger") == logger and words in message:
            return None
    request = event.get("request") or {}
    for key in ("data", "cookies", "query_string"):
        request.pop(key, None)
    for exception in (event.get("exception") or {}).get("values", []):
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            frame.pop("vars", None)
    scrubbed: dict[str, Any] = scrub_data(event)
    return scrubbed


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Breadcrumbs (log lines, HTTP requests with their URLs) through the same scrubbing."""
    scrubbed: dict[str, Any] = scrub_data(crumb)
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
        before_breadcrumb=before_breadcrumb,
        traces_sample_rate=0.0,
    )
    sentry_sdk.set_tag("component", component)
    return True
