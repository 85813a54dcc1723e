"""Running ``pymm agent`` in a child process, talking to it over its unix socket, and a load
generator that records what every client was told (shared by tests/ and benches/)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from pymm.agent import Agent

ROOT = Path(__file__).resolve().parent.parent


def machine_file(directory: Path, nodes: int = 4, memory: str = "8Gi") -> Path:
    """The load tests' machine: 4 NUMA nodes of 8Gi, 1Gi reserved each (28Gi allocatable),
    so 16 clients holding up to three 1-4Gi pods each contend hard and many are rejected."""
    from pymm import Machine

    path = directory / "machine.json"
    path.write_text(json.dumps(Machine.synthetic(nodes, memory=memory).to_dict()))
    return path


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: the same requests ``curl --unix-socket`` sends."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    content_type: str | None = "application/json",
) -> Any:
    """One request (a body is sent as ``content_type``, None: no header); returns (status,
    parsed JSON or text)."""
    data = None if body is None else (body if isinstance(body, str | bytes) else json.dumps(body))
    headers = {"Content-Type": content_type} if data is not None and content_type else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read().decode()
    kind = response.getheader("Content-Type") or ""
    return response.status, json.loads(raw) if "json" in kind else raw


def pod_manifest(uid: str, memory: str, containers: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": uid, "namespace": "load", "uid": uid},
        "spec": {
            "containers": [
                {"name": f"c{i}", "resources": {"limits": {"cpu": "1", "memory": memory}}}
                for i in range(containers)
            ]
        },
    }


@dataclass
class AgentProcess:
    """``pymm agent`` in a child process, with its state directory, socket and log file."""

    directory: Path
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def socket(self) -> Path:
        return self.directory / "agent.sock"

    @property
    def ready_file(self) -> Path:
        return self.directory / "ready.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "agent.log"

    def start(self, timeout: float = 30.0) -> AgentProcess:
        args = [
            sys.executable,
            "-m",
            "pymm.cli",
            "agent",
            "--state-dir",
            str(self.state_dir),
            "--socket",
            str(self.socket),
            "--ready-file",
            str(self.ready_file),
            *self.extra,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # A killed agent leaves its ready file; wait for this agent's own.
        self.ready_file.unlink(missing_ok=True)
        # A file, not a pipe: 20,000 log lines would fill a pipe nobody reads and stall it.
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}: {self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not ready after {timeout}s: {self.log_text()}")
            time.sleep(0.02)
        self.info = json.loads(self.ready_file.read_text())
        return self

    def log_text(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def connection(self) -> UnixHTTPConnection:
        return UnixHTTPConnection(self.socket)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


# -- load -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one client was told about one pod, in order."""

    uid: str
    admitted: bool | None = None  # None: no answer (in flight when the agent died)
    reason: str | None = None
    removed: bool = False
    remove_in_flight: bool = False


@dataclass
class LoadResult:
    admits: int = 0
    rejected: int = 0
    unexpected: int = 0
    removes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    pods: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0
    broken: int = 0  # clients that lost the agent mid-run

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _client(
    session: aiohttp.ClientSession,
    index: int,
    requests: int,
    result: LoadResult,
    seed: int,
    tolerate_loss: bool,
) -> None:
    rng = random.Random(seed * 1000 + index)
    live: list[str] = []
    serial = 0
    for _ in range(requests):
        admit = not live or (len(live) < 3 and rng.random() < 0.6)
        began = time.perf_counter()
        try:
            if admit:
                uid = f"client{index}-pod{serial}"
                serial += 1
                memory = f"{rng.randint(1, 4)}Gi"
                result.pods[uid] = outcome = Outcome(uid)
                async with session.post(
                    "http://agent/v1/admit", json=pod_manifest(uid, memory)
                ) as r:
                    assert r.status == 200, await r.text()
                    body = await r.json()
                outcome.admitted = body["admit"]
                outcome.reason = body["reason"]
                result.admits += 1
                if body["admit"]:
                    live.append(uid)
                else:
                    result.rejected += 1
                    result.unexpected += body["reason"] == "UnexpectedAdmissionError"
            else:
                uid = live.pop(rng.randrange(len(live)))
                result.pods[uid].remove_in_flight = True
                async with session.post("http://agent/v1/remove", json={"podUID": uid}) as r:
                    assert r.status == 200, await r.text()
                    body = await r.json()
                assert body["removed"] is True
                result.pods[uid].removed = True
                result.pods[uid].remove_in_flight = False
                result.removes += 1
        except (aiohttp.ClientError, ConnectionError):
            if not tolerate_loss:
                raise
            result.broken += 1
            return
        result.latencies_ms.append((time.perf_counter() - began) * 1e3)


