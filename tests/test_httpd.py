"""The agent's HTTP/1.1 server (:mod:`pymm.httpd`) on its own, spoken to in raw bytes: framing
(keep-alive, pipelining, chunked bodies, ``Expect: 100-continue``, HTTP/1.0), the limits (404,
405, 413, 415, 431, a malformed request), the timeouts, and a graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymm.httpd import MAX_HEAD_BYTES, MAX_PIPELINED, HTTPServer, Request, Response, Route


def _on_error(e: BaseException, request: Request) -> Response:
    status = 400 if isinstance(e, ValueError) else 500
    return Response.json({"error": str(e), "path": request.path}, status)


def _echo(request: Request) -> Response:
    return Response.json(
        {"method": request.method, "path": request.path, "query": request.query,
         "body": request.body.decode()}
    )  # fmt: skip


class _Later:
    """A handler whose answers the test releases, to hold a request in flight."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Request, asyncio.Future[Response]]] = []

    def __call__(self, request: Request) -> asyncio.Future[Response]:
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.waiting.append((request, future))
        return future

    def release(self, index: int) -> None:
        request, future = self.waiting[index]
        future.set_result(Response.json({"released": request.body.decode()}))


def _raises(request: Request) -> Response:
    raise ValueError("no such thing")


async def _coroutine(request: Request) -> Response:
    await asyncio.sleep(0)
    return Response.text("from a coroutine\n")


@asynccontextmanager
async def serving(
    tmp_path: Path,
    routes: dict[str, dict[str, Route]] | None = None,
    *,
    idle: float = 5.0,
    body: float = 5.0,
    max_body: int = 1024,
) -> AsyncIterator[HTTPServer]:
    later = _Later()
    server = HTTPServer(
        routes
        or {
            "/echo": {"POST": Route(_echo, json_body=True), "GET": Route(_echo)},
            "/later": {"POST": Route(later, json_body=True)},
            "/raises": {"GET": Route(_raises)},
            "/coroutine": {"GET": Route(_coroutine)},
        },
        on_error=_on_error,
        max_body=max_body,
        idle_timeout=idle,
        body_timeout=body,
    )
    server.later = later  # type: ignore[attr-defined]
    await server.serve_unix(str(tmp_path / "s.sock"))
    try:
        yield server
    finally:
        await server.shutdown(1.0)


async def connect(tmp_path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(tmp_path / "s.sock"))


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(": ")
            headers[name.lower()] = value
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def post(path: str, body: bytes, content_type: str = "application/json", **extra: str) -> bytes:
    headers = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in extra.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


