"""The kubelet's reference admission benchmark, from Python.

N NUMA nodes of 64Gi, each with 2048 pages of 2Mi; ``--reserved-memory`` 1Gi per node;
best-effort, container scope; four pods already admitted (100Gi; 2Gi; 2Gi + 64Mi
hugepages-2Mi; 2Gi); then one admission of a one-container Guaranteed pod (1Gi, or 1Gi + 64Mi
hugepages-2Mi), released again before the next timing.
"""

from __future__ import annotations

from typing import Any

import pytest

from pymm import Machine, MemoryManager, compile_pod
from pymm._bench.suite import group_totals, guaranteed

SHAPES = {
    "memory": {"memory": "1Gi"},
    "memory+hugepages": {"memory": "1Gi", "hugepages-2Mi": "64Mi"},
}


def reference_manager(n: int) -> MemoryManager:
    machine = Machine.synthetic(n, memory="64Gi", hugepages={"2Mi": 2048})
    mm = MemoryManager(
        machine,
        reserved_memory=machine.reserve_per_node("1Gi"),
        topology_policy="best-effort",
        scope="container",
        policy_options={"max-allowable-numa-nodes": str(max(8, n))},
    )
    placed = [
        {"memory": "100Gi"},
        {"memory": "2Gi"},
        {"memory": "2Gi", "hugepages-2Mi": "64Mi"},
        {"memory": "2Gi"},
    ]
    for i, res in enumerate(placed):
        assert mm.admit(guaranteed(f"placed-{i}", res)).admitted
    return mm


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_reference_admission(benchmark: Any, n: int, shape: str) -> None:
    mm = reference_manager(n)
    pod = compile_pod(guaranteed("bench", SHAPES[shape]))
    # Correctness first: the pod is placed (on one node, or inside the 2-node group the 100Gi
    # pod made when N=2) and its release restores every group's totals.
    before = group_totals(mm)
    a = mm.admit(pod)
    assert a.admitted and a["c"].numa_nodes is not None
    assert len(a["c"].numa_nodes) == (2 if n == 2 else 1)
    mm.remove("bench")
    assert group_totals(mm) == before

    def admit() -> None:
        mm.admit(pod)

    def release() -> None:
        # pytest-benchmark runs the setup before the first round too, before any admission.
        mm.remove("bench", missing_ok=True)

    benchmark.group = f"reference admission, {shape}"
    benchmark.extra_info.update(numa_nodes=n, shape=shape)
    benchmark.pedantic(admit, setup=release, rounds=300 if n < 16 else 40, warmup_rounds=5)
    assert mm.numa_nodes("bench", "c") is not None
