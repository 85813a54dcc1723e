"""In-place resize through the Python API, the CLI and the scenario format: the 1.38 kubelet's
answer by default (the allocation manager's tests are transcribed in the engine's
``tests/resize.rs``), and pymm's ``resize-in-place`` made durable and enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cgroups import FakeKernel, kernel, make_v1  # noqa: F401  (kernel is a fixture)

from pymm import Container, Enforcement, Machine, MemoryManager, Pod, Resize
from pymm.cgroups import CpusetEnforcer
from pymm.cli import main
from pymm.errors import NotFoundError, PodError
from pymm.replay import replay_scenario
from pymm.sysfs import parse_list

GI = 1 << 30
INFEASIBLE = 'Resize is infeasible for Guaranteed Pods alongside Memory Manager policy "Static"'
IN_PLACE = {"resize-in-place": True}


def _db(memory: str, uid: str = "db") -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory=memory))


def _manager(tmp: Path | None = None, nodes: int = 2, **kw: object) -> MemoryManager:
    m = Machine.synthetic(nodes, memory="16Gi")
    return MemoryManager(
        m,
        reserved_memory=m.reserve_per_node("1Gi"),
        state_dir=tmp,
        **kw,  # type: ignore[arg-type]
    )


def test_by_default_the_answer_is_the_kubelets(tmp_path: Path) -> None:
    with _manager(tmp_path) as mm:
        assert mm.admit(_db("4Gi")).admitted
        before = mm.checkpoint()
        r = mm.resize(_db("8Gi"))
        assert isinstance(r, Resize)
        assert not r and (r.reason, r.message, r.changed) == ("Infeasible", INFEASIBLE, {})
        assert mm.checkpoint() == before
        assert repr(r) == f"<Resize 'db' Infeasible: {INFEASIBLE}>"
    gated = {"InPlacePodVerticalScalingExclusiveMemory": True}
    with _manager(tmp_path, feature_gates=gated) as mm:
        r = mm.resize(_db("8Gi"))
        # Admitted, and the memory manager re-pins nothing: the blocks still hold 4Gi.
        assert r and r.changed == {}
        assert mm.state["entries"]["db"]["c"][0]["size"] == 4 * GI


def test_an_unknown_pod_or_a_change_the_api_server_refuses_is_an_error() -> None:
    mm = _manager(memory_policy_options=IN_PLACE)
    with pytest.raises(NotFoundError):
        mm.resize(_db("8Gi"))
    assert mm.admit(_db("4Gi")).admitted
    with pytest.raises(PodError, match="only cpu and memory resources are mutable"):
        mm.resize(Pod.of("db", Container.of("c", cpu="1", memory="4Gi", hugepages={"2Mi": "2Mi"})))
    with pytest.raises(PodError, match="QOS Class may not change"):
        mm.resize(Pod.of("db", Container.of("c", cpu="1", memory="4Gi", limits={"memory": "5Gi"})))


def test_in_place_resize_is_durable_and_re_pins_what_moved(
    tmp_path: Path,
    kernel: list[FakeKernel],  # noqa: F811
) -> None:
    root = make_v1(
        tmp_path / "cg",
        {"kubepods": "0-2", "kubepods/poddb/c": "0-2", "kubepods/podweb/c": "0-2"},
    )
    e = Enforcement(CpusetEnforcer(root), lambda uid, c: f"kubepods/pod{uid}/{c}")
    state = tmp_path / "state"
    hier = root / "cpuset"
    with _manager(state, nodes=3, memory_policy_options=IN_PLACE, enforcement=e) as mm:
        assert mm.admit(_db("4Gi")).admitted
        assert mm.admit(_db("6Gi", "web")).admitted  # also node 0: group [0]
        assert mm.numa_nodes("web", "c") == (0,)
        r = mm.resize(_db("12Gi"))
        assert r, r.message
        # Node 0 lacks 3Gi: the group [0] extends to the unused node 1, for web too.
        assert set(r.changed) == {("db", "c"), ("web", "c")}
        assert r.changed[("db", "c")].numa_nodes == (0, 1)
        assert r.changed[("db", "c")].blocks[0].size == 12 * GI
        for pod in ("db", "web"):
            assert parse_list((hier / f"kubepods/pod{pod}/c/cpuset.mems").read_text()) == [0, 1]
        assert {str(w.path.relative_to(hier)) for w in r.cgroup_writes} == {
            "kubepods/poddb/c/cpuset.mems",
            "kubepods/podweb/c/cpuset.mems",
        }
    # On disk, and restored as the kubelet validates it.
    with _manager(state, nodes=3, memory_policy_options=IN_PLACE) as mm:
        assert mm.restored and mm.numa_nodes("db", "c") == (0, 1)
        assert mm.state["entries"]["db"]["c"][0]["size"] == 12 * GI
        # The pod known only from the file resizes against what its blocks hold.
        assert mm.resize(_db("2Gi"))
        assert mm.state["entries"]["db"]["c"][0]["size"] == 2 * GI


def test_the_cli_resizes_in_a_state_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def manifest(memory: str) -> str:
        path = tmp_path / f"db-{memory}.yaml"
        path.write_text(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: db, uid: db}\nspec:\n  containers:\n"
            f"  - name: c\n    resources: {{limits: {{cpu: '1', memory: {memory}}}}}\n"
        )
        return str(path)

    state = ["--state-dir", str(tmp_path / "state")]
    assert main(["admit", manifest("4Gi"), "--machine", "xeon-gold-6242-2s", *state]) == 0
    capsys.readouterr()
    # The kubelet's answer: not resized, exit 1.
    assert main(["resize", manifest("8Gi"), *state, "--quiet"]) == 1
    assert capsys.readouterr().out == f"db: not resized: Infeasible: {INFEASIBLE}\n"
    # The option must agree with the directory's record, so a new directory takes it.
    state2 = ["--state-dir", str(tmp_path / "state2"), "--memory-policy-option"]
    state2.append("resize-in-place=true")
    assert main(["admit", manifest("4Gi"), "--machine", "xeon-gold-6242-2s", *state2]) == 0
    capsys.readouterr()
    assert main(["resize", manifest("8Gi"), *state2, "--json"]) == 0
    (out,) = json.loads(capsys.readouterr().out)
    assert out["admit"] is True and out["changed"] == [
        {
            "podUID": "db",
            "container": "c",
            "numaNodes": [0],
            "blocks": [{"numaAffinity": [0], "type": "memory", "size": 8 * GI}],
        }
    ]
    assert main(["resize", manifest("8Gi")]) == 2  # nothing to resize without a state dir
    assert capsys.readouterr().err.startswith("pymm: error: resize needs --state-dir")


def test_a_scenario_can_resize() -> None:
    pod = {
        "uid": "p",
        "containers": [{"name": "c", "limits": {"cpu": "1", "memory": "2Gi"}}],
    }
    bigger = json.loads(json.dumps(pod).replace("2Gi", "6Gi"))
    scenario = {
        "name": "resize",
        "machine": {"numaNodes": [{"id": 0, "memory": "16Gi"}, {"id": 1, "memory": "16Gi"}]},
        "reservedMemory": [{"numaNode": i, "limits": {"memory": "1Gi"}} for i in (0, 1)],
        "memoryManagerPolicyOptions": {"resize-in-place": "true"},
        "ops": [{"op": "admit", "pod": pod}, {"op": "resize", "pod": bigger}, {"op": "restart"}],
    }
    _, resized, restarted = replay_scenario(scenario)["results"]
    assert (resized["op"], resized["podUID"], resized["admit"]) == ("resize", "p", True)
    assert resized["resized"] == [
        {
            "podUID": "p",
            "container": "c",
            "blocks": [{"numaAffinity": [0], "type": "memory", "size": 6 * GI}],
        }
    ]
    assert "error" not in restarted
    without = {**scenario, "memoryManagerPolicyOptions": {}}
    refused = replay_scenario(without)["results"][1]
    assert (refused["admit"], refused["reason"], refused["message"]) == (
        False,
        "Infeasible",
        INFEASIBLE,
    )
