"""A loopback server speaking Firebase Cloud Messaging HTTP v1 and Google's OAuth token endpoint.

    fcm = FcmServer(server)                   # routes an HttpTargetServer
    key_file = fcm.write_key(tmp_path)        # a service-account key whose token_uri is here
    fcm.fail("tok-2", "UNREGISTERED")         # sends to that token get FCM's 404 shape

``POST /token`` checks the JWT-bearer grant as Google does (RS256 signature against the key's
public half, ``iss``, ``aud``, the FCM scope, expiry) and answers an access token;
``POST /v1/projects/<id>/messages:send`` checks the bearer token, the project and the message's
shape, and answers ``{"name": ...}`` or FCM's error body for the scripted code.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.http_target_server import Answer, HttpTargetServer, Recorded

PROJECT = "woofleet-test"
CLIENT_EMAIL = "push@woofleet-test.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"

#: FCM error code → (HTTP status, google.rpc status, message), as FCM documents them.
ERRORS: dict[str, tuple[int, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
}


def error_body(code: str) -> dict[str, Any]:
    status, rpc_status, message = ERRORS[code]
    return {
        "error": {
            "code": status,
            "message": message,
            "status": rpc_status,
            "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
            ],
        }
    }


class FcmServer:
    """FCM v1 and the OAuth token endpoint as a route of an :class:`HttpTargetServer`."""

    def __init__(self, server: HttpTargetServer, *, token_lifetime: int = 3600) -> None:
        self.server = server
        self.token_lifetime = token_lifetime
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = "k1"
        #: Access tokens issued, with their expiry (epoch seconds).
        self.issued: dict[str, float] = {}
        #: Valid messages accepted, in order.
        self.sent: list[dict[str, Any]] = []
        self.token_requests = 0
        self._failures: dict[str, deque[tuple[str, dict[str, str]]]] = {}
        self._refuse_grant = False
        self._ids = itertools.count(1)
        server.route = self.route

    # -- set-up ------------------------------------------------------------------------------
    def key(self) -> dict[str, Any]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": f"{self.server.url}/token",
        }

    def write_key(self, directory: Path) -> Path:
        path = directory / "service-account.json"
        path.write_text(json.dumps(self.key()), encoding="utf-8")
        return path

    def fail(
        self, address: str, code: str, *, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``times`` sends to ``address`` (a token or ``topic:<name>``) get ``code``."""
        queue = self._failures.setdefault(address, deque())
        queue.extend([(code, headers or {})] * times)

    def refuse_grants(self) -> None:
        """The token endpoint answers ``invalid_grant``, as for a revoked key."""
        self._refuse_grant = True

    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working (FCM answers 401)."""
        self.issued.clear()

    def sends(self) -> list[Recorded]:
        return [r for r in self.server.requests if r.path.endswith("/messages:send")]

    # -- the endpoints -----------------------------------------------------------------------
    def route(self, request: Recorded) -> Answer:
        if request.path == "/token":
            return self._token(request)
        if request.path == f"/v1/projects/{PROJECT}/messages:send":
            return self._send(request)
        return Answer(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "no"}})

    def _token(self, request: Recorded) -> Answer:
        self.token_requests += 1
        form = request.form
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Answer(400, {"error": "unsupported_grant_type"})
        try:
            header = jwt.get_unverified_header(form.get("assertion", ""))
            claims = jwt.decode(
                form["assertion"],
                self.private_key.public_key(),
                algorithms=["RS256"],
                audience=f"{self.server.url}/token",
                issuer=CLIENT_EMAIL,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except (KeyError, jwt.PyJWTError) as exc:
            return Answer(400, {"error": "invalid_grant", "error_description": str(exc)})
        if self._refuse_grant or header.get("kid") != self.key_id:
            return Answer(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        if claims.get("scope") != SCOPE or claims["exp"] - claims["iat"] > 3600:
            return Answer(400, {"error": "invalid_scope", "error_description": "bad claims"})
        token = f"ya29.test-{next(self._ids)}"
        self.issued[token] = time.time() + self.token_lifetime
        return Answer(
            200,
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"},
        )

    def _send(self, request: Recorded) -> Answer:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.issued.get(bearer, 0) < time.time():
            return Answer(
                401,
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
            )
        body = request.json or {}
        message = body.get("message")
        if not isinstance(message, dict) or ("token" in message) == ("topic" in message):
            return Answer(400, error_body("INVALID_ARGUMENT"))
        data = message.get("data", {})
        if not all(isinstance(v, str) for v in data.values()):
            return Answer(400, error_body("INVALID_ARGUMENT"))
        address = message["token"] if "token" in message else f"topic:{message['topic']}"
        failures = self._failures.get(address)
        if failures:
            code, headers = failures.popleft()
            return Answer(ERRORS[code][0], error_body(code), headers)
        self.sent.append(message)
        return Answer(200, {"name": f"projects/{PROJECT}/messages/{next(self._ids)}"})
