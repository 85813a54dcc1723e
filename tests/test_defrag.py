"""Defragmentation plans (``mm.defrag_plan``, ``apply_defrag``, ``pymm defrag``): a pod the
kubelet rejects on a fragmented machine fits after the plan; plans are as short as an
exhaustive search through the engine's rules finds; every step is valid when it is taken."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymm import Container, Machine, MemoryManager, Pod, _engine
from pymm.cli import main
from pymm.errors import NotFoundError, PlacementError, SolverError
from pymm.manager import compile_pod


def pod(uid: str, memory: str) -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory=memory))


def fragmented(state_dir: Path | None = None) -> MemoryManager:
    """Four 15Gi nodes, one 6Gi pod on each: every node serves single-node allocations, so no
    two nodes can form the group a 24Gi pod needs."""
    mm = MemoryManager(Machine.synthetic(4, memory="16Gi"), state_dir=state_dir)
    for i in range(8):
        mm.admit(pod(f"r{i}", "6Gi"))
    for i in (0, 2, 4, 6):
        mm.remove(f"r{i}")
    assert {u: mm.numa_nodes(u, "c") for u in mm.active_pods} == {
        "r1": (0,),
        "r3": (1,),
        "r5": (2,),
        "r7": (3,),
    }
    return mm


def groups_disjoint(mm: MemoryManager) -> bool:
    groups = {tuple(sorted(g)) for g in mm.groups().values() if len(g) > 1}
    return all(a == b or not set(a) & set(b) for a in groups for b in groups)


def test_a_rejected_pod_fits_after_the_plan(tmp_path: Path) -> None:
    mm = fragmented(tmp_path)
    big = pod("big", "24Gi")
    rejected = mm.copy().admit(big)
    assert not rejected.admitted
    assert "violates NUMA node allocation" in (rejected.message or "")
    plan = mm.defrag_plan(big)
    assert plan.fits and plan.evictions == 0 and len(plan.moves) == 2
    assert all(m.target is not None and len(next(iter(m.target.values()))) == 1 for m in plan.moves)
    assert mm.active_pods == ["r1", "r3", "r5", "r7"]  # the plan changed nothing
    mm.apply_defrag(plan)
    assert mm.numa_nodes("big", "c") == plan.placement["c"]
    assert sorted(mm.active_pods) == ["big", "r1", "r3", "r5", "r7"]
    for m in plan.moves:
        assert mm.numa_nodes(m.pod, "c") == m.target["c"]
    assert groups_disjoint(mm)
    mm.close()
    # Durable, and the kubelet (no pymm option) restores it.
    again = MemoryManager(Machine.synthetic(4, memory="16Gi"), state_dir=tmp_path)
    assert sorted(again.state["entries"]) == ["big", "r1", "r3", "r5", "r7"]
    again.close()


def test_evictions_come_first_and_every_step_is_valid() -> None:
    # 9, 10, 10 and 10Gi on four 15Gi nodes, and a 28Gi pod: 39 + 28 > 60, so one pod must go;
    # the 28Gi pod then needs two whole nodes, and the three 10Gi pods the other two together.
    mm = MemoryManager(Machine.synthetic(4, memory="16Gi"))
    for uid, size in (("a", "9Gi"), ("b", "10Gi"), ("c", "10Gi"), ("d", "10Gi")):
        mm.admit(pod(uid, size))
    placed = {u: mm.numa_nodes(u, "c") for u in mm.active_pods}
    assert placed == {"a": (0,), "b": (1,), "c": (2,), "d": (3,)}
    plan = mm.defrag_plan(pod("big", "28Gi"))
    assert plan.fits and plan.evictions == 1 and len(plan.moves) == 4
    assert plan.moves[0].target is None
    rest = {m.target["c"] for m in plan.moves[1:] if m.target}
    assert len(rest) == 1 and len(next(iter(rest))) == 2
    copy = mm.copy()
    copy.apply_defrag(plan)
    assert copy.numa_nodes("big", "c") == plan.placement["c"]
    assert set(plan.placement["c"]).isdisjoint(next(iter(rest)))


def test_pods_that_must_form_a_group_stop_together() -> None:
    # Three 8Gi pods, one per 15Gi node, and another 8Gi pod: no node has room, and no pod can
    # move to another node alone. Two of them and the new one fit two nodes as one group, which
    # neither can join while the other still serves single-node allocations on its node.
    mm = MemoryManager(Machine.synthetic(3, memory="16Gi"))
    for i in range(3):
        mm.admit(pod(f"r{i}", "8Gi"))
    plan = mm.defrag_plan(pod("new", "8Gi"))
    assert plan.fits and plan.evictions == 0 and len(plan.moves) == 2
    assert not plan.sequential
    group = plan.placement["c"]
    assert len(group) == 2 and all(m.target == {"c": group} for m in plan.moves)
    copy = mm.copy()
    copy.apply_defrag(plan)
    assert copy.numa_nodes("new", "c") == group and groups_disjoint(copy)


def test_a_pod_that_already_fits_needs_no_move() -> None:
    mm = fragmented()
    plan = mm.defrag_plan(pod("small", "2Gi"))
    assert plan.fits and plan.moves == () and plan.to_json() == {"fits": True, "moves": []}
    mm.apply_defrag(plan)
    assert mm.numa_nodes("small", "c") is not None


def test_a_pod_larger_than_the_machine_has_no_plan() -> None:
    mm = fragmented()
    plan = mm.defrag_plan(pod("huge", "200Gi"))
    assert not plan.fits and plan.to_json() == {"fits": False, "moves": []}
    with pytest.raises(SolverError):
        mm.apply_defrag(plan)


def test_free_node_empties_the_node() -> None:
    mm = fragmented()
    plan = mm.defrag_plan(free_node=2)
    assert plan.fits and [m.pod for m in plan.moves] == ["r5"]
    mm.apply_defrag(plan)
    assert all(u.reserved == 0 for u in mm.usage() if u.node == 2)
    assert mm.numa_nodes("r5", "c") not in (None, (2,))
    with pytest.raises(NotFoundError, match="no NUMA node 9"):
        mm.defrag_plan(free_node=9)
    with pytest.raises(SolverError, match="one of them"):
        mm.defrag_plan()


def exhaustive_fewest(mm: MemoryManager, pending: Pod) -> tuple[int, int] | None:
    """(evictions, moves) of the best plan, found by trying every set of pods to evict and to
    move, smallest first, and every placement of the moved pods and the pending one through
    the engine's rules (order of steps aside)."""
    running = sorted(mm.active_pods)
    sets = [
        list(c)
        for k in range(1, len(mm.machine.nodes) + 1)
        for c in itertools.combinations(mm.machine.node_ids, k)
    ]
    rebuilt = {p.uid: p for p in _engine.defrag_input(mm._engine, None, None)[1]}

    def place_all(engine: _engine.Engine, pods: Sequence[_engine.Pod]) -> bool:
        if not pods:
            return True
        first, rest = pods[0], pods[1:]
        for s in sets:
            e = engine.copy()
            try:
                e.apply(_engine.Op.admit_on(first, {"c": s}))
            except PlacementError:
                continue
            if place_all(e, rest):
                return True
        return False

    for evictions in range(len(running) + 1):
        for moves in range(len(running) - evictions + 1):
            for evicted in itertools.combinations(running, evictions):
                others = [u for u in running if u not in evicted]
                for moved in itertools.combinations(others, moves):
                    e = mm._engine.copy()
                    for u in (*evicted, *moved):
                        e.apply(_engine.Op.release(u))
                    if place_all(e, [compile_pod(pending), *(rebuilt[u] for u in moved)]):
                        return evictions, moves
    return None


