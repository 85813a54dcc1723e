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
        kubelet_version="1.38",
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


# -- the topology manager's alignment counters, the resource managers' counters ---------------

ALIGNED = "kubelet_container_aligned_compute_resources_count"
ALIGNED_FAIL = "kubelet_container_aligned_compute_resources_failure_count"
ALIGNED_FAIL_TOTAL = "kubelet_container_aligned_compute_resources_failure_total"


def aligned(r: CollectorRegistry, scope: str, name: str = ALIGNED) -> float:
    return value(r, name, scope=scope, boundary="numa_node")


def exposed(r: CollectorRegistry) -> str:
    from pymm.metrics import exposition

    return exposition(r).decode()


def test_alignment_counts_as_the_topology_manager_counts() -> None:
    r = CollectorRegistry()
    mm = manager(r)  # single-numa-node, container scope, 15Gi per node
    # Both scopes are there from the start, at 0 (initializeMetrics).
    for scope in ("container", "pod"):
        for name in (ALIGNED, ALIGNED_FAIL, ALIGNED_FAIL_TOTAL):
            assert aligned(r, scope, name) == 0
    g = Container.of
    # 20Gi fits no node but both together: the only hint spans two nodes, and the merge under
    # single-numa-node refuses it. One failure, nothing aligned.
    wide = mm.admit(Pod.of("w", g("big", cpu="1", memory="20Gi")))
    assert wide.reason == "TopologyAffinityError"
    assert aligned(r, "container", ALIGNED_FAIL) == aligned(r, "container", ALIGNED_FAIL_TOTAL) == 1
    assert aligned(r, "container") == 0
    # An init container and two app containers: three aligned allocations.
    pod = Pod.of("a", g("c1", cpu="1", memory="1Gi"), g("c2", cpu="1", memory="1Gi"))
    pod = Pod(pod.uid, pod.name, pod.namespace, pod.containers, (g("i", cpu="1", memory="1Gi"),))
    assert mm.admit(pod).admitted
    assert aligned(r, "container") == 3
    # A Burstable pod is aligned too under single-numa-node (its hints are "no preference").
    assert mm.admit(Pod.of("b", g("c", requests={"cpu": "1", "memory": "1Gi"})))
    assert aligned(r, "container") == 4
    # 1Gi aligned, then 20Gi: now no hint at all (node 0 holds single-NUMA pods), so the
    # merge admits and Allocate fails. The first container counted; no alignment failure.
    late = mm.admit(Pod.of("l", g("ok", cpu="1", memory="1Gi"), g("big", cpu="1", memory="20Gi")))
    assert late.reason == "UnexpectedAdmissionError"
    assert aligned(r, "container") == 5
    assert aligned(r, "container", ALIGNED_FAIL) == 1
    assert aligned(r, "pod") == aligned(r, "pod", ALIGNED_FAIL) == 0


def test_alignment_in_pod_scope_counts_pods() -> None:
    r = CollectorRegistry()
    m = Machine.synthetic(2, memory="16Gi")
    mm = MemoryManager(
        m,
        reserved_memory="0:memory=1Gi;1:memory=1Gi",
        topology_policy="single-numa-node",
        scope="pod",
        metrics=Metrics(r),
    )
    g = Container.of
    # 10Gi + 10Gi must sit on one node: refused by the merge.
    refused = mm.admit(
        Pod.of("b", g("c1", cpu="1", memory="10Gi"), g("c2", cpu="1", memory="10Gi"))
    )
    assert refused.reason == "TopologyAffinityError"
    assert aligned(r, "pod", ALIGNED_FAIL) == aligned(r, "pod", ALIGNED_FAIL_TOTAL) == 1
    assert mm.admit(Pod.of("a", g("c1", cpu="1", memory="2Gi"), g("c2", cpu="1", memory="2Gi")))
    assert aligned(r, "pod") == 1 and aligned(r, "container") == 0


@pytest.mark.parametrize("policy", ["best-effort", "restricted", "none"])
def test_alignment_is_counted_under_single_numa_node_only(policy: str) -> None:
    r = CollectorRegistry()
    mm = manager(r, topology_policy=policy)
    mm.admit(Pod.of("a", Container.of("c", cpu="1", memory="1Gi")))
    mm.admit(Pod.of("w", Container.of("c", cpu="1", memory="40Gi")))
    for scope in ("container", "pod"):
        assert aligned(r, scope) == aligned(r, scope, ALIGNED_FAIL) == 0