def run(tmp_path: Path, scenario: Callable[[Path], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(scenario(tmp_path))


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


def test_keep_alive_answers_each_request_on_one_connection(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path):
            reader, writer = await connect(tmp_path)
            for i in range(3):
                writer.write(post(f"/echo?n={i}", b'{"i": %d}' % i))
                status, headers, body = await answer(reader)
                assert status == 200 and headers["content-type"] == "application/json"
                assert "date" in headers and "connection" not in headers
                assert json.loads(body) == {
                    "method": "POST", "path": "/echo", "query": {"n": str(i)},
                    "body": f'{{"i": {i}}}',
                }  # fmt: skip
            writer.close()

    run(tmp_path, scenario)


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    """The second request's answer is ready first; it still goes second."""

    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path) as server:
            reader, writer = await connect(tmp_path)
            writer.write(post("/later", b'"one"') + post("/later", b'"two"'))
            later = server.later  # type: ignore[attr-defined]
            await asyncio.sleep(0.1)
            assert len(later.waiting) == 1  # one request at a time per connection
            later.release(0)
            assert json.loads((await answer(reader))[2]) == {"released": '"one"'}
            while len(later.waiting) < 2:
                await asyncio.sleep(0.01)
            later.release(1)
            assert json.loads((await answer(reader))[2]) == {"released": '"two"'}
            # More than MAX_PIPELINED at once: reading pauses and resumes, none is lost.
            many = MAX_PIPELINED * 3
            writer.write(b"".join(post("/echo", b"%d" % i) for i in range(many)))
            bodies = [json.loads((await answer(reader))[2])["body"] for _ in range(many)]
            assert bodies == [str(i) for i in range(many)]
            writer.close()

    run(tmp_path, scenario)


def test_a_client_that_never_reads_its_answers_is_no_longer_read(tmp_path: Path) -> None:
    """Requests sent without reading the answers: the server stops reading once the answers
    back up, so its memory for them stays bounded (the client's sends then block); once the
    client reads, every request it sent is answered, in order."""
    request = b"GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def flood() -> tuple[bool, int]:
        """Sends until the server stops reading (True), or for 5 s (False); and how many
        whole requests went."""
        s.connect(str(tmp_path / "s.sock"))
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sent += s.send(request * 100)
            except BlockingIOError:
                time.sleep(0.5)  # a server that merely lags catches up in this time
                try:
                    sent += s.send(request * 100)
                except BlockingIOError:
                    return True, sent // len(request)
        return False, sent // len(request)

    def read_answers(count: int) -> int:
        s.settimeout(10)
        got = b""
        while got.count(b"HTTP/1.1 200 OK") < count:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        return got.count(b"HTTP/1.1 200 OK")

    async def scenario(tmp_path: Path) -> tuple[bool, list[int], int, int]:
        async with serving(tmp_path) as server:
            stopped, sent = await asyncio.to_thread(flood)
            buffered = [
                c.transport.get_write_buffer_size()
                for c in server.connections
                if c.transport is not None
            ]
            answered = await asyncio.to_thread(read_answers, sent)
            s.close()
            return stopped, buffered, sent, answered

    stopped, buffered, sent, answered = run(tmp_path, scenario)
    assert stopped, "the server kept reading a client that never read"
    assert buffered and max(buffered) <= 256 << 10
    assert answered == sent > 1000


def test_a_chunked_body_is_reassembled(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path):
            reader, writer = await connect(tmp_path)
            writer.write(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Transfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
            )
            status, _, body = await answer(reader)
            assert status == 200 and json.loads(body)["body"] == '{"a": 1}'
            writer.close()

    run(tmp_path, scenario)


def test_expect_continue(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path):
            reader, writer = await connect(tmp_path)
            head = post("/echo", b"{}", expect="100-continue").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            writer.write(head)
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"{}")
            assert (await answer(reader))[0] == 200
            # A body the route would refuse is refused before it is sent, and the
            # connection closed (the client would otherwise wait, or send it anyway).
            refused = post("/echo", b"{}", "text/plain", expect="100-continue")
            writer.write(refused.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
            status, headers, _ = await answer(reader)
            assert status == 415 and headers["connection"] == "close"
            assert await closed(reader)

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("request_bytes", "status", "stays_open"),
    [
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, True),
        (b"DELETE /echo HTTP/1.1\r\nHost: x\r\n\r\n", 405, True),
        (post("/echo", b"{}", "image/png"), 415, True),
        (post("/echo", b"{}", "application/yaml"), 415, True),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 415, True),
        (b"GET /raises HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
        (post("/echo", b"x" * 2000), 413, False),
        (b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n", 431, False),
        (b"GARBAGE\r\n\r\n", 400, False),
        (b"GET /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, False),
    ],
)  # fmt: skip
def test_refusals(tmp_path: Path, request_bytes: bytes, status: int, stays_open: bool) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path):
            reader, writer = await connect(tmp_path)
            writer.write(request_bytes)
            got, headers, body = await answer(reader)
            assert got == status, body
            assert set(json.loads(body)) >= {"error"}
            if status == 405:
                assert headers["allow"] == "GET, POST"
            if stays_open:
                assert "connection" not in headers
                writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await answer(reader))[0] == 200
                writer.close()
            else:
                assert headers["connection"] == "close"
                assert await closed(reader)

    run(tmp_path, scenario)


def test_a_head_that_grows_without_end_is_431(tmp_path: Path) -> None:
    """A header line sent in pieces and never finished: counted as it arrives."""

    def client() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(tmp_path / "s.sock"))
            s.sendall(b"GET /echo HTTP/1.1\r\nX-Big: ")
            try:
                for _ in range(MAX_HEAD_BYTES // 8192 + 2):
                    s.sendall(b"a" * 8192)
                    time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed by the server, its answer already sent
            got = b""
            while chunk := s.recv(4096):
                got += chunk
            return got

    async def scenario(tmp_path: Path) -> bytes:
        async with serving(tmp_path):
            return await asyncio.to_thread(client)

    got = run(tmp_path, scenario)
    assert got.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in got


def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path, max_body=10):
            reader, writer = await connect(tmp_path)
            writer.write(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n"
            )
            assert (await answer(reader))[0] == 413
            assert await closed(reader)

    run(tmp_path, scenario)


