"""``numa-allocation-strategy=least-stranded``: among equally good node sets, the one that
leaves the least memory no pod of the workload's shapes can use."""

from __future__ import annotations

import pytest

from pymm import Container, Machine, MemoryManager, Pod, _engine
from pymm.errors import ConfigError
from pymm.manager import compile_pod


def pod(uid: str, memory: str) -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory=memory))


def machine_with(strategy: str | None) -> MemoryManager:
    """Three 15Gi nodes running 4Gi pods (and one 3Gi): 8Gi, 7Gi and 3Gi free."""
    options = {} if strategy is None else {"numa-allocation-strategy": strategy}
    mm = MemoryManager(Machine.synthetic(3, memory="16Gi"), policy_options=options)
    layout = {0: ["4Gi", "3Gi"], 1: ["4Gi", "4Gi"], 2: ["4Gi", "4Gi", "4Gi"]}
    for node, sizes in layout.items():
        for i, size in enumerate(sizes):
            p = compile_pod(pod(f"n{node}-{i}", size))
            mm._engine.apply(_engine.Op.admit_on(p, {"c": [node]}))
    assert [u.free >> 30 for u in mm.usage() if u.resource == "memory"] == [8, 7, 3]
    return mm


@pytest.mark.parametrize(
    ("strategy", "node"),
    [
        (None, 0),  # the kubelet: the lowest id among the preferred single nodes
        ("least-allocated", 0),  # the emptiest
        ("most-allocated", 2),  # the busiest
        # 3Gi on node 1 leaves 4Gi there, one more 4Gi pod: 8, 4 and 3Gi free strand 3Gi for
        # 4Gi pods. On node 0 (5, 7, 3: 7Gi stranded) or node 2 (8, 7, 0: 3Gi) it is no
        # better; node 1 has the lower id of the two best.
        ("least-stranded", 1),
    ],
)
def test_each_strategy_picks_its_node(strategy: str | None, node: int) -> None:
    mm = machine_with(strategy)
    a = mm.admit(pod("new", "3Gi"))
    assert a.admitted and a["c"].numa_nodes == (node,)


def test_least_stranded_keeps_room_for_the_workload() -> None:
    # The same 3Gi pods and then 4Gi pods: least-stranded places as many 4Gi pods afterwards
    # as any other strategy, and strands no more.
    results = {}
    for strategy in (None, "least-allocated", "most-allocated", "least-stranded"):
        mm = machine_with(strategy)
        mm.admit(pod("new", "3Gi"))
        f = mm.fragmentation("4Gi")
        results[strategy] = (f.fits, f.stranded)
    best = results["least-stranded"]
    assert all(best[0] >= fits and best[1] <= stranded for fits, stranded in results.values())
    assert best[0] > results[None][0]


def test_least_stranded_is_a_known_value() -> None:
    with pytest.raises(ConfigError, match="least-stranded"):
        MemoryManager(policy_options={"numa-allocation-strategy": "least-strand"})
