"""Prometheus metrics with the kubelet's names, so existing dashboards work on pymm.

The kubelet (``pkg/kubelet/metrics/metrics.go``, subsystem ``kubelet``) exports, without
labels:

* ``kubelet_memory_manager_pinning_requests_total`` / ``..._errors_total``: one per
  memory-manager ``Allocate`` call for a container of a Guaranteed pod (Static policy), and one
  error per such call that failed;
* ``kubelet_topology_manager_admission_requests_total`` / ``..._errors_total``: one per pod
  admission, and one per rejected admission;
* ``kubelet_topology_manager_admission_duration_ms``: a histogram with the buckets
  ``ExponentialBuckets(0.05, 2, 15)`` (0.05 ms to 819.2 ms). The kubelet times the scope's
  ``Admit``, which includes writing the state file, and so does pymm. One difference: the
  kubelet observes ``time.Since(start).Milliseconds()``, a whole number, so every sub-millisecond
  admission lands in the first bucket as 0; pymm observes the fractional milliseconds.

and, with the labels ``scope`` (``container`` or ``pod``) and ``boundary`` (``numa_node``), the
topology manager's alignment counters (counted only under ``single-numa-node``, the one policy
whose ``IsAlignmentGuaranteed`` is true; both label sets start at 0, as its
``initializeMetrics`` does):

* ``kubelet_container_aligned_compute_resources_count``: container scope, one per container the
  scope admitted and allocated (init containers included, in the kubelet's order); pod scope,
  one per admitted pod;
* ``kubelet_container_aligned_compute_resources_failure_count``: one per topology-manager
  rejection (the merge refused the hint);

The newer kubelets (1.36-1.37) add, beside those:

* ``kubelet_container_aligned_compute_resources_failure_total``: the same count as
  ``..._failure_count`` under a Prometheus-compliant name;
* ``kubelet_topology_manager_admission_duration_seconds``: the admission histogram in seconds,
  buckets ``ExponentialBuckets(0.00005, 2, 15)``;
* the resource managers' counters (no subsystem; the kubelet registers them with the
  ``PodLevelResourceManagers`` gate): ``resource_manager_allocations_total`` and
  ``resource_manager_allocation_errors_total`` (labels ``resource_name``, ``source``) and
  ``resource_manager_container_assignments`` (labels ``resource_name``,
  ``assignment_type``). The memory manager counts, per new container allocation, one
  allocation per resource it reserves (memory, each hugepage size) and one ``node_exclusive``
  assignment, and one error per failed ``Allocate``; ``resource_name`` is the manager's,
  ``memory``. pymm knows container-level exclusive assignments from the node's pool only:
  the pod-level series (``source="pod"``, ``pod_exclusive``, ``pod_shared``) count a pod the
  pod-level resource managers allocate as a whole (``AllocatePod``, kubelet 1.38 with
  ``PodLevelResourceManagers`` in pod scope): one allocation per container assigned, one error
  per failed ``AllocatePod``, one ``pod_exclusive`` assignment per container given its own
  slice and one ``pod_shared`` per container sharing the pool (a regular init container
  without a request counts as ``pod_shared``), fed through :meth:`Metrics.record_pod_level`.

Counters whose kubelet names lack ``_total`` are exposed under exactly those names by
:func:`exposition` (the Python client would append ``_total`` to a counter's name).

pymm adds, under ``pymm_``: admissions by outcome, removals with their duration, per NUMA node
and resource the allocatable, reserved and free bytes (read from the manager when scraped, so
admissions pay nothing for them), the fragmentation for the default probe (one Guaranteed
container of 8Gi): per NUMA node the free memory stranded for it and how many more such pods fit
(computed when scraped, with the manager's ``fragmentation``; the README's "Stranded memory"
defines it), and the manager's configuration and options as info-style gauges.

``prometheus_client`` is imported only when a :class:`Metrics` is built, so ``import pymm``
stays light; it comes with ``pip install 'pymm[agent]'``.

The metrics know the manager only through :class:`UsageSource` (what a scrape reads), so this
module never imports :mod:`pymm.manager`: the manager depends on the metrics, not the reverse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pymm.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from pymm import _engine

__all__ = [
    "ADMISSION_DURATION_BUCKETS_MS",
    "ADMISSION_DURATION_BUCKETS_SECONDS",
    "ALIGNED_BOUNDARY",
    "ALLOCATION_SOURCES",
    "ASSIGNMENT_TYPES",
    "PROBE_SHAPE",
    "Metrics",
    "UsageSource",
    "exposition",
    "import_prometheus_client",
]

#: The probe shape of ``pymm_numa_stranded_bytes`` and ``pymm_numa_probe_fits``.
PROBE_SHAPE = "8Gi"
PROBE = f"Guaranteed {PROBE_SHAPE}"

#: The kubelet's ``metrics.ExponentialBuckets(.05, 2, 15)``; doubling is exact in binary
#: floating point, so these are the same numbers Go computes.
ADMISSION_DURATION_BUCKETS_MS = tuple(0.05 * 2**i for i in range(15))
#: ``ExponentialBuckets(0.00005, 2, 15)`` of ``..._admission_duration_seconds``.
ADMISSION_DURATION_BUCKETS_SECONDS = tuple(0.00005 * 2**i for i in range(15))

#: The kubelet's label values (``metrics.AlignScope*``, ``AlignedNUMANode``,
#: ``ResourceManager*``).
ALIGNED_BOUNDARY = "numa_node"
ALIGN_SCOPES = ("container", "pod")
#: The memory manager's ``resource_name`` in the resource-manager counters.
RESOURCE_MANAGER_MEMORY = "memory"
#: ``source``: the node's pool (what pymm allocates from) or a pod's pre-allocated budget.
ALLOCATION_SOURCES = ("node", "pod")
#: ``assignment_type``: exclusive from the node, exclusive from a pod budget, a pod's shared pool.
ASSIGNMENT_TYPES = ("node_exclusive", "pod_exclusive", "pod_shared")

#: Counters the kubelet names without ``_total`` (Go's client allows it; Python's appends it).
_UNSUFFIXED_COUNTERS = (
    "kubelet_container_aligned_compute_resources_count",
    "kubelet_container_aligned_compute_resources_failure_count",
    "resource_manager_container_assignments",
)


def import_prometheus_client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("metrics need prometheus_client: pip install 'pymm[agent]'") from None
    return prometheus_client


class _NodeUsage(Protocol):
    @property
    def node(self) -> int: ...
    @property
    def resource(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def allocatable(self) -> int: ...
    @property
    def reserved(self) -> int: ...
    @property
    def free(self) -> int: ...


class _Fragmentation(Protocol):
    @property
    def fits(self) -> int: ...
    @property
    def stranded_by_node(self) -> Mapping[int, int]: ...


class UsageSource(Protocol):
    """What a scrape reads from a manager (:class:`~pymm.manager.MemoryManager` is one)."""

    @property
    def config(self) -> dict[str, Any]: ...
    def usage(self) -> Sequence[_NodeUsage]: ...
    def fragmentation(self, probe: Any = None) -> _Fragmentation: ...


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format, with the kubelet's counter names kept as
    they are (``kubelet_container_aligned_compute_resources_count``, not ``..._count_total``)."""
    prom = import_prometheus_client()
    text: str = prom.generate_latest(registry).decode()
    for name in _UNSUFFIXED_COUNTERS:
        text = text.replace(f"# HELP {name}_total ", f"# HELP {name} ")
        text = text.replace(f"# TYPE {name}_total counter", f"# TYPE {name} counter")
    return text.encode()


