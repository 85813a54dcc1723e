"""pymm's placement options (engine/src/placement): each on the case it is for, with the
expected placement worked out here from the machine and the pods, and the kubelet's own
answer beside it (every option off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pymm import Container, Machine, MemoryManager, Pod
from pymm.errors import ConfigError, PodError

GI = 1 << 30


def pod(uid: str, memory: str, *, tier: str | None = None, **hugepages: str) -> Pod:
    annotations = {"pymm.io/memory-tier": tier} if tier else None
    pages = {k.replace("_", "-"): v for k, v in hugepages.items()}
    return Pod.of(
        uid,
        Container.of("c", cpu="2", memory=memory, hugepages=pages or None),
        annotations=annotations,
    )


def cpu_prefers(node: int) -> list[dict[str, Any]]:
    """A CPU manager of the caller's that prefers one node for container ``c``."""
    return [
        {"name": "cpu", "containers": {"c": {"cpu": [{"affinity": [node], "preferred": True}]}}}
    ]


# -- admit-when-fits ------------------------------------------------------------------------


def test_kubernetes_120733_rescued_by_admit_when_fits(tmp_path: Path) -> None:
    # Two nodes of 96Gi allocatable (97Gi less the 1Gi reservation), best-effort, the CPU
    # manager preferring node 0 for both 85Gi pods. Node 0 keeps 11Gi after the first, node 1
    # is empty and can hold the second.
    m = Machine.synthetic(2, memory="97Gi")
    kubelet = MemoryManager(m, topology_policy="best-effort")
    assert kubelet.admit(pod("p0", "85Gi"), hints=cpu_prefers(0))["c"].numa_nodes == (0,)
    second = kubelet.admit(pod("p1", "85Gi"), hints=cpu_prefers(0))
    assert not second.admitted
    assert second.message == (
        "Allocate failed due to [memorymanager] preferred hint violates NUMA node allocation, "
        "which is unexpected"
    )

    state = tmp_path / "state"
    with MemoryManager(
        m,
        topology_policy="best-effort",
        memory_policy_options={"admit-when-fits": "true"},
        state_dir=state,
    ) as mm:
        assert mm.admit(pod("p0", "85Gi"), hints=cpu_prefers(0))["c"].numa_nodes == (0,)
        rescued = mm.admit(pod("p1", "85Gi"), hints=cpu_prefers(0))
        assert rescued.admitted and rescued["c"].numa_nodes == (1,)
        reserved = {u.node: u.reserved for u in mm.usage() if u.resource == "memory"}
        assert reserved == {0: 85 * GI, 1: 85 * GI}
    # The kubelet itself (no pymm option) starts with the file admit-when-fits wrote.
    with MemoryManager(m, topology_policy="best-effort", state_dir=state) as restarted:
        assert restarted.numa_nodes("p1", "c") == (1,)


def test_admit_when_fits_leaves_the_topology_managers_verdict() -> None:
    # Under restricted the merge of CPU {0} with memory {1} is not preferred: the Topology
    # Manager rejects the pod, and admit-when-fits does not overrule it.
    m = Machine.synthetic(2, memory="97Gi")
    mm = MemoryManager(
        m, topology_policy="restricted", memory_policy_options={"admit-when-fits": "true"}
    )
    assert mm.admit(pod("p0", "85Gi"), hints=cpu_prefers(0)).admitted
    second = mm.admit(pod("p1", "85Gi"), hints=cpu_prefers(0))
    assert (second.admitted, second.reason) == (False, "TopologyAffinityError")


def test_admit_when_fits_does_not_place_what_fits_nowhere() -> None:
    m = Machine.synthetic(2, memory="17Gi")
    mm = MemoryManager(m, memory_policy_options={"admit-when-fits": "true"})
    too_big = mm.admit(pod("big", "40Gi"))
    assert not too_big.admitted
    assert all(u.reserved == 0 for u in mm.usage())


# -- numa-allocation-strategy -----------------------------------------------------------------


