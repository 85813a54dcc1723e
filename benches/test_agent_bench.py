"""Agent request latency: one client on a kept-alive unix-socket connection, each admission and
removal durable (state file fsync'd and renamed) before its answer. ``extra_info`` records p50
and p99 in milliseconds; the target is p99 <= 5 ms. ``/healthz`` gives the floor of the HTTP
round trip alone.

Run: ``python -m pytest benches/test_agent_bench.py --benchmark-only``.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The agent helpers live with the tests, which pytest puts on the path only for tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers_agent import AgentProcess, UnixHTTPConnection, call, machine_file, pod_manifest

ROUNDS = 2000


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    directory = tmp_path_factory.mktemp("agent-bench")
    args = ("--machine", str(machine_file(directory)), "--topology-policy", "single-numa-node")
    a = AgentProcess(directory, args).start()
    yield a
    assert a.terminate() == 0


@pytest.fixture(scope="module")
def conn(agent: AgentProcess) -> UnixHTTPConnection:
    return agent.connection()


def _percentiles(benchmark: Any) -> None:
    stats = getattr(benchmark, "stats", None)
    data = sorted(stats.stats.data) if stats is not None else []
    if not data:
        return  # --benchmark-disable: a smoke run, nothing to report
    p50 = data[len(data) // 2] * 1e3
    p99 = data[min(len(data) - 1, int(0.99 * len(data)))] * 1e3
    benchmark.extra_info.update({"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)})
    print(f"\n{benchmark.name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(data)} requests")


def _run(benchmark: Any, target: Callable[..., Any], setup: Callable[[], Any]) -> None:
    benchmark.pedantic(target, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=20)
    _percentiles(benchmark)


def test_admit_latency(benchmark: Any, conn: UnixHTTPConnection) -> None:
    uids = (f"bench-admit-{i}" for i in itertools.count())
    previous: list[str] = []

    def setup() -> tuple[tuple[dict[str, Any]], dict[str, Any]]:
        # Untimed: release the last pod, so every timed admission finds the same machine.
        if previous:
            assert call(conn, "POST", "/v1/remove", {"podUID": previous.pop()})[1]["removed"]
        uid = next(uids)
        previous.append(uid)
        return (pod_manifest(uid, "2Gi"),), {}

    def admit(manifest: dict[str, Any]) -> None:
        status, body = call(conn, "POST", "/v1/admit", manifest)
        assert status == 200 and body["admit"] and body["containers"]["c0"]["numaNodes"] == [0]

    _run(benchmark, admit, setup)


def test_remove_latency(benchmark: Any, conn: UnixHTTPConnection) -> None:
    uids = (f"bench-remove-{i}" for i in itertools.count())

    def setup() -> tuple[tuple[str], dict[str, Any]]:
        uid = next(uids)
        assert call(conn, "POST", "/v1/admit", pod_manifest(uid, "2Gi"))[1]["admit"]
        return (uid,), {}

    def remove(uid: str) -> None:
        status, body = call(conn, "POST", "/v1/remove", {"podUID": uid})
        assert status == 200 and body["removed"] is True

    _run(benchmark, remove, setup)


def test_healthz_latency(benchmark: Any, conn: UnixHTTPConnection) -> None:
    def healthz() -> None:
        assert call(conn, "GET", "/healthz") == (200, "ok\n")

    _run(benchmark, healthz, lambda: ((), {}))