class _LabelledCounters:
    """Counters exposed under the exact names the kubelet uses (see :func:`exposition`)."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *values: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + amount

    def metric(self) -> Metric:
        from prometheus_client.metrics_core import Metric

        family = Metric(self.name, self.help, "counter")
        with self._lock:
            items = sorted(self._values.items())
        for values, amount in items:
            family.add_sample(self.name, dict(zip(self.labels, values, strict=True)), amount)
        return family


class _KubeletNamedCollector:
    def __init__(self, counters: Sequence[_LabelledCounters]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        for c in self._counters:
            yield c.metric()


class Metrics:
    """Counters and gauges for one manager, in ``registry``.

    Pass it as ``MemoryManager(..., metrics=Metrics(registry))``; every admit and remove then
    records its outcome and duration, and scraping the registry reads the per-node gauges.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prom = import_prometheus_client()
        self.registry: CollectorRegistry = (
            registry if registry is not None else prom.CollectorRegistry()
        )
        counter, histogram, r = prom.Counter, prom.Histogram, self.registry
        self.pinning_requests = counter(
            "kubelet_memory_manager_pinning_requests_total",
            "The number of memory pages allocations which required pinning.",
            registry=r,
        )
        self.pinning_errors = counter(
            "kubelet_memory_manager_pinning_errors_total",
            "The number of memory pages allocations which required pinning that failed.",
            registry=r,
        )
        self.admission_requests = counter(
            "kubelet_topology_manager_admission_requests_total",
            "The number of admission requests where resources have to be aligned.",
            registry=r,
        )
        self.admission_errors = counter(
            "kubelet_topology_manager_admission_errors_total",
            "The number of admission request failures where resources could not be aligned.",
            registry=r,
        )
        self.admission_duration = histogram(
            "kubelet_topology_manager_admission_duration_ms",
            "Duration in milliseconds to serve a pod admission request.",
            buckets=ADMISSION_DURATION_BUCKETS_MS,
            registry=r,
        )
        self.admission_duration_seconds = histogram(
            "kubelet_topology_manager_admission_duration_seconds",
            "Duration in seconds to serve a pod admission request.",
            buckets=ADMISSION_DURATION_BUCKETS_SECONDS,
            registry=r,
        )
        aligned_labels = ("scope", "boundary")
        self.aligned = _LabelledCounters(
            "kubelet_container_aligned_compute_resources_count",
            "Cumulative number of aligned compute resources allocated to containers by "
            "alignment type.",
            aligned_labels,
        )
        self.aligned_failures = _LabelledCounters(
            "kubelet_container_aligned_compute_resources_failure_count",
            "Cumulative number of failures to allocate aligned compute resources to "
            "containers by alignment type.",
            aligned_labels,
        )
        self.aligned_failures_total = counter(
            "kubelet_container_aligned_compute_resources_failure_total",
            "Cumulative number of failures to allocate aligned compute resources to "
            "containers by alignment type.",
            aligned_labels,
            registry=r,
        )
        for scope in ALIGN_SCOPES:
            # The topology manager's initializeMetrics: both scopes exist from the start.
            self.aligned.inc(scope, ALIGNED_BOUNDARY, amount=0)
            self.aligned_failures.inc(scope, ALIGNED_BOUNDARY, amount=0)
            self.aligned_failures_total.labels(scope, ALIGNED_BOUNDARY)
        self.rm_allocations = counter(
            "resource_manager_allocations_total",
            "Number of exclusive resource allocations performed by a resource manager.",
            ("resource_name", "source"),
            registry=r,
        )
        self.rm_allocation_errors = counter(
            "resource_manager_allocation_errors_total",
            "Number of errors encountered during exclusive resource allocation.",
            ("resource_name", "source"),
            registry=r,
        )
        self.rm_assignments = _LabelledCounters(
            "resource_manager_container_assignments",
            "Number of containers with a specific type of resource assignment.",
            ("resource_name", "assignment_type"),
        )
        r.register(
            _KubeletNamedCollector((self.aligned, self.aligned_failures, self.rm_assignments))
        )
        self.admissions = counter(
            "pymm_admissions_total",
            "Pod admissions by outcome: admitted, or the rejection reason.",
            ["outcome"],
            registry=r,
        )
        self.removals = counter(
            "pymm_remove_requests_total", "Pod or container removals.", registry=r
        )
        self.remove_duration = histogram(
            "pymm_remove_duration_ms",
            "Duration in milliseconds of a removal, state file write included.",
            buckets=ADMISSION_DURATION_BUCKETS_MS,
            registry=r,
        )
        self._manager: UsageSource | None = None
        # (topology policy, scope): fixed for a manager's life, read once at attach.
        self._alignment: tuple[str, str] = ("", "")

    # -- called by the manager ------------------------------------------------------------

    def attach(self, manager: UsageSource) -> None:
        """Starts reporting ``manager``'s per-node gauges (once per :class:`Metrics`)."""
        if self._manager is not None:
            raise ConfigError("this Metrics already reports another MemoryManager")
        self._manager = manager
        config = manager.config
        self._alignment = (str(config["topology_policy"]), str(config["scope"]))
        self.registry.register(_UsageCollector(manager))

    def record_admission(
        self, raw: _engine.AdmitResult, qos_class: str, pinning: bool, duration_ms: float
    ) -> None:
        self.admission_requests.inc()
        self.admission_duration.observe(duration_ms)
        self.admission_duration_seconds.observe(duration_ms / 1e3)
        if raw.admit:
            self.admissions.labels("admitted").inc()
        else:
            self.admission_errors.inc()
            self.admissions.labels(raw.reason or "rejected").inc()
        self._record_alignment(raw)
        pod_level = raw.pod_level
        if pod_level is not None:
            # AllocatePod (the pod-level resource managers): its own pinning requests, and the
            # pod's allocations and assignments under source="pod".
            requests, exclusive, shared, containers, pod_failed = pod_level
            self.pinning_requests.inc(requests)
            if pod_failed:
                self.pinning_errors.inc()
            self.record_pod_level(
                allocations=0 if pod_failed else containers,
                errors=int(pod_failed),
                assignments={"pod_exclusive": exclusive, "pod_shared": shared},
            )
            return
        if pinning and qos_class == "Guaranteed":
            calls, failed = raw.allocate_counts
            self.pinning_requests.inc(calls)
            if failed:
                self.pinning_errors.inc(failed)
                self.rm_allocation_errors.labels(RESOURCE_MANAGER_MEMORY, "node").inc(failed)
            for _name, _nodes, blocks in raw.placements:
                # A container the memory manager allocated: one allocation per resource
                # reserved (memory, each hugepage size) and one node-exclusive assignment.
                if blocks:
                    self.rm_allocations.labels(RESOURCE_MANAGER_MEMORY, "node").inc(len(blocks))
                    self.rm_assignments.inc(RESOURCE_MANAGER_MEMORY, "node_exclusive")

    def _record_alignment(self, raw: _engine.AdmitResult) -> None:
        policy, scope = self._alignment
        if policy != "single-numa-node":
            return  # IsAlignmentGuaranteed holds for single-numa-node only
        if scope == "pod":
            if raw.admit:
                self.aligned.inc("pod", ALIGNED_BOUNDARY)
            elif raw.reason == "TopologyAffinityError":
                self._aligned_failure("pod")
            return
        # Container scope: each container the topology manager consulted was aligned and
        # allocated, except the last one of a rejected pod (its merge or its Allocate failed).
        consulted = len(raw.hint_calls)
        aligned = consulted if raw.admit else max(consulted - 1, 0)
        if aligned:
            self.aligned.inc("container", ALIGNED_BOUNDARY, amount=aligned)
        if not raw.admit and raw.reason == "TopologyAffinityError":
            self._aligned_failure("container")

    def _aligned_failure(self, scope: str) -> None:
        self.aligned_failures.inc(scope, ALIGNED_BOUNDARY)
        self.aligned_failures_total.labels(scope, ALIGNED_BOUNDARY).inc()

    def record_pod_level(
        self, *, allocations: int, errors: int, assignments: Mapping[str, int]
    ) -> None:
        """The pod-level resource managers' counts (KEP-5526): allocations and errors from a
        pod's budget (``source="pod"``) and container assignments by type (``pod_exclusive``,
        ``pod_shared``). :meth:`record_admission` feeds it from each pod the engine allocates
        as a whole; it is the one place those series are counted."""
        if allocations:
            self.rm_allocations.labels(RESOURCE_MANAGER_MEMORY, "pod").inc(allocations)
        if errors:
            self.rm_allocation_errors.labels(RESOURCE_MANAGER_MEMORY, "pod").inc(errors)
        for kind, count in assignments.items():
            if kind not in ASSIGNMENT_TYPES or kind == "node_exclusive":
                raise ConfigError(f"unknown pod-level assignment type {kind!r}")
            self.rm_assignments.inc(RESOURCE_MANAGER_MEMORY, kind, amount=count)

    def record_removal(self, duration_ms: float) -> None:
        self.removals.inc()
        self.remove_duration.observe(duration_ms)

    def deferred(self) -> DeferredMetrics:
        """A recorder with this object's ``record_*`` methods that keeps the calls until
        :meth:`DeferredMetrics.commit` (a group of calls made durable by one write: counted
        once the write succeeded, forgotten if it failed)."""
        return DeferredMetrics(self)


