"""What ``strict-numa-groups`` and ``numa-allocation-strategy=least-stranded`` cost on one
admission (admit + remove, 8 nodes, 4 pods placed), against the kubelet's rules in the same
run. ``least-stranded`` counts the workload's shapes over every running container at each
decision, so its cost grows with the pods placed: measured with 4 and with 400."""

from __future__ import annotations

from typing import Any

import pytest

from pymm import Container, Machine, MemoryManager, Pod, compile_pod

SETTINGS: dict[str, dict[str, Any]] = {
    "kubelet": {},
    "strict-numa-groups": {"memory_policy_options": {"strict-numa-groups": "true"}},
    "least-stranded": {"policy_options": {"numa-allocation-strategy": "least-stranded"}},
}


def placed(options: dict[str, Any], pods: int) -> MemoryManager:
    m = Machine.synthetic(8, memory="512Gi", hugepages={"2Mi": 2048})
    mm = MemoryManager(m, **options)
    assert mm.admit(Pod.of("wide", Container.of("c", cpu="1", memory="600Gi")))
    for i in range(pods - 1):
        size = f"{1 + i % 4}Gi"
        assert mm.admit(Pod.of(f"placed-{i}", Container.of("c", cpu="1", memory=size)))
    return mm


@pytest.mark.parametrize("pods", [4, 400])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_admission_with_option(benchmark: Any, setting: str, pods: int) -> None:
    mm = placed(SETTINGS[setting], pods)
    pod = compile_pod(
        Pod.of("bench", Container.of("c", cpu="1", memory="1Gi", hugepages={"2Mi": "64Mi"}))
    )
    a = mm.admit(pod)
    assert a.admitted and a["c"].numa_nodes is not None and len(a["c"].numa_nodes) == 1
    mm.remove("bench")

    def cycle() -> None:
        mm.admit(pod)
        mm.remove("bench")

    benchmark.group = f"admit + remove, 8 nodes, {pods} pods placed"
    benchmark.pedantic(cycle, rounds=2000, warmup_rounds=50)
