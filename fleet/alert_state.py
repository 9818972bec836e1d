"""What has been announced: one message when an alert fires, one when it resolves, no storm.

An alert is *pending* from the first evaluation that sees its condition, *fires* once the
condition has lasted its hold time (and the message was accepted), and *resolves* at the first
evaluation that no longer sees it. A source that could not be read (the management API down, a
/metrics endpoint silent) leaves its alerts untouched: not seeing is not the same as fixed.
The state lives in memory for ``--every``, and in a small JSON file between ``--once`` runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from fleet.alert_rules import Finding

Kind = Literal["firing", "resolved"]


@dataclass
class Tracked:
    """One alert's life: the latest finding, when it was first seen, when it was announced."""

    finding: Finding
    since: float
    fired_at: float | None = None
    #: First evaluation that no longer saw it (it resolves once gone for ``resolve_after``).
    gone_since: float | None = None


@dataclass(frozen=True)
class Change:
    """Something to announce."""

    kind: Kind
    finding: Finding
    #: When the condition started.
    since: float
    at: float
    #: Resolved: the first evaluation that no longer saw it.
    ended: float | None = None


@dataclass
class AlertState:
    tracked: dict[str, Tracked] = field(default_factory=dict)
    #: Work queue → when it was first seen with messages and no deliveries (for ages).
    stalled_since: dict[str, float] = field(default_factory=dict)
    #: Seconds a fired alert must stay unseen before it resolves: a condition hovering at its
    #: threshold then gives one firing and one resolved message, not a pair every evaluation.
    resolve_after: float = 0.0

    def changes(
        self, findings: Iterable[Finding], *, now: float, unread: Collection[str] = ()
    ) -> list[Change]:
        """What to announce now; call :meth:`announced` with the ones that were delivered."""
        seen = {f.key: f for f in findings}
        changes: list[Change] = []
        for key, finding in seen.items():
            tracked = self.tracked.get(key)
            if tracked is None:
                tracked = self.tracked[key] = Tracked(finding, since=now - finding.age)
            tracked.finding = finding  # the latest size, for the resolve message too
            tracked.gone_since = None
            if tracked.fired_at is None and now - tracked.since >= finding.hold:
                changes.append(Change("firing", finding, tracked.since, now))
        for key, tracked in list(self.tracked.items()):
            if key in seen or tracked.finding.source in unread:
                continue
            if tracked.fired_at is None:
                del self.tracked[key]  # pending only: it never reached anyone, nothing to undo
                continue
            if tracked.gone_since is None:
                tracked.gone_since = now
            if now - tracked.gone_since >= self.resolve_after:
                changes.append(
                    Change("resolved", tracked.finding, tracked.since, now, tracked.gone_since)
                )
        return changes

    def announced(self, changes: Iterable[Change]) -> None:
        """Record delivered messages; undelivered ones are offered again next evaluation."""
        for change in changes:
            if change.kind == "firing":
                self.tracked[change.finding.key].fired_at = change.at
            else:
                self.tracked.pop(change.finding.key, None)

    def firing(self) -> list[Tracked]:
        return [t for t in self.tracked.values() if t.fired_at is not None]

    # --- between --once runs -------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, object] = {
            "tracked": {k: asdict(t) for k, t in self.tracked.items()},
            "stalled_since": self.stalled_since,
        }
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, path)  # a run killed mid-write leaves the previous state whole

    @classmethod
    def load(cls, path: Path, *, resolve_after: float = 0.0) -> AlertState:
        """The saved state, or a fresh one when there is none (first run) or it is unreadable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tracked = {
                key: Tracked(
                    Finding(**t["finding"]), t["since"], t["fired_at"], t.get("gone_since")
                )
                for key, t in data["tracked"].items()
            }
            return cls(tracked, dict(data.get("stalled_since", {})), resolve_after)
        except FileNotFoundError:
            return cls(resolve_after=resolve_after)
        except (ValueError, KeyError, TypeError):
            # A damaged file must not stop alerting; at worst an alert is announced again.
            return cls(resolve_after=resolve_after)
