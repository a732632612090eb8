"""A fault-injecting reverse proxy: the failures of a hosted API, on demand, in front of a real server.

Request ``n`` through the proxy (counted from 0 in arrival order) gets ``schedule[n]``; requests
past the end of the schedule are forwarded. A schedule entry is one of

- an HTTP status (429, 500, 400, ...): answered by the proxy with an OpenAI-style JSON error,
  429 and 503 with ``Retry-After``;
- ``"hang"``: the request is read and never answered for ``hang_s`` seconds (past the client's
  timeout);
- ``"drop"``: the connection is reset after the request line and headers, mid-request;
- ``"pass"``: forwarded to the upstream.

Paths in ``not_found`` (e.g. ``/v1/completions``) are answered 404 whatever the schedule says, as
a chat-only provider answers an endpoint it does not serve; they take no place in the schedule.

Which request meets which fault depends on arrival order, but how many of each the clients see
does not: :attr:`FaultProxy.injected` counts them. The proxy runs its own event loop in a thread
and answers one request per connection (``Connection: close``), so a client never reuses a
connection the proxy has closed (which would be a failure nobody injected).

Plain asyncio streams + httpx: no web framework needed for one request per connection.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Sequence
from http import HTTPStatus

import httpx

PASS, HANG, DROP = "pass", "hang", "drop"
# Per-connection or proxy-owned headers: never copied between the two hops.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length",
     "accept-encoding", "content-encoding", "proxy-connection"}
)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    """The request line and headers (names lower-cased) of an HTTP/1.1 request."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def write_response(
    writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    """A complete response, after which the connection is closed."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    fields = {"content-type": "application/json", **(headers or {})}
    fields |= {"content-length": str(len(body)), "connection": "close"}
    lines += [f"{name}: {value}" for name, value in fields.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


class FaultProxy:
    """``with FaultProxy(upstream, [429, "pass", "hang"]) as proxy: ... proxy.url ...``"""

    def __init__(
        self,
        upstream: str,
        schedule: Sequence[int | str] = (),
        *,
        hang_s: float = 30.0,
        retry_after_s: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
        not_found: Sequence[str] = (),
    ) -> None:
        """``transport`` replaces the network hop to ``upstream`` (``httpx.MockTransport`` in fast tests)."""
        for entry in schedule:
            if not (entry in (PASS, HANG, DROP) or (isinstance(entry, int) and 400 <= entry <= 599)):
                raise ValueError(f"schedule entry {entry!r}: expected an HTTP error status, {PASS!r}, {HANG!r} or {DROP!r}")
        self.upstream = upstream.rstrip("/")
        self.schedule = list(schedule)
        self.hang_s = hang_s
        self.retry_after_s = retry_after_s
        self.not_found = frozenset(not_found)
        self.requests = 0  # every request that reached the proxy
        self._scheduled = 0  # those the schedule applies to (not in not_found)
        self.forwarded = 0
        self.exchanges: list[tuple[str, bytes, bytes]] = []  # (path, request body, response body) forwarded
        self.injected: Counter[str] = Counter()  # "429", "500", "hang", "drop", ...
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._transport = transport
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._handlers: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _start(self) -> None:
        self._http = httpx.AsyncClient(base_url=self.upstream, timeout=600.0, transport=self._transport)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)  # 0: a free port
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        for task in list(self._handlers):  # hanging requests would otherwise outlive the proxy
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        await self._http.aclose()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            method, target, headers = await read_request(reader)
            self.requests += 1
            if target.split("?", 1)[0] in self.not_found:
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.injected["not_found"] += 1
                await write_response(writer, 404, b"Not Found", {"content-type": "text/plain"})
                return
            n, self._scheduled = self._scheduled, self._scheduled + 1
            action = self.schedule[n] if n < len(self.schedule) else PASS
            if action == DROP:
                self.injected[DROP] += 1
                writer.transport.abort()  # RST, no response: the client sees a dropped connection
                return
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if action == HANG:
                self.injected[HANG] += 1
                await asyncio.sleep(self.hang_s)
            elif isinstance(action, int):
                self.injected[str(action)] += 1
                error = {"error": {"message": f"injected by the fault proxy: HTTP {action}", "type": "injected",
                                   "param": None, "code": action}}
                extra = {"retry-after": f"{self.retry_after_s:g}"} if action in (429, 503) else {}
                await write_response(writer, action, json.dumps(error).encode(), extra)
            else:
                await self._forward(writer, method, target, headers, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away (e.g. it timed out on a hang)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _forward(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> None:
        self.forwarded += 1
        upstream = await self._http.request(
            method, target, content=body, headers={k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        )
        self.exchanges.append((target, body, upstream.content))
        reply = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        await write_response(writer, upstream.status_code, upstream.content, reply)
