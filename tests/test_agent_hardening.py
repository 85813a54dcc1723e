"""``pymm agent`` under hostile or careless clients: group commit (one write for many
requests, the same pod from 16 clients reserved once), bodies that are not JSON, bad node
names, idle, half-sent and dropped connections, and SIGTERM under load. Each bad request is a
4xx that changes nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers_agent import AgentProcess, call, machine_file, pod_manifest, run_load, serving
from test_agent import check_against_state

GI = 2**30
POLICY = ("--topology-policy", "single-numa-node")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    args = ("--machine", str(machine_file(tmp_path)), *POLICY)
    a = AgentProcess(tmp_path, (*args, "--idle-timeout", "1", "--body-timeout", "1"))
    yield a.start()
    a.cleanup()


def entries(agent: AgentProcess) -> dict[str, Any]:
    state = json.loads((agent.state_dir / "memory_manager_state").read_text())
    found: dict[str, Any] = state.get("entries") or {}
    return found


def logs(agent: AgentProcess) -> list[dict[str, Any]]:
    # Every line is one JSON object: json.loads fails on anything else.
    return [json.loads(line) for line in agent.log_text().splitlines()]


async def concurrently(agent: AgentProcess, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(agent.socket), limit=len(bodies))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: dict[str, Any]) -> dict[str, Any]:
            async with session.post("http://agent/v1/admit", json=body) as r:
                assert r.status == 200, await r.text()
                answer: dict[str, Any] = await r.json()
                return answer

        return await asyncio.gather(*(one(b) for b in bodies))


def test_the_same_pod_from_16_clients_is_reserved_once(agent: AgentProcess) -> None:
    answers = asyncio.run(concurrently(agent, [pod_manifest("same", "2Gi")] * 16))
    assert sorted(a["alreadyAdmitted"] for a in answers) == [False] + [True] * 15
    assert all(a["admit"] for a in answers)
    # Every answer names the one placement the state holds.
    assert len({json.dumps(a["containers"], sort_keys=True) for a in answers}) == 1
    assert set(entries(agent)) == {"same"}
    state = json.loads((agent.state_dir / "memory_manager_state").read_text())
    assert sum(n["memoryMap"]["memory"]["reserved"] for n in state["machineState"].values()) == (
        2 * GI
    )


def test_concurrent_requests_share_one_write(agent: AgentProcess) -> None:
    pods = [pod_manifest(f"p{i}", "1Gi") for i in range(16)]
    for _ in range(3):  # three bursts: groups form whenever requests overlap a write
        answers = asyncio.run(concurrently(agent, pods))
        assert all(a["admit"] for a in answers)
        for i in range(16):
            call(agent.connection(), "POST", "/v1/remove", {"podUID": f"p{i}"})
    commits = [r for r in logs(agent) if r.get("message") == "committed"]
    admitted = [p["podUID"] for r in commits for p in r.get("admitted", [])]
    assert len(admitted) == 48 and set(admitted) == {f"p{i}" for i in range(16)}
    # One log line per durable write, naming what each request of its group did.
    assert all(
        r["group"] == len(r.get("admitted", [])) + len(r.get("removed", [])) for r in commits
    )
    assert max(r["group"] for r in commits if "admitted" in r) > 1, "each admission paid a write"
    assert len(commits) < 96


@pytest.mark.parametrize("content_type", ["image/png", "text/plain", "application/yaml", None])
def test_a_body_that_is_not_json_is_415_and_changes_nothing(
    agent: AgentProcess, content_type: str | None
) -> None:
    body = json.dumps(pod_manifest("png", "1Gi"))
    status, answer = call(agent.connection(), "POST", "/v1/admit", body, content_type)
    assert status == 415
    assert "application/json" in answer["error"]
    status, _ = call(agent.connection(), "POST", "/v1/remove", '{"podUID": "x"}', content_type)
    assert status == 415
    assert entries(agent) == {}


@pytest.mark.parametrize("name", ["worker\x00one", "w" * 300, "Worker_1", "-lead", ""])
def test_invalid_node_names_are_400(agent: AgentProcess, name: str) -> None:
    from urllib.parse import quote

    status, answer = call(agent.connection(), "GET", "/v1/nrt?nodeName=" + quote(name))
    assert status == 400
    assert "invalid node name" in answer["error"] and "\n" not in answer["error"]
    status, ok = call(agent.connection(), "GET", "/v1/nrt?nodeName=worker-1.example")
    assert status == 200 and ok["metadata"]["name"] == "worker-1.example"


def raw(agent: AgentProcess) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(agent.socket))
    return s


def closed_after(s: socket.socket) -> tuple[float, bytes]:
    """Seconds until the agent closes ``s``, and what it sent before."""
    began = time.monotonic()
    got = b""
    while chunk := s.recv(4096):
        got += chunk
    return time.monotonic() - began, got


def test_idle_and_half_sent_connections_are_closed(agent: AgentProcess) -> None:
    idle = raw(agent)
    half_header = raw(agent)
    half_header.sendall(b"POST /v1/admit HTTP/1.1\r\nHost: agent\r\nContent-Type: applic")
    body = json.dumps(pod_manifest("slow", "1Gi")).encode()
    half_body = raw(agent)
    half_body.sendall(
        b"POST /v1/admit HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    for s in (idle, half_header):
        waited, got = closed_after(s)
        assert waited < 5 and got == b""
    waited, got = closed_after(half_body)
    assert waited < 5
    assert got.startswith(b"HTTP/1.1 408 ")
    assert entries(agent) == {}
    # The agent still serves.
    assert call(agent.connection(), "GET", "/healthz") == (200, "ok\n")


def test_a_client_that_drops_mid_body_is_a_warning_not_a_traceback(agent: AgentProcess) -> None:
    body = json.dumps(pod_manifest("dropped", "1Gi")).encode()
    for _ in range(5):
        s = raw(agent)
        s.sendall(
            b"POST /v1/admit HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:20]
        )
        s.close()
    deadline = time.monotonic() + 10
    while sum(r["message"] == "client went away" for r in logs(agent)) < 5:
        assert time.monotonic() < deadline, agent.log_text()
        time.sleep(0.05)
    assert agent.terminate() == 0
    records = logs(agent)
    went = [r for r in records if r["message"] == "client went away"]
    assert {r["level"] for r in went} == {"WARNING"}
    assert not any("Traceback" in json.dumps(r) for r in records)
    assert entries(agent) == {}


def test_sigterm_under_load_stops_within_two_seconds(tmp_path: Path) -> None:
    args = ("--machine", str(machine_file(tmp_path)), *POLICY)
    a = AgentProcess(tmp_path, args).start()
    idle = raw(a)  # a keep-alive client that sends nothing must not hold the stop up
    assert idle is not None

    async def load_then_term() -> tuple[Any, float]:
        load = asyncio.create_task(
            run_load(a.socket, clients=16, total=100_000, seed=3, tolerate_loss=True)
        )
        await asyncio.sleep(1.0)
        assert a.proc is not None
        began = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(a.proc.wait, 10)
        stopped = time.monotonic() - began
        assert code == 0
        return await load, stopped

    try:
        result, stopped = asyncio.run(load_then_term())
    finally:
        idle.close()
        a.cleanup()
    assert stopped < 2.0, f"SIGTERM took {stopped:.2f} s"
    assert result.admits > 50 and result.broken > 0
    check_against_state(result, (a.state_dir / "memory_manager_state").read_text())
    messages = [r["message"] for r in logs(a)]
    # What was received before the stop is still applied and answered, then the agent stops.
    assert "stopping" in messages and messages[-1] == "stopped"


def test_a_failed_group_write_answers_every_request_503_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from pymm import Machine, MemoryManager
    from pymm.agent import Agent

    manager = MemoryManager(
        Machine.synthetic(4, memory="8Gi"),
        topology_policy="single-numa-node",
        state_dir=tmp_path / "state",
    )
    agent = Agent(manager)
    headers = {"Content-Type": "application/json"}

    def no_space(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def scenario() -> tuple[list[int], list[int]]:
        async with serving(agent, tmp_path / "agent.sock") as client:

            async def admit(i: int) -> int:
                body = json.dumps(pod_manifest(f"g{i}", "1Gi"))
                async with client.post("/v1/admit", data=body, headers=headers) as r:
                    if r.status == 200:
                        assert (await r.json())["alreadyAdmitted"] is False
                    return r.status

            with monkeypatch.context() as m:
                m.setattr(os, "rename", no_space)
                failed = await asyncio.gather(*(admit(i) for i in range(8)))
            retried = await asyncio.gather(*(admit(i) for i in range(8)))
            return list(failed), list(retried)

    failed, retried = asyncio.run(scenario())
    # Every request of the failed write was told 503, and none of them happened: the retries
    # are new admissions, not "alreadyAdmitted".
    assert failed == [503] * 8
    assert retried == [200] * 8
    state = json.loads((tmp_path / "state" / "memory_manager_state").read_text())
    assert set(state["entries"]) == {f"g{i}" for i in range(8)}
