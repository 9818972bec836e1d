"""WooCommerce ingress: the webhook, the lifecycle from state, the outbox relay, the reconciler,
and the confirmed publishers. See docs/ingress.md.

Modules: ``webhook`` (the ASGI app), ``ingest`` + ``lifecycle`` + ``events`` (state in, events
out), ``store`` (SQLite or PostgreSQL: lifecycle state, outbox, cursors), ``outbox`` (relay),
``confirmed`` / ``blocking`` (publishers), ``reconcile``, ``webhook_health``, ``simulate``.
"""
