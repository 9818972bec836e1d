"""The webhook benchmark's baseline: a bare endpoint on the same HTTP stack (uvicorn, Starlette)
that checks the HMAC signature and answers, with no state and no broker.

    python -m benchmarks.bare_webhook PORT
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SECRET = b"bench-secret"


async def receive(request: Request) -> JSONResponse:
    body = await request.body()
    digest = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).decode()
    ok = hmac.compare_digest(digest, request.headers.get("x-wc-webhook-signature", ""))
    return JSONResponse({"accepted": ok}, status_code=200 if ok else 401)


app = Starlette(routes=[Route("/webhooks/woocommerce", receive, methods=["POST"])])

if __name__ == "__main__":
    port = int(sys.argv[1])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
