"""``woofleet catalog push FILE.csv --kind price|stock|products``: bulk catalog commands.

The file is checked in full first (required columns, every row against the contract); a bad
row is reported by its line number and nothing is published unless ``--skip-invalid`` is
given. The valid rows then go out in commands of at most 100 items (WooCommerce's batch
limit) to ``woo.events`` with routing key ``catalog.price_update``, ``catalog.stock_sync`` or
``catalog.product_import``, each confirmed by the broker before the next.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.settings import Settings


@dataclass(frozen=True)
class Kind:
    event_type: str
    required: tuple[str, ...]
    optional: tuple[str, ...]


KINDS: dict[str, Kind] = {
    "price": Kind(
        "catalog.price_update", ("product_id", "regular_price"), ("variation_id", "sale_price")
    ),
    "stock": Kind("catalog.stock_sync", ("product_id", "stock_quantity"), ("variation_id",)),
    "products": Kind(
        "catalog.product_import",
        ("sku", "name", "regular_price"),
        ("type", "description", "stock_quantity", "categories"),
    ),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="bulk catalog jobs: push prices, stock levels or new products from a CSV file",
        description="The catalog consumer applies these commands to WooCommerce through its "
        "batch API, 100 items a call.",
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)
    columns = "; ".join(
        f"{name}: {', '.join(k.required)} (optional {', '.join(k.optional)})"
        for name, k in KINDS.items()
    )
    push = verbs.add_parser(
        "push",
        help="validate a CSV file and publish it as catalog commands",
        description=f"Columns by kind — {columns}. Categories are separated by '|'.",
    )
    push.add_argument("file", type=Path, metavar="FILE.csv", help="the CSV file (UTF-8, header)")
    push.add_argument("--kind", required=True, choices=sorted(KINDS), help="what the file holds")
    push.add_argument(
        "--skip-invalid", action="store_true", help="publish the valid rows even if some are bad"
    )
    push.add_argument("--dry-run", action="store_true", help="only validate; publish nothing")
    push.set_defaults(func=run_push)


def read_items(path: Path, kind: str) -> tuple[list[Any], list[str]]:
    """The file's rows as contract items, and one message per bad row (``line N: ...``)."""
    from pydantic import TypeAdapter, ValidationError

    from contracts.catalog import PriceChange, ProductDraft, StockLevel

    model = {"price": PriceChange, "stock": StockLevel, "products": ProductDraft}[kind]
    spec = KINDS[kind]
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    items: list[Any] = []
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        missing = [c for c in spec.required if c not in (reader.fieldnames or ())]
        if missing:
            return [], [f"line 1: missing column(s) {', '.join(missing)} for --kind {kind}"]
        known = set(spec.required + spec.optional)
        for row in reader:
            fields: dict[str, Any] = {
                k: v.strip() for k, v in row.items() if k in known and v and v.strip()
            }
            if "categories" in fields:
                fields["categories"] = tuple(c.strip() for c in fields["categories"].split("|"))
            try:
                item = adapter.validate_python(fields)
            except ValidationError as exc:
                errors = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}"
                    for e in exc.errors()
                )
                problems.append(f"line {reader.line_num}: {errors}")
                continue
            if any(v < 0 for v in _amounts(item)):
                problems.append(f"line {reader.line_num}: prices and quantities cannot be negative")
                continue
            items.append(item)
    if not items and not problems:
        problems.append("line 1: the file has a header but no rows")
    return items, problems


def _amounts(item: Any) -> list[Any]:
    names = ("regular_price", "sale_price", "stock_quantity")
    return [getattr(item, n) for n in names if getattr(item, n, None) is not None]


def run_push(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"woofleet: no such file: {args.file}", file=sys.stderr)
        return 2
    items, problems = read_items(args.file, args.kind)
    for problem in problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if problems and not (args.skip_invalid and items):
        print(
            f"woofleet: {len(problems)} bad row(s); nothing published "
            "(fix them, or pass --skip-invalid to publish the valid rows)",
            file=sys.stderr,
        )
        return 1
    if args.dry_run:
        print(f"{len(items)} valid {args.kind} row(s); nothing published (--dry-run)")
        return 0
    sent = asyncio.run(publish(args.settings, args.kind, items))
    print(f"published {len(items)} {args.kind} item(s) in {sent} command(s)")
    return 0


async def publish(settings: Settings, kind: str, items: list[Any]) -> int:
    """Publish ``items`` as commands of at most 100, confirmed; returns the command count."""
    import uuid
    from datetime import UTC, datetime

    import aio_pika
    from rich.progress import Progress

    from contracts.catalog import BATCH_LIMIT, PriceUpdate, ProductImport, StockSync
    from contracts.messages import message_body, message_properties
    from contracts.registry import model_for
    from fleet.amqp import connect, publish_confirmed
    from topology.names import EVENTS_EXCHANGE

    event_type = KINDS[kind].event_type
    envelope_model = model_for(event_type, 1)
    data_model = {"price": PriceUpdate, "stock": StockSync, "products": ProductImport}[kind]
    chunks = [items[i : i + BATCH_LIMIT] for i in range(0, len(items), BATCH_LIMIT)]
    connection = await connect(settings, name="woofleet catalog push")
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        with Progress(transient=True) as progress:
            task = progress.add_task(f"publishing {event_type}", total=len(items))
            for chunk in chunks:
                envelope = envelope_model(
                    event_id=uuid.uuid4(),
                    event_type=event_type,
                    schema_version=1,
                    occurred_at=datetime.now(UTC),
                    source=settings.woo_url or "woofleet catalog push",
                    data=data_model(items=tuple(chunk)),
                )
                message = aio_pika.Message(
                    body=message_body(envelope), **message_properties(envelope)
                )
                await publish_confirmed(exchange, message, event_type)
                progress.advance(task, len(chunk))
    finally:
        await connection.close()
    return len(chunks)
