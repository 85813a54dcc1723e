"""The reference simulation driver: replays a workload on one MemoryManager per configuration.

Slow and plain on purpose: every metric comes from the public manager API after every event,
so a faster core can be checked against it event for event. The per-event loop is
:func:`replay_events`; everything a faster core must reproduce is in :class:`ConfigResult`.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pymm import _engine
from pymm.errors import ConfigError, PymmError
from pymm.manager import Admission, MemoryManager
from pymm.pod import Container, Pod
from pymm.simulate.configs import SimConfig, open_manager, parse_configs
from pymm.simulate.workloads import ADMIT, Workload

__all__ = [
    "PROBE_CAP",
    "ConfigResult",
    "Series",
    "SimulationResult",
    "Stranded",
    "probe_pod",
    "replay_events",
    "run",
    "run_config",
    "sample_points",
    "stranded",
]

#: At most this many probe pods are admitted when measuring stranded memory.
PROBE_CAP = 100_000
TIERS = ("DRAM", "HBM", "CXL")
_MEMORY_PREFIX = "hugepages-"


def _is_memory(resource: str) -> bool:
    return resource == "memory" or resource.startswith(_MEMORY_PREFIX)


# -- probe and stranded memory ----------------------------------------------------------------


def probe_pod(spec: str | Pod | None = None) -> Pod:
    """The probe shape: a Pod, or ``"8Gi"`` (memory only, the default), or a resource list
    ``"memory=4Gi,hugepages-1Gi=2Gi"``; always one Guaranteed container."""
    if isinstance(spec, Pod):
        return _guaranteed(spec, f"probe pod {spec.uid!r}")
    text = (spec or "8Gi").strip()
    resources: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq:
            key, value = "memory", key
        if not _is_memory(key) or not value:
            raise ConfigError(
                f"--probe {text!r}: expected a quantity (8Gi) or memory=QTY,hugepages-SIZE=QTY"
            )
        if key in resources:
            raise ConfigError(f"--probe {text!r}: {key} is given twice")
        try:
            amount = _engine.parse_quantity(value)
        except PymmError as e:
            raise ConfigError(f"--probe {text!r}: {key}: {e}") from e
        # A probe of nothing is never pinned, so every sample would admit PROBE_CAP copies.
        if amount <= 0:
            raise ConfigError(f"--probe {text!r}: {key} must be more than 0")
        resources[key] = value
    pod = Pod.of("pymm-probe", Container.of("probe", requests=resources, limits=resources, cpu=1))
    return _guaranteed(pod, f"--probe {text!r}")


def _guaranteed(probe: Pod, what: str) -> Pod:
    if probe.compiled.qos_class != "Guaranteed":
        # Nothing pins a Burstable probe, so it always "fits": PROBE_CAP copies per sample.
        raise ConfigError(f"{what}: a probe must be Guaranteed (memory and cpu limits)")
    return probe


@dataclass(frozen=True)
class Stranded:
    """After filling a copy of the state with probes: how many fitted, and the free bytes of
    the probe's resources left on each node (memory no further probe can use)."""

    fits: int
    by_node: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.by_node.values())


class _ProbePods:
    """Compiled probe pods with distinct uids, compiled once and reused by every fill."""

    def __init__(self, probe: Pod) -> None:
        self._spec = probe.to_dict()
        self._pods: list[_engine.Pod] = []
        self.resources = frozenset(r for c in probe.containers for r in c.requests if _is_memory(r))

    def __getitem__(self, k: int) -> _engine.Pod:
        while len(self._pods) <= k:
            uid = f"{self._spec['uid']}-{len(self._pods)}"
            self._pods.append(_engine.Pod({**self._spec, "uid": uid}))
        return self._pods[k]


