"""NUMA node ids up to 1023 (Linux MAX_NUMNODES) and sparse ids, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pymm
from pymm import Container, Machine, MemoryManager, NumaNode, Pod, errors

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"


def machine(ids: list[int], memory: int = 16 * 2**30) -> Machine:
    nodes = tuple(NumaNode(i, memory, cpus=1) for i in ids)
    return Machine("sparse", nodes)


def test_high_sparse_ids_admit_pin_and_persist(tmp_path: Path) -> None:
    m = machine([0, 500, 1023])
    mm = MemoryManager(
        m,
        reserved_memory=m.reserve_per_node(),
        topology_policy="single-numa-node",
        state_dir=tmp_path,
    )
    for uid in ("a", "b", "c"):
        assert mm.admit(Pod.of(uid, Container.of("c", cpu="1", memory="10Gi")))
    assert [mm.cpuset_mems(u, "c") for u in ("a", "b", "c")] == ["0", "500", "1023"]
    hints = mm.hints(Pod.of("d", Container.of("c", cpu="1", memory="20Gi")), "c")
    # Every node serves one single-node pod and no set of them can form a group: no hints,
    # which the memory manager reports as an empty map, as the kubelet does.
    assert hints == {}
    state = json.loads((tmp_path / "memory_manager_state").read_text())
    assert sorted(state["machineState"], key=int) == ["0", "500", "1023"]
    mm.close()
    with MemoryManager(m, reserved_memory=m.reserve_per_node(), state_dir=tmp_path) as again:
        assert again.numa_nodes("c", "c") == (1023,)


def test_cross_node_group_and_extra_hints_use_real_ids() -> None:
    m = machine([3, 700, 701])
    mm = MemoryManager(m, reserved_memory=m.reserve_per_node(), topology_policy="best-effort")
    cpu = {
        "name": "cpu",
        "containers": {"c": {"cpu": [{"affinity": [700, 701], "preferred": True}]}},
    }
    a = mm.admit(Pod.of("big", Container.of("c", cpu="1", memory="20Gi")), hints=[cpu], trace=True)
    assert a["c"].numa_nodes == (700, 701)
    assert a.hint_calls[0]["merged"] == {"affinity": [700, 701], "preferred": True}
    assert mm.groups()[700] == (700, 701)
    with pytest.raises(
        errors.ConfigError, match=r"hints\[0\].*affinity: NUMA node 9 is not on this machine"
    ):
        bad = {"name": "cpu", "containers": {"c": {"cpu": [{"affinity": [9], "preferred": True}]}}}
        mm.admit(Pod.of("x", Container.of("c", cpu="1", memory="1Gi")), hints=[bad])


def test_ids_and_node_counts_beyond_the_limits_are_refused() -> None:
    with pytest.raises(errors.MachineError, match="ids must be 0-1023"):
        MemoryManager(machine([0, 1024]), reserved_memory="0:memory=1Gi")
    with pytest.raises(errors.MachineError, match="129 NUMA nodes is more than the 128"):
        MemoryManager(machine(list(range(129))), reserved_memory="0:memory=1Gi")


def test_sparse_sysfs_machine_is_managed() -> None:
    m = Machine.from_sysfs(FIXTURES / "sparse-0-2-5")
    assert m.node_ids == [0, 2, 5]
    with_memory = [n.id for n in m.nodes if n.memory_bytes > 2**30]
    mm = MemoryManager(
        m, reserved_memory=[{"numaNode": with_memory[0], "limits": {"memory": "512Mi"}}]
    )
    a = mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="256Mi")))
    assert a.admitted and a["c"].numa_nodes is not None
    assert set(a["c"].numa_nodes) <= set(m.node_ids)


def test_merge_hints_takes_node_ids_as_the_manager_does() -> None:
    # Sparse ids: the merge works on the ids a user sees, not on bit positions.
    providers = [
        {
            "memory": [
                {"affinity": [200], "preferred": True},
                {"affinity": [3, 200], "preferred": False},
            ]
        },
        {
            "cpu": [
                {"affinity": [3, 200], "preferred": True},
                {"affinity": [200], "preferred": True},
            ]
        },
    ]
    merged, admit = pymm.merge_hints(providers, [3, 200], "restricted")
    assert (merged, admit) == ({"affinity": [200], "preferred": True}, True)
    # Distances follow the order of the ids given; a hint naming a node the machine lacks is
    # a ConfigError naming the hint.
    merged, _ = pymm.merge_hints(
        [{"memory": [{"affinity": [200, 3], "preferred": False}]}],
        [200, 3],
        "best-effort",
        {"prefer-closest-numa-nodes": "true"},
        [[10, 21], [21, 10]],
    )
    assert merged == {"affinity": [3, 200], "preferred": False}
    with pytest.raises(errors.ConfigError, match=r"providers\[0\].memory\[0\].affinity"):
        pymm.merge_hints([{"memory": [{"affinity": [7], "preferred": True}]}], [3, 200])