@pytest.mark.parametrize("policy", ["single-numa-node", "best-effort", "restricted", "none"])
@pytest.mark.parametrize(
    ("strategy", "node"), [(None, 0), ("none", 0), ("most-allocated", 1), ("least-allocated", 2)]
)
def test_allocation_strategy_breaks_ties_by_utilisation(
    strategy: str | None, node: int, policy: str, tmp_path: Path
) -> None:
    m = Machine.synthetic(3, memory="17Gi")  # 16Gi allocatable per node
    # Node 0 at 25 %, node 1 at 50 %, node 2 empty (steered there by a CPU manager's hints),
    # written to a state file that the manager under test then starts from.
    with MemoryManager(m, state_dir=tmp_path) as setup:
        assert setup.admit(pod("a", "4Gi"), hints=cpu_prefers(0))["c"].numa_nodes == (0,)
        assert setup.admit(pod("b", "8Gi"), hints=cpu_prefers(1))["c"].numa_nodes == (1,)
    options = {"numa-allocation-strategy": strategy} if strategy else None
    with MemoryManager(m, topology_policy=policy, policy_options=options, state_dir=tmp_path) as mm:
        # Every node can hold 2Gi alone: the kubelet's order ties and takes the lowest id;
        # most-allocated takes the busiest (node 1), least-allocated the emptiest (node 2).
        assert mm.admit(pod("x", "2Gi"))["c"].numa_nodes == (node,)


def test_strategy_pack_and_spread_on_two_nodes() -> None:
    m = Machine.synthetic(2, memory="17Gi")
    for strategy, expect in (("none", (0,)), ("most-allocated", (0,)), ("least-allocated", (1,))):
        mm = MemoryManager(
            m,
            topology_policy="single-numa-node",
            policy_options={"numa-allocation-strategy": strategy},
        )
        assert mm.admit(pod("first", "4Gi"))["c"].numa_nodes == (0,)
        # Node 0 is at 25 %, node 1 empty (1 % by the KEP's floor).
        assert mm.admit(pod("second", "4Gi"))["c"].numa_nodes == expect, strategy


def test_unknown_strategy_names_the_option() -> None:
    with pytest.raises(ConfigError, match="numa-allocation-strategy") as e:
        MemoryManager(Machine.synthetic(2), policy_options={"numa-allocation-strategy": "pack"})
    assert e.value.key == "numa-allocation-strategy"
    with pytest.raises(ConfigError) as e2:
        MemoryManager(Machine.synthetic(2), memory_policy_options={"admit-when-fit": "true"})
    assert e2.value.suggestion == "admit-when-fits"


# -- memory tiers and CPU nodes ---------------------------------------------------------------


def test_tiers_on_xeon_max_hbm_flat() -> None:
    # Nodes 0-1: DRAM with CPUs (~502Gi); 2-3: CPU-less HBM (64Gi).
    m = Machine.from_catalog("xeon-max-2s-hbm-flat")
    tiers = {"memory-tiers": "true"}
    mm = MemoryManager(m, memory_policy_options=tiers)
    assert mm.admit(pod("hbm", "16Gi", tier="hbm"))["c"].numa_nodes == (2,)
    assert mm.admit(pod("dram", "16Gi", tier="dram"))["c"].numa_nodes == (0,)
    assert mm.admit(pod("default", "16Gi"))["c"].numa_nodes == (0,)
    # A default pod never lands on HBM, even with DRAM full, without admit-when-fits...
    full = MemoryManager(m, memory_policy_options=tiers)
    for n in (0, 1):
        dram = next(x for x in m.nodes if x.id == n).memory_bytes // GI - 2
        assert full.admit(pod(f"fill-{n}", f"{dram}Gi"))["c"].numa_nodes == (n,)
    assert not full.admit(pod("spill", "16Gi")).admitted
    # ...and with it, a default pod spills over to HBM, but an explicit DRAM pod does not.
    soft = MemoryManager(m, memory_policy_options={**tiers, "admit-when-fits": "true"})
    for n in (0, 1):
        dram = next(x for x in m.nodes if x.id == n).memory_bytes // GI - 2
        soft.admit(pod(f"fill-{n}", f"{dram}Gi"))
    spilled = soft.admit(pod("spill", "16Gi"))
    assert spilled.admitted and spilled["c"].numa_nodes == (2,)
    assert not soft.admit(pod("strict", "16Gi", tier="dram")).admitted


def test_without_options_the_annotation_is_ignored_as_the_kubelet_ignores_it() -> None:
    m = Machine.from_catalog("xeon-max-2s-hbm-flat")
    mm = MemoryManager(m)
    assert mm.admit(pod("hbm", "16Gi", tier="hbm"))["c"].numa_nodes == (0,)


def test_cxl_tier_on_spr_with_cxl() -> None:
    m = Machine.from_catalog("spr-2s-cxl")
    mm = MemoryManager(m, memory_policy_options={"memory-tiers": "true"})
    # Node 3 is the larger CXL expander (128Gi); node 2 (64Gi) is the lower id, so it wins.
    assert mm.admit(pod("cold", "32Gi", tier="cxl"))["c"].numa_nodes == (2,)
    assert mm.admit(pod("warm", "32Gi"))["c"].numa_nodes == (0,)