def stranded(mm: MemoryManager, probe: Pod | _ProbePods, cap: int = PROBE_CAP) -> Stranded:
    """Stranded memory of ``mm``'s current state for a probe shape (see :class:`Stranded`).

    The fill runs on an in-memory engine restored from ``mm``'s state file text with the same
    configuration (as a kubelet restart would restore it), so ``mm`` is left untouched.
    """
    pods = probe if isinstance(probe, _ProbePods) else _ProbePods(probe)
    copy = _engine.Engine(mm.machine.to_dict(), mm.config, mm.checkpoint())
    fits = 0
    while fits < cap:
        pod = pods[fits]
        if not copy.admit(pod, None, False).admit:
            break
        copy.start_pod(pod.uid)
        fits += 1
    by_node: dict[int, int] = {}
    for node, resource, _total, _sys, _alloc, _reserved, free in copy.usage():
        if resource in pods.resources:
            by_node[node] = by_node.get(node, 0) + free
    return Stranded(fits, by_node)


# -- results ----------------------------------------------------------------------------------


@dataclass
class Series:
    """Values at the sample points (after event ``event[j]``); node columns follow the
    machine's node order."""

    event: npt.NDArray[np.int64]
    time: npt.NDArray[np.float64]
    reserved_fraction: npt.NDArray[np.float64]
    stranded_bytes: npt.NDArray[np.int64]
    probe_fits: npt.NDArray[np.int64]
    node_reserved_fraction: npt.NDArray[np.float64]  # samples x nodes
    node_stranded_bytes: npt.NDArray[np.int64]  # samples x nodes


@dataclass
class ConfigResult:
    label: str
    options: dict[str, str]
    admitted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    rejected_by_message: dict[str, int]
    cross_numa: int
    mean_numa_distance: float | None
    mean_reserved_fraction: float
    peak_reserved_fraction: float
    reserved_by_tier: dict[str, float]
    mean_stranded_bytes: int
    final_state_valid: bool
    final_state_error: str | None
    series: Series

    @property
    def top_rejection(self) -> tuple[str, int] | None:
        """The most frequent rejection message and its count."""
        if not self.rejected_by_message:
            return None
        return max(self.rejected_by_message.items(), key=lambda kv: (kv[1], kv[0]))

    def to_dict(self, node_ids: Sequence[int]) -> dict[str, Any]:
        s = self.series
        return {
            "label": self.label,
            "options": dict(self.options),
            "admitted": self.admitted,
            "rejected": self.rejected,
            "rejectedByReason": dict(self.rejected_by_reason),
            "rejectedByMessage": dict(self.rejected_by_message),
            "crossNuma": self.cross_numa,
            "meanNumaDistance": self.mean_numa_distance,
            "meanReservedFraction": self.mean_reserved_fraction,
            "peakReservedFraction": self.peak_reserved_fraction,
            "reservedByTier": dict(self.reserved_by_tier),
            "meanStrandedBytes": self.mean_stranded_bytes,
            "finalStateValid": self.final_state_valid,
            "finalStateError": self.final_state_error,
            "series": {
                "event": s.event.tolist(),
                "time": s.time.tolist(),
                "reservedFraction": s.reserved_fraction.tolist(),
                "strandedBytes": s.stranded_bytes.tolist(),
                "probeFits": s.probe_fits.tolist(),
                "nodeReservedFraction": {
                    str(n): s.node_reserved_fraction[:, i].tolist() for i, n in enumerate(node_ids)
                },
                "nodeStrandedBytes": {
                    str(n): s.node_stranded_bytes[:, i].tolist() for i, n in enumerate(node_ids)
                },
            },
        }