async def run_load(
    socket_path: Path,
    *,
    clients: int = 16,
    total: int = 2000,
    seed: int = 1,
    tolerate_loss: bool = False,
) -> LoadResult:
    """``clients`` concurrent clients sending ``total`` admit/remove requests in all. With
    ``tolerate_loss``, a client that loses the agent stops quietly (the kill -9 test)."""
    result = LoadResult()
    connector = aiohttp.UnixConnector(path=str(socket_path), limit=clients)
    began = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(
                _client(session, i, total // clients, result, seed, tolerate_loss)
                for i in range(clients)
            )
        )
    result.seconds = time.perf_counter() - began
    return result


# -- throughput -------------------------------------------------------------------------------


def _request(path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


class _PairsClient(asyncio.Protocol):
    """One client of the throughput benchmark: sends its prepared requests one at a time on
    one kept-alive connection and checks each answer as it comes (an admission admitted
    afresh, a removal that removed). Callbacks, not streams, and requests built before the
    clock starts: on a two-core machine the load generator shares the CPU with the agent it
    measures, and every microsecond it spends is one the agent does not get."""

    def __init__(self, requests: list[tuple[bytes, str]], done: asyncio.Future[int]) -> None:
        self.requests = requests
        self.done = done
        self.sent = 0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.requests[0][0])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        at = head.lower().find(b"content-length: ") + len(b"content-length: ")
        length = int(head[at : head.find(b"\r\n", at)])
        if len(self.buffer) < end + 4 + length:
            return
        body = json.loads(self.buffer[end + 4 : end + 4 + length])
        self.buffer = self.buffer[end + 4 + length :]
        try:
            assert head.startswith(b"HTTP/1.1 200 "), head
            kind = self.requests[self.sent][1]
            if kind == "admit":
                assert body["admit"] and not body["alreadyAdmitted"], body
            else:
                assert body["removed"] is True, body
        except AssertionError as e:
            self.done.set_exception(e)
            return
        self.sent += 1
        assert self.transport is not None
        if self.sent == len(self.requests):
            self.transport.close()
            self.done.set_result(self.sent)
        else:
            self.transport.write(self.requests[self.sent][0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("the agent closed the connection"))


async def run_pairs(socket_path: Path, *, clients: int, pairs: int) -> float:
    """``clients`` concurrent clients, each admitting then removing ``pairs`` pods, one
    request at a time over one kept-alive connection, every answer checked; returns the
    seconds from the first request to the last answer."""
    loop = asyncio.get_running_loop()
    plans = [
        [
            request
            for i in range(pairs)
            for request in (
                (_request("/v1/admit", pod_manifest(f"tp{c}-{i}", "1Gi")), "admit"),
                (_request("/v1/remove", {"podUID": f"tp{c}-{i}"}), "remove"),
            )
        ]
        for c in range(clients)
    ]
    futures: list[asyncio.Future[int]] = [loop.create_future() for _ in plans]
    began = time.perf_counter()
    for plan, done in zip(plans, futures, strict=True):
        await loop.create_unix_connection(
            functools.partial(_PairsClient, plan, done), str(socket_path)
        )
    answered = await asyncio.gather(*futures)
    assert sum(answered) == 2 * pairs * clients
    return time.perf_counter() - began


@contextlib.asynccontextmanager
async def serving(agent: Agent, socket_path: Path) -> AsyncIterator[aiohttp.ClientSession]:
    """``agent`` served in this process (so a test can make its disk fail), and a client
    session on its socket (requests to ``http://agent/...``); the agent stopped after."""
    await agent.start(socket_path)
    try:
        connector = aiohttp.UnixConnector(path=str(socket_path))
        async with aiohttp.ClientSession("http://agent", connector=connector) as session:
            yield session
    finally:
        await agent.stop()