@settings(
    max_examples=int(os.environ.get("PYMM_DEFRAG_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(st.integers(2, 12), min_size=1, max_size=5),
    st.integers(4, 30),
)
def test_plans_are_as_short_as_an_exhaustive_search_finds(sizes: list[int], want: int) -> None:
    mm = MemoryManager(Machine.synthetic(3, memory="16Gi"))
    for i, s in enumerate(sizes):
        mm.admit(pod(f"r{i}", f"{s}Gi"))
    pending = pod("new", f"{want}Gi")
    plan = mm.defrag_plan(pending)
    best = exhaustive_fewest(mm, pending)
    if best is None:
        assert not plan.fits
        return
    assert plan.fits
    # Fewest evictions first, then fewest moves.
    assert (plan.evictions, len(plan.moves) - plan.evictions) == best
    copy = mm.copy()
    copy.apply_defrag(plan)
    assert copy.numa_nodes("new", "c") is not None and groups_disjoint(copy)


def write_pod(path: Path, uid: str, memory: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "kind": "Pod",
                "metadata": {"name": uid, "uid": uid},
                "spec": {
                    "containers": [
                        {"name": "c", "resources": {"limits": {"cpu": "1", "memory": memory}}}
                    ]
                },
            }
        )
    )
    return path


def cli_fragmented(tmp_path: Path) -> Path:
    """:func:`fragmented` made with ``pymm admit`` and ``pymm remove`` (the directory records
    its machine)."""
    state = tmp_path / "state"
    machine = tmp_path / "m.json"
    machine.write_text(json.dumps(Machine.synthetic(4, memory="16Gi").to_dict()))
    for i in range(8):
        p = write_pod(tmp_path / f"r{i}.json", f"r{i}", "6Gi")
        args = ["admit", str(p), "--state-dir", str(state), "--quiet"]
        assert main([*args, "--machine", str(machine)] if i == 0 else args) == 0
    for i in (0, 2, 4, 6):
        assert main(["remove", f"r{i}", "--state-dir", str(state)]) == 0
    return state


