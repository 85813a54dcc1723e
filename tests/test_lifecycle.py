"""One lifecycle, whichever driver applies it.

What each operation means (admit, start, stop a container, stop a pod, release, restart) is
the engine's (``engine/src/lifecycle.rs``); replay, simulate, the Python API and the agent only
build operations. These tests fail when a driver maps an operation differently: the same
operations of the real kubelet's lifecycle set, through replay, through the public API and
through the simulator, must leave the same state, and each meaning is pinned against the
kubelet's own behaviour (``tests/conformance/SCENARIOS.md``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from simulate_reference import replay_scenario_ops

from pymm import Container, Machine, MemoryManager, Pod, _engine
from pymm.errors import NotFoundError, PymmError
from pymm.pod import probe_pod
from pymm.replay import load_scenarios, replay_results

CONF = Path(__file__).parent / "conformance"
LIFECYCLE = CONF / "kubelet-oracle-latest-lifecycle.scenarios.json.gz"
GiB = 1 << 30


def _raw_scenarios() -> list[dict[str, Any]]:
    return json.loads(gzip.decompress(LIFECYCLE.read_bytes()))["scenarios"]  # type: ignore[no-any-return]


def _api_manager(machine: dict[str, Any], config: dict[str, Any]) -> MemoryManager:
    return MemoryManager(Machine.from_dict(machine), **config)


def test_replay_the_api_and_simulate_leave_the_same_state_on_the_lifecycle_set() -> None:
    raw = _raw_scenarios()
    decoded = load_scenarios(LIFECYCLE)
    replayed = replay_results(decoded).to_py()["results"]
    assert len(raw) == len(decoded) == len(replayed) == 600
    compared = 0
    for i, (sc, rep) in enumerate(zip(raw, replayed, strict=True)):
        machine, config = decoded.setup(i)
        if rep.get("setupError"):
            with pytest.raises(PymmError):
                _api_manager(machine, config)
            continue
        # Through the public API, operation by operation.
        mm = _api_manager(machine, config)
        verdicts: list[bool] = []

        def seen(_i: int, a: Any, into: list[bool] = verdicts) -> None:
            if a is not None:
                into.append(a.admitted)

        failed = replay_scenario_ops(mm, sc, seen)
        ops = rep["results"]
        assert (failed is not None) == ("error" in ops[-1] and ops[-1]["op"] == "restart"), sc[
            "name"
        ]
        assert verdicts == [r["admit"] for r in ops if r["op"] == "admit"], sc["name"]
        final = ops[-1]["checkpoint"] if ops else rep["initialCheckpoint"]
        assert json.loads(mm.checkpoint()) == final, sc["name"]
        # Through the simulator's core, the scenario's own operations.
        sim = _engine.Simulation(
            machine,
            config,
            [],
            b"",
            b"",
            b"",
            probe_pod(None).compiled,
            [],
            scenario=(decoded, i),
        )
        assert sim.run() is None
        raw_sim = sim.finish()
        assert raw_sim["admitted"] == sum(verdicts), sc["name"]
        assert (raw_sim["restartError"] is not None) == (failed is not None), sc["name"]
        assert json.loads(raw_sim["finalCheckpoint"]) == final, sc["name"]
        compared += 1
    assert compared >= 590


# -- each meaning, as the kubelet has it ------------------------------------------------------


def _mm() -> MemoryManager:
    m = Machine.synthetic(2, memory="16Gi")
    return MemoryManager(m, reserved_memory="0:memory=1Gi;1:memory=1Gi")


def _reserved(mm: MemoryManager) -> int:
    return sum(u.reserved for u in mm.usage() if u.resource == "memory")


def _pod(uid: str, gi: int, init_gi: int | None = None) -> Pod:
    init = () if init_gi is None else (Container.of("init", cpu="1", memory=f"{init_gi}Gi"),)
    return Pod.of(uid, Container.of("c", cpu="1", memory=f"{gi}Gi"), init=init)


def test_stopping_a_container_that_never_started_releases_nothing() -> None:
    mm = _mm()
    assert mm.admit(_pod("p", 4), start=False).admitted
    assert mm.stop("p", "c") is False  # not in the kubelet's container map
    assert _reserved(mm) == 4 * GiB
    assert mm.stop_pod("p") is True  # the pod was active
    # Its memory stays until the next admission removes it as stale.
    assert _reserved(mm) == 4 * GiB and "p" not in mm.active_pods
    assert mm.admit(_pod("q", 1)).admitted
    assert _reserved(mm) == 1 * GiB and set(mm.state["entries"]) == {"q"}


def test_stopping_a_started_container_releases_it() -> None:
    mm = _mm()
    assert mm.admit(_pod("p", 4)).admitted
    assert mm.stop("p", "c") is True
    assert _reserved(mm) == 0 and "p" in mm.active_pods
    assert mm.stop("p", "c") is False  # already stopped: nothing, no error


def test_stopping_what_is_unknown_is_no_error() -> None:
    mm = _mm()
    assert mm.stop("ghost", "c") is False
    assert mm.stop_pod("ghost") is False
    # A rejected pod's containers are still stopped in real traces.
    assert not mm.admit(_pod("huge", 40)).admitted
    assert mm.stop("huge", "c") is False and mm.stop_pod("huge") is False


def test_an_init_container_released_at_start_is_not_released_twice() -> None:
    mm = _mm()
    assert mm.admit(_pod("p", 2, init_gi=6)).admitted
    # Starting the app container gave the init container's memory back (the app reuses 2Gi).
    assert _reserved(mm) == 2 * GiB
    assert mm.stop("p", "init") is False
    assert _reserved(mm) == 2 * GiB


def test_release_gives_back_what_never_started_and_refuses_the_unknown() -> None:
    mm = _mm()
    assert mm.admit(_pod("p", 4), start=False).admitted
    assert mm.release("p", "c") is True
    assert _reserved(mm) == 0
    with pytest.raises(NotFoundError) as e:
        mm.release("ghost")
    assert e.value.pod_uid == "ghost" and isinstance(e.value, LookupError)
    assert mm.release("ghost", missing_ok=True) is False
    assert mm.remove == mm.release  # the operator's removal


def test_start_of_a_pod_not_admitted_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        _mm().start("ghost")


def test_a_copy_admits_on_its_own() -> None:
    # MemoryManager.copy() had no metrics attribute, so admitting on it raised.
    mm = _mm()
    other = mm.copy()
    assert other.admit(_pod("p", 4)).admitted
    assert _reserved(other) == 4 * GiB and _reserved(mm) == 0


def test_apply_all_is_all_or_nothing() -> None:
    mm = _mm()
    before = mm.checkpoint()
    ops = [_engine.Op.admit(_pod("a", 2).compiled), _engine.Op.release("ghost")]
    with pytest.raises(NotFoundError):
        mm._engine.apply_all(ops)
    assert mm.checkpoint() == before and mm.active_pods == []


def test_every_operation_has_one_name() -> None:
    pod = _pod("p", 1).compiled
    ops = [
        _engine.Op.admit(pod),
        _engine.Op.start("p"),
        _engine.Op.stop("p", "c"),
        _engine.Op.stop_pod("p"),
        _engine.Op.release("p"),
        _engine.Op.restart("{}", "x"),
    ]
    assert [o.name for o in ops] == ["admit", "start", "stop", "stop pod", "release", "restart"]
    assert [o.pod_uid for o in ops] == ["p"] * 5 + [None]
