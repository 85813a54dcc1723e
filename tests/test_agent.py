"""``pymm agent``: the endpoints, idempotent retries, graceful stop, a 16-client load test whose
every answer is checked against the state file and /metrics, and kill -9 under load."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from helpers_agent import (
    ROOT,
    AgentProcess,
    LoadResult,
    UnixHTTPConnection,
    call,
    machine_file,
    pod_manifest,
    run_load,
    serving,
)
from prometheus_client.parser import text_string_to_metric_families

from pymm import Machine, MemoryManager, _engine
from pymm.cli import main
from pymm.commands.state import inspect_text
from pymm.nrt import pod_fingerprint

GI = 2**30
POLICY = ("--topology-policy", "single-numa-node")
JSON = {"Content-Type": "application/json"}

#: The load test's size: 20,000 requests take about 15 s here; PYMM_AGENT_LOAD_REQUESTS changes it.
LOAD_REQUESTS = int(os.environ.get("PYMM_AGENT_LOAD_REQUESTS", "20000"))


@pytest.fixture(autouse=True)
def pymm_logging_untouched() -> Iterator[None]:
    """The agent command configures the ``pymm`` logger for its process; a failed start run
    in-process must leave it as it was, or later tests' logs go astray."""
    logger = logging.getLogger("pymm")
    before = (list(logger.handlers), logger.propagate, logger.level)
    yield
    assert (list(logger.handlers), logger.propagate, logger.level) == before


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path, ("--machine", str(machine_file(tmp_path)), *POLICY))
    yield a.start()
    a.cleanup()


