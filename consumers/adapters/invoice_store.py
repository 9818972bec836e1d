"""The invoice store port: ``InvoiceStore`` with a local file store and an S3 store.

``WOOFLEET_INVOICE_STORE`` chooses: ``file://var/invoices`` (the embedded default, relative to the
working directory; ``file:///srv/invoices`` for an absolute path) or ``s3://bucket/prefix``, with
``WOOFLEET_S3_ENDPOINT_URL`` for an S3-compatible store (MinIO, Ceph, ...). Keys are relative
paths such as ``invoices/1042/INV-1042.pdf``. Invoices are written once: callers check
:meth:`InvoiceStore.exists` first, and an existing document is never replaced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def key_part(text: str) -> str:
    """One path segment of a key: order numbers from plugins may hold ``/`` or spaces."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    return cleaned or "_"


class InvoiceStore(Protocol):
    """Where invoice PDFs go; ``put`` returns the stored document's location."""

    description: str

    async def put(self, key: str, data: bytes, content_type: str) -> str: ...

    async def exists(self, key: str) -> bool: ...


class FileInvoiceStore:
    """Files under a directory; each written to a temporary name first, then renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"file://{root}"

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*key.split("/"))
        if ".." in key.split("/"):
            raise PermanentError(f"invoice key {key!r} leaves the store")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        return await asyncio.to_thread(self._write, self._path(key), data)

    def _write(self, path: Path, data: bytes) -> str:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            # A full disk or a read-only mount may be fixed by the operator: retry.
            raise TransientError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return f"file://{path}"

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)


_S3_PERMANENT = {"AccessDenied", "NoSuchBucket", "InvalidBucketName", "InvalidAccessKeyId"}
_S3_PERMANENT |= {"SignatureDoesNotMatch", "AccountProblem", "InvalidRequest"}


class S3InvoiceStore:
    """An S3 bucket (or S3-compatible store); boto3 is blocking, so it runs in a worker thread."""

    def __init__(
        self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        # Few boto retries: the runtime's retry tiers are the place for waiting.
        self._client: S3Client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=20
            ),
        )
        where = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.description = where + (f" at {endpoint_url}" if endpoint_url else "")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        full = self._key(key)
        await self._call(
            "PutObject",
            self._client.put_object,
            Bucket=self.bucket,
            Key=full,
            Body=data,
            ContentType=content_type,
        )
        return f"s3://{self.bucket}/{full}"

    async def exists(self, key: str) -> bool:
        try:
            await self._call(
                "HeadObject", self._client.head_object, Bucket=self.bucket, Key=self._key(key)
            )
        except _NotFound:
            return False
        return True

    async def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return await asyncio.to_thread(method, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise _NotFound from exc
            answer = f"S3 {operation} on bucket {self.bucket}: {code} {error.get('Message', '')}"
            if code in _S3_PERMANENT or code == "403":
                raise PermanentError(
                    f"{answer.strip()}; check the bucket and the consumer's credentials"
                ) from exc
            raise TransientError(answer.strip()) from exc
        except NoCredentialsError as exc:
            raise PermanentError(f"S3 {operation}: {exc}; give the consumer credentials") from exc
        except BotoCoreError as exc:
            raise TransientError(f"S3 {operation} on bucket {self.bucket}: {exc}") from exc


class _NotFound(Exception):
    pass


def invoice_store_from_settings(settings: Settings) -> InvoiceStore:
    """The store ``WOOFLEET_INVOICE_STORE`` names."""
    url = settings.invoice_store
    parts = urlsplit(url)
    store: InvoiceStore
    if parts.scheme == "file":
        # file://var/invoices is relative (its "host" is the first segment); file:///x is not.
        store = FileInvoiceStore(Path(parts.netloc + parts.path))
    elif parts.scheme == "s3" and parts.netloc:
        store = S3InvoiceStore(parts.netloc, parts.path, endpoint_url=settings.s3_endpoint_url)
    else:
        raise ConfigError(
            f"WOOFLEET_INVOICE_STORE {url!r} is neither file://PATH nor s3://BUCKET/PREFIX"
        )
    log.info("invoices go to %s", store.description)
    return store
