"""Where ``woofleet dlq purge`` keeps what it deletes: JSON lines in a file or an S3 object."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from consumers.dead_letters import DeadLetter
from fleet.errors import WoofleetError
from fleet.settings import Settings

Writer = Callable[[list[DeadLetter]], None]


def default_archive(settings: Settings, consumer: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return str(Path(settings.var_dir) / "dlq-archive" / f"{consumer}-{stamp}.jsonl")


def json_lines(letters: list[DeadLetter]) -> bytes:
    """One JSON object per dead letter, as ``dlq show`` prints it."""
    return b"".join(
        json.dumps(d.as_dict(), ensure_ascii=False, default=str).encode() + b"\n" for d in letters
    )


def archive_writer(target: str, settings: Settings) -> tuple[Writer, str]:
    """(a function that stores the letters or raises, a name for the place) for ``target``."""
    parts = urlsplit(target)
    if parts.scheme == "s3":
        key = parts.path.lstrip("/")
        if not parts.netloc or not key or key.endswith("/"):
            raise WoofleetError(f"--archive {target!r}: name an object, s3://BUCKET/KEY.jsonl")
        return _s3_writer(parts.netloc, key, settings.s3_endpoint_url), target
    path = Path(target)
    return (lambda letters: _write_file(path, json_lines(letters))), str(path)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Appending never overwrites an earlier archive; fsync so the copy outlives a crash.
    with path.open("ab") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _s3_writer(bucket: str, key: str, endpoint_url: str | None) -> Writer:
    def write(letters: list[DeadLetter]) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            boto3.client("s3", endpoint_url=endpoint_url).put_object(
                Bucket=bucket, Key=key, Body=json_lines(letters), ContentType="application/x-ndjson"
            )
        except (BotoCoreError, ClientError) as exc:
            raise WoofleetError(
                f"could not archive to s3://{bucket}/{key} ({exc}); nothing was deleted"
            ) from exc

    return write