def test_cli_defrag_plans_then_applies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = cli_fragmented(tmp_path)
    big = write_pod(tmp_path / "big.json", "big", "24Gi")
    assert main(["admit", str(big), "--state-dir", str(state), "--quiet"]) == 1  # rejected
    capsys.readouterr()
    assert main(["defrag", "--for", str(big), "--state-dir", str(state), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fits"] is True and len(doc["moves"]) == 2
    assert all(set(m) == {"pod", "from", "to"} for m in doc["moves"])
    assert main(["defrag", "--for", str(big), "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "before" in out and "after" in out and "1. move" in out and "then big fits" in out
    assert main(["defrag", "--for", str(big), "--state-dir", str(state), "--apply"]) == 0
    assert "applied to" in capsys.readouterr().out
    entries = json.loads((state / "memory_manager_state").read_text())["entries"]
    assert "big" in entries


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["defrag", "--state-dir", "{state}"], "expected --for"),
        (["defrag", "--free-node", "1"], "--state-dir"),
        (
            ["defrag", "--free-node", "1", "--for", "x.yaml", "--state-dir", "{state}"],
            "not allowed",
        ),
        (["defrag", "--free-node", "9", "--state-dir", "{state}"], "no NUMA node 9"),
        (["defrag", "--free-node", "one", "--state-dir", "{state}"], "invalid int"),
    ],
)
def test_cli_defrag_bad_input_is_one_error_line(
    tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = cli_fragmented(tmp_path)
    capsys.readouterr()
    argv = [a.replace("{state}", str(state)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pymm: error:") and needle in err[0]


def test_cli_defrag_without_a_plan_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = cli_fragmented(tmp_path)
    capsys.readouterr()
    huge = write_pod(tmp_path / "huge.json", "huge", "200Gi")
    assert main(["defrag", "--for", str(huge), "--state-dir", str(state)]) == 1
    assert "no plan" in capsys.readouterr().out


def test_nothing_running_needs_no_move() -> None:
    mm = MemoryManager(Machine.synthetic(2))
    assert mm.defrag_plan(free_node=0).to_json() == {"fits": True, "moves": []}
