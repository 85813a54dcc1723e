"""Batch placement (``mm.plan``, ``admit_many(optimize=True)``, ``pymm plan``): the solver's
plans are checked against an exhaustive search through the engine's own rules
(:meth:`Engine.admit_on`, which refuses any set the kubelet would not reach), applied, and
compared with the kubelet's sequential admission."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymm import Container, Machine, MemoryManager, Pod, _engine
from pymm.cli import main
from pymm.errors import PlacementError, SolverError
from pymm.manager import compile_pod
from pymm.plan import kubelet_admitted, plan

ROOT = Path(__file__).parent.parent
CONF = Path(__file__).parent / "conformance"


def pod(uid: str, *sizes: str, hp: str | None = None, init: str | None = None) -> Pod:
    hugepages = {"1Gi": hp} if hp else None
    ctrs = [
        Container.of(f"c{i}", cpu="1", memory=m, hugepages=hugepages) for i, m in enumerate(sizes)
    ]
    inits = [Container.of("init", cpu="1", memory=init)] if init else []
    return Pod.of(uid, *ctrs, init=inits)


def subsets(ids: Sequence[int]) -> list[list[int]]:
    return [list(c) for k in range(1, len(ids) + 1) for c in itertools.combinations(ids, k)]


def exhaustive_best(
    mm: MemoryManager, pods: Sequence[Pod], hints: Mapping[str, Any] | None = None
) -> int:
    """The most pods any placement admits, each set tried through the engine's rules."""
    sets = subsets(mm.machine.node_ids)
    scope = mm.config["scope"]
    compiled = [compile_pod(p) for p in pods]
    best = 0

    def rec(engine: _engine.Engine, i: int, admitted: int) -> None:
        nonlocal best
        best = max(best, admitted)
        if i == len(compiled) or admitted + len(compiled) - i <= best:
            return
        p = compiled[i]
        extra = list(hints[p.uid]) if hints and p.uid in hints else None
        names = [c.name for c in pods[i].init_containers + pods[i].containers]
        data = _engine.plan_input(engine, [p], [extra])
        if not data["pods"][0]["pinned"]:
            e = engine.copy()
            ok = e.apply(_engine.Op.admit(p, extra)).admit  # type: ignore[union-attr]
            rec(e, i + 1, admitted + int(ok))
            return
        if scope == "pod" or pods[i].init_containers:
            choices: Any = ([s] * len(names) for s in sets)
        else:
            choices = itertools.product(sets, repeat=len(names))
        for combo in choices:
            e = engine.copy()
            try:
                e.apply(_engine.Op.admit_on(p, dict(zip(names, combo, strict=True)), extra))
            except PlacementError:
                continue
            rec(e, i + 1, admitted + 1)
        rec(engine, i + 1, admitted)

    rec(mm._engine.copy(), 0, 0)
    return best


def groups_disjoint(mm: MemoryManager) -> bool:
    groups = {tuple(sorted(g)) for n, g in mm.groups().items() if len(g) > 1}
    return all(a == b or not set(a) & set(b) for a in groups for b in groups)


def test_a_group_admits_what_sequential_admission_splits() -> None:
    # Two 15Gi nodes. The kubelet puts the 4Gi pod on node 0 and the first 12Gi one on node 1,
    # after which no node and no group has room for the second; all three fit the group.
    mm = MemoryManager(Machine.synthetic(2, memory="16Gi"))
    pods = [pod("a", "4Gi"), pod("big", "20Gi"), pod("b", "12Gi"), pod("d", "12Gi")]
    p = mm.plan(pods)
    assert (p.admitted, p.kubelet_admitted, p.bound, p.optimal) == (3, 2, 3, True)
    assert p.rejected == ("big",)
    assert p.placements == {u: {"c0": (0, 1)} for u in ("a", "b", "d")}
    assert p.memory == 28 << 30
    assert exhaustive_best(mm, pods) == 3
    assert mm.active_pods == []  # nothing changed


def test_the_plan_fills_no_node_beyond_its_free_memory_per_resource() -> None:
    m = Machine.synthetic(2, memory="16Gi").with_hugepages({"1Gi": 4})
    mm = MemoryManager(m)
    pods = [pod(f"p{i}", "2Gi", hp="3Gi") for i in range(4)]
    p = mm.plan(pods)
    # Each node has 4 pages: one 3Gi pod each, or both on the group (8 pages: two pods).
    assert p.admitted == 2 == exhaustive_best(mm, pods)


