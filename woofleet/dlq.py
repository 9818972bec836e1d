"""``woofleet dlq list|show|replay|purge CONSUMER``."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from fleet.settings import Settings
from topology.fleet import CONSUMER_NAMES, DEFAULT_FLEET


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="inspect, replay or purge a consumer's dead-letter queue",
        description="Dead letters are messages a consumer could not process: a broken contract, "
        "a permanent error, or attempts exhausted. Each carries the woofleet- failure headers.",
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)
    for verb, help_text in (
        ("list", "one line per dead letter: id, event, order, attempts, error"),
        ("show", "headers and body of dead letters"),
        ("replay", "send dead letters back to the consumer's work queue as first attempts"),
        ("purge", "delete every dead letter of the consumer (asks for --yes)"),
    ):
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        sub.add_argument(
            "consumer",
            metavar="CONSUMER",
            help=f"one of: {', '.join(CONSUMER_NAMES)}",
        )
        if verb in ("list", "show"):
            sub.add_argument("--limit", type=int, default=100, help="at most this many (100)")
        if verb in ("show", "replay"):
            sub.add_argument(
                "--id",
                dest="ids",
                action="append",
                metavar="MESSAGE_ID",
                help="only this message (repeatable)",
            )
        if verb == "replay":
            sub.add_argument("--limit", type=int, help="replay at most this many")
        if verb == "purge":
            sub.add_argument("--yes", action="store_true", help="really delete them")
        sub.set_defaults(func=run, verb=verb)


def run(args: argparse.Namespace) -> int:
    DEFAULT_FLEET.check([args.consumer])
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from consumers import dead_letters
    from fleet.amqp import connect

    settings: Settings = args.settings
    connection = await connect(settings, name=f"woofleet dlq {args.verb}")
    try:
        if args.verb == "list":
            letters = await dead_letters.list_dead_letters(
                connection, args.consumer, limit=args.limit
            )
            if not letters:
                print(f"woo.{args.consumer}.dlq is empty")
            for d in letters:
                print(
                    f"{d.message_id}  {d.event_type:<16} ref={d.ref:<8} attempts={d.attempt} "
                    f"last={d.last_failed_at}  {d.error[:120]}"
                )
        elif args.verb == "show":
            letters = await dead_letters.list_dead_letters(
                connection, args.consumer, limit=args.limit
            )
            for d in letters:
                if args.ids and d.message_id not in args.ids:
                    continue
                print(json.dumps(_as_dict(d), indent=2, ensure_ascii=False, default=str))
        elif args.verb == "replay":
            count = await dead_letters.replay(
                connection,
                args.consumer,
                message_ids=set(args.ids) if args.ids else None,
                limit=args.limit,
            )
            print(f"replayed {count} message(s) to woo.{args.consumer}")
        elif args.verb == "purge":
            if not args.yes:
                print(
                    f"this deletes every message in woo.{args.consumer}.dlq; "
                    "run again with --yes to do it"
                )
                return 2
            count = await dead_letters.purge(connection, args.consumer)
            print(f"purged {count} message(s) from woo.{args.consumer}.dlq")
    finally:
        await connection.close()
    return 0


def _as_dict(d: Any) -> dict[str, Any]:
    try:
        body: Any = json.loads(d.body)
    except ValueError:
        body = d.body.decode("utf-8", "replace")
    return {
        "message_id": d.message_id,
        "event_type": d.event_type,
        "ref": d.ref,
        "priority": d.priority,
        "headers": d.headers,
        "body": body,
    }
