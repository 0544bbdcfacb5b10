"""Bounded work per request, as pure ASGI middleware: a maximum request body (counted as it
arrives, whatever Content-Length says) and a maximum number of requests in flight, beyond which
the server answers 503 with Retry-After at once instead of queueing without end."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 25 * 1024 * 1024  # an image (20 MB at most) in a form, with room to spare
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # a bulk job's CSV (spooled to disk, not held in memory)
UPLOAD_PATHS = {("POST", "/v1/jobs")}
MAX_IN_FLIGHT = 64
RETRY_AFTER_SECONDS = 1
EXEMPT_PATHS = {"/v1/health"}


class InFlight:
    """How many requests are being served now (the app keeps one, so health and tests can
    read it)."""

    def __init__(self) -> None:
        self.count = 0


async def _answer(send: Send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    """Refuses bodies over `max_body` (413) and requests beyond `max_in_flight` (503)."""

    def __init__(
        self,
        app: App,
        max_body: int = MAX_BODY_BYTES,
        max_in_flight: int = MAX_IN_FLIGHT,
        in_flight: InFlight | None = None,
    ) -> None:
        self.app, self.max_body, self.max_in_flight = app, max_body, max_in_flight
        self.in_flight = in_flight or InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        if self._declared_length(scope) > limit:
            await _answer(send, 413, self._too_large(limit))
            return
        if self.in_flight.count >= self.max_in_flight:
            retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            await _answer(send, 503, "The server is busy; try again in a second.", retry)
            return
        self.in_flight.count += 1
        try:
            await self._counted(scope, receive, send, limit)
        finally:
            self.in_flight.count -= 1

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app, counting the body as it arrives: past the limit, answer 413 (unless a
        response has begun), tell the app the client has gone, and drop what it sends."""
        received, started, refused = 0, False, False

        async def counting_receive() -> dict:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                if not started:
                    await _answer(send, 413, self._too_large(limit))
                refused = True
                return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise

    def _declared_length(self, scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _limit(self, scope: Scope) -> int:
        """The most this request may send: a bulk job's CSV upload may be larger."""
        upload = (scope.get("method"), scope.get("path")) in UPLOAD_PATHS
        return max(self.max_body, MAX_UPLOAD_BYTES) if upload else self.max_body

    def _too_large(self, limit: int) -> str:
        size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit:,} bytes"
        return f"The request body is larger than {size}, the most this server accepts."
