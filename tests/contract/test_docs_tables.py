"""The consumer tables in README.md and docs/ say what topology/fleet.py says.

The consumer table lives in one place, ``topology/fleet.py``; the documents show it to readers.
README's table is compared whole with one rendered from the table (a failure prints it, ready to
paste); the tables in docs/ are checked column by column where they repeat a fact of the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from topology.fleet import CONSUMERS, ConsumerPolicy

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BY_NAME = {c.name: c for c in CONSUMERS}
README_HEADER = "| consumer | receives | class | attempts | timeout |"


def in_words(seconds: float) -> str:
    """``604800`` → ``7 days``: how the documents speak of a delay."""
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} seconds"


def readme_row(consumer: ConsumerPolicy) -> str:
    receives = ", ".join(consumer.bindings)
    if consumer.delay is not None:
        receives += f", {in_words(consumer.delay)} later (delay queue)"
    return (
        f"| `{consumer.name}` | {receives} | {consumer.priority_class.value} | "
        f"{consumer.max_attempts} | {consumer.timeout:g} s |"
    )


def readme_table() -> str:
    return "\n".join([README_HEADER, "|---|---|---|---|---|", *map(readme_row, CONSUMERS)])


def tables(text: str) -> Iterator[list[list[str]]]:
    """Every markdown table of ``text`` as rows of stripped cells, header first."""
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            yield [row for row in block if not set("".join(row)) <= set("-: ")]
            block = []


def bindings_in(cell: str) -> tuple[set[str], list[str]]:
    """``order.paid, .cancelled, 7 days later`` → ({order.paid, order.cancelled}, [7 days later]).

    A leading dot repeats the previous key's first word; items with spaces are remarks.
    """
    keys: set[str] = set()
    remarks: list[str] = []
    prefix = ""
    for item in (i.strip() for i in cell.split(",")):
        if " " in item:
            remarks.append(item)
            continue
        key = f"{prefix}{item}" if item.startswith(".") else item
        prefix = key.split(".", 1)[0]
        keys.add(key)
    return keys, remarks


def test_readme_consumer_table_is_the_topology_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = readme_table()
    assert expected in readme, (
        "README.md's consumer table disagrees with topology/fleet.py; replace it with:\n" + expected
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_consumer_row_in_the_documents_binds_what_its_topology_row_binds(
    document: Path,
) -> None:
    checked = 0
    for table in tables(document.read_text(encoding="utf-8")):
        header = [h.lower() for h in table[0]]
        if header[0] != "consumer":
            continue
        column = next((header.index(h) for h in ("binds", "receives") if h in header), None)
        for row in table[1:]:
            name = row[0].strip("`")
            assert name in BY_NAME, f"{document.name}: {name!r} is not in topology/fleet.py"
            if column is None:
                continue
            consumer = BY_NAME[name]
            keys, remarks = bindings_in(row[column])
            assert keys == set(consumer.bindings), f"{document.name}: {name} binds {keys}"
            delayed = any(r.startswith(in_words(consumer.delay or 0)) for r in remarks)
            assert delayed == (consumer.delay is not None), f"{document.name}: {name} delay"
            checked += 1
    if document.name == "README.md":
        assert checked == len(CONSUMERS)


def test_a_changed_row_is_caught() -> None:
    # The check must be able to fail: a README that lost a binding no longer holds the table.
    stale = readme_table().replace("| order.paid, order.cancelled, order.refunded |", "| x |")
    assert readme_table() not in stale
    keys, remarks = bindings_in("order.paid, .cancelled, 7 days later")
    assert keys == {"order.paid", "order.cancelled"} and remarks == ["7 days later"]


def test_the_consumer_count_in_words_matches_the_table() -> None:
    words = {11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = set(
        re.findall(r"\b(eleven|twelve|thirteen|fourteen) (?:independent )?consumers", readme)
    )
    assert found <= {words[len(CONSUMERS)]}, (
        f"README.md counts {found}, the table has {len(CONSUMERS)}"
    )
