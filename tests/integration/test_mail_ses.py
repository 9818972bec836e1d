"""The SES adapter against moto's SES v2 server on loopback."""

from __future__ import annotations

import email.policy
from collections.abc import Iterator
from email import message_from_string
from email.message import EmailMessage

import boto3
import pytest

from consumers.adapters.mail import SesMailer, mailer_from_settings
from fleet.errors import PermanentError, TransientError
from fleet.settings import Settings
from tests.integration.test_mail_adapters import thai_message
from tests.support.moto_server import REGION, fake_aws_credentials, moto_server, ses_sent_messages
from tests.support.net import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def ses_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    fake_aws_credentials(monkeypatch)
    with moto_server() as endpoint:
        yield endpoint


async def test_ses_sends_the_raw_message_with_its_recipients(ses_endpoint: str) -> None:
    sesv2 = boto3.client("sesv2", region_name=REGION, endpoint_url=ses_endpoint)
    sesv2.create_email_identity(EmailIdentity="shop@example.com")
    before = len(ses_sent_messages())
    mailer = mailer_from_settings(Settings(smtp_url=f"ses://{REGION}?endpoint_url={ses_endpoint}"))
    assert isinstance(mailer, SesMailer)

    await mailer.send(thai_message())
    await mailer.aclose()

    [sent] = ses_sent_messages()[before:]
    assert sent.source == "shop@example.com"
    assert sent.destinations[0] == "somchai@example.com"
    parsed = message_from_string(sent.raw_data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "คำสั่งซื้อของคุณ #727"
    assert parsed.get_body(("html",)) is not None


async def test_ses_rejecting_an_unverified_sender_is_permanent(ses_endpoint: str) -> None:
    mailer = SesMailer(REGION, endpoint_url=ses_endpoint)
    message = thai_message()
    message.replace_header("From", "Other shop <never-verified@example.org>")
    with pytest.raises(PermanentError, match="MessageRejected") as caught:
        await mailer.send(message)
    assert "somchai@example.com" not in str(caught.value)


async def test_unreachable_ses_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_credentials(monkeypatch)
    mailer = SesMailer(REGION, endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError):
        await mailer.send(thai_message())
