"""A three-node RabbitMQ cluster of a chaos run's own, on loopback ports, that the run may break.

The machine's own RabbitMQ serves other work; the node-loss scenario starts three more nodes of
the same installed RabbitMQ (each with its own name, ports, data and log folders, and an Erlang
cookie of the run's own), joins them into one cluster and kills one with ``kill -9``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.chaos.tools import find_tool
from tests.support.net import free_port

SBIN_DIRS = [Path("/usr/lib/rabbitmq/bin"), Path("/usr/sbin")]


def _tool(name: str) -> str:
    return find_tool(name, SBIN_DIRS, "RabbitMQ's server package")


class Node:
    """One node: ``woofleet-chaos-N@localhost`` with AMQP, management and distribution ports."""

    def __init__(self, cluster: LocalCluster, index: int) -> None:
        self.cluster = cluster
        self.name = f"woofleet-chaos-{index}@localhost"
        self.amqp_port = free_port()
        self.management_port = free_port()
        self.dist_port = free_port()
        self.directory = cluster.directory / f"node{index}"
        self.directory.mkdir()
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
            "loopback_users = none\n"
        )
        (self.directory / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.directory / "env.conf").write_text("")

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.cluster.directory),  # where the cookie is
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, tool: str, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [_tool(tool), "-n", self.name, *args],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    @property
    def pid_file(self) -> Path:
        return self.directory / "mnesia" / f"{self.name}.pid"

    def start(self) -> None:
        subprocess.run(
            [_tool("rabbitmq-server"), "-detached"], env=self.env(), check=True, capture_output=True
        )
        deadline = time.monotonic() + 60
        while not self.pid_file.exists():  # written a moment after -detached returns
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start; see {self.directory / 'log'}")
            time.sleep(0.2)
        self.ctl("rabbitmq-diagnostics", "wait", "--timeout", "90", str(self.pid_file))

    def kill(self) -> None:
        """kill -9 of the node's Erlang VM, as a machine failure would."""
        pid = int(self.pid_file.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.ctl("rabbitmqctl", "stop", timeout=60)


class LocalCluster:
    """``with LocalCluster() as cluster``: joined nodes, all stopped and removed at the end."""

    def __init__(self, size: int = 3) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="woofleet-chaos-rmq-"))
        cookie = self.directory / ".erlang.cookie"
        cookie.write_text(f"WOOFLEETCHAOS{os.getpid()}{int(time.time())}")
        cookie.chmod(0o400)
        self.nodes = [Node(self, n + 1) for n in range(size)]

    def __enter__(self) -> LocalCluster:
        try:
            first, *others = self.nodes
            first.start()
            for node in others:
                node.start()
                node.ctl("rabbitmqctl", "stop_app")
                node.ctl("rabbitmqctl", "join_cluster", first.name)
                node.ctl("rabbitmqctl", "start_app")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
