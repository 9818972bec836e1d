"""``woofleet catalog push``: CSV validation by line number, then confirmed commands of ≤ 100."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from fleet.amqp import connect
from fleet.settings import Settings
from tests.support.amqp import apply, drain, fast_fleet
from topology import names
from woofleet.main import build_parser

pytestmark = pytest.mark.integration


def push(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(["catalog", "push", *argv])
    args.settings = settings
    code: int = args.func(args)
    return code


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_text(text)
    return path


async def _apply(settings: Settings, vhost: str) -> None:
    connection = await connect(settings, name="test catalog cli")
    try:
        await apply(connection, fast_fleet("catalog"), vhost)
    finally:
        await connection.close()


async def _drain(settings: Settings) -> list[Any]:
    connection = await connect(settings, name="test catalog cli drain")
    try:
        return await drain(connection, names.work_queue("catalog"))
    finally:
        await connection.close()


@pytest.fixture
def topology(settings: Settings, vhost: str) -> Settings:
    asyncio.run(_apply(settings, vhost))
    return settings


def test_a_price_file_is_published_in_commands_of_100(
    topology: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a price file of 250 rows, some with a sale price and some for variations
    rows = ["product_id,variation_id,regular_price,sale_price"]
    rows += [f"{i},{7 if i % 3 else 0},{i}.50,{'9.99' if i % 2 else ''}" for i in range(1, 251)]
    path = write(tmp_path, "\n".join(rows) + "\n")
    # When it is pushed
    assert push(topology, str(path), "--kind", "price") == 0
    # Then woo.catalog holds three confirmed catalog.price_update commands: 100, 100, 50 items
    messages = asyncio.run(_drain(topology))
    assert [m.type for m in messages] == ["catalog.price_update"] * 3
    bodies = [json.loads(m.body) for m in messages]
    assert [len(b["data"]["items"]) for b in bodies] == [100, 100, 50]
    assert bodies[0]["data"]["items"][0] == {
        "product_id": 1,
        "variation_id": 7,
        "regular_price": "1.50",
        "sale_price": "9.99",
    }
    assert bodies[0]["data"]["items"][1]["sale_price"] is None
    assert bodies[0]["data"]["items"][2]["variation_id"] == 0
    assert all(m.delivery_mode == 2 and m.message_id for m in messages)
    assert "published 250 price item(s) in 3 command(s)" in capsys.readouterr().out


def test_bad_rows_are_reported_by_line_and_nothing_is_published(
    topology: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "product_id,stock_quantity\n1,5\nabc,3\n2,-4\n3,\n4,7\n",
    )
    assert push(topology, str(path), "--kind", "stock") == 1
    err = capsys.readouterr().err
    assert "catalog.csv: line 3: product_id: Input should be a valid integer" in err
    assert "line 4: prices and quantities cannot be negative" in err
    assert "line 5: stock_quantity: Field required" in err
    assert "3 bad row(s); nothing published" in err
    assert asyncio.run(_drain(topology)) == []


def test_skip_invalid_publishes_the_valid_rows(
    topology: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "sku,name,regular_price,categories\nA-1,Alpha,5,x|y\nB-2,,6,\n")
    assert push(topology, str(path), "--kind", "products", "--skip-invalid") == 0
    [message] = asyncio.run(_drain(topology))
    assert message.type == "catalog.product_import"
    [item] = json.loads(message.body)["data"]["items"]
    assert (item["sku"], item["categories"]) == ("A-1", ["x", "y"])
    assert "catalog.csv: line 3: name: Field required" in capsys.readouterr().err


def test_a_missing_column_is_named(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "product_id,price\n1,5\n")
    assert push(settings, str(path), "--kind", "price") == 1
    assert "line 1: missing column(s) regular_price for --kind price" in capsys.readouterr().err


def test_dry_run_only_validates(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "product_id,stock_quantity\n1,5\n2,6\n")
    assert push(settings, str(path), "--kind", "stock", "--dry-run") == 0
    assert "2 valid stock row(s); nothing published (--dry-run)" in capsys.readouterr().out


def test_a_missing_file_is_exit_code_2(settings: Settings, tmp_path: Path) -> None:
    assert push(settings, str(tmp_path / "nope.csv"), "--kind", "stock") == 2
