"""The agent's HTTP/1.1 server: asyncio's protocol layer and httptools (llhttp, the parser of
Node.js and uvicorn), with the limits a node-local API needs and nothing else.

Why not aiohttp, which the agent used before: its request and response objects, middleware
and routing cost about 75 µs of CPU per request on a small node, more than the admission
itself, and under group commit that CPU is what stands between a write and the next one.
This server costs a fraction of that: a request is parsed by llhttp, routed by a dict, and its
handler either answers at once or returns a future the answer is written from (no task per
request).

What it guarantees:

* **One request at a time per connection**, answered in order: pipelined requests wait
  their turn, and reading pauses once :data:`MAX_PIPELINED` are waiting, or while the client
  leaves its answers unread (asyncio's write-buffer high-water mark): a client that sends
  without reading holds a bounded amount of memory. (Reading does not pause for each
  request: that is two ``epoll_ctl`` calls a request, a sixth of the server's CPU.)
* **Bounded.** A connection that sends no complete request head within ``idle_timeout``
  (idle keep-alive connections included) is closed; a body that has not arrived within
  ``body_timeout`` of its head is answered 408 and closed. A head over
  :data:`MAX_HEAD_BYTES` is 431, a body over ``max_body`` 413, both closing. A route that
  takes JSON answers 415 to any other ``Content-Type``.
* **A client that goes away** mid-request is one warning in the log, never a traceback; a
  request already handed to its handler still completes (only its answer is lost).
* **Graceful shutdown**: :meth:`HTTPServer.shutdown` stops listening, closes idle
  connections, lets requests in flight be answered (then closes their connections), and
  after ``timeout`` closes the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl

import httptools

__all__ = ["HTTPServer", "Request", "Response", "Route"]

log = logging.getLogger("pymm.agent")

#: The most a request head (request line and headers) may take.
MAX_HEAD_BYTES = 64 << 10
#: Requests a client may send ahead of its answers before the server stops reading from it.
MAX_PIPELINED = 8
#: After a last answer, how long what the client still sends is read and dropped before the
#: connection closes: closing with unread data resets the connection, and the client may then
#: lose the answer (a 413 or 431 sent while its request was still arriving).
LINGER_SECONDS = 0.5


class Request:
    """One request, its body read whole."""

    __slots__ = ("body", "content_type", "method", "path", "query_string")

    def __init__(
        self, method: str, path: str, query_string: str, content_type: str | None, body: bytes
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.content_type = content_type
        self.body = body

    @property
    def query(self) -> dict[str, str]:
        """The query's parameters (the last of a repeated one)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


class Response:
    """A status, a body and its type; ``headers`` adds to those the server writes."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers = headers

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        return cls(json.dumps(obj).encode(), status, "application/json", headers)

    @classmethod
    def error(cls, message: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
        """The one shape of an error answer: ``{"error": "<one line>"}``."""
        return cls.json({"error": message}, status, headers)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(text.encode(), status, "text/plain; charset=utf-8")


class Route:
    """A handler, and whether its body must be JSON.

    The handler returns a :class:`Response`, or a future or coroutine of one. With
    ``render``, its future may hold any result, which ``render`` turns into the answer as it
    is written: a hundred results set at once are each rendered and sent in turn, the first
    without waiting for the others to be rendered."""

    __slots__ = ("handler", "json_body", "render")

    def __init__(
        self,
        handler: Callable[[Request], Any],
        *,
        json_body: bool = False,
        render: Callable[[Any], Response] | None = None,
    ) -> None:
        self.handler = handler
        self.json_body = json_body
        self.render = render


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class _Date:
    """The Date header, formatted once a second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


# Where a connection is in its current request, for its deadline and for what a disconnect
# means. Separate from whether a handler has a request in hand (`busy`): pipelined bytes that
# came with a request are parsed while it is handled.
_IDLE, _HEAD, _BODY = range(3)


class _Stop(Exception):
    """Raised from a parser callback once the connection is answered and closing."""


