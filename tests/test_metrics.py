"""Metrics: the kubelet's names and buckets, counted as the kubelet counts, and pymm's gauges."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pymm import Container, Machine, MemoryManager, Pod
from pymm.errors import ConfigError
from pymm.metrics import Metrics

GI = 2**30


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return samples(registry)[(name, tuple(sorted(labels.items())))]


def manager(
    registry: CollectorRegistry,
    topology_policy: str = "single-numa-node",
    options: dict[str, str] | None = None,
) -> MemoryManager:
    m = Machine.synthetic(2, memory="16Gi")
    return MemoryManager(
        m,
        reserved_memory="0:memory=1Gi;1:memory=1Gi",
        topology_policy=topology_policy,
        policy_options=options,
        metrics=Metrics(registry),
    )


def test_names_and_counts_follow_the_kubelet() -> None:
    r = CollectorRegistry()
    mm = manager(r, topology_policy="restricted")
    g = Container.of
    # 20Gi fits no single node: the pod spans {0,1} (a preferred hint), one Allocate call.
    assert mm.admit(Pod.of("a", g("c", cpu="1", memory="20Gi")))["c"].numa_nodes == (0, 1)
    # A Burstable pod: admitted, but the memory manager pins nothing.
    assert mm.admit(Pod.of("b", Container.of("c", requests={"cpu": "1", "memory": "1Gi"})))
    # Both nodes now serve the group only, and {0,1} is not preferred for 2Gi: restricted
    # rejects in the topology manager, before any Allocate.
    rejected = mm.admit(Pod.of("c", g("c1", cpu="1", memory="1Gi"), g("c2", cpu="1", memory="1Gi")))
    assert rejected.reason == "TopologyAffinityError"
    assert value(r, "kubelet_topology_manager_admission_requests_total") == 3
    assert value(r, "kubelet_topology_manager_admission_errors_total") == 1
    assert value(r, "kubelet_memory_manager_pinning_requests_total") == 1
    assert value(r, "kubelet_memory_manager_pinning_errors_total") == 0
    assert value(r, "kubelet_topology_manager_admission_duration_ms_count") == 3
    assert value(r, "pymm_admissions_total", outcome="admitted") == 2
    assert value(r, "pymm_admissions_total", outcome="TopologyAffinityError") == 1
    mm.remove("a")
    assert value(r, "pymm_remove_requests_total") == 1
    assert value(r, "pymm_remove_duration_ms_count") == 1


def test_failed_allocation_counts_a_pinning_error() -> None:
    r = CollectorRegistry()
    m = Machine.synthetic(2, memory="16Gi")
    mm = MemoryManager(
        m, reserved_memory="0:memory=1Gi;1:memory=1Gi", topology_policy="none", metrics=Metrics(r)
    )
    # With policy none the topology manager admits, and Allocate finds no node set with 40Gi
    # (the kubelet's UnexpectedAdmissionError path).
    a = mm.admit(Pod.of("huge", Container.of("c", cpu="1", memory="40Gi")))
    assert a.reason == "UnexpectedAdmissionError"
    assert value(r, "kubelet_memory_manager_pinning_requests_total") == 1
    assert value(r, "kubelet_memory_manager_pinning_errors_total") == 1
    assert value(r, "kubelet_topology_manager_admission_errors_total") == 1


def test_histogram_buckets_are_the_kubelets() -> None:
    r = CollectorRegistry()
    manager(r).admit(Pod.of("a", Container.of("c", cpu="1", memory="1Gi")))
    text = generate_latest(r).decode()
    buckets = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("kubelet_topology_manager_admission_duration_ms_bucket")
    ]
    # metrics.ExponentialBuckets(.05, 2, 15) as Go prints them, then +Inf.
    assert buckets == [
        "0.05", "0.1", "0.2", "0.4", "0.8", "1.6", "3.2", "6.4", "12.8", "25.6",
        "51.2", "102.4", "204.8", "409.6", "819.2", "+Inf",
    ]  # fmt: skip


def test_gauges_follow_the_state_at_scrape_time() -> None:
    r = CollectorRegistry()
    mm = manager(r, options={"prefer-closest-numa-nodes": "true"})
    mm.admit(Pod.of("a", Container.of("c", cpu="1", memory="4Gi")))
    assert value(r, "pymm_numa_reserved_bytes", node="0", resource="memory") == 4 * GI
    assert value(r, "pymm_numa_free_bytes", node="0", resource="memory") == 11 * GI
    assert value(r, "pymm_numa_allocatable_bytes", node="1", resource="memory") == 15 * GI
    # Page sizes without pages are not reported.
    assert ("pymm_numa_free_bytes", (("node", "0"), ("resource", "hugepages-2Mi"))) not in (
        samples(r)
    )
    mm.remove("a")
    assert value(r, "pymm_numa_reserved_bytes", node="0", resource="memory") == 0
    info = dict(
        memory_policy="Static",
        topology_policy="single-numa-node",
        scope="container",
        kubelet_version="latest",
        search="auto",
    )
    assert value(r, "pymm_manager_info", **info) == 1
    assert value(r, "pymm_topology_policy_option", option="prefer-closest-numa-nodes", value="true")


def test_one_metrics_object_per_manager() -> None:
    metrics = Metrics(CollectorRegistry())
    MemoryManager(Machine.synthetic(1), reserved_memory="0:memory=1Gi", metrics=metrics)
    with pytest.raises(ConfigError, match="already reports"):
        MemoryManager(Machine.synthetic(1), reserved_memory="0:memory=1Gi", metrics=metrics)


def test_no_metrics_by_default() -> None:
    mm = MemoryManager(Machine.synthetic(1), reserved_memory="0:memory=1Gi")
    assert mm.metrics is None


def test_stranded_gauges_follow_the_state_at_scrape_time() -> None:
    r = CollectorRegistry()
    mm = manager(r)  # two nodes of 15Gi allocatable, single-numa-node

    def stranded() -> dict[str, float]:
        return {n: value(r, "pymm_numa_stranded_bytes", node=n) / GI for n in ("0", "1")}

    # Empty: one 8Gi pod per node, 7Gi left on each.
    assert value(r, "pymm_numa_probe_fits") == 2 and stranded() == {"0": 7, "1": 7}
    # 4Gi on node 0 leaves 11Gi there: still one probe on each node, 3Gi and 7Gi left.
    assert mm.admit(Pod.of("a", Container.of("c", cpu="1", memory="4Gi")))["c"].numa_nodes == (0,)
    assert value(r, "pymm_numa_probe_fits") == 2 and stranded() == {"0": 3, "1": 7}
    # 6Gi more on node 0 (the lowest node that holds it) leaves 5Gi: no probe fits there.
    assert mm.admit(Pod.of("b", Container.of("c", cpu="1", memory="6Gi")))["c"].numa_nodes == (0,)
    assert value(r, "pymm_numa_probe_fits") == 1 and stranded() == {"0": 5, "1": 7}
    # The probes ran on a copy: the manager itself holds only what was admitted.
    assert set(mm.state["entries"]) == {"a", "b"}
    mm.remove("b")
    assert value(r, "pymm_numa_probe_fits") == 2 and stranded() == {"0": 3, "1": 7}


def test_stranded_gauges_honour_the_managers_options() -> None:
    # 20Gi on one of two 15Gi nodes spans {0,1} under best-effort (15Gi of node 0, 5Gi of
    # node 1): the group's 10Gi, all on node 1, holds one 8Gi probe, which leaves 2Gi there.
    r = CollectorRegistry()
    mm = manager(r, topology_policy="best-effort")
    assert mm.admit(Pod.of("a", Container.of("c", cpu="1", memory="20Gi")))["c"].numa_nodes == (
        0,
        1,
    )
    assert value(r, "pymm_numa_probe_fits") == 1
    assert value(r, "pymm_numa_stranded_bytes", node="0") == 0
    assert value(r, "pymm_numa_stranded_bytes", node="1") == 2 * GI


def test_no_stranded_gauges_without_the_static_policy() -> None:
    # Policy None pins nothing: there is no NUMA memory to strand, and no probe is ever refused.
    r = CollectorRegistry()
    MemoryManager(Machine.synthetic(2), memory_policy="None", metrics=Metrics(r))
    names = {name for name, _ in samples(r)}
    assert "pymm_numa_probe_fits" not in names and "pymm_numa_stranded_bytes" not in names
    assert "pymm_manager_info" in names