class DeferredMetrics:
    """Holds ``record_*`` calls for a :class:`Metrics` until they are committed."""

    def __init__(self, target: Metrics) -> None:
        self.target = target
        self._calls: list[Callable[[], None]] = []

    def record_admission(
        self, raw: _engine.AdmitResult, qos_class: str, pinning: bool, duration_ms: float
    ) -> None:
        self._calls.append(
            lambda: self.target.record_admission(raw, qos_class, pinning, duration_ms)
        )

    def record_removal(self, duration_ms: float) -> None:
        self._calls.append(lambda: self.target.record_removal(duration_ms))

    def commit(self) -> None:
        calls, self._calls = self._calls, []
        for call in calls:
            call()

    def discard(self) -> None:
        self._calls.clear()


class _UsageCollector:
    """Per-node gauges and configuration, computed from the manager at scrape time."""

    def __init__(self, manager: UsageSource) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        labels = ["node", "resource"]
        families = {
            field: GaugeMetricFamily(f"pymm_numa_{field}_bytes", help_text, labels=labels)
            for field, help_text in (
                ("allocatable", "Bytes the memory manager may hand out on a NUMA node."),
                ("reserved", "Bytes reserved by admitted containers on a NUMA node."),
                ("free", "Allocatable bytes not reserved on a NUMA node."),
            )
        }
        for u in self._manager.usage():
            if u.total == 0:
                continue  # a page size the node has no pages of
            key = [str(u.node), u.resource]
            families["allocatable"].add_metric(key, u.allocatable)
            families["reserved"].add_metric(key, u.reserved)
            families["free"].add_metric(key, u.free)
        yield from families.values()
        yield from self._fragmentation()

        config = self._manager.config
        info = GaugeMetricFamily(
            "pymm_manager_info",
            "The manager's configuration (value 1).",
            labels=["memory_policy", "topology_policy", "scope", "kubelet_version", "search"],
        )
        info.add_metric(
            [
                str(config["memory_policy"]),
                str(config["topology_policy"]),
                str(config["scope"]),
                str(config["kubelet_version"]),
                str(config["search"]),
            ],
            1,
        )
        yield info
        options = GaugeMetricFamily(
            "pymm_topology_policy_option",
            "Topology Manager policy options in force (value 1).",
            labels=["option", "value"],
        )
        for key, value in sorted(config["policy_options"].items()):
            options.add_metric([key, str(value)], 1)
        yield options
        memory_options = GaugeMetricFamily(
            "pymm_memory_policy_option",
            "Memory manager policy options in force (pymm's own; value 1).",
            labels=["option", "value"],
        )
        for key, value in sorted(config["memory_policy_options"].items()):
            memory_options.add_metric([key, str(value)], 1)
        yield memory_options

    def _fragmentation(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        stranded = GaugeMetricFamily(
            "pymm_numa_stranded_bytes",
            f"Free bytes on a NUMA node that no further {PROBE} pod can use "
            "(after admitting as many as fit).",
            labels=["node"],
        )
        fits = GaugeMetricFamily(
            "pymm_numa_probe_fits", f"How many more {PROBE} pods the manager would admit."
        )
        # Without the Static policy nothing is pinned to a node: every probe "fits" and
        # nothing is stranded, so the gauges would only report the probe cap.
        if self._manager.config["memory_policy"] == "Static":
            f = self._manager.fragmentation(PROBE_SHAPE)
            for node, value in sorted(f.stranded_by_node.items()):
                stranded.add_metric([str(node)], value)
            fits.add_metric([], f.fits)
        yield stranded
        yield fits