def test_admit_many_optimize_applies_the_plan(tmp_path: Path) -> None:
    pods = [pod("a", "4Gi"), pod("big", "20Gi"), pod("b", "12Gi"), pod("d", "12Gi")]
    with MemoryManager(Machine.synthetic(2, memory="16Gi"), state_dir=tmp_path) as mm:
        out = mm.admit_many(pods, optimize=True)
        assert [a.admitted for a in out] == [True, False, True, True]
        assert out[1].reason is not None  # the kubelet's own reason for the one left out
        assert {u: mm.numa_nodes(u, "c0") for u in ("a", "b", "d")} == {
            u: (0, 1) for u in ("a", "b", "d")
        }
        assert groups_disjoint(mm)
    # Durable, and a kubelet restores it.
    again = MemoryManager(Machine.synthetic(2, memory="16Gi"), state_dir=tmp_path)
    assert sorted(again.state["entries"]) == ["a", "b", "d"]
    again.close()


def test_plan_on_top_of_running_pods() -> None:
    mm = MemoryManager(Machine.synthetic(3, memory="16Gi"))
    assert mm.admit(pod("running", "10Gi"))  # node 0, single-node
    pods = [pod("x", "20Gi"), pod("y", "9Gi"), pod("z", "5Gi")]
    p = mm.plan(pods)
    assert p.admitted == exhaustive_best(mm, pods) == 3
    # The group cannot take node 0, which serves single-node allocations.
    assert p.placements["x"]["c0"] == (1, 2)


def test_copy_admits_without_metrics() -> None:
    mm = MemoryManager(Machine.synthetic(2))
    assert mm.copy().admit(pod("p", "1Gi"))
    assert mm.active_pods == []


def test_engine_refuses_a_set_the_kubelet_would_not_reach() -> None:
    mm = MemoryManager(Machine.synthetic(2, memory="16Gi"))
    mm.admit(pod("a", "4Gi"))  # node 0 now serves single-node allocations
    b = compile_pod(pod("b", "4Gi"))
    with pytest.raises(PlacementError) as e:
        mm._engine.apply(_engine.Op.admit_on(b, {"c0": [0, 1]}))
    assert e.value.pod_uid == "b" and e.value.container == "c0" and e.value.nodes == [0, 1]
    assert "serves single-node allocations" in str(e.value)
    assert isinstance(e.value, MemoryError)
    with pytest.raises(PlacementError, match="less than the 20Gi requested"):
        mm._engine.apply(_engine.Op.admit_on(compile_pod(pod("c", "20Gi")), {"c0": [1]}))
    before = mm.checkpoint()
    two = compile_pod(pod("two", "2Gi", "40Gi"))
    with pytest.raises(PlacementError):
        mm._engine.apply(_engine.Op.admit_on(two, {"c0": [1], "c1": [1]}))
    assert mm.checkpoint() == before  # the first container's allocation was undone
    snn = MemoryManager(Machine.synthetic(2, memory="16Gi"), topology_policy="single-numa-node")
    with pytest.raises(PlacementError, match="one NUMA node"):
        snn._engine.apply(_engine.Op.admit_on(compile_pod(pod("w", "20Gi")), {"c0": [0, 1]}))


