"""Run every benchmark, one after the other, and end with one side-by-side table: each figure
beside its baseline from the same run.

    python -m benchmarks [--quick] [--only NAME[,NAME...]]

Each benchmark also runs alone with its own options: scripts/bench-<name> --help. A benchmark
that fails is reported, the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

import uvloop

from benchmarks import (
    effect,
    fleet,
    invoice,
    ledger,
    memory,
    priority,
    publisher,
    runtime,
    webhook,
)
from benchmarks.common import Figure, machine, table

BENCHES: dict[str, ModuleType] = {
    "publisher": publisher,
    "runtime": runtime,
    "ledger": ledger,
    "invoice": invoice,
    "webhook": webhook,
    "fleet": fleet,
    "memory": memory,
    "effect": effect,
    "priority": priority,
}
#: Options for --quick: small counts, a minute or two in all on a quiet machine.
QUICK: dict[str, list[str]] = {
    "publisher": ["--messages", "3000", "--rounds", "1"],
    "runtime": ["--messages", "3000"],
    "ledger": ["--messages", "3000"],
    "invoice": ["--orders", "20"],
    "webhook": ["--requests", "2000", "--rate", "200", "--duration", "5"],
    "fleet": ["--orders", "30", "--max-seconds", "120"],
    "memory": ["--deliveries", "2000", "--orders", "50"],
    "effect": ["--rate", "5", "--seconds", "10"],
    "priority": ["--backlog", "5000", "--warm", "100"],
}
#: Benchmarks whose load generator runs on uvloop (its own scheduling counts as latency).
FAST_LOOP = {"webhook"}


def run_one(name: str, argv: list[str]) -> list[Figure]:
    module = BENCHES[name]
    args = module.parser().parse_args(argv)
    loop_factory = uvloop.new_event_loop if name in FAST_LOOP else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        figures: list[Figure] = runner.run(module.run(args))
    return figures


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated, of {', '.join(BENCHES)}"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    logging.basicConfig(level=logging.WARNING)
    figures: list[Figure] = []
    failed: list[str] = []
    for name in names:
        print(f"\n== {name} ==", flush=True)
        try:
            figures += run_one(name, QUICK[name] if args.quick else [])
        except (Exception, SystemExit) as exc:  # one failing benchmark must not hide the others
            traceback.print_exception(exc)
            failed.append(name)
    print()
    print(table(figures))
    print(machine())
    if failed:
        print(f"failed: {', '.join(failed)} (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli())