class _Connection(asyncio.Protocol):
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.state = _IDLE
        self.busy = False
        self.closing = False
        self.deadline = time.monotonic() + server.idle_timeout
        self.head_bytes = 0
        self.head_size = 0
        self.url = b""
        self.path = ""  # the URL's, once the head is complete
        self.query = b""
        self.content_type: str | None = None
        self.content_length: int | None = None
        self.expect_continue = False
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.route: Route | None = None
        self.early: Response | None = None  # the answer the head decided (404, 405, 415)
        self.waiting: deque[tuple[Request | Response, Route | None, bool]] = deque()  # pipelined
        self.draining = False
        self.unread = False  # the client is not reading its answers: stop reading its requests

    # -- asyncio ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's too, which is not asyncio.Transport's subclass).
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.state != _IDLE and not self.closing:
            # A request begun and never finished: nothing was handed to a handler.
            log.warning("client went away", extra={"path": self._path()})
        self.transport = None
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.state != _BODY:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Response.error("protocol upgrades are not served", 400))
        except httptools.HttpParserError as e:
            if not isinstance(e.__context__, _Stop):
                self._fail(Response.error(f"bad HTTP request: {e}", 400))
        if self.state == _HEAD and self.head_bytes > MAX_HEAD_BYTES:
            self._fail(Response.error("request head too large", 431))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.state = _HEAD
        self.url = b""
        self.path = ""
        self.query = b""
        self.head_size = 0
        self.content_type = None
        self.content_length = None
        self.expect_continue = False
        self.body = []
        self.body_bytes = 0
        self.route = None
        self.early = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head_grew(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_grew(len(name) + len(value))
        lower = name.lower()
        if lower == b"content-type":
            self.content_type = value.decode("latin-1").split(";", 1)[0].strip().lower()
        elif lower == b"content-length" and value.isdigit():
            self.content_length = int(value)  # llhttp refuses a malformed or repeated one
        elif lower == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def _head_grew(self, size: int) -> None:
        # A whole head may come in one read: counted as parsed, not only as received.
        self.head_size += size
        if self.head_size > MAX_HEAD_BYTES:
            self._fail(Response.error("request head too large", 431))
            raise _Stop

    def on_headers_complete(self) -> None:
        self.state = _BODY
        self.head_bytes = 0
        self.deadline = time.monotonic() + self.server.body_timeout
        try:
            url = httptools.parse_url(self.url)
            self.path, self.query = url.path.decode("latin-1"), url.query or b""
        except httptools.HttpParserInvalidURLError:
            self.path, self.query = "", b""
        methods = self.server.routes.get(self.path)
        method = self.parser.get_method().decode("latin-1")
        if methods is None:
            self.early = Response.error("not found", 404)
        elif method not in methods:
            allow = {"Allow": ", ".join(sorted(methods))}
            self.early = Response.error(f"{method} is not allowed here", 405, allow)
        else:
            self.route = methods[method]
            if self.route.json_body and self.content_type != "application/json":
                got = self.content_type or "missing"
                self.early = Response.error(f"the body must be application/json, not {got}", 415)
        if self.content_length is not None and self.content_length > self.server.max_body:
            self._fail(Response.error(f"the body is over {self.server.max_body} bytes", 413))
            raise _Stop
        if self.expect_continue and self.transport is not None:
            if self.early is not None:
                # The client waits for our word before it sends the body: say no, and close.
                self._fail(self.early)
                raise _Stop
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self.body_bytes > self.server.max_body:  # chunked: no length told in advance
            self._fail(Response.error(f"the body is over {self.server.max_body} bytes", 413))
            raise _Stop
        if self.early is None:
            self.body.append(data)  # an early answer's body is read and dropped

    def on_message_complete(self) -> None:
        self.state = _IDLE
        item: Request | Response
        if self.early is not None:
            item = self.early
        else:
            item = Request(
                self.parser.get_method().decode("latin-1"),
                self.path,
                self.query.decode("latin-1"),
                self.content_type,
                b"".join(self.body),
            )
        self.body = []
        keep_alive = self.parser.should_keep_alive()
        if self.busy or self.unread or self.waiting:
            self.waiting.append((item, self.route, keep_alive))
            if len(self.waiting) == MAX_PIPELINED:
                self._reading()
        else:
            self._handle(item, self.route, keep_alive)

    # -- requests and answers --------------------------------------------------------------

    def _handle(self, item: Request | Response, route: Route | None, keep_alive: bool) -> None:
        self.busy = True
        if isinstance(item, Response):
            self._answer(item, keep_alive)
            return
        assert route is not None  # a request reaches here only with the route its head found
        try:
            answer = route.handler(item)
        except Exception as e:
            self._answer(self.server.on_error(e, item), keep_alive)
            return
        if isinstance(answer, Response):
            self._answer(answer, keep_alive)
            return
        future = answer if isinstance(answer, asyncio.Future) else asyncio.ensure_future(answer)
        future.add_done_callback(lambda f: self._finished(f, item, route, keep_alive))

    def _finished(
        self, future: asyncio.Future[Any], request: Request, route: Route, keep: bool
    ) -> None:
        if future.cancelled():
            response, keep = Response.error("the server is stopping", 503), False
        elif (e := future.exception()) is not None:
            response = self.server.on_error(e, request)
        elif route.render is not None:
            try:
                response = route.render(future.result())
            except Exception as failure:
                response = self.server.on_error(failure, request)
        else:
            response = future.result()
        self._answer(response, keep)

    def _answer(self, response: Response, keep_alive: bool) -> None:
        self.busy = False
        transport = self.transport
        if transport is None or transport.is_closing():
            self.closing = True
            return  # the client went away: the request was done, its answer is lost
        keep_alive = keep_alive and not self.closing and not self.server.stopping
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n" % (
            response.status,
            _REASONS.get(response.status, b""),
            response.content_type.encode(),
            len(response.body),
            _Date.now(),
        )
        if response.headers:
            head += b"".join(
                b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in response.headers.items()
            )
        if not keep_alive:
            head += b"Connection: close\r\n"
        transport.write(head + b"\r\n" + response.body)
        if not keep_alive:
            self._close_after_answer(transport)
            return
        if self.waiting:
            self._next()
        elif self.state == _IDLE:
            self.deadline = time.monotonic() + self.server.idle_timeout

    def _fail(self, response: Response) -> None:
        """Answers ``response`` and closes: what the client sends after it cannot be trusted
        to frame a next request."""
        if self.closing:
            return
        self.waiting.clear()
        self._answer(response, False)

    def pause_writing(self) -> None:
        self.unread = True
        self._reading()

    def resume_writing(self) -> None:
        self.unread = False
        self._next()

    def _next(self) -> None:
        """Hands the waiting requests to their handlers in order, one at a time, while the
        client reads its answers; then reads on or pauses. A loop, not a recursion through
        each answer: thousands may wait."""
        if not self.draining:
            self.draining = True
            try:
                while self.waiting and not (self.busy or self.unread or self.closing):
                    self._handle(*self.waiting.popleft())
            finally:
                self.draining = False
        self._reading()

    def _reading(self) -> None:
        """Reads from the client unless it has :data:`MAX_PIPELINED` requests waiting or
        leaves its answers unread."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.unread or len(self.waiting) >= MAX_PIPELINED:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transport.resume_reading()

    # -- deadlines and shutdown ------------------------------------------------------------

    def _close_after_answer(self, transport: asyncio.Transport) -> None:
        """Sends what is buffered and the end of the stream, then reads and drops what the
        client still sends, until it closes too or :data:`LINGER_SECONDS` pass."""
        self.closing = True
        self.waiting.clear()
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.deadline = time.monotonic() + LINGER_SECONDS
        if not transport.is_reading():
            transport.resume_reading()

    def eof_received(self) -> bool | None:
        return None  # the client is done sending: close (after what is buffered is sent)

    def expire(self, now: float) -> None:
        if self.closing:
            if now >= self.deadline and self.transport is not None:
                self.transport.close()  # lingered long enough
            return
        if self.busy or now < self.deadline:
            return
        if self.state == _BODY:
            log.warning("body timeout", extra={"path": self._path()})
            seconds = self.server.body_timeout
            self._fail(Response.error(f"the body did not arrive within {seconds:g} s", 408))
        else:
            # Idle, or a head that never completed: nothing to answer, only to close.
            self.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _path(self) -> str:
        """The request's path, for the log (its head may be unfinished)."""
        if self.path or not self.url:
            return self.path
        try:
            return httptools.parse_url(self.url).path.decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            return ""


