"""The invoice consumer and its stores: local files and S3 (moto's server on loopback)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from pypdf import PdfReader

from consumers import invoice
from consumers.adapters.invoice_store import (
    FileInvoiceStore,
    S3InvoiceStore,
    invoice_store_from_settings,
)
from consumers.runtime.handler import AnyEnvelope, Delivery
from contracts.orders import OrderEvent
from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.settings import Settings
from tests.integration.test_order_email import thai_yen_order
from tests.support.moto_server import fake_aws_credentials, moto_server
from tests.support.net import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    fake_aws_credentials(monkeypatch)
    name = f"invoices-{abs(hash(request.node.name)) % 10**8}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def delivery_for(event: AnyEnvelope) -> Delivery:
    return Delivery(
        consumer="invoice",
        message_id=str(event.event_id),
        attempt=1,
        priority=0,
        redelivered=False,
        business_key=invoice.business_key(event),
        log=logging.LoggerAdapter(logging.getLogger("consumers.invoice"), {}),
    )


def refunded(amount: str = "-1200", refund_id: int = 31) -> OrderEvent:
    event = thai_yen_order(
        "order.refunded", refunds=[{"id": refund_id, "reason": "damaged", "total": amount}]
    )
    data = event.data.model_copy(update={"refund": event.data.refunds[0]})
    return event.model_copy(update={"data": data})


def pdfs_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pdf"))


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def test_paid_order_invoice_lands_in_s3_as_a_pdf_with_number_total_and_thai_name(
    moto_endpoint: str, bucket: str
) -> None:
    settings = Settings(invoice_store=f"s3://{bucket}/shop-a", s3_endpoint_url=moto_endpoint)
    handler = invoice.build(settings)
    event = thai_yen_order("order.paid")

    await handler(event, delivery_for(event))

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    stored = s3.get_object(Bucket=bucket, Key="shop-a/invoices/11/INV-11.pdf")
    assert stored["ContentType"] == "application/pdf"
    text = pdf_text(stored["Body"].read())
    assert "INV-11" in text and "#11" in text and "¥4,800" in text and "สมชาย ใจดี" in text


async def test_a_redelivered_paid_event_stores_no_second_object(
    moto_endpoint: str, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    handler = invoice.build(Settings(invoice_store=f"s3://{bucket}", s3_endpoint_url=moto_endpoint))
    first = thai_yen_order("order.paid")
    # A later event about the same order (edited since) must not replace the issued invoice.
    later = thai_yen_order("order.paid", total="9999", date_modified_gmt="2026-11-29T10:00:00")

    await handler(first, delivery_for(first))
    await handler(first, delivery_for(first))
    await handler(later, delivery_for(later))

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["Key"] for v in versions] == ["invoices/11/INV-11.pdf"]
    assert "INV-11 for order 11 is already stored" in caplog.text


async def test_refund_stores_a_credit_note_next_to_the_invoice(
    moto_endpoint: str, bucket: str
) -> None:
    handler = invoice.build(Settings(invoice_store=f"s3://{bucket}", s3_endpoint_url=moto_endpoint))
    event = refunded()
    await handler(event, delivery_for(event))

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    body = s3.get_object(Bucket=bucket, Key="credit-notes/11/CN-11-31.pdf")["Body"].read()
    text = pdf_text(body)
    assert "CN-11-31" in text and "INV-11" in text and "-¥1,200" in text


async def test_missing_bucket_is_permanent(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aws_credentials(monkeypatch)
    store = S3InvoiceStore("no-such-bucket", endpoint_url=moto_endpoint)
    with pytest.raises(PermanentError, match="NoSuchBucket"):
        await store.put("invoices/1/INV-1.pdf", b"%PDF-", "application/pdf")


async def test_unreachable_s3_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_credentials(monkeypatch)
    store = S3InvoiceStore("bucket", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError):
        await store.exists("invoices/1/INV-1.pdf")


async def test_file_store_is_the_default_and_writes_the_same_bytes_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(invoice_store=f"file://{tmp_path}/invoices", var_dir=tmp_path)
    handler = invoice.build(settings)
    assert "invoices go to file://" in caplog.text
    event = thai_yen_order("order.paid")

    await handler(event, delivery_for(event))
    path = tmp_path / "invoices" / "invoices" / "11" / "INV-11.pdf"
    first = path.read_bytes()
    path.unlink()
    await handler(event, delivery_for(event))  # the ledger forgot; the bytes are the same anyway
    assert path.read_bytes() == first
    assert "สมชาย ใจดี" in pdf_text(first)
    assert [p.name for p in pdfs_under(tmp_path)] == ["INV-11.pdf"]


async def test_seller_toml_fills_the_seller_block(tmp_path: Path) -> None:
    (tmp_path / "seller.toml").write_text(
        'name = "ร้านชา Tea Shop"\naddress = ["1 Sukhumvit Rd", "Bangkok"]\ntax_id = "TH-0105"\n'
        'invoice_prefix = "TS-"\n',
        encoding="utf-8",
    )
    handler = invoice.build(Settings(invoice_store=f"file://{tmp_path}/inv", var_dir=tmp_path))
    event = thai_yen_order("order.paid")
    await handler(event, delivery_for(event))

    text = pdf_text((tmp_path / "inv" / "invoices" / "11" / "TS-11.pdf").read_bytes())
    assert "ร้านชา Tea Shop" in text and "TH-0105" in text and "1 Sukhumvit Rd" in text


def test_relative_file_url_and_bad_urls() -> None:
    store = invoice_store_from_settings(Settings())
    assert isinstance(store, FileInvoiceStore) and store.root == Path("var/invoices")
    with pytest.raises(ConfigError, match="WOOFLEET_INVOICE_STORE"):
        invoice_store_from_settings(Settings(invoice_store="ftp://x/y"))


async def test_order_numbers_with_slashes_stay_inside_the_store(tmp_path: Path) -> None:
    handler = invoice.build(Settings(invoice_store=f"file://{tmp_path}/inv", var_dir=tmp_path))
    event = thai_yen_order("order.paid", number="../../2026/0042")
    await handler(event, delivery_for(event))
    [path] = pdfs_under(tmp_path)
    assert path.is_relative_to(tmp_path / "inv")