MACHINES = st.builds(
    lambda n, mem, pages: Machine.synthetic(n, memory=f"{mem}Gi").with_hugepages({"1Gi": pages}),
    st.integers(2, 3),
    st.integers(6, 20),
    st.integers(0, 4),
)
CONFIGS = st.fixed_dictionaries(
    {
        "topology_policy": st.sampled_from(
            ["none", "best-effort", "restricted", "single-numa-node"]
        ),
        "scope": st.sampled_from(["container", "pod"]),
        "memory_policy_options": st.sampled_from(
            [{}, {"strict-numa-groups": "true"}, {"admit-when-fits": "true"}]
        ),
    }
)
PODS = st.lists(
    st.tuples(
        st.lists(st.integers(1, 30), min_size=1, max_size=2),
        st.integers(0, 3),
        st.booleans(),
        st.sampled_from([None, 0, 1, 2]),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=int(os.environ.get("PYMM_PLAN_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(MACHINES, CONFIGS, PODS)
def test_plans_reach_the_exhaustive_optimum(
    machine: Machine, config: dict[str, Any], spec: list[Any]
) -> None:
    mm = MemoryManager(machine, **config)
    pods, hints = [], {}
    for i, (sizes, hp, init, cpu) in enumerate(spec):
        p = pod(
            f"p{i}",
            *(f"{s}Gi" for s in sizes),
            hp=f"{hp}Gi" if hp else None,
            init="1Gi" if init else None,
        )
        pods.append(p)
        if cpu is not None and cpu < len(machine.nodes):
            h = [{"affinity": [cpu], "preferred": True}]
            names = [c.name for c in p.init_containers + p.containers]
            hints[p.uid] = [
                {"name": "cpu", "containers": {c: {"cpu": h} for c in names}, "pod": {"cpu": h}}
            ]
    p = mm.plan(pods, hints=hints, time_limit=20)
    assert p.optimal
    best = exhaustive_best(mm, pods, hints)
    # Init containers in container scope are planned with their pod on one set (valid, but
    # the kubelet may do better by giving them sets of their own): exact everywhere else.
    exact = config["scope"] == "pod" or not any(q.init_containers for q in pods)
    assert p.planned == best if exact else p.planned <= best
    if exact:
        assert p.kubelet_admitted is not None and p.admitted >= p.kubelet_admitted
    assert p.kubelet_admitted == kubelet_admitted(mm, pods, hints)
    applied = mm.copy()
    out = applied.admit_many(pods, optimize=True)
    assert sum(a.admitted for a in out) >= p.admitted
    assert groups_disjoint(applied)
    # A kubelet with the same configuration restores what the plan made.
    MemoryManager(machine, **config)._engine.apply(_engine.Op.restart(applied.checkpoint(), "s"))


def write(path: Path, pods: Sequence[Pod]) -> Path:
    items = [
        {
            "kind": "Pod",
            "metadata": {"name": p.uid, "uid": p.uid},
            "spec": {
                "containers": [
                    {"name": c.name, "resources": {"limits": dict(c.limits)}} for c in p.containers
                ]
            },
        }
        for p in pods
    ]
    path.write_text(json.dumps({"kind": "List", "items": items}))
    return path


def two_nodes(tmp_path: Path) -> Path:
    m = tmp_path / "m.json"
    m.write_text(json.dumps(Machine.synthetic(2, memory="16Gi").to_dict()))
    return m


def test_cli_plan_json_is_exactly_the_documented_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = write(
        tmp_path / "pods.json",
        [pod("a", "4Gi"), pod("big", "20Gi"), pod("b", "12Gi"), pod("d", "12Gi")],
    )
    assert main(["plan", str(pods), "--machine", str(two_nodes(tmp_path)), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "admitted": 3,
        "kubeletAdmitted": 2,
        "optimal": True,
        "bound": 3,
        "rejected": ["big"],
        "placements": {u: {"c0": [0, 1]} for u in ("a", "b", "d")},
    }


def test_cli_plan_prints_the_kubelet_beside_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = write(tmp_path / "pods.json", [pod("a", "4Gi"), pod("b", "12Gi"), pod("d", "12Gi")])
    assert main(["plan", str(pods), "--machine", str(two_nodes(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "plan:    3/3 admitted" in out and "kubelet: 2/3 admitted" in out
    assert "rejected" in out  # the kubelet's column


def test_cli_plan_on_a_state_directory_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    m = str(two_nodes(tmp_path))
    first = write(tmp_path / "first.json", [pod("running", "10Gi")])
    assert main(["admit", str(first), "--machine", m, "--state-dir", str(state), "--quiet"]) == 0
    before = (state / "memory_manager_state").read_text()
    batch = write(tmp_path / "batch.json", [pod("x", "20Gi"), pod("y", "5Gi")])
    capsys.readouterr()
    assert main(["plan", str(batch), "--state-dir", str(state), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # Node 0 serves a single-node pod: no group is possible, the 20Gi pod is left out.
    assert doc["rejected"] == ["x"] and doc["placements"]["y"]["c0"] in ([0], [1])
    assert (state / "memory_manager_state").read_text() == before


def test_cli_plan_from_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    sc = str(CONF / "kubelet-bugs.scenarios.json")
    assert main(["plan", "--scenario", sc, "--scenario-name", "overlap-cpu-hint", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # The kubelet admits both by overlapping the groups; the plan admits both validly.
    assert doc["admitted"] == doc["kubeletAdmitted"] == 2
    assert doc["placements"]["small"] == {"c": [0, 1]}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["plan"], "expected the batch"),
        (["plan", "x.yaml", "--scenario", "s.json"], "not both"),
        (["plan", "--scenario-name", "n", "x.yaml"], "only with --scenario"),
        (["plan", "--scenario", "{conf}", "--machine", "m"], "--machine conflicts"),
        (["plan", "--scenario", "{conf}"], "pick one with --scenario-name"),
        (["plan", "--scenario", "{conf}", "--scenario-name", "nope"], "no scenario 'nope'"),
        (["plan", "x.yaml", "--time-limit", "0"], "--time-limit"),
        (["plan", "/nonexistent/pods.yaml"], "/nonexistent/pods.yaml"),
    ],
)
def test_cli_plan_bad_input_is_one_error_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{conf}", str(CONF / "kubelet-bugs.scenarios.json")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pymm: error:") and needle in err[0]


def test_without_highspy_the_command_says_which_extra(tmp_path: Path) -> None:
    pods = write(tmp_path / "pods.json", [pod("a", "4Gi")])
    code = (
        "import sys; sys.modules['highspy'] = None\n"
        "from pymm.cli import main\n"
        f"raise SystemExit(main(['plan', {str(pods)!r}]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "pymm: error: batch placement needs the HiGHS solver: pip install 'pymm[plan]' (highspy)"
    ]
    with pytest.raises(SolverError, match="time_limit"):
        plan(MemoryManager(Machine.synthetic(2)), [], time_limit=-1)
