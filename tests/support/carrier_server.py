"""A carrier aggregator on loopback (for tests): shipments with rates, label purchase, voids,
label PDFs, with the common API's idempotency (the same Idempotency-Key gets the same answer).

    with CarrierServer() as carrier:
        carrier.refuse_next = "Address not found"   # the next purchase ends in ERROR
        ... carrier.url, carrier.shipments, carrier.transactions, carrier.refunds ...
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PDF = b"%PDF-1.4\n% a loopback label\n%%EOF\n"
RATES = (("standard", "Thailand Post", "45.00"), ("express", "Kerry", "95.00"))


@dataclass
class CarrierState:
    shipments: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    #: Answers already given, by Idempotency-Key: a repeat gets the same one.
    answered: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    refuse_next: str = ""
    queue_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class CarrierServer:
    def __init__(self) -> None:
        self.state = CarrierState()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._socket = sock
        app = Starlette(
            routes=[
                Route("/shipments", self.shipments, methods=["POST"]),
                Route("/transactions", self.transactions, methods=["POST"]),
                Route("/refunds", self.refunds, methods=["POST"]),
                Route("/labels/{name}", self.label, methods=["GET"]),
            ]
        )
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    async def _idempotent(self, request: Request, make: Any) -> Response:
        key = request.headers.get("idempotency-key")
        body = await request.json()
        with self.state.lock:
            self.state.requests.append((request.method, request.url.path, key))
            if key and key in self.state.answered:
                status, answer = self.state.answered[key]
                return JSONResponse(answer, status)
            status, answer = make(body)
            if key and status < 500 and answer.get("id") != "":  # a queued label: ask again
                self.state.answered[key] = (status, answer)
        return JSONResponse(answer, status)

    async def shipments(self, request: Request) -> Response:
        def make(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if not body.get("address_to", {}).get("street1"):
                return 400, {"detail": "address_to.street1 is required"}
            sid = f"shp_{len(self.state.shipments) + 1}"
            rates = [
                {
                    "id": f"rate_{sid}_{level}",
                    "service_level": level,
                    "provider": provider,
                    "amount": amount,
                    "currency": "THB",
                }
                for level, provider, amount in RATES
            ]
            self.state.shipments[sid] = {**body, "id": sid, "rates": rates}
            return 201, {"id": sid, "status": "SUCCESS", "rates": rates}

        return await self._idempotent(request, make)

    async def transactions(self, request: Request) -> Response:
        def make(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if self.state.queue_next:
                self.state.queue_next -= 1
                return 201, {"id": "", "status": "QUEUED"}
            if self.state.refuse_next:
                why, self.state.refuse_next = self.state.refuse_next, ""
                return 201, {"id": "txn_err", "status": "ERROR", "messages": [{"text": why}]}
            tid = f"txn_{len(self.state.transactions) + 1}"
            tracking = f"EF{len(self.state.transactions) + 1:09d}TH"
            answer = {
                "id": tid,
                "status": "SUCCESS",
                "rate": body["rate"],
                "tracking_number": tracking,
                "tracking_url": f"https://track.example/{tracking}",
                "label_url": f"{self.url}/labels/{tid}.pdf",
                "metadata": body.get("metadata", ""),
            }
            self.state.transactions[tid] = answer
            return 201, answer

        return await self._idempotent(request, make)

    async def refunds(self, request: Request) -> Response:
        def make(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if body.get("transaction") not in self.state.transactions:
                return 201, {"status": "ERROR", "messages": ["unknown transaction"]}
            self.state.refunds.append(body)
            return 201, {
                "id": f"ref_{len(self.state.refunds)}",
                "status": "QUEUED",
                "transaction": body["transaction"],
            }

        return await self._idempotent(request, make)

    async def label(self, request: Request) -> Response:
        # Served without the API's credentials, like a signed storage link.
        if request.headers.get("authorization"):
            return Response(b"credentials sent to the label host", 400)
        name = request.path_params["name"].removesuffix(".pdf")
        if name not in self.state.transactions:
            return Response(b"", 404)
        return Response(PDF, media_type="application/pdf")

    def __enter__(self) -> CarrierServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the carrier test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