@dataclass
class SimulationResult:
    workload: str
    machine: str
    events: int
    node_ids: list[int]
    probe: dict[str, str]
    skipped: dict[str, int]
    configs: list[ConfigResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document. Its top level is exactly machine, events and configs, so
        what applies to the whole run (probe, skipped source ops) is repeated in each config."""
        run_wide = {"probe": dict(self.probe), "skippedOps": dict(self.skipped)}
        return {
            "machine": self.machine,
            "events": self.events,
            "configs": [{**c.to_dict(self.node_ids), **run_wide} for c in self.configs],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# -- the event loop ---------------------------------------------------------------------------


def replay_events(
    mm: MemoryManager,
    workload: Workload,
    on_event: Callable[[int, Admission | None], None],
) -> None:
    """Replays every event on ``mm``; ``on_event(i, admission)`` runs after each (admission is
    None for a remove). Removing an instance that was rejected does nothing."""
    specs = [s.to_dict() for s in workload.shapes]
    running: set[int] = set()
    op, pod = workload.op, workload.pod
    for i in range(len(workload)):
        uid = workload.uid(i)
        instance = int(pod[i])
        if op[i] == ADMIT:
            a = mm.admit(_engine.Pod({**specs[int(workload.shape[i])], "uid": uid}))
            if a.admitted:
                running.add(instance)
            on_event(i, a)
        else:
            if instance in running:
                running.remove(instance)
                mm.stop_pod(uid)
            on_event(i, None)


class _Observer:
    """Collects the metrics of one configuration, event by event."""

    def __init__(
        self,
        mm: MemoryManager,
        workload: Workload,
        sample_at: npt.NDArray[np.int64],
        probe: Pod,
        tick: Callable[[int], None] | None,
    ) -> None:
        self.mm = mm
        self.workload = workload
        machine = workload.machine
        self.index = {n.id: i for i, n in enumerate(machine.nodes)}
        self.tier = np.array([_tier(n.kind) for n in machine.nodes])
        self.distances = machine.distances
        self.sample_at = sample_at
        self.probe = _ProbePods(probe)
        self.reasons: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.admitted = self.cross_numa = 0
        self.distance_sum = 0.0
        self.fraction_sum = self.peak = 0.0
        self.tier_sum = dict.fromkeys(sorted(set(self.tier.tolist())), 0.0)
        self.allocatable = self._per_node(lambda u: u.allocatable)
        k, n = sample_at.size, len(machine.nodes)
        self.fraction = np.zeros(k)
        self.node_fraction = np.zeros((k, n))
        self.node_stranded = np.zeros((k, n), dtype=np.int64)
        self.fits = np.zeros(k, dtype=np.int64)
        self.next_sample = 0
        self.tick = tick

    def _per_node(self, value: Callable[[Any], int]) -> npt.NDArray[np.float64]:
        out = np.zeros(len(self.index))
        for u in self.mm.usage():
            if _is_memory(u.resource):
                out[self.index[u.node]] += value(u)
        return out

    def __call__(self, i: int, a: Admission | None) -> None:
        if a is not None:
            self._count(a)
        reserved = self._per_node(lambda u: u.reserved)
        # A machine with nothing allocatable reserves nothing: 0, not a division by zero.
        fraction = float(reserved.sum() / max(self.allocatable.sum(), 1.0))
        self.fraction_sum += fraction
        self.peak = max(self.peak, fraction)
        for tier in self.tier_sum:
            self.tier_sum[tier] += float(reserved[self.tier == tier].sum())
        if self.next_sample < self.sample_at.size and i == self.sample_at[self.next_sample]:
            self._sample(reserved, fraction)
        if self.tick is not None and (i + 1) % 1000 == 0:
            self.tick(1000)

    def _count(self, a: Admission) -> None:
        if not a.admitted:
            self.reasons[a.reason or "unknown"] += 1
            self.messages[a.message or ""] += 1
            return
        self.admitted += 1
        for p in a.placements.values():
            if p.numa_nodes is not None and len(p.numa_nodes) > 1:
                self.cross_numa += 1
                self.distance_sum += self._mean_distance(p.numa_nodes)

    def _mean_distance(self, nodes: Sequence[int]) -> float:
        if self.distances is None:
            return 0.0
        idx = [self.index[n] for n in nodes]
        pairs = [self.distances[a][b] for a in idx for b in idx if a != b]
        return sum(pairs) / len(pairs)

    def _sample(self, reserved: npt.NDArray[np.float64], fraction: float) -> None:
        j = self.next_sample
        self.fraction[j] = fraction
        with np.errstate(invalid="ignore", divide="ignore"):
            self.node_fraction[j] = np.where(self.allocatable > 0, reserved / self.allocatable, 0.0)
        s = stranded(self.mm, self.probe)
        self.fits[j] = s.fits
        for node, free in s.by_node.items():
            self.node_stranded[j, self.index[node]] = free
        self.next_sample += 1

    def result(self, config: SimConfig, valid: tuple[bool, str | None]) -> ConfigResult:
        n = len(self.workload)
        w = self.workload
        stranded_total = self.node_stranded.sum(axis=1)
        has_distance = self.distances is not None and self.cross_numa > 0
        return ConfigResult(
            label=config.label,
            options=dict(config.options),
            admitted=self.admitted,
            rejected=sum(self.reasons.values()),
            rejected_by_reason=dict(self.reasons.most_common()),
            rejected_by_message=dict(self.messages.most_common()),
            cross_numa=self.cross_numa,
            mean_numa_distance=self.distance_sum / self.cross_numa if has_distance else None,
            mean_reserved_fraction=self.fraction_sum / n,
            peak_reserved_fraction=self.peak,
            reserved_by_tier={t: s / n for t, s in self.tier_sum.items()},
            mean_stranded_bytes=round(float(stranded_total.mean())),
            final_state_valid=valid[0],
            final_state_error=valid[1],
            series=Series(
                event=self.sample_at.copy(),
                time=w.time[self.sample_at],
                reserved_fraction=self.fraction,
                stranded_bytes=stranded_total,
                probe_fits=self.fits,
                node_reserved_fraction=self.node_fraction,
                node_stranded_bytes=self.node_stranded,
            ),
        )


def _tier(kind: str) -> str:
    return kind if kind in TIERS else "unknown"


# -- running ----------------------------------------------------------------------------------


def sample_points(events: int, samples: int) -> npt.NDArray[np.int64]:
    """``min(samples, events)`` event indices, evenly spaced, the last one the last event."""
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {samples}")
    k = min(samples, events)
    return (np.arange(1, k + 1, dtype=np.int64) * events) // k - 1


def _final_state_valid(
    mm: MemoryManager, config: SimConfig, workload: Workload
) -> tuple[bool, str | None]:
    """Whether a new manager with the same configuration opens on the final state file."""
    from pymm.statefile import STATE_FILE_NAME

    with tempfile.TemporaryDirectory(prefix="pymm-simulate-") as tmp:
        (Path(tmp) / STATE_FILE_NAME).write_text(mm.checkpoint())
        try:
            restored = open_manager(
                config, workload.machine, workload.reserved_memory, state_dir=tmp
            )
        except PymmError as e:
            return False, str(e)
        restored.close()
    return True, None


def run_config(
    workload: Workload,
    config: SimConfig,
    *,
    probe: Pod,
    sample_at: npt.NDArray[np.int64],
    tick: Callable[[int], None] | None = None,
) -> ConfigResult:
    """One configuration's results; the unit a faster simulation core replaces."""
    mm = open_manager(config, workload.machine, workload.reserved_memory)
    observer = _Observer(mm, workload, sample_at, probe, tick)
    replay_events(mm, workload, observer)
    if tick is not None:
        tick(len(workload) % 1000)
    return observer.result(config, _final_state_valid(mm, config, workload))


def run(
    workload: Workload,
    configs: Sequence[SimConfig | str] | None = None,
    *,
    probe: str | Pod | None = None,
    samples: int = 200,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Replays ``workload`` under each configuration (default: the default set).

    ``configs`` are :class:`SimConfig` or ``--config`` texts. ``progress(done)`` is told how
    many events (summed over configurations) have been replayed so far. Every configuration
    is opened before any event runs, so a bad one fails at once.
    """
    if len(workload) == 0:
        raise ConfigError("the workload has no events")
    probe_spec = probe_pod(probe)
    sample_at = sample_points(len(workload), samples)
    chosen = parse_configs(configs)
    for c in chosen:
        open_manager(c, workload.machine, workload.reserved_memory).close()
    result = SimulationResult(
        workload=workload.name,
        machine=workload.machine.name,
        events=len(workload),
        node_ids=workload.machine.node_ids,
        probe={r: q for r, q in probe_spec.containers[0].requests.items() if _is_memory(r)},
        skipped=dict(workload.skipped),
    )
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done)

    for c in chosen:
        result.configs.append(
            run_config(workload, c, probe=probe_spec, sample_at=sample_at, tick=tick)
        )
    return result
