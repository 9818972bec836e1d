"""What a consumer receives, derived from its bindings: the one answer for the runtime and docs.

A consumer's row in :mod:`topology.fleet` binds topic patterns (``order.#``, ``order.paid``); the
contracts it accepts are every (event type, schema version) of :data:`contracts.registry.REGISTRY`
whose event type those patterns match. Nothing else declares them, so the queue's bindings and
the contracts its consumer validates against cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.registry import REGISTRY


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more (``order.#`` ~ ``order.paid``)."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))


def accepted_contracts(bindings: Iterable[str]) -> frozenset[tuple[str, int]]:
    """Every (event type, schema version) the registry knows that one of ``bindings`` routes."""
    patterns = tuple(bindings)
    return frozenset(
        key for key in REGISTRY if any(topic_matches(pattern, key[0]) for pattern in patterns)
    )


def received_event_types(bindings: Iterable[str]) -> tuple[str, ...]:
    """The event types ``bindings`` route, sorted: ``order.#`` → every ``order.*`` type."""
    return tuple(sorted({event_type for event_type, _ in accepted_contracts(bindings)}))
