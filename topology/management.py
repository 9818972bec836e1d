"""A small client for the RabbitMQ management HTTP API (status, DLQ listing, policies, vhosts)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from topology.errors import AccessRefused, BrokerUnavailable


class Management:
    """Synchronous management API client; ``url`` carries the credentials (``http://u:p@host:port``)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        auth = (parts.username or "guest", parts.password or "guest")
        netloc = parts.hostname or "localhost"
        if parts.port:
            netloc += f":{parts.port}"
        base = urlunsplit((parts.scheme or "http", netloc, parts.path.rstrip("/"), "", ""))
        # Errors name the server without its credentials.
        self._display = base
        self._client = httpx.Client(base_url=base + "/api", auth=auth, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Management:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise BrokerUnavailable(
                f"the RabbitMQ management API is not answering at {self._display} ({exc}); "
                "enable it with `rabbitmq-plugins enable rabbitmq_management`, "
                "or set WOOFLEET_MANAGEMENT_URL."
            ) from None
        if response.status_code == 401:
            raise AccessRefused(
                f"the management API at {self._display} refused the credentials; "
                "check WOOFLEET_MANAGEMENT_URL (the user needs the management tag)."
            )
        return response

    def get(self, path: str, **params: Any) -> Any:
        response = self.request("GET", path, params=params or None)
        response.raise_for_status()
        return response.json()

    # vhosts -------------------------------------------------------------------------------------
    def create_vhost(self, vhost: str, user: str = "guest") -> None:
        self.request("PUT", f"/vhosts/{q(vhost)}").raise_for_status()
        self.request(
            "PUT",
            f"/permissions/{q(vhost)}/{q(user)}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()

    def delete_vhost(self, vhost: str) -> None:
        response = self.request("DELETE", f"/vhosts/{q(vhost)}")
        if response.status_code not in (204, 404):
            response.raise_for_status()

    # queues and policies --------------------------------------------------------------------------
    def queues(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/queues/{q(vhost)}")
        return result

    def queue(self, vhost: str, name: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/queues/{q(vhost)}/{q(name)}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def put_policy(
        self,
        vhost: str,
        name: str,
        pattern: str,
        definition: dict[str, Any],
        *,
        apply_to: str = "queues",
        priority: int = 0,
    ) -> None:
        self.request(
            "PUT",
            f"/policies/{q(vhost)}/{q(name)}",
            json={
                "pattern": pattern,
                "definition": definition,
                "apply-to": apply_to,
                "priority": priority,
            },
        ).raise_for_status()

    def policies(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/policies/{q(vhost)}")
        return result

    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/overview")
        return result


def q(segment: str) -> str:
    """Quote a path segment; the default vhost ``/`` becomes ``%2F``."""
    return quote(segment, safe="")
