"""The mail adapters against real servers on loopback: aiosmtpd for SMTP, files for the sink."""

from __future__ import annotations

import email.policy
import ssl
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import pytest

from consumers.adapters.mail import FileMailSink, SmtpMailer, mailer_from_settings
from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.settings import Settings
from tests.support.net import free_port
from tests.support.smtp_server import smtp_server

pytestmark = pytest.mark.integration


def thai_message(to: str = "somchai@example.com") -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = "คำสั่งซื้อของคุณ #727"
    message["From"] = "Shop <shop@example.com>"
    message["To"] = Address("สมชาย ใจดี", addr_spec=to)
    message.set_content("สวัสดี สมชาย")
    message.add_alternative("<p>สวัสดี <b>สมชาย</b></p>", subtype="html")
    return message


async def test_plain_smtp_delivers_recipients_subject_and_both_parts_intact() -> None:
    with smtp_server() as server:
        mailer = SmtpMailer.from_url(f"smtp+insecure://{server.host}:{server.port}")
        await mailer.send(thai_message())

    [got] = server.received
    assert got.rcpt_tos == ["somchai@example.com"]
    assert got.mail_from == "shop@example.com"
    assert b"=?utf-8?" in got.data.split(b"\r\n\r\n")[0]  # headers are RFC 2047-encoded
    parsed = got.message
    assert parsed["Subject"] == "คำสั่งซื้อของคุณ #727"
    assert parsed["To"].addresses[0].display_name == "สมชาย ใจดี"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    assert "สวัสดี สมชาย" in text.get_content()
    assert "<b>สมชาย</b>" in html.get_content()


async def test_starttls_with_login_is_required_and_works(tmp_path: Path) -> None:
    with smtp_server(tls_dir=tmp_path, login=("shop", "s3cr et")) as server:
        assert server.cafile is not None
        context = ssl.create_default_context(cafile=str(server.cafile))
        url = f"smtp://shop:s3cr%20et@{server.host}:{server.port}"
        await SmtpMailer.from_url(url, tls_context=context).send(thai_message())
        # The same through the URL alone, as an operator would configure a private CA.
        await SmtpMailer.from_url(f"{url}?cafile={server.cafile}").send(thai_message())

    assert len(server.received) == 2


# aiosmtpd takes only STARTTLS for TLS and warns about AUTH on an implicit-TLS socket.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_smtps_speaks_tls_from_the_first_byte(tmp_path: Path) -> None:
    with smtp_server(tls_dir=tmp_path, implicit_tls=True, login=("shop", "pw")) as server:
        url = f"smtps://shop:pw@{server.host}:{server.port}?cafile={server.cafile}"
        await SmtpMailer.from_url(url).send(thai_message())
        # A plain client gets nowhere with it, and is told to try again rather than lose mail.
        plain = SmtpMailer.from_url(f"smtp+insecure://{server.host}:{server.port}?timeout=2")
        with pytest.raises(TransientError):
            await plain.send(thai_message())
    assert len(server.received) == 1


async def test_wrong_password_is_permanent_and_names_the_setting(tmp_path: Path) -> None:
    with smtp_server(tls_dir=tmp_path, login=("shop", "right")) as server:
        url = f"smtp://shop:wrong@{server.host}:{server.port}?cafile={server.cafile}"
        with pytest.raises(PermanentError, match="WOOFLEET_SMTP_URL") as caught:
            await SmtpMailer.from_url(url).send(thai_message())
    assert "wrong" not in str(caught.value)
    assert server.received == []


async def test_5xx_recipient_reply_is_permanent_with_the_server_answer_but_no_address() -> None:
    with smtp_server() as server:
        server.handler.refuse["nobody@example.com"] = (550, "5.1.1 <nobody@example.com> unknown")
        mailer = SmtpMailer.from_url(f"smtp+insecure://{server.host}:{server.port}")
        with pytest.raises(PermanentError) as caught:
            await mailer.send(thai_message("nobody@example.com"))
    assert "550 5.1.1" in str(caught.value)
    assert "nobody@example.com" not in str(caught.value)


async def test_4xx_recipient_reply_is_transient() -> None:
    with smtp_server() as server:
        server.handler.refuse["busy@example.com"] = (451, "4.7.1 greylisted, try later")
        mailer = SmtpMailer.from_url(f"smtp+insecure://{server.host}:{server.port}")
        with pytest.raises(TransientError, match="451"):
            await mailer.send(thai_message("busy@example.com"))


async def test_connection_refused_is_transient() -> None:
    mailer = SmtpMailer.from_url(f"smtp+insecure://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(TransientError):
        await mailer.send(thai_message())


async def test_server_without_starttls_is_refused_for_smtp_urls() -> None:
    with smtp_server() as server:
        mailer = SmtpMailer.from_url(f"smtp://{server.host}:{server.port}")
        with pytest.raises(PermanentError, match=r"STARTTLS|smtp\+insecure"):
            await mailer.send(thai_message())
    assert server.received == []


async def test_a_login_the_server_does_not_offer_is_permanent() -> None:
    with smtp_server() as server:
        mailer = SmtpMailer.from_url(f"smtp+insecure://u:pw@{server.host}:{server.port}")
        with pytest.raises(PermanentError, match="WOOFLEET_SMTP_URL"):
            await mailer.send(thai_message())


async def test_file_mail_sink_writes_a_parseable_eml(tmp_path: Path) -> None:
    sink = FileMailSink(tmp_path / "mail")
    await sink.send(thai_message())

    [path] = (tmp_path / "mail").glob("*.eml")
    parsed = message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "คำสั่งซื้อของคุณ #727"
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    assert body is not None and "สวัสดี สมชาย" in body.get_content()


def test_mailer_from_settings_picks_the_dev_sink_without_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    mailer = mailer_from_settings(Settings(var_dir=tmp_path))
    assert isinstance(mailer, FileMailSink)
    assert "FileMailSink" in caplog.text


def test_mailer_from_settings_never_logs_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    settings = Settings(smtp_url="smtp://u:topsecret@mail.example.com:2525")
    mailer = mailer_from_settings(settings)
    assert isinstance(mailer, SmtpMailer) and mailer.port == 2525
    assert "topsecret" not in caplog.text and "mail.example.com:2525" in caplog.text


def test_unknown_scheme_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpMailer.from_url("imap://u:topsecret@mail.example.com")
    assert "topsecret" not in str(caught.value)