def test_http_1_0_and_connection_close_are_answered_then_closed(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path):
            for request in (
                b"GET /coroutine HTTP/1.0\r\n\r\n",
                b"GET /coroutine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ):
                reader, writer = await connect(tmp_path)
                writer.write(request)
                status, headers, body = await answer(reader)
                assert (status, body) == (200, b"from a coroutine\n")
                assert headers["content-type"].startswith("text/plain")
                assert headers["connection"] == "close"
                assert await closed(reader)

    run(tmp_path, scenario)


def test_idle_and_half_sent_connections_time_out(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path, idle=0.2, body=0.2):
            loop = asyncio.get_running_loop()
            idle = await connect(tmp_path)
            half_head = await connect(tmp_path)
            half_head[1].write(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
            half_body = await connect(tmp_path)
            half_body[1].write(post("/echo", b'{"a": 1}')[:-3])
            began = loop.time()
            assert await closed(idle[0]) and await closed(half_head[0])
            status, headers, _ = await answer(half_body[0])
            assert status == 408 and headers["connection"] == "close"
            assert loop.time() - began < 2

    run(tmp_path, scenario)


def test_a_kept_alive_client_gets_its_full_idle_time_after_each_answer(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path, idle=0.5):
            reader, writer = await connect(tmp_path)
            for _ in range(4):  # 4 x 0.3 s: longer than one idle timeout in all
                await asyncio.sleep(0.3)
                writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await answer(reader))[0] == 200
            writer.close()

    run(tmp_path, scenario)


def test_shutdown_finishes_what_is_in_hand_and_closes_the_rest(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        server_cm = serving(tmp_path)
        server = await server_cm.__aenter__()
        idle_reader, _ = await connect(tmp_path)
        reader, writer = await connect(tmp_path)
        writer.write(post("/later", b'"last"'))
        later = server.later  # type: ignore[attr-defined]
        while not later.waiting:
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(server.shutdown(2.0))
        await asyncio.sleep(0.05)
        assert await closed(idle_reader)  # nothing in hand: closed at once
        with pytest.raises(OSError):
            await connect(tmp_path)  # no longer listening
        later.release(0)
        status, headers, body = await answer(reader)
        assert status == 200 and json.loads(body) == {"released": '"last"'}
        assert headers["connection"] == "close"
        await stopping
        assert not server.connections
        await server_cm.__aexit__(None, None, None)

    run(tmp_path, scenario)


def test_shutdown_gives_up_on_a_request_after_its_timeout(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        server_cm = serving(tmp_path)
        server = await server_cm.__aenter__()
        reader, writer = await connect(tmp_path)
        writer.write(post("/later", b'"never"'))
        while not server.later.waiting:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await server.shutdown(0.2)
        assert 0.2 <= loop.time() - began < 1.5
        assert await closed(reader)
        await server_cm.__aexit__(None, None, None)

    run(tmp_path, scenario)


#: Pieces a hostile or broken client strings together: request lines, headers (good, repeated,
#: malformed), framing, bodies, and arbitrary bytes.
_PIECES = st.one_of(
    st.sampled_from(
        [
            b"GET /echo HTTP/1.1\r\n",
            b"POST /echo HTTP/1.1\r\n",
            b"POST /later HTTP/1.1\r\n",
            b"GET /raises HTTP/1.0\r\n",
            b"PUT /nowhere HTTP/1.1\r\n",
            b"GET  HTTP/9.9\r\n",
            b"Host: x\r\n",
            b"Content-Type: application/json\r\n",
            b"Content-Length: 2\r\n",
            b"Content-Length: -1\r\n",
            b"Content-Length: 99999999999999999999\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Expect: 100-continue\r\n",
            b"Connection: close\r\n",
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
            b"\r\n",
            b"{}",
            b"2\r\n{}\r\n0\r\n\r\n",
            b"\x00",
            b"\xff\xfe",
            b" \t",
        ]
    ),
    st.binary(max_size=40),
)


@pytest.mark.fuzz
@settings(deadline=None)
@given(chunks=st.lists(st.lists(_PIECES, max_size=12).map(b"".join), min_size=1, max_size=4))
def test_any_bytes_get_an_answer_or_a_close_and_the_server_serves_on(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[bytes]
) -> None:
    """Whatever a client sends, in whatever pieces: each answer is well-formed HTTP, the
    connection ends (the server closes it, or its idle timeout does), and the next client is
    served."""
    directory = tmp_path_factory.mktemp("fuzz")

    async def scenario(tmp_path: Path) -> None:
        async with serving(tmp_path, idle=0.3, body=0.3) as server:
            reader, writer = await connect(tmp_path)
            for chunk in chunks:
                writer.write(chunk)
                await asyncio.sleep(0)
            later = server.later  # type: ignore[attr-defined]
            for i in range(len(later.waiting)):
                later.release(i)
            got = await asyncio.wait_for(reader.read(), 5)  # to the close
            while got:
                assert got.startswith(b"HTTP/1.1 "), got[:80]
                head, _, rest = got.partition(b"\r\n\r\n")
                status = int(head.split(b" ")[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b": ")
                    if name.lower() == b"content-length":
                        length = int(value)
                assert status == 100 or len(rest) >= length
                got = rest if status == 100 else rest[length:]
            writer.close()
            reader, writer = await connect(tmp_path)
            writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await answer(reader))[0] == 200
            writer.close()

    run(directory, scenario)
