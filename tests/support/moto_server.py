"""moto's real HTTP server on 127.0.0.1: S3 and SES for tests, spoken to through boto3.

The server runs in a thread of the test process, so a test may also read what moto recorded
(e.g. the messages SES "sent") from its backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from tests.support.net import free_port

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials moto accepts, and nothing from the developer's own AWS set-up."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@contextmanager
def moto_server() -> Iterator[str]:
    """Serve moto on a free loopback port; yields its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def ses_sent_messages() -> list[Any]:
    """What moto's SES recorded as sent (raw messages keep their MIME text)."""
    from moto.ses.models import ses_backends

    return list(ses_backends[ACCOUNT][REGION].sent_messages)
