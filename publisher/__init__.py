"""WooCommerce ingress: the webhook, the lifecycle from state, the outbox relay, the reconciler.
See docs/ingress.md.

Modules: ``webhook`` (the ASGI app), ``ingest`` + ``lifecycle`` + ``events`` (state in, events
out), ``store`` (SQLite or PostgreSQL: lifecycle state, outbox, cursors), ``outbox`` (the relay),
``confirming_channel`` (the one publishing client, behind ``outgoing.EventChannel``),
``reconcile``, ``webhook_health``, ``simulate``.
"""