def metrics(text: str) -> dict[str, float]:
    return {
        s.name + json.dumps(s.labels, sort_keys=True) if s.labels else s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def admit_json_from_cli(tmp_path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    pod = tmp_path / "pod.yaml"
    pod.write_text(yaml.safe_dump(manifest))
    args = ["--machine", str(machine_file(tmp_path)), *POLICY, "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "pymm.cli", "admit", str(pod), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    (result,) = json.loads(out.stdout)
    return result  # type: ignore[no-any-return]


def test_socket_is_private_and_ready_file_says_where(agent: AgentProcess) -> None:
    assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(agent.socket.stat().st_mode)
    assert agent.info["socket"] == str(agent.socket)
    assert agent.info["pid"] == agent.proc.pid  # type: ignore[union-attr]
    status, body = call(agent.connection(), "GET", "/healthz")
    assert (status, body) == (200, "ok\n")


def test_admit_answers_as_pymm_admit_json_and_retries_are_idempotent(
    agent: AgentProcess, tmp_path: Path
) -> None:
    conn = agent.connection()
    manifest = pod_manifest("db-0", "3Gi", containers=2)
    status, first = call(conn, "POST", "/v1/admit", manifest)
    assert status == 200
    (tmp_path / "cli").mkdir()
    expected = admit_json_from_cli(tmp_path / "cli", manifest)
    assert {k: v for k, v in first.items() if k != "alreadyAdmitted"} == expected
    assert first["alreadyAdmitted"] is False
    assert first["containers"]["c0"]["numaNodes"] == [0]
    # A client that lost the answer retries with the same uid: told, not admitted twice.
    status, again = call(conn, "POST", "/v1/admit", manifest)
    assert status == 200
    assert again["alreadyAdmitted"] is True and again["admit"] is True
    assert again["message"] == "already admitted"
    assert again["containers"] == first["containers"]
    _, state = call(conn, "GET", "/v1/state")
    assert set(state["entries"]) == {"db-0"}
    assert state["machineState"]["0"]["memoryMap"]["memory"]["reserved"] == 6 * GI
    # Removal is idempotent too: the second answer says there was nothing left.
    assert call(conn, "POST", "/v1/remove", {"podUID": "db-0"}) == (
        200,
        {"podUID": "db-0", "container": None, "removed": True},
    )
    assert call(conn, "POST", "/v1/remove", {"podUID": "db-0"})[1]["removed"] is False
    _, state = call(conn, "GET", "/v1/state")
    assert "entries" not in state or not state["entries"]


def test_client_that_disconnects_mid_request_loses_nothing(agent: AgentProcess) -> None:
    body = json.dumps(pod_manifest("gone", "2Gi")).encode()
    head = (
        "POST /v1/admit HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(agent.socket))
    raw.sendall(head + body)
    raw.close()  # gone before the answer
    conn = agent.connection()
    deadline = time.monotonic() + 10
    while "gone" not in (call(conn, "GET", "/v1/state")[1].get("entries") or {}):
        assert time.monotonic() < deadline, "the admission was lost with its client"
        time.sleep(0.05)
    # The retry learns the outcome instead of admitting twice.
    _, retry = call(conn, "POST", "/v1/admit", pod_manifest("gone", "2Gi"))
    assert retry["alreadyAdmitted"] is True
    assert retry["containers"]["c0"]["blocks"] == [
        {"numaAffinity": [0], "type": "memory", "size": 2 * GI}
    ]
    _, state = call(conn, "GET", "/v1/state")
    assert state["machineState"]["0"]["memoryMap"]["memory"]["reserved"] == 2 * GI


def test_remove_one_container(agent: AgentProcess) -> None:
    conn = agent.connection()
    call(conn, "POST", "/v1/admit", pod_manifest("p", "2Gi", containers=2))
    status, body = call(conn, "POST", "/v1/remove", {"podUID": "p", "container": "c1"})
    assert (status, body["removed"], body["container"]) == (200, True, "c1")
    _, state = call(conn, "GET", "/v1/state")
    assert set(state["entries"]["p"]) == {"c0"}


def test_stop_is_the_kubelets_remove_container(agent: AgentProcess) -> None:
    conn = agent.connection()
    call(conn, "POST", "/v1/admit", pod_manifest("p", "2Gi", containers=2))
    status, body = call(conn, "POST", "/v1/stop", {"podUID": "p", "container": "c1"})
    assert (status, body["stopped"], body["container"]) == (200, True, "c1")
    _, state = call(conn, "GET", "/v1/state")
    assert set(state["entries"]["p"]) == {"c0"}
    # Stopped again, or never known: nothing happens, and it is no error.
    for request in (
        {"podUID": "p", "container": "c1"},
        {"podUID": "ghost", "container": "c0"},
        {"podUID": "ghost"},
    ):
        status, body = call(conn, "POST", "/v1/stop", request)
        assert (status, body["stopped"]) == (200, False), request
    # The whole pod goes away; a retried admission of its uid is a new admission.
    status, body = call(conn, "POST", "/v1/stop", {"podUID": "p"})
    assert (status, body["stopped"]) == (200, True)
    _, state = call(conn, "GET", "/v1/state")
    assert state.get("entries", {}) == {}  # the kubelet's JSON leaves an empty map out
    _, again = call(conn, "POST", "/v1/admit", pod_manifest("p", "2Gi", containers=2))
    assert again["admit"] is True and again["alreadyAdmitted"] is False


def test_a_rejected_pods_containers_stop_without_error(agent: AgentProcess) -> None:
    conn = agent.connection()
    _, a = call(conn, "POST", "/v1/admit", pod_manifest("huge", "4000Gi"))
    assert a["admit"] is False
    status, body = call(conn, "POST", "/v1/stop", {"podUID": "huge", "container": "c0"})
    assert (status, body["stopped"]) == (200, False)
    status, body = call(conn, "POST", "/v1/remove", {"podUID": "huge"})
    assert (status, body["removed"]) == (200, False)


def test_hints_and_nrt(agent: AgentProcess) -> None:
    conn = agent.connection()
    call(conn, "POST", "/v1/admit", pod_manifest("a", "6Gi"))
    status, hints = call(conn, "POST", "/v1/hints", pod_manifest("b", "2Gi"))
    assert status == 200
    m = Machine.from_file(agent.directory / "machine.json")
    mm = MemoryManager(
        m, reserved_memory=m.reserve_per_node("1Gi"), topology_policy="single-numa-node"
    )
    from pymm.pod import Pod

    mm.admit(Pod.from_manifest(pod_manifest("a", "6Gi")).with_defaults())
    expected = mm.hints(Pod.from_manifest(pod_manifest("b", "2Gi")).with_defaults(), "c0")
    assert hints == {"b": {"c0": expected}}
    status, nrt = call(conn, "GET", "/v1/nrt?nodeName=worker-3")
    assert status == 200
    # The manager's object, plus the fingerprint of the one pod the agent admitted (its
    # manifest named it: namespace "load", name "a").
    expected = mm.nrt("worker-3")
    expected["attributes"] += [
        {"name": "nodeTopologyPodsFingerprint", "value": pod_fingerprint([("load", "a")])},
        {"name": "nodeTopologyPodsFingerprintMethod", "value": "with-exclusive-resources"},
    ]
    assert nrt == expected
    crd = yaml.safe_load((ROOT / "deploy" / "crd.yaml").read_text())
    jsonschema.validate(nrt, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _fingerprint_of(conn: UnixHTTPConnection) -> str | None:
    status, nrt = call(conn, "GET", "/v1/nrt?nodeName=worker-3")
    assert status == 200
    attrs = {a["name"]: a["value"] for a in nrt["attributes"]}
    return attrs.get("nodeTopologyPodsFingerprint")


def test_the_fingerprint_survives_a_restart(agent: AgentProcess) -> None:
    conn = agent.connection()
    for uid in ("a", "b", "c"):
        assert call(conn, "POST", "/v1/admit", pod_manifest(uid, "2Gi"))[1]["admit"]
    assert call(conn, "POST", "/v1/remove", {"podUID": "b"})[1]["removed"]
    before = _fingerprint_of(conn)
    assert before == pod_fingerprint([("load", "a"), ("load", "c")])
    conn.close()
    assert agent.terminate() == 0
    agent.start()
    conn = agent.connection()
    assert _fingerprint_of(conn) == before
    # Pods admitted after the restart join those named before it.
    assert call(conn, "POST", "/v1/admit", pod_manifest("d", "2Gi"))[1]["admit"]
    assert _fingerprint_of(conn) == pod_fingerprint([("load", "a"), ("load", "c"), ("load", "d")])


def test_the_journal_of_names_is_compacted_at_start_up(agent: AgentProcess) -> None:
    conn = agent.connection()
    for i in range(5):
        assert call(conn, "POST", "/v1/admit", pod_manifest(f"p{i}", "1Gi"))[1]["admit"]
    for i in range(4):
        assert call(conn, "POST", "/v1/remove", {"podUID": f"p{i}"})[1]["removed"]
    journal = agent.state_dir / "pod_identities.jsonl"
    # Journalled just after each group's answers (off their way): wait for the last line.
    deadline = time.monotonic() + 10
    while len(journal.read_text().splitlines()) < 9:  # five admitted, four gone
        assert time.monotonic() < deadline, journal.read_text()
        time.sleep(0.01)
    assert len(journal.read_text().splitlines()) == 9
    conn.close()
    assert agent.terminate() == 0
    agent.start()
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines == [{"uid": "p4", "namespace": "load", "name": "p4"}]
    assert _fingerprint_of(agent.connection()) == pod_fingerprint([("load", "p4")])


def test_unreadable_pod_names_leave_the_fingerprint_unset(agent: AgentProcess) -> None:
    conn = agent.connection()
    assert call(conn, "POST", "/v1/admit", pod_manifest("a", "2Gi"))[1]["admit"]
    conn.close()
    agent.kill()  # as after a crash that tore the (unsynced) journal of names
    (agent.state_dir / "pod_identities.jsonl").write_text('{"uid": "a", "namesp')
    agent.start()
    conn = agent.connection()
    # A pod the state holds but nothing names: no fingerprint rather than a wrong one.
    assert _fingerprint_of(conn) is None
    assert "pod names for the fingerprint read up to a damaged line" in agent.log_text()
    # Once that pod is gone, the agent's own pods are fingerprinted again.
    assert call(conn, "POST", "/v1/remove", {"podUID": "a"})[1]["removed"]
    assert call(conn, "POST", "/v1/admit", pod_manifest("b", "2Gi"))[1]["admit"]
    assert _fingerprint_of(conn) == pod_fingerprint([("load", "b")])


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/admit", '{"kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": '
         '[{"name": "c", "resources": {"limits": {"memory": "lots"}}}]}}', "lots"),
        ("/v1/admit", "[", "invalid JSON"),
        ("/v1/admit", "kind: [", "invalid JSON"),
        ("/v1/admit", "[]", "expected one Pod manifest, got a JSON list"),
        ("/v1/admit", '{"kind": "List", "items": []}', "expected one Pod manifest, got 0"),
        ("/v1/admit", "", "expected one Pod manifest, got 0"),
        ("/v1/remove", "{}", "podUID"),
        ("/v1/remove", "not json", "not JSON"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_with_one_line(
    agent: AgentProcess, path: str, body: str, message: str
) -> None:
    status, answer = call(agent.connection(), "POST", path, body)
    assert status == 400
    assert set(answer) == {"error"} and message in answer["error"]
    assert "\n" not in answer["error"]


def test_metrics_port_serves_metrics_only(tmp_path: Path) -> None:
    a = AgentProcess(
        tmp_path, ("--machine", str(machine_file(tmp_path)), "--metrics-port", "0")
    ).start()
    try:
        call(a.connection(), "POST", "/v1/admit", pod_manifest("a", "1Gi"))
        url = f"http://127.0.0.1:{a.info['metricsPort']}"
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            scraped = metrics(r.read().decode())
        assert scraped["kubelet_topology_manager_admission_requests_total"] == 1
        assert not any(k.endswith("_created") for k in scraped)  # as the kubelet exports
        request = urllib.request.Request(f"{url}/v1/admit", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=10)
        assert e.value.code == 404
    finally:
        assert a.terminate() == 0


def test_sigterm_stops_cleanly_and_releases_everything(agent: AgentProcess) -> None:
    call(agent.connection(), "POST", "/v1/admit", pod_manifest("kept", "2Gi"))
    assert agent.terminate() == 0
    assert not agent.socket.exists()
    assert not agent.ready_file.exists()
    logs = [json.loads(line) for line in agent.log_text().splitlines()]
    assert [r["message"] for r in logs][-2:] == ["stopping", "stopped"]
    assert logs[-2]["signal"] == "SIGTERM"
    # The lock is free and the admission durable.
    m = Machine.from_file(agent.directory / "machine.json")
    with MemoryManager(
        m, reserved_memory=m.reserve_per_node("1Gi"), state_dir=agent.state_dir
    ) as mm:
        assert set(mm.state["entries"]) == {"kept"}


def test_second_agent_is_refused(agent: AgentProcess, capsys: pytest.CaptureFixture[str]) -> None:
    machine = str(agent.directory / "machine.json")
    other = agent.directory / "other"
    args = ["agent", "--machine", machine, "--state-dir", str(other), "--socket", str(agent.socket)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pymm: error: another process is serving on {agent.socket}"]
    # Same state directory: its lock refuses, naming the holder.
    args = ["agent", "--machine", machine, "--state-dir", str(agent.state_dir), "--socket", "x"]
    assert main(args) == 2
    assert "pymm: error:" in capsys.readouterr().err


def test_agent_needs_a_state_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--socket", "/nonexistent/s"]) == 2
    assert capsys.readouterr().err.startswith("pymm: error: agent needs --state-dir")


# -- load ---------------------------------------------------------------------------------


def check_against_state(result: LoadResult, state_text: str) -> None:
    """Every acknowledged admission is in the state file, nothing rejected or acknowledged as
    removed is, the file verifies, and no NUMA node holds more than it has."""
    _engine.decode_checkpoint(state_text)  # checksum and structure, as the kubelet checks
    found = inspect_text(state_text)
    assert found.findings == []
    for row in found.node_rows():
        assert row["reserved"] <= row["allocatable"], row
        assert row["reserved"] + row["free"] == row["allocatable"], row
    entries = {
        p["podUID"]: {c["name"]: c["blocks"] for c in p["containers"]} for p in found.pod_rows()
    }
    unsure = 0
    for uid, o in result.pods.items():
        if o.admitted is None or o.remove_in_flight:
            unsure += 1  # no answer: either outcome is allowed
        elif o.admitted and not o.removed:
            assert uid in entries, f"{uid} was acknowledged admitted but is not in the state"
        else:
            assert uid not in entries, f"{uid} ({o}) must not be in the state"
    assert unsure <= 16  # at most one request in flight per client


@pytest.mark.slow
def test_load_16_clients(agent: AgentProcess) -> None:
    result = asyncio.run(run_load(agent.socket, clients=16, total=LOAD_REQUESTS))
    assert result.admits + result.removes == LOAD_REQUESTS
    assert 0 < result.rejected < result.admits  # contention really happened
    conn = agent.connection()
    _, state = call(conn, "GET", "/v1/state")
    check_against_state(result, json.dumps(state))
    check_against_state(result, (agent.state_dir / "memory_manager_state").read_text())
    _, text = call(conn, "GET", "/metrics")
    scraped = metrics(text)
    admitted = result.admits - result.rejected
    assert scraped["kubelet_topology_manager_admission_requests_total"] == result.admits
    assert scraped["kubelet_topology_manager_admission_errors_total"] == result.rejected
    assert scraped["kubelet_topology_manager_admission_duration_ms_count"] == result.admits
    # One container per pod: one Allocate per admission that reached the memory manager.
    assert scraped["kubelet_memory_manager_pinning_requests_total"] == admitted + result.unexpected
    assert scraped["kubelet_memory_manager_pinning_errors_total"] == result.unexpected
    assert scraped["pymm_remove_requests_total"] == result.removes
    assert scraped['pymm_admissions_total{"outcome": "admitted"}'] == admitted
    print(
        f"\nagent load: {LOAD_REQUESTS} requests, 16 clients, {result.seconds:.1f} s "
        f"({LOAD_REQUESTS / result.seconds:.0f}/s); latency p50 {result.percentile(0.5):.2f} ms, "
        f"p99 {result.percentile(0.99):.2f} ms; {result.rejected} rejected"
    )


@pytest.mark.slow
def test_kill_9_under_load_then_restart(tmp_path: Path) -> None:
    args = ("--machine", str(machine_file(tmp_path)), *POLICY)
    first = AgentProcess(tmp_path, args).start()

    async def load_then_kill() -> LoadResult:
        load = asyncio.create_task(
            run_load(first.socket, clients=16, total=LOAD_REQUESTS, seed=7, tolerate_loss=True)
        )
        await asyncio.sleep(1.0 + (time.monotonic_ns() % 1000) / 1000)  # mid-run, not aligned
        first.kill()
        return await load

    try:
        result = asyncio.run(load_then_kill())
    finally:
        first.cleanup()
    assert result.broken > 0, "the kill came after the load had finished"
    assert result.admits > 100
    # The socket is left behind by the dead agent; the new one must claim it.
    assert first.socket.exists()
    second = AgentProcess(tmp_path, args).start()
    try:
        conn = second.connection()
        _, state = call(conn, "GET", "/v1/state")
        check_against_state(result, json.dumps(state))
        # Retrying what was in flight gives a definite answer that matches the state.
        entries = state.get("entries", {})
        for uid, o in result.pods.items():
            if o.admitted is None:
                _, body = call(conn, "POST", "/v1/admit", pod_manifest(uid, "1Gi"))
                assert body["alreadyAdmitted"] is (uid in entries)
    finally:
        assert second.terminate() == 0


@pytest.mark.parametrize("failing", ["rename", "fsync-directory"])
def test_a_failed_state_write_is_503_and_the_retry_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A full or failing disk is the node's problem, not the client's: 503 with Retry-After,
    and the same request succeeds once the disk recovers. A failure before the rename leaves
    nothing admitted; one after it (StateNotDurableError) leaves the pod admitted in memory
    and file alike, so the retry finds it there."""
    import errno

    from pymm.agent import Agent

    manager = MemoryManager(
        Machine.synthetic(4, memory="8Gi"),
        topology_policy="single-numa-node",
        state_dir=tmp_path / "state",
    )
    agent = Agent(manager)
    body = json.dumps(pod_manifest("p1", "2Gi"))
    real_rename, real_fsync = os.rename, os.fsync

    def rename(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    async def scenario() -> tuple[int, dict[str, Any], str | None, int, dict[str, Any]]:
        async with serving(agent, tmp_path / "agent.sock") as client:
            with monkeypatch.context() as m:
                if failing == "rename":
                    m.setattr(os, "rename", rename)
                else:
                    m.setattr(os, "fsync", fsync)
                first = await client.post("/v1/admit", data=body, headers=JSON)
                first_body = await first.json()
            assert os.rename is real_rename
            retry = await client.post("/v1/admit", data=body, headers=JSON)
            return (
                first.status,
                first_body,
                first.headers.get("Retry-After"),
                retry.status,
                await retry.json(),
            )

    status, answer, retry_after, retry_status, retried = asyncio.run(scenario())
    assert status == 503 and retry_after == "1"
    assert answer["retryable"] is True
    assert answer["kind"] == ("StateFileError" if failing == "rename" else "StateNotDurableError")
    assert os.strerror(errno.ENOSPC if failing == "rename" else errno.EIO) in answer["error"]
    assert retry_status == 200 and retried["admit"] is True
    on_disk = json.loads((tmp_path / "state" / "memory_manager_state").read_text())
    assert set(on_disk["entries"]) == {"p1"}
    assert manager.numa_nodes("p1", "c0") == tuple(retried["containers"]["c0"]["numaNodes"])
