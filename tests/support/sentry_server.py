"""A local endpoint that records what Sentry's SDK sends (envelopes), for leak tests.

Point ``SENTRY_DSN`` at ``server.dsn``; every envelope POSTed to ``/api/<project>/envelope/``
is kept, decompressed, in ``server.envelopes``; :meth:`events` parses out the error events.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SentryServer:
    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                with recorder._lock:
                    recorder.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.dsn = f"http://publickey@127.0.0.1:{self.port}/1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SentryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def text(self) -> str:
        """Everything received, as text: what a leak test greps."""
        with self._lock:
            return "\n".join(e.decode("utf-8", "replace") for e in self.envelopes)

    def events(self) -> list[dict[str, Any]]:
        """The error events among the envelopes' items."""
        found = []
        with self._lock:
            envelopes = list(self.envelopes)
        for envelope in envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                try:
                    item = json.loads(header)
                except ValueError:
                    continue
                if item.get("type") == "event":
                    found.append(json.loads(payload))
        return found
