"""Settings, redaction, error messages: the parts operators read."""

from __future__ import annotations

import logging

import pytest

from fleet.amqp import broker_unavailable_message
from fleet.logging import RedactingFormatter, redact, with_context
from fleet.sentry import before_send
from fleet.settings import Settings, redact_url


def test_settings_read_woofleet_variables_and_http_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOOFLEET_AMQP_URL", "amqp://u:p@broker:5672/shop")
    monkeypatch.setenv("WOOFLEET_WEBHOOK_SECRET", "new-secret, old-secret")
    monkeypatch.setenv("WOOFLEET_ERP_SYNC_URL", "https://erp.example/api")
    monkeypatch.setenv("WOOFLEET_STATE_URL", "postgresql://woofleet@db/woofleet")
    settings = Settings()
    assert settings.amqp_url.get_secret_value() == "amqp://u:p@broker:5672/shop"
    assert settings.webhook_secrets() == [b"new-secret", b"old-secret"]
    assert settings.target_url("erp-sync") == "https://erp.example/api"
    assert settings.target_url("crm") is None
    # known settings are not mistaken for HTTP targets
    assert "state" not in settings.targets and "amqp" not in settings.targets
    assert "p@broker" not in repr(settings)


def test_redact_removes_passwords_emails_and_tokens() -> None:
    text = redact(
        "connect amqp://woo:s3cret@broker/ for jane.doe@example.com "
        "Authorization: Bearer abc.def password=hunter2"
    )
    assert "s3cret" not in text and "jane.doe" not in text
    assert "abc.def" not in text and "hunter2" not in text
    assert "amqp://woo:***@broker/" in text
    assert redact_url("http://guest:guest@localhost:15672") == "http://guest:***@localhost:15672"


def test_log_lines_carry_context_and_are_redacted() -> None:
    record = logging.LogRecord(
        "consumers.runtime",
        logging.INFO,
        __file__,
        1,
        "mail sent to %s",
        ("ana@example.com",),
        None,
    )
    record.context = {"consumer": "order-email", "ref": 11}
    line = RedactingFormatter().format(record)
    assert line.endswith("mail sent to <email>  consumer=order-email ref=11")
    adapter = with_context(logging.getLogger("x"), consumer="stock")
    _, kwargs = adapter.process("m", {})
    assert kwargs["extra"]["context"] == {"consumer": "stock"}


def test_sentry_events_lose_bodies_locals_and_secrets() -> None:
    event = {
        "request": {"data": '{"billing": {"email": "a@b.example"}}', "url": "http://x/"},
        "exception": {
            "values": [
                {
                    "value": "amqp://u:pw@h/ failed",
                    "stacktrace": {"frames": [{"vars": {"secret": "x"}}]},
                }
            ]
        },
    }
    scrubbed = before_send(event, {})
    assert scrubbed is not None
    assert "data" not in scrubbed["request"]
    value = scrubbed["exception"]["values"][0]
    assert value["value"] == "amqp://u:***@h/ failed"
    assert "vars" not in value["stacktrace"]["frames"][0]


def test_a_missing_broker_is_one_line_that_says_what_to_do() -> None:
    message = broker_unavailable_message(
        "amqp://guest:guest@localhost:5672/", ConnectionRefusedError("Connection refused")
    )
    assert "\n" not in message
    assert "guest:***@" in message
    assert "rabbitmq-server -detached" in message and "WOOFLEET_AMQP_URL" in message


def test_production_refuses_per_replica_sqlite_state() -> None:
    from fleet.errors import ConfigError

    Settings(environment="development").check_shared_state()
    Settings(environment="production", state_url="postgresql://w@db/w").check_shared_state()
    with pytest.raises(ConfigError, match="WOOFLEET_STATE_URL=postgresql://"):
        Settings(environment="production").check_shared_state()


def test_sentry_middleware_runs_only_where_sentry_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import sentry_sdk

    from consumers.runtime.observe import MetricsMiddleware, SentryMiddleware, standard_middleware

    assert [type(m) for m in standard_middleware()] == [MetricsMiddleware]
    monkeypatch.setattr(sentry_sdk, "is_initialized", lambda: True)
    assert [type(m) for m in standard_middleware()] == [MetricsMiddleware, SentryMiddleware]


def test_logging_setup_quiets_the_amqp_libraries_connect_failures_but_not_their_warnings() -> None:
    # woofleet says "broker not available ..." once, with what to do; the libraries would add
    # several ERROR lines per failed connect (seven for pika), every retry.
    from fleet.logging import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    quieted = [
        "aiormq.connection",
        "pika.adapters.base_connection",
        "pika.adapters.utils.connection_workflow",
        "pika.adapters.utils.io_services_utils",
    ]
    try:
        setup_logging("INFO")
        for name in quieted:
            assert not logging.getLogger(name).isEnabledFor(logging.ERROR), name
        assert logging.getLogger("pika.channel").isEnabledFor(logging.WARNING)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in quieted:
            logging.getLogger(name).setLevel(logging.NOTSET)
