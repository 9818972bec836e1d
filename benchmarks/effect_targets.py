"""The loopback targets of benchmarks/effect.py in a process of their own, so their work does not
share an interpreter with the load generator: the HTTP target server of the tests
(tests/support/http_target_server.py) and an SMTP server (aiosmtpd). Each request and email is
written as it arrives, one JSON line (time, kind, path, idempotency key, body) to the file named
on the command line. Runs until SIGTERM.

    python -m benchmarks.effect_targets HTTP_PORT_FILE SMTP_PORT LOG
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from aiosmtpd.controller import Controller

from tests.support.http_target_server import Answer, HttpTargetServer, Recorded


class Log:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def write(self, kind: str, path: str, key: str, body: bytes) -> None:
        line = json.dumps(
            {
                "at": time.time(),
                "kind": kind,
                "path": path,
                "key": key,
                "body": body.decode(errors="replace"),
            }
        )
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class TimedSmtp:
    def __init__(self, log: Log) -> None:
        self._log = log

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self._log.write("smtp", "", "", bytes(envelope.content))
        return "250 OK"


def main(argv: list[str]) -> None:
    port_file, smtp_port, log_path = Path(argv[0]), int(argv[1]), Path(argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with log_path.open("w") as out:
        log = Log(out)

        def route(request: Recorded) -> Answer:
            log.write("http", request.path, request.idempotency_key or "", request.body)
            return Answer()

        controller = Controller(TimedSmtp(log), hostname="127.0.0.1", port=smtp_port)
        controller.start()
        with HttpTargetServer() as server:
            server.route = route
            port_file.write_text(str(server.port))
            stop.wait()
        controller.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