def test_an_unknown_tier_is_a_pod_error() -> None:
    with pytest.raises(PodError, match="unknown memory tier 'ssd'") as e:
        pod("p", "1Gi", tier="ssd")
    assert e.value.field == 'annotations["pymm.io/memory-tier"]'


def test_restrict_to_cpu_numa_nodes_on_a_gb200_like_tray() -> None:
    m = Machine.gb200_like()  # nodes 0-1 Grace CPUs (463Gi allocatable), 2-33 GPU memory
    kubelet = MemoryManager(m, search="auto")
    restricted = MemoryManager(
        m, search="auto", policy_options={"restrict-to-cpu-numa-nodes": "true"}
    )
    small = pod("small", "8Gi")
    kubelet_hints = kubelet.hints(small, "c")
    restricted_hints = restricted.hints(small, "c")
    assert kubelet_hints is not None and restricted_hints is not None
    assert {n for h in kubelet_hints["memory"] for n in h["affinity"]} > {0, 1}
    assert {n for h in restricted_hints["memory"] for n in h["affinity"]} == {0, 1}
    for mm in (kubelet, restricted):
        for n in (0, 1):
            assert mm.admit(pod(f"grace-{n}", "450Gi"))["c"].numa_nodes == (n,)
    # With the Grace nodes full, the kubelet puts a default pod into GPU memory; restricted,
    # it stays off the GPU nodes unless it asks for them.
    assert kubelet.admit(pod("late", "100Gi"))["c"].numa_nodes == (2,)
    assert not restricted.admit(pod("late", "100Gi")).admitted
    assert restricted.admit(pod("gpu", "100Gi", tier="hbm"))["c"].numa_nodes == (2,)


# -- spread-hugepages -------------------------------------------------------------------------


def test_spread_hugepages_takes_pages_evenly(tmp_path: Path) -> None:
    m = Machine.synthetic(2, memory="24Gi", hugepages={"1Gi": 8})
    pages = pod("dpdk", "1Gi", hugepages_1Gi="12Gi")  # more than one node's 8 pages
    kubelet = MemoryManager(m)
    assert kubelet.admit(pages)["c"].numa_nodes == (0, 1)
    greedy = {u.node: u.reserved for u in kubelet.usage() if u.resource == "hugepages-1Gi"}
    assert greedy == {0: 8 * GI, 1: 4 * GI}

    with MemoryManager(
        m, memory_policy_options={"spread-hugepages": "true"}, state_dir=tmp_path / "s"
    ) as mm:
        assert mm.admit(pages)["c"].numa_nodes == (0, 1)
        even = {u.node: u.reserved for u in mm.usage() if u.resource == "hugepages-1Gi"}
        assert even == {0: 6 * GI, 1: 6 * GI}
    # The kubelet (1.32+) restores it: its check sums free and reserved over the group.
    with MemoryManager(m, state_dir=tmp_path / "s") as again:
        again.remove("dpdk")
        assert all(u.reserved == 0 for u in again.usage())


def test_spread_hugepages_needs_the_newest_kubelet_rules() -> None:
    with pytest.raises(ConfigError, match="spread-hugepages needs kubelet_version"):
        MemoryManager(
            Machine.synthetic(2),
            kubelet_version="1.26",
            memory_policy_options={"spread-hugepages": "true"},
        )


# -- fragmentation ----------------------------------------------------------------------------


def test_fragmentation_counts_what_fits_and_what_is_stranded() -> None:
    m = Machine.synthetic(2, memory="17Gi")  # 16Gi allocatable per node
    mm = MemoryManager(m, topology_policy="single-numa-node")
    mm.admit(pod("db", "10Gi"))  # node 0: 6Gi left, too little for an 8Gi probe
    f = mm.fragmentation()  # one container, 8Gi
    assert f.fits == 2  # both on node 1
    assert f.free_by_node == {0: 6 * GI, 1: 16 * GI}
    assert f.stranded_by_node == {0: 6 * GI, 1: 0}
    assert (f.stranded, f.free) == (6 * GI, 22 * GI)
    # A 3Gi probe fits twice on node 0 and five times on node 1; 1Gi stays on each.
    small = mm.fragmentation("3Gi")
    assert (small.fits, small.stranded_by_node) == (7, {0: 0, 1: 1 * GI})
    # The manager itself is untouched.
    assert mm.active_pods == ["db"]
    with pytest.raises(PodError):
        mm.fragmentation("cpu=1")
