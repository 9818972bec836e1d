"""A PostgreSQL server of a chaos run's own, on a free loopback port, that the run may stop.

The machine's own PostgreSQL serves other work; a scenario that takes the state store away
starts this one instead (``initdb`` into a temporary folder, run as the ``postgres`` user when
started as root, since PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.chaos.tools import find_tool
from tests.support.net import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _tool(name: str) -> str:
    return find_tool(name, BIN_DIRS, "PostgreSQL's server package")


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="woofleet-chaos-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _tool("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.directory / "server.log"),
            "start",
        )

    def stop(self) -> None:
        self._run(_tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def __enter__(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(_tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # stopped by the scenario
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
