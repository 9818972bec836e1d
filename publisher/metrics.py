"""Prometheus metrics of the ingress, on a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "woofleet_webhook_deliveries",
            "Webhook deliveries by outcome (accepted, held, ping, ignored, unsigned, "
            "bad_signature, kept, topic_mismatch, too_large, too_slow, error)",
            ["outcome"],
            registry=self.registry,
        )
        self.events_queued = Counter(
            "woofleet_events_queued",
            "Events committed to the outbox, by event type",
            ["event_type"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "woofleet_events_published",
            "Events confirmed by the broker and removed from the outbox",
            registry=self.registry,
        )
        self.kept = Counter(
            "woofleet_webhook_kept",
            "Signed deliveries woofleet could not turn into events, kept whole in the state "
            "store for `woofleet ingress replay` (answered 202)",
            registry=self.registry,
        )
        self.held = Counter(
            "woofleet_webhook_held",
            "Signed deliveries held on the broker (woo.ingress.held) while the state store was "
            "away (answered 202)",
            registry=self.registry,
        )
        self.held_processed = Counter(
            "woofleet_webhook_held_processed",
            "Held deliveries taken back off the broker once the state store was back, by outcome "
            "(accepted, kept, ignored)",
            ["outcome"],
            registry=self.registry,
        )
        self.set_aside = Counter(
            "woofleet_outbox_set_aside",
            "Outbox rows set aside because their message can never be published",
            registry=self.registry,
        )
        self.set_aside_waiting = Gauge(
            "woofleet_outbox_set_aside_rows",
            "Outbox rows set aside and still in the state store (see `woofleet ingress list`)",
            registry=self.registry,
        )
        self.latency = Histogram(
            "woofleet_webhook_seconds",
            "Time to answer a webhook delivery",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "woofleet_outbox_depth", "Events waiting in the outbox", registry=self.registry
        )
        self.outbox_oldest = Gauge(
            "woofleet_outbox_oldest_seconds",
            "Age of the oldest event waiting in the outbox (0 when empty): the relay's lag",
            registry=self.registry,
        )
        #: Set by whoever keeps signed deliveries that could not become events.
        self.kept_deliveries = Gauge(
            "woofleet_ingress_kept_deliveries",
            "Signed deliveries kept unprocessed in the state store, waiting for a replay",
            registry=self.registry,
        )
        self.broker_up = Gauge(
            "woofleet_broker_up",
            "1 while the publisher holds an open confirming channel",
            registry=self.registry,
        )
