"""What every benchmark shares: figures beside their baselines, the summary table, a throw-away
virtual host on the local RabbitMQ, free loopback ports."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import uvloop

from fleet.settings import Settings
from topology.management import Management, q


@dataclass(frozen=True)
class Figure:
    """One measured figure and the baseline it is read against, both from the same run."""

    bench: str
    what: str
    value: float
    unit: str
    baseline_what: str
    baseline: float
    #: The least acceptable ``value / baseline`` (or, when lower is better, the most).
    target_ratio: float | None = None
    higher_is_better: bool = True
    #: An absolute target for ``value`` instead (e.g. a p99 in ms).
    target_value: float | None = None

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    @property
    def verdict(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        if self.target_value is not None:
            met = self.value >= self.target_value if self.higher_is_better else None
            met = met if met is not None else self.value <= self.target_value
            return f"{'met' if met else 'NOT met'} ({sign} {self.target_value:g} {self.unit})"
        if self.target_ratio is None:
            return ""
        met = self.ratio >= self.target_ratio if self.higher_is_better else None
        met = met if met is not None else self.ratio <= self.target_ratio
        return f"{'met' if met else 'NOT met'} ({sign} {self.target_ratio:g}x)"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def table(figures: Iterable[Figure]) -> str:
    """The side-by-side table: each figure with its baseline, their ratio and the target."""
    header = ("bench", "figure", "value", "baseline (same run)", "value", "ratio", "target")
    rows = [header] + [
        (
            f.bench,
            f.what,
            f"{_number(f.value)} {f.unit}",
            f.baseline_what,
            f"{_number(f.baseline)} {f.unit}",
            f"{f.ratio:.2f}x",
            f.verdict,
        )
        for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 4, 5}

    def line(row: tuple[str, ...]) -> str:
        cells = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def machine() -> str:
    load = os.getloadavg()
    return f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} (shared)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_vhost(amqp_url: str, vhost: str) -> str:
    """``amqp_url`` pointed at ``vhost``."""
    return urlunsplit(urlsplit(amqp_url)._replace(path="/" + q(vhost)))


def vhost_of(settings: Settings) -> str:
    """The virtual host ``settings`` points at."""
    return unquote(urlsplit(settings.amqp_url.get_secret_value()).path[1:]) or "/"


@contextmanager
def throwaway_vhost(prefix: str) -> Iterator[Settings]:
    """Settings for a new virtual host of the local RabbitMQ, deleted afterwards."""
    base = Settings()
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    management = Management(base.management_url.get_secret_value())
    management.create_vhost(vhost)
    try:
        url = with_vhost(base.amqp_url.get_secret_value(), vhost)
        yield base.model_copy(update={"amqp_url": type(base.amqp_url)(url)})
    finally:
        try:
            management.delete_vhost(vhost)
        except Exception as exc:  # the broker may be restarting under other work
            print(f"could not delete vhost {vhost} ({exc}); delete it by hand")
        management.close()


Run = Callable[[argparse.Namespace], Coroutine[Any, Any, list[Figure]]]


def main(
    parser: argparse.ArgumentParser,
    run: Run,
    argv: Sequence[str] | None = None,
    *,
    fast_loop: bool = False,
) -> None:
    """Parse ``argv``, run one benchmark and print its figures as the side-by-side table
    (``fast_loop``: on uvloop, for load generators whose own scheduling counts as latency)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loop_factory = uvloop.new_event_loop if fast_loop else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        figures = runner.run(run(args))
    print()
    print(table(figures))
    print(machine())


def parser_for(module_doc: str | None, prog: str) -> argparse.ArgumentParser:
    """An argument parser whose --help is the benchmark module's docstring."""
    doc = module_doc or ""
    return argparse.ArgumentParser(
        prog=prog,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used, read from /proc; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of stat (utime, stime); after the command's ")" they are 12 and 13.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def proc_rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (10^6 bytes), read from /proc."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6


def pids_named(name: str) -> list[int]:
    """Processes whose command name (/proc/<pid>/comm) is ``name``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        found.append(int(entry))
            except OSError:
                continue
    return found
