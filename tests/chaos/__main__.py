"""``python -m tests.chaos [SCENARIO...] [--fast]``: run chaos scenarios and print their figures."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import replace

from tests.chaos.scenarios import FAST, FAST_SUBSET, FULL, SCENARIOS, Size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos",
        description=(
            "Run the fleet (webhook and one process per consumer type) on this machine's "
            "RabbitMQ in a throw-away virtual host, break it, and count what was sent, done, "
            "lost, duplicated and dead-lettered. broker-restart stops and starts the local "
            "RabbitMQ node itself; run it only where nothing else uses that broker."
        ),
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: {', '.join(FAST_SUBSET)})",
    )
    parser.add_argument("--fast", action="store_true", help="small sizes (as make test runs)")
    parser.add_argument("--orders", type=int, help="orders per scenario (full: 5,000)")
    parser.add_argument("--rate", type=float, help="orders per second sent (full: 100)")
    parser.add_argument("--outage", type=float, help="seconds a target stays down (full: 600)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    size: Size = FAST if args.fast else FULL
    # The run's own broker connections (audit queue, DLQ counts) reconnect by themselves when
    # a scenario restarts the broker; their tracebacks would bury the figures.
    for library in ("aiormq", "aio_pika"):
        logging.getLogger(library).setLevel(logging.CRITICAL)
    overrides = {k: v for k, v in vars(args).items() if k in ("orders", "rate", "outage") and v}
    size = replace(size, **overrides)
    failed = 0
    for name in args.scenarios or FAST_SUBSET:
        print(f"==> {name} ({size})", flush=True)
        figures = asyncio.run(SCENARIOS[name](size))
        print(figures.line(), flush=True)
        for note in figures.notes:
            print(f"    {note}")
        failed += not figures.ok()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
