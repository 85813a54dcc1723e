"""The Python API: MemoryManager, Machine, error mapping, version."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pymm
from pymm import Container, Machine, MemoryManager, Pod, errors

GI = 2**30


def two_nodes(**kw: object) -> MemoryManager:
    m = Machine.synthetic(2, memory="16Gi")
    return MemoryManager(m, reserved_memory="0:memory=1Gi;1:memory=1Gi", **kw)  # type: ignore[arg-type]


def test_version_matches_installed_metadata() -> None:
    assert pymm.__version__ == importlib.metadata.version("pymm")


def test_admit_places_fills_and_rejects_like_the_kubelet() -> None:
    mm = two_nodes(topology_policy="single-numa-node")
    pods = [Pod.of(f"p{i}", Container.of("c", cpu="1", memory="10Gi")) for i in range(3)]
    a0, a1, a2 = (mm.admit(p) for p in pods)
    assert (a0["c"].numa_nodes, a1["c"].numa_nodes) == ((0,), (1,))
    # Nothing fits: the memory manager returns no hints, which the topology manager reads as
    # "no preference", so Allocate is what fails, with the kubelet's texts.
    assert not a2 and a2.reason == "UnexpectedAdmissionError"
    assert a2.message == (
        "Allocate failed due to [memorymanager] failed to get the default NUMA affinity, "
        "no NUMA nodes with enough memory is available, which is unexpected"
    )
    assert mm.cpuset_mems("p0", "c") == "0" and mm.cpuset_mems("p2", "c") is None
    # A pod that only two nodes together can hold has no single-node hint at all.
    a3 = two_nodes(topology_policy="single-numa-node").admit(
        Pod.of("r", Container.of("c", cpu="1", memory="20Gi"))
    )
    assert not a3 and a3.reason == "TopologyAffinityError"
    assert a3.message == "Resources cannot be allocated with Topology locality"
    node0 = next(u for u in mm.usage() if u.node == 0 and u.resource == "memory")
    assert (node0.reserved, node0.free) == (10 * GI, 5 * GI)
    with pytest.raises(errors.AdmissionError, match="p2"):
        a2.raise_for_rejection()


def test_cross_numa_group_and_release() -> None:
    mm = two_nodes(topology_policy="best-effort")
    a = mm.admit(Pod.of("big", Container.of("c", cpu="1", memory="20Gi")))
    assert a["c"].numa_nodes == (0, 1) and a["c"].cpuset_mems == "0,1"
    assert mm.groups() == {0: (0, 1), 1: (0, 1)}
    # The group blocks single-node placement on its nodes (the kubelet's group rule).
    small = mm.admit(Pod.of("small", Container.of("c", cpu="1", memory="1Gi")))
    assert small["c"].numa_nodes == (0, 1)
    mm.remove("big")
    mm.remove("small")
    assert mm.groups() == {0: (0,), 1: (1,)}
    assert all(u.reserved == 0 for u in mm.usage())


def test_non_guaranteed_pods_are_not_pinned() -> None:
    mm = two_nodes()
    a = mm.admit(Pod.of("web", Container.of("c", requests={"cpu": "1", "memory": "1Gi"})))
    assert a.admitted and a["c"].numa_nodes is None and a["c"].cpuset_mems is None
    assert mm.state.get("entries") is None


def test_hints_are_the_memory_managers() -> None:
    mm = two_nodes()
    pod = Pod.of("p", Container.of("c", cpu="1", memory="4Gi"))
    h = mm.hints(pod, "c")
    assert h == {
        "memory": [
            {"affinity": [0], "preferred": True},
            {"affinity": [1], "preferred": True},
            {"affinity": [0, 1], "preferred": False},
        ]
    }


def test_extra_hint_providers_steer_the_merge() -> None:
    mm = two_nodes(topology_policy="restricted")
    pod = Pod.of("p", Container.of("c", cpu="1", memory="4Gi"))
    cpu = {"name": "cpu", "containers": {"c": {"cpu": [{"affinity": [1], "preferred": True}]}}}
    a = mm.admit(pod, hints=[cpu], trace=True)
    assert a["c"].numa_nodes == (1,)
    assert a.hint_calls[0]["providers"]["cpu"] == {"cpu": [{"affinity": [1], "preferred": True}]}


def test_init_container_memory_is_reused_then_freed_on_start() -> None:
    mm = two_nodes(topology_policy="single-numa-node")
    pod = Pod.of(
        "p",
        Container.of("app", cpu="1", memory="2Gi"),
        init=(Container.of("init", cpu="1", memory="5Gi"),),
    )
    a = mm.admit(pod, start=False)
    assert a["app"].blocks[0].size == 2 * GI
    assert a["init"].blocks[0].size == 3 * GI  # 2Gi of it reused by the app container
    reserved = sum(u.reserved for u in mm.usage())
    assert reserved == 5 * GI
    mm.start("p")  # the app container starts: the init container has finished
    assert sum(u.reserved for u in mm.usage()) == 2 * GI


def test_state_dir_persists_and_restores(tmp_path: Path) -> None:
    with two_nodes(state_dir=tmp_path) as mm:
        mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="4Gi")))
        text = mm.checkpoint()
    assert (tmp_path / "memory_manager_state").read_text() == text
    with two_nodes(state_dir=tmp_path) as again:
        assert again.checkpoint() == text
        assert again.numa_nodes("p", "c") == (0,)


def test_restart_with_changed_machine_fails_like_the_kubelet() -> None:
    mm = two_nodes(topology_policy="single-numa-node")
    mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="4Gi")))
    with pytest.raises(errors.StateMismatchError, match="expected machine state is different"):
        mm.restart(machine=Machine.synthetic(2, memory="32Gi"))


def test_restart_from_another_state_dir(tmp_path: Path) -> None:
    # Saved while only "a" held memory; restarting from it takes that state back, and "b"
    # (admitted after the copy) holds nothing in it, while the pods stay known as running.
    mm = two_nodes(topology_policy="single-numa-node")
    mm.admit(Pod.of("a", Container.of("c", cpu="1", memory="4Gi")))
    saved = tmp_path / "saved"
    saved.mkdir(mode=0o700)
    (saved / "memory_manager_state").write_text(mm.checkpoint())
    mm.admit(Pod.of("b", Container.of("c", cpu="1", memory="10Gi")))
    mm.restart(from_state_dir=saved)
    assert set(mm.state["entries"]) == {"a"}
    assert sum(u.reserved for u in mm.usage()) == 4 * GI
    assert sorted(mm.active_pods) == ["a", "b"]
    # Nothing was written to the directory restored from.
    assert sorted(p.name for p in saved.iterdir()) == ["memory_manager_state"]


def test_restart_from_a_directory_without_state_changes_nothing(tmp_path: Path) -> None:
    mm = two_nodes()
    mm.admit(Pod.of("a", Container.of("c", cpu="1", memory="4Gi")))
    before = mm.checkpoint()
    with pytest.raises(errors.StateFileError, match="no such state file"):
        mm.restart(from_state_dir=tmp_path)
    assert mm.checkpoint() == before


def test_machine_catalog_and_files(tmp_path: Path) -> None:
    names = Machine.catalog_names()
    assert "xeon-8480-2s-snc4" in names and len(names) == 12
    m = Machine.from_catalog("spr-2s-cxl")
    assert [n.kind for n in m.nodes] == ["DRAM", "DRAM", "CXL", "CXL"]
    f = tmp_path / "m.json"
    f.write_text(json.dumps(m.to_dict()))
    loaded = Machine.load(f)
    assert [(n.id, n.memory_bytes, n.kind) for n in loaded.nodes] == [
        (n.id, n.memory_bytes, n.kind) for n in m.nodes
    ]
    # A machine without pools reports x86_64's page sizes with 0 pages, as a real node does.
    assert {p.page_size_kib: p.num_pages for p in loaded.nodes[0].hugepages} == {
        2048: 0,
        1048576: 0,
    }
    with pytest.raises(errors.MachineError, match="unknown machine 'nope'"):
        Machine.from_catalog("nope")


# -- error mapping: every engine error class, and its builtin -----------------------------

ERROR_CASES = [
    (lambda: pymm.parse_quantity("1 Gi"), errors.QuantityError, ValueError),
    (
        lambda: MemoryManager(Machine.synthetic(2), reserved_memory="0:memory=1Gi;"),
        errors.ReservedMemoryError,
        ValueError,
    ),
    (lambda: two_nodes(topology_policy="strict"), errors.ConfigError, ValueError),
    (
        lambda: MemoryManager(Machine.synthetic(9), reserved_memory="0:memory=1Gi", search="exact"),
        errors.ConfigError,
        ValueError,
    ),
    (lambda: MemoryManager({"nodes": []}), errors.MachineError, ValueError),
    (
        lambda: pymm.compile_pod(
            {"uid": "x", "containers": [{"name": "c", "limits": {"memory": "x"}}]}
        ),
        errors.PodError,
        ValueError,
    ),
    (lambda: pymm._engine.decode_checkpoint("{"), errors.CheckpointCorruptedError, ValueError),
    (lambda: two_nodes(kubelet_version="1.99"), errors.ConfigError, ValueError),
]


@pytest.mark.parametrize(("call", "cls", "builtin"), ERROR_CASES)
def test_error_mapping(call: object, cls: type, builtin: type) -> None:
    with pytest.raises(cls) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, builtin) and isinstance(info.value, errors.PymmError)
    assert "\n" not in str(info.value)


def test_nine_nodes_exact_is_refused_like_the_kubelet_but_auto_searches_bounded() -> None:
    m = Machine.synthetic(9, memory="16Gi")
    with pytest.raises(errors.ConfigError, match="unsupported on machines with more than 8 NUMA"):
        MemoryManager(m, reserved_memory=m.reserve_per_node(), search="exact")
    mm = MemoryManager(m, reserved_memory=m.reserve_per_node())
    assert mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="20Gi")))["c"].numa_nodes == (
        0,
        1,
    )


def test_allocation_error_is_a_memory_error() -> None:
    assert issubclass(errors.AllocationError, MemoryError)
    assert issubclass(errors.StateFileError, OSError) and issubclass(errors.CgroupError, OSError)


def test_default_reservation_is_1gi_per_node_as_the_cli() -> None:
    machine = Machine.synthetic(3, memory="16Gi")
    reserved = {(u.node, u.resource): u.system_reserved for u in MemoryManager(machine).usage()}
    assert reserved == {(n, "memory"): 1 << 30 for n in range(3)} | {
        (n, f"hugepages-{s}"): 0 for n in range(3) for s in ("2Mi", "1Gi")
    }
    # The None policy reserves nothing, and nothing is needed.
    none = MemoryManager(machine, memory_policy="None")
    assert none.config["reserved_memory"] is None and none.usage() == []


def test_kubelet_error_texts_are_kept() -> None:
    with pytest.raises(errors.ReservedMemoryError) as e:
        MemoryManager(Machine.synthetic(2), reserved_memory=[])
    assert str(e.value) == "[memorymanager] you should specify the system reserved memory"
    with pytest.raises(errors.ReservedMemoryError) as e2:
        two_nodes(node_allocatable={"memory": "993Mi"})
    assert str(e2.value) == (
        'the total amount "2Gi" of type "memory" is not equal to the value "993Mi" '
        "determined by Node Allocatable feature"
    )


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M"]))
def test_quantity_round_trips_through_canonical_text(n: int, suffix: str) -> None:
    text = f"{n}{suffix}"
    value = pymm.parse_quantity(text)
    assert pymm.parse_quantity(pymm.canonical_quantity(text)) == value


@given(st.lists(st.integers(min_value=1, max_value=6000), min_size=1, max_size=12))
def test_admissions_never_overcommit(sizes_mib: list[int]) -> None:
    mm = MemoryManager(
        Machine.synthetic(4, memory="8Gi"),
        reserved_memory=Machine.synthetic(4).reserve_per_node("1Gi"),
    )
    for i, s in enumerate(sizes_mib):
        mm.admit(Pod.of(f"p{i}", Container.of("c", cpu="1", memory=f"{s}Mi")))
        for u in mm.usage():
            assert u.reserved + u.free == u.allocatable
    for i in range(len(sizes_mib)):
        # A rejected pod left nothing behind to remove, and that is not an error here.
        mm.remove(f"p{i}", missing_ok=True)
    assert all(u.reserved == 0 for u in mm.usage())


def test_fragmentation_of_a_state_file_alone_equals_the_managers() -> None:
    # The file's machine and reservation, reconstructed from it, give what the manager that
    # wrote it computes: 15Gi allocatable per node, "a" (20Gi) spans {0,1} and leaves 10Gi
    # in that group; a 4Gi probe fits twice there (2Gi left, on node 1).
    mm = two_nodes()
    assert mm.admit(Pod.of("a", Container.of("c", cpu="1", memory="20Gi")))["c"].numa_nodes == (
        0,
        1,
    )
    mine = mm.fragmentation("4Gi")
    alone = pymm.Fragmentation.of_inspection(pymm._engine.Inspection(mm.checkpoint()), "4Gi")
    assert alone == mine
    assert (mine.fits, mine.stranded_by_node) == (2, {0: 0, 1: 2 * GI})


def test_the_readmes_python_example_runs(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pod.yaml").write_text(
        "kind: Pod\nmetadata: {name: web, uid: web-1}\nspec:\n  containers:\n  - name: c\n"
        "    resources: {limits: {cpu: '1', memory: 2Gi}}\n"
    )
    code = code.replace('"/var/lib/pymm"', repr(str(tmp_path / "state")))
    code = code.replace('"pod.yaml"', repr(str(tmp_path / "pod.yaml")))
    ns: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), ns)
    a, mm = ns["a"], ns["mm"]
    assert isinstance(a, pymm.Admission) and isinstance(mm, MemoryManager)
    assert a.admitted and a["postgres"].numa_nodes == (0,)
    assert set(mm.state["entries"]) == {"web-1"}
    # single-numa-node: each 8Gi probe takes one node, so each node holds free // 8Gi of them.
    free = [u.free for u in mm.usage() if u.resource == "memory"]
    assert mm.fragmentation("8Gi").fits == sum(f // (8 * GI) for f in free)
    mm.close()
