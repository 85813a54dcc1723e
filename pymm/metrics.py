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

pymm adds, under ``pymm_``: admissions by outcome, removals with their duration, per NUMA node
and resource the allocatable, reserved and free bytes (read from the manager when scraped, so
admissions pay nothing for them), the fragmentation for the default probe (one Guaranteed
container of 8Gi): per NUMA node the free memory stranded for it and how many more such pods fit
(computed when scraped, with :meth:`~pymm.manager.MemoryManager.fragmentation`; the README's
"Stranded memory" defines it), and the manager's configuration and options as info-style gauges.

``prometheus_client`` is imported only when a :class:`Metrics` is built, so ``import pymm``
stays light; it comes with ``pip install 'pymm[agent]'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pymm.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from pymm import _engine
    from pymm.manager import MemoryManager

__all__ = ["ADMISSION_DURATION_BUCKETS_MS", "PROBE_SHAPE", "Metrics", "import_prometheus_client"]

#: The probe shape of ``pymm_numa_stranded_bytes`` and ``pymm_numa_probe_fits``.
PROBE_SHAPE = "8Gi"
PROBE = f"Guaranteed {PROBE_SHAPE}"

#: The kubelet's ``metrics.ExponentialBuckets(.05, 2, 15)``; doubling is exact in binary
#: floating point, so these are the same numbers Go computes.
ADMISSION_DURATION_BUCKETS_MS = tuple(0.05 * 2**i for i in range(15))


def import_prometheus_client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("metrics need prometheus_client: pip install 'pymm[agent]'") from None
    return prometheus_client


class Metrics:
    """Counters and gauges for one :class:`~pymm.manager.MemoryManager`, in ``registry``.

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
        self._manager: MemoryManager | None = None

    # -- called by MemoryManager ---------------------------------------------------------

    def attach(self, manager: MemoryManager) -> None:
        """Starts reporting ``manager``'s per-node gauges (once per :class:`Metrics`)."""
        if self._manager is not None:
            raise ConfigError("this Metrics already reports another MemoryManager")
        self._manager = manager
        self.registry.register(_UsageCollector(manager))

    def record_admission(
        self, raw: _engine.AdmitResult, qos_class: str, pinning: bool, duration_ms: float
    ) -> None:
        self.admission_requests.inc()
        self.admission_duration.observe(duration_ms)
        if raw.admit:
            self.admissions.labels("admitted").inc()
        else:
            self.admission_errors.inc()
            self.admissions.labels(raw.reason or "rejected").inc()
        if pinning and qos_class == "Guaranteed":
            calls, failed = raw.allocate_counts
            self.pinning_requests.inc(calls)
            if failed:
                self.pinning_errors.inc(failed)

    def record_removal(self, duration_ms: float) -> None:
        self.removals.inc()
        self.remove_duration.observe(duration_ms)


class _UsageCollector:
    """Per-node gauges and configuration, computed from the manager at scrape time."""

    def __init__(self, manager: MemoryManager) -> None:
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
