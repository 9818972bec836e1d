"""``woofleet dlq list|show|replay|purge [CONSUMER] [filters]``: dead letters, safely."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import TYPE_CHECKING

from fleet.settings import Settings
from topology import names
from topology.fleet import CONSUMER_NAMES, DEFAULT_FLEET

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from consumers.dead_letters import DeadLetter, LetterFilter

DESCRIPTION = """\
Dead letters are messages a consumer could not process: a broken contract, a permanent error,
or attempts exhausted. Each carries the woofleet- failure headers (attempt, error, when).

Browsing (list, show) never changes a queue: same order, no delivery counted. The filters
select the same letters for every verb, so replay and purge act on exactly what list shows.
"""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def age(text: str) -> float:
    """``90``, ``45s``, ``30m``, ``2h``, ``7d`` → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 90s, 30m, 2h or 7d")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _add_filters(sub: argparse.ArgumentParser) -> None:
    group = sub.add_argument_group("filters (shared by list, show, replay and purge)")
    group.add_argument(
        "--id", dest="ids", action="append", metavar="MESSAGE_ID", help="this message (repeatable)"
    )
    group.add_argument("--reason", metavar="TEXT", help="reason contains TEXT (any case)")
    group.add_argument("--event", metavar="TYPE", help="event type, or a pattern like order.*")
    group.add_argument("--order", metavar="ID_OR_NUMBER", help="this order's id or number")
    group.add_argument(
        "--older-than", type=age, metavar="AGE", help="dead-lettered at least AGE ago (30m, 2h)"
    )
    group.add_argument(
        "--newer-than", type=age, metavar="AGE", help="dead-lettered at most AGE ago"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="browse, replay or purge dead letters (browsing never changes a queue)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)
    consumers = ", ".join(CONSUMER_NAMES)
    for verb, help_text, optional in (
        ("list", "one line per dead letter, per queue, with totals; --by-reason groups", True),
        ("show", "everything about dead letters: full reason, headers, body (JSON)", True),
        ("replay", "send dead letters back to the consumer's work queue as first attempts", False),
        ("purge", "archive, then delete dead letters (asks first)", False),
    ):
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        sub.add_argument(
            "consumer",
            metavar="CONSUMER",
            nargs="?" if optional else None,
            help=f"one of: {consumers}" + ("; every one when left out" if optional else ""),
        )
        _add_filters(sub)
        if verb in ("list", "show", "replay"):
            default = {"list": 100, "show": 10}.get(verb)
            sub.add_argument(
                "--limit",
                type=int,
                default=default,
                help=f"at most this many per queue ({default or 'all'})",
            )
        if verb == "list":
            sub.add_argument("--by-reason", action="store_true", help="count per distinct reason")
        if verb == "replay":
            sub.add_argument(
                "--dry-run", action="store_true", help="say what would go; send nothing"
            )
            sub.add_argument(
                "--rate", type=float, metavar="PER_SECOND", help="at most this many per second"
            )
        if verb == "purge":
            sub.add_argument(
                "--archive",
                metavar="PATH_OR_S3_URL",
                help="where the JSON lines of what is deleted go first: a file, or "
                "s3://bucket/key (WOOFLEET_S3_ENDPOINT_URL applies); default "
                "var/dlq-archive/CONSUMER-TIME.jsonl",
            )
            sub.add_argument("--yes", action="store_true", help="do not ask")
        sub.set_defaults(func=run, verb=verb)


def run(args: argparse.Namespace) -> int:
    if args.consumer is not None:
        DEFAULT_FLEET.check([args.consumer])
    if args.verb == "purge" and not args.yes and not sys.stdin.isatty():
        print(
            "woofleet: purge deletes dead letters and there is no terminal to ask on; "
            "add --yes to go ahead",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_run(args))


def _filter(args: argparse.Namespace) -> LetterFilter:
    from consumers.dead_letters import LetterFilter

    return LetterFilter(
        ids=frozenset(args.ids or ()),
        reason=args.reason,
        event_type=args.event,
        order=args.order,
        older_than=args.older_than,
        newer_than=args.newer_than,
    )


async def _run(args: argparse.Namespace) -> int:
    from fleet.amqp import connect

    settings: Settings = args.settings
    connection = await connect(settings, name=f"woofleet dlq {args.verb}")
    try:
        if args.verb in ("list", "show"):
            return await _browse(connection, args)
        if args.verb == "replay":
            return await _replay(connection, args)
        return await _purge(connection, args, settings)
    finally:
        await connection.close()


def line(d: DeadLetter) -> str:
    order = f"order {d.ref or '?'}"
    if d.order_number not in ("", d.ref):
        order += f" #{d.order_number}"
    return (
        f"  {d.message_id}  {d.event_type:<15} {order:<12} attempt {d.attempt}  "
        f"{d.last_failed_at}  {d.reason}"
    )


async def _browse(connection: AbstractRobustConnection, args: argparse.Namespace) -> int:
    from consumers.dead_letters import UnknownDeadLetter, group_by_reason, list_dead_letters

    letter_filter = _filter(args)
    consumers = [args.consumer] if args.consumer else list(CONSUMER_NAMES)
    # Ids are looked for across the queues named; only missing everywhere is an error.
    per_queue = _filter_without_ids(letter_filter) if len(consumers) > 1 else letter_filter
    found: list[DeadLetter] = []
    total = holding = 0
    by_reason = getattr(args, "by_reason", False)
    for consumer in consumers:
        held, letters = await list_dead_letters(
            connection, consumer, per_queue, limit=None if by_reason else args.limit
        )
        total += held
        holding += 1 if held else 0
        if letter_filter.ids:
            letters = [d for d in letters if d.message_id in letter_filter.ids]
        found += letters
        if args.verb == "show" or by_reason or (not held and len(consumers) > 1):
            continue
        matching = "" if letter_filter.selects_all else f" ({len(letters)} match)"
        print(f"{names.dead_letter_queue(consumer)}: {_count(held)}{matching}")
        for d in letters:
            print(line(d))
    missing = sorted(letter_filter.ids - {d.message_id for d in found})
    if missing:
        where = names.dead_letter_queue(args.consumer) if args.consumer else "any dead-letter queue"
        raise UnknownDeadLetter(f"no dead letter {', '.join(missing)} in {where}")
    if args.verb == "show":
        if not found:
            print("no dead letters match", file=sys.stderr)
        for d in found:
            print(json.dumps(d.as_dict(), indent=2, ensure_ascii=False, default=str))
    elif by_reason:
        for group in group_by_reason(found):
            print(f"{group.count:>7}  {','.join(group.consumers)}  {group.reason}")
    if args.verb == "list" and len(consumers) > 1:
        print(f"total: {_count(total)} in {holding} of {len(consumers)} queues")
    return 0


def _filter_without_ids(letter_filter: LetterFilter) -> LetterFilter:
    from dataclasses import replace

    return replace(letter_filter, ids=frozenset())


def _count(n: int) -> str:
    return f"{n} dead letter{'' if n == 1 else 's'}"


async def _replay(connection: AbstractRobustConnection, args: argparse.Namespace) -> int:
    from consumers.dead_letters import list_dead_letters, replay

    letter_filter = _filter(args)
    work = names.work_queue(args.consumer)
    if args.dry_run:
        _, letters = await list_dead_letters(
            connection, args.consumer, letter_filter, limit=args.limit
        )
        print(f"would replay {_count(len(letters))} to {work} (dry run, nothing sent):")
        for d in letters:
            print(line(d))
        return 0

    def progress(done: int, selected: int) -> None:
        if done == selected or done % 100 == 0:
            print(f"replayed {done}/{selected}", file=sys.stderr, flush=True)

    replayed = await replay(
        connection,
        args.consumer,
        letter_filter,
        limit=args.limit,
        rate=args.rate,
        progress=progress,
    )
    print(f"replayed {_count(len(replayed))} to {work}")
    for d in replayed:
        print(line(d))
    return 0


async def _purge(
    connection: AbstractRobustConnection, args: argparse.Namespace, settings: Settings
) -> int:
    from consumers.dead_letters import purge
    from woofleet.dlq_archive import archive_writer, default_archive

    dlq = names.dead_letter_queue(args.consumer)
    target = args.archive or default_archive(settings, args.consumer)
    write, where = archive_writer(target, settings)

    def confirm(selected: int, total: int) -> bool:
        if args.yes:
            return True
        answer = input(
            f"delete {selected} of {_count(total)} from {dlq}, archived first to {where}? [y/N] "
        )
        return answer.strip().lower() in ("y", "yes")

    purged = await purge(connection, args.consumer, _filter(args), archive=write, confirm=confirm)
    print(
        f"purged {len(purged)} dead letter(s) from {dlq}"
        + (f"; archived to {where}" if purged else "")
    )
    return 0
