"""A consumer process for tests that kill, crash or SIGTERM it: the runtime with a test handler.

    python -m tests.support.consumer_process AMQP_URL STATE_URL MODE MARKER_DIR [--grace S]

It runs the ``analytics`` consumer under ``fast_fleet("analytics")`` (the test applies the same
topology) and shuts down the way ``woofleet consume`` does: on SIGTERM or SIGINT it stops taking
deliveries, lets what is in flight finish within the grace period, and exits 0, or 1 when
something was still running after the grace. The handler leaves marker files in MARKER_DIR so a
test can wait on them instead of sleeping:

* ``hang-once`` — the first delivery writes ``started`` and then hangs (for a kill -9); any later
  delivery writes ``done`` (its content: whether the broker flagged it redelivered).
* ``crash`` — every delivery writes ``attempt-<n>`` and then kills its own process (SIGKILL).
* ``slow`` — writes ``started``, sleeps ``--handler-seconds``, writes ``done``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.handler import AnyEnvelope, Handler
from fleet.errors import WoofleetError
from fleet.logging import setup_logging
from fleet.settings import Settings
from tests.support.amqp import fast_fleet

CONSUMER = "analytics"
SPEC = HandlerSpec()
MODES = ("hang-once", "crash", "slow")

log = logging.getLogger("tests.consumer_process")


def mark(directory: Path, name: str, content: str = "") -> None:
    """Write a marker file in one step (write, then rename), so its existence means complete."""
    partial = directory / f".{name}.partial"
    partial.write_text(content)
    partial.replace(directory / name)


def next_attempt(directory: Path) -> int:
    return len(list(directory.glob("attempt-*"))) + 1


def build_handler(mode: str, markers: Path, handler_seconds: float) -> Handler:
    async def hang_once(event: AnyEnvelope, delivery: Delivery) -> None:
        if not (markers / "started").exists():
            mark(markers, "started", str(os.getpid()))
            await asyncio.sleep(3600)
        mark(markers, "done", str(delivery.redelivered))

    async def crash(event: AnyEnvelope, delivery: Delivery) -> None:
        mark(markers, f"attempt-{next_attempt(markers)}", str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    async def slow(event: AnyEnvelope, delivery: Delivery) -> None:
        mark(markers, "started", str(os.getpid()))
        await asyncio.sleep(handler_seconds)
        mark(markers, "done", str(delivery.redelivered))

    handlers: dict[str, Handler] = {"hang-once": hang_once, "crash": crash, "slow": slow}
    return handlers[mode]


async def run(args: argparse.Namespace) -> int:
    markers = Path(args.marker_dir)
    settings = Settings(
        amqp_url=args.amqp_url,
        state_url=args.state_url,
        var_dir=markers / "var",
        targets={},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(
        [CONSUMER],
        settings,
        fleet=fast_fleet(CONSUMER),
        middleware=[],
        handlers={CONSUMER: (SPEC, build_handler(args.mode, markers, args.handler_seconds))},
    )
    await supervisor.start()
    log.info("consumer process %d ready", os.getpid())
    await stop.wait()
    finished = await supervisor.stop(args.grace)
    log.info(
        "stopped (%s): %s",
        "clean" if finished else "after grace",
        dict(supervisor.workers[CONSUMER].stats),
    )
    return 0 if finished else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("amqp_url")
    parser.add_argument("state_url")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("marker_dir")
    parser.add_argument("--grace", type=float, default=5.0, help="SIGTERM grace period (s)")
    parser.add_argument(
        "--handler-seconds", type=float, default=1.5, help="how long the slow handler takes"
    )
    args = parser.parse_args()
    setup_logging("INFO")
    try:
        return asyncio.run(run(args))
    except WoofleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