def test_kubelet_counter_names_are_exposed_exactly() -> None:
    r = CollectorRegistry()
    manager(r).admit(Pod.of("a", Container.of("c", cpu="1", memory="1Gi")))
    text = exposed(r)
    lines = text.splitlines()
    for name in (ALIGNED, ALIGNED_FAIL, "resource_manager_container_assignments"):
        assert f"# TYPE {name} counter" in lines
        assert not any(line.startswith(f"{name}_total") for line in lines)
    assert f'{ALIGNED}{{boundary="numa_node",scope="container"}} 1.0' in lines
    assert f"# TYPE {ALIGNED_FAIL_TOTAL} counter" in lines
    assert "# TYPE resource_manager_allocations_total counter" in lines


def test_resource_manager_counts_as_the_static_policy_counts() -> None:
    r = CollectorRegistry()
    m = Machine.synthetic(2, memory="16Gi", hugepages={"1Gi": 4})
    mm = MemoryManager(
        m, reserved_memory="0:memory=1Gi;1:memory=1Gi", topology_policy="none", metrics=Metrics(r)
    )
    g = Container.of

    def rm(name: str, **labels: str) -> float:
        return value(r, name, resource_name="memory", **labels)

    # Memory and 1Gi hugepages: one allocation per resource, one exclusive assignment.
    assert mm.admit(Pod.of("a", g("c", cpu="1", memory="1Gi", hugepages={"1Gi": "2Gi"})))
    assert rm("resource_manager_allocations_total", source="node") == 2
    assert rm("resource_manager_container_assignments", assignment_type="node_exclusive") == 1
    # A Burstable pod allocates nothing exclusive.
    assert mm.admit(Pod.of("b", g("c", requests={"cpu": "1", "memory": "1Gi"})))
    assert rm("resource_manager_allocations_total", source="node") == 2
    # No node holds 40Gi: Allocate fails (UnexpectedAdmissionError), one error.
    assert mm.admit(Pod.of("x", g("c", cpu="1", memory="40Gi"))).reason == (
        "UnexpectedAdmissionError"
    )
    assert rm("resource_manager_allocation_errors_total", source="node") == 1
    assert rm("resource_manager_container_assignments", assignment_type="node_exclusive") == 1


def test_the_seconds_histogram_beside_the_milliseconds_one() -> None:
    r = CollectorRegistry()
    manager(r).admit(Pod.of("a", Container.of("c", cpu="1", memory="1Gi")))
    text = exposed(r)
    buckets = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("kubelet_topology_manager_admission_duration_seconds_bucket")
    ]
    # metrics.ExponentialBuckets(0.00005, 2, 15), as the kubelet's own test expects them.
    assert buckets == [
        "5e-05", "0.0001", "0.0002", "0.0004", "0.0008", "0.0016", "0.0032", "0.0064",
        "0.0128", "0.0256", "0.0512", "0.1024", "0.2048", "0.4096", "0.8192", "+Inf",
    ]  # fmt: skip
    assert value(r, "kubelet_topology_manager_admission_duration_seconds_count") == 1


def test_pod_level_series_have_their_one_entry_point() -> None:
    r = CollectorRegistry()
    metrics = Metrics(r)
    # Declared, not fed: pymm has no pod-level resources yet (the engine admits them later).
    assert (
        "resource_manager_allocations_total",
        (("resource_name", "memory"), ("source", "pod")),
    ) not in samples(r)
    metrics.record_pod_level(
        allocations=2, errors=1, assignments={"pod_exclusive": 1, "pod_shared": 2}
    )
    assert value(r, "resource_manager_allocations_total", resource_name="memory", source="pod") == 2
    assert (
        value(r, "resource_manager_allocation_errors_total", resource_name="memory", source="pod")
        == 1
    )
    assert (
        value(
            r,
            "resource_manager_container_assignments",
            resource_name="memory",
            assignment_type="pod_shared",
        )
        == 2
    )
    with pytest.raises(ConfigError):
        metrics.record_pod_level(allocations=0, errors=0, assignments={"node_exclusive": 1})
