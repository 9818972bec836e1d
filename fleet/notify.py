"""Alert messages to people: a Slack incoming webhook (blocks and a text fallback) and any
URL that takes a JSON POST.

Slack answers ``200 ok``; ``429`` with ``Retry-After`` when posting too fast (honoured, a few
times); and ``4xx`` with a short reason such as ``no_service`` (the webhook was removed) or
``invalid_payload``, which no retry can fix: that becomes one :class:`NotifyError` line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from fleet.alert_rules import duration
from fleet.alert_state import Change
from fleet.errors import WoofleetError
from fleet.retry_after import parse_retry_after

#: Slack refuses messages of more than 50 blocks; past this many alerts the rest are counted.
MAX_LISTED = 20
#: Longest Retry-After honoured in one send, and how many times.
MAX_RETRY_AFTER_SECONDS = 60.0
RATE_LIMIT_ATTEMPTS = 3

_HINTS = {
    "no_service": "the incoming webhook was removed or disabled; create a new one in Slack "
    "and set WOOFLEET_SLACK_WEBHOOK_URL",
    "no_team": "the Slack workspace is gone; set WOOFLEET_SLACK_WEBHOOK_URL to a live webhook",
    "channel_is_archived": "the webhook's channel is archived; unarchive it or make a new webhook",
    "action_prohibited": "a Slack admin restricted this webhook; ask them or make a new one",
    "invalid_token": "the webhook URL is wrong; copy it again from Slack",
    "invalid_payload": "Slack could not read the message (a woofleet bug; please report it)",
}


class NotifyError(WoofleetError):
    """A message could not be delivered; it is offered again at the next evaluation."""


class Notifier(Protocol):
    name: str

    def send(self, changes: Sequence[Change], context: str) -> None:
        """Deliver one message about these changes, or raise :class:`NotifyError`."""


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _line(change: Change) -> str:
    finding = change.finding
    if change.kind == "firing":
        text = f":rotating_light: *FIRING* {finding.title}"
        if finding.detail:
            text += f"\n{finding.detail}"
        text += f"\nsince {_when(change.since)} ({duration(change.at - change.since)} ago)"
    else:
        ended = change.ended if change.ended is not None else change.at
        text = f":white_check_mark: *RESOLVED* {finding.title}"
        text += f"\ngone since {_when(ended)}; it lasted {duration(ended - change.since)}"
    return text + f"\nlook closer: `{finding.command}`"


def headline(changes: Sequence[Change]) -> str:
    firing = [c for c in changes if c.kind == "firing"]
    resolved = len(changes) - len(firing)
    if len(changes) == 1:
        change = changes[0]
        return f"{'FIRING' if firing else 'RESOLVED'}: {change.finding.title}"
    parts = [f"{len(firing)} firing"] if firing else []
    parts += [f"{resolved} resolved"] if resolved else []
    return "woofleet alerts: " + ", ".join(parts)


def slack_message(changes: Sequence[Change], context: str) -> dict[str, Any]:
    """Slack's message format: blocks for the app, ``text`` for notifications and old clients."""
    ordered = sorted(changes, key=lambda c: (c.kind != "firing", c.finding.key))
    listed, rest = ordered[:MAX_LISTED], len(ordered) - MAX_LISTED
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(changes)[:150]}}
    ]
    for change in listed:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _line(change)[:3000]}})
    if rest > 0:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"… and {rest} more: `woofleet status`"},
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    fallback = "\n".join(
        f"{c.kind.upper()}: {c.finding.title} — {c.finding.command}" for c in ordered
    )
    return {"text": fallback, "blocks": blocks}


def json_message(changes: Sequence[Change], context: str) -> dict[str, Any]:
    """The generic webhook's body: one object per change, timestamps in RFC 3339 UTC."""

    def iso(timestamp: float) -> str:
        return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")

    return {
        "source": "woofleet",
        "context": context,
        "alerts": [
            {
                "status": c.kind,
                "key": c.finding.key,
                "title": c.finding.title,
                "detail": c.finding.detail,
                "command": c.finding.command,
                "since": iso(c.since),
                "at": iso(c.at),
                "ended": iso(c.ended) if c.ended is not None else None,
            }
            for c in changes
        ],
    }


def _retry_after(response: httpx.Response) -> float:
    """The wait a 429 asks for; one second when it names none (Slack always does)."""
    wait = parse_retry_after(response.headers.get("retry-after"))
    return 1.0 if wait is None else wait


class _Poster:
    """POSTs JSON, honouring a few short Retry-After waits on 429."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        client: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self._client = client
        self._sleep = sleep
        # Webhook URLs often carry their secret in the path: errors name the host only.
        self.where = httpx.URL(url).host or "?"

    def post(self, body: dict[str, Any]) -> httpx.Response:
        for _attempt in range(RATE_LIMIT_ATTEMPTS):
            try:
                response = self._client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                raise NotifyError(
                    f"{self.name} at {self.where} did not answer ({type(exc).__name__}); "
                    "the message is sent again at the next evaluation"
                ) from None
            if response.status_code != 429:
                return response
            wait = _retry_after(response)
            if wait > MAX_RETRY_AFTER_SECONDS:
                break
            self._sleep(wait)
        raise NotifyError(
            f"{self.name} keeps answering 429 (rate limited, Retry-After "
            f"{response.headers.get('retry-after', '?')}); the message is sent again at the "
            "next evaluation"
        )


class SlackNotifier(_Poster):
    """A Slack incoming webhook (``WOOFLEET_SLACK_WEBHOOK_URL``)."""

    name = "Slack"

    def send(self, changes: Sequence[Change], context: str) -> None:
        response = self.post(slack_message(changes, context))
        if response.status_code == 200:
            return
        reason = response.text.strip()[:100] or f"HTTP {response.status_code}"
        hint = _HINTS.get(reason, "see Slack's incoming-webhook error codes")
        raise NotifyError(f"Slack refused the alert ({response.status_code} {reason}): {hint}")


class JsonWebhookNotifier(_Poster):
    """Any URL that accepts a JSON POST (``WOOFLEET_ALERT_WEBHOOK_URL``)."""

    name = "alert webhook"

    def send(self, changes: Sequence[Change], context: str) -> None:
        response = self.post(json_message(changes, context))
        if not response.is_success:
            raise NotifyError(
                f"the alert webhook at {self.where} answered {response.status_code} "
                f"{response.text.strip()[:100]!r}; check WOOFLEET_ALERT_WEBHOOK_URL"
            )