class HTTPServer:
    """Serves ``routes`` (path ↦ method ↦ :class:`Route`) on unix or TCP sockets.

    ``on_error`` turns an exception a handler raised (or its future ended with) into the
    answer; it is where an application maps its errors onto statuses."""

    def __init__(
        self,
        routes: Mapping[str, Mapping[str, Route]],
        *,
        on_error: Callable[[BaseException, Request], Response],
        max_body: int,
        idle_timeout: float,
        body_timeout: float,
    ) -> None:
        self.routes = routes
        self.on_error = on_error
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None

    async def serve_unix(self, path: str) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: _Connection(self), path)
        return self._started(server)

    async def serve_tcp(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), host, port)
        return self._started(server)

    def _started(self, server: asyncio.Server) -> asyncio.Server:
        self._servers.append(server)
        if self._sweeper is None:
            self._sweep()
        return server

    def _sweep(self) -> None:
        """Every connection past its deadline is closed (or answered 408); a timer a few
        times per timeout, not one per request."""
        now = time.monotonic()
        for connection in list(self.connections):
            connection.expire(now)
        tick = min(1.0, max(0.02, min(self.idle_timeout, self.body_timeout) / 4))
        self._sweeper = asyncio.get_running_loop().call_later(tick, self._sweep)

    async def shutdown(self, timeout: float) -> None:
        """Stops listening, closes idle connections, lets those with a request in hand be
        answered (then closed) for at most ``timeout`` seconds, then closes the rest."""
        self.stopping = True
        for server in self._servers:
            server.close()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            for connection in list(self.connections):
                # Answered its last (lingering), or nothing in hand and no body on its way:
                # nothing to finish.
                if connection.closing or (not connection.busy and connection.state != _BODY):
                    connection.close()
            await asyncio.sleep(0.005)
        for connection in list(self.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
