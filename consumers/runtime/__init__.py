"""The consumer runtime: ack, retry, dead-letter, idempotency, timeouts and shutdown.

Entry points:

* :class:`Supervisor` — run consumer types in one process: ``await sup.start()``, then
  ``await sup.stop()``; ``sup.workers[name].stats`` counts outcomes. Tests pass
  ``handlers={name: (SPEC, handler)}`` to run their own handler under a consumer's policy.
* :func:`serve_consumers` — the body of ``woofleet consume``: health server and SIGTERM drain.
* :class:`ConsumerWorker` — one consumer type on one connection.
"""

from consumers.runtime.handler import (
    AnyEnvelope,
    Delivery,
    Handler,
    HandlerSpec,
    default_business_key,
)
from consumers.runtime.ledger import Ledger, SQLiteLedger, open_ledger
from consumers.runtime.middleware import Middleware
from consumers.runtime.outcome import Outcome
from consumers.runtime.supervisor import Supervisor, build_handler, serve_consumers
from consumers.runtime.worker import ConsumerWorker

__all__ = [
    "AnyEnvelope",
    "ConsumerWorker",
    "Delivery",
    "Handler",
    "HandlerSpec",
    "Ledger",
    "Middleware",
    "Outcome",
    "SQLiteLedger",
    "Supervisor",
    "build_handler",
    "default_business_key",
    "open_ledger",
    "serve_consumers",
]
