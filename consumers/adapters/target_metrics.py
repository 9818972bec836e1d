"""Per-target request metrics: what each external system answered, and how fast."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Outcomes: ok, transient (5xx, 408, 425, 429), rejected (other 4xx, 3xx), timeout, unreachable.
REQUESTS = Counter(
    "woofleet_target_requests",
    "Requests to HTTP targets by target and outcome "
    "(ok, transient, rejected, timeout, unreachable)",
    ["target", "outcome"],
)
SECONDS = Histogram(
    "woofleet_target_request_seconds",
    "Time from sending a request to a target until its answer (or the failure)",
    ["target"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def observe_request(target: str, outcome: str, seconds: float) -> None:
    REQUESTS.labels(target, outcome).inc()
    SECONDS.labels(target).observe(seconds)
