"""amqps:// for real: a TLS-terminating proxy on loopback, which demands a client certificate,
forwards to the local RabbitMQ, and fleet.amqp.connect goes through it with the CA and client
certificate given as files (WOOFLEET_AMQP_CA_FILE / _CERT_FILE / _KEY_FILE)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from fleet.amqp import connect, ssl_context
from fleet.errors import BrokerUnavailable, ConfigError
from fleet.settings import Settings
from publisher.confirming_channel import open_confirming_channel
from publisher.outgoing import Outgoing
from tests.conftest import AMQP_HOST, AMQP_PORT
from topology.names import EVENTS_EXCHANGE

pytestmark = pytest.mark.integration

CLIENT_NAME = "woofleet-test-client"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path  # a CA that signed nothing here


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:  # a CA
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(AMQP_HOST))]
            ),
            critical=False,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA with a server certificate for loopback and a client certificate."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("woofleet test CA", ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    signer = (ca.subject, ca_key)
    server = _issue("localhost", server_key, signer, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue(CLIENT_NAME, client_key, signer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    ca_path, _ = _write(directory, "ca", ca, ca_key)
    stranger_path, _ = _write(directory, "stranger", _issue("stranger", stranger_key), stranger_key)
    server_cert, server_key_path = _write(directory, "server", server, server_key)
    client_cert, client_key_path = _write(directory, "client", client, client_key)
    return Pki(ca_path, server_cert, server_key_path, client_cert, client_key_path, stranger_path)


class TlsProxy:
    """Terminates TLS on 127.0.0.1 (client certificate required), forwards plain AMQP."""

    def __init__(self, pki: Pki) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        self.context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.clients: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, AMQP_HOST, 0, ssl=self.context)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        subject = dict(item for rdn in peer.get("subject", ()) for item in rdn)
        self.clients.append(subject.get("commonName", ""))
        upstream_reader, upstream_writer = await asyncio.open_connection(AMQP_HOST, AMQP_PORT)
        pipes = [
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()


@pytest.fixture
async def proxy(pki: Pki) -> AsyncIterator[tuple[TlsProxy, int]]:
    server = TlsProxy(pki)
    port = await server.start()
    try:
        yield server, port
    finally:
        await server.close()


def _amqps(settings: Settings, port: int, **files: Path | None) -> Settings:
    plain = settings.amqp_url.get_secret_value()
    url = plain.replace("amqp://", "amqps://", 1).replace(f":{AMQP_PORT}/", f":{port}/", 1)
    return settings.model_copy(update={"amqp_url": SecretStr(url), **files})


def _amqps_with_client_cert(settings: Settings, port: int, pki: Pki) -> Settings:
    """amqps:// to ``port``, trusting our CA and presenting our client certificate."""
    return _amqps(
        settings,
        port,
        amqp_ca_file=pki.ca,
        amqp_cert_file=pki.client_cert,
        amqp_key_file=pki.client_key,
    )


async def test_amqps_connection_with_client_certificate_publishes_and_consumes(
    settings: Settings, proxy: tuple[TlsProxy, int], pki: Pki
) -> None:
    # Given the broker reachable only through TLS, with our CA and client certificate as files
    server, port = proxy
    tls = _amqps_with_client_cert(settings, port, pki)

    # When woofleet connects by amqps:// URL and round-trips a confirmed message
    connection = await connect(tls, name="test-amqps")
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("amqps-roundtrip", auto_delete=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"over tls"), routing_key=queue.name
        )
        message = await queue.get(timeout=5)
        await message.ack()
    finally:
        await connection.close()

    # Then the message made it, and the proxy saw our client certificate
    assert message.body == b"over tls"
    assert server.clients == [CLIENT_NAME]


async def test_amqps_without_a_client_certificate_is_refused(
    settings: Settings, proxy: tuple[TlsProxy, int], pki: Pki
) -> None:
    _, port = proxy
    tls = _amqps(settings, port, amqp_ca_file=pki.ca)

    with pytest.raises(BrokerUnavailable, match="not answering"):
        await connect(tls, name="test-amqps-no-client-cert")


async def test_amqps_refuses_a_server_its_ca_file_does_not_trust(
    settings: Settings, proxy: tuple[TlsProxy, int], pki: Pki
) -> None:
    server, port = proxy
    tls = _amqps(
        settings,
        port,
        amqp_ca_file=pki.stranger_ca,
        amqp_cert_file=pki.client_cert,
        amqp_key_file=pki.client_key,
    )

    with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await connect(tls, name="test-amqps-untrusted-server")
    assert server.clients == []


def test_plain_amqp_urls_get_no_tls_context(settings: Settings) -> None:
    assert ssl_context(settings) is None


async def test_an_amqps_url_given_to_connect_uses_the_configured_certificate_files(
    settings: Settings, proxy: tuple[TlsProxy, int], pki: Pki
) -> None:
    # Given plain settings with TLS files, and an amqps:// URL passed to connect() directly
    server, port = proxy
    files = {"amqp_ca_file": pki.ca, "amqp_cert_file": pki.client_cert}
    tls_url = _amqps(settings, port).amqp_url.get_secret_value()
    plain = settings.model_copy(update={**files, "amqp_key_file": pki.client_key})

    connection = await connect(plain, name="test-amqps-url-override", url=tls_url)
    await connection.close()

    assert server.clients == [CLIENT_NAME]


def test_unreadable_tls_files_are_a_config_error_naming_the_settings(
    settings: Settings, tmp_path: Path
) -> None:
    tls = _amqps(settings, 5671, amqp_ca_file=tmp_path / "missing-ca.crt")

    with pytest.raises(ConfigError, match="WOOFLEET_AMQP_CA_FILE"):
        ssl_context(tls)


async def test_the_outbox_relays_channel_publishes_over_amqps_with_the_certificate_files(
    settings: Settings, proxy: tuple[TlsProxy, int], pki: Pki
) -> None:
    # Given the broker reachable only through TLS, and woo.events with a queue bound
    server, port = proxy
    plain = await connect(settings, name="test-amqps-setup")
    try:
        setup = await plain.channel()
        exchange = await setup.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await setup.declare_queue("amqps-relay", auto_delete=True)
        await queue.bind(exchange, "#")
        tls = _amqps_with_client_cert(settings, port, pki)
        # When the relay's channel publishes an event through it
        channel = await open_confirming_channel(tls, name="test-amqps-relay")
        try:
            item = Outgoing("order.paid", b'{"over":"tls"}', {"message_id": "m-tls"})
            await asyncio.wait_for(channel.publish(item), 5)
        finally:
            await channel.close()
        # Then it arrived, confirmed, and the proxy saw our client certificate
        message = await queue.get(timeout=5)
        await message.ack()
        assert (message.body, message.message_id) == (b'{"over":"tls"}', "m-tls")
        assert server.clients == [CLIENT_NAME]
    finally:
        await plain.close()
