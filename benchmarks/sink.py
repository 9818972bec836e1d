"""An HTTP target for benchmarks: answers 200 with a small JSON body to every request.

python -m benchmarks.sink PORT
"""

from __future__ import annotations

import contextlib
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ok(request: Request) -> JSONResponse:
    with contextlib.suppress(ClientDisconnect):  # a consumer stopped mid-request at the end
        await request.body()
    return JSONResponse({"id": "ok", "status": "succeeded"})


app = Starlette(routes=[Route("/{path:path}", ok, methods=["GET", "POST", "PUT", "DELETE"])])

if __name__ == "__main__":
    port = int(sys.argv[1])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
