"""The independent reference for ``pymm simulate``'s engine core: the same workload replayed
on one :class:`MemoryManager` per configuration through the public Python API only, every metric
read back from the manager after every event. Slow and plain on purpose; the tests (and
``benches/test_simulate_bench.py``) compare the core with it event for event.

A generated workload's events are admissions and pod stops; a scenario's own operations (the
raw scenario, decoded here independently of the engine) map as the kubelet's harness drives
the kubelet: ``admit``, ``remove`` is :meth:`MemoryManager.stop`, ``removePod`` is
:meth:`MemoryManager.stop_pod`, ``restart`` is :meth:`MemoryManager.restart`.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pymm import _engine
from pymm.errors import PymmError
from pymm.manager import Admission, MemoryManager
from pymm.pod import Pod
from pymm.simulate.configs import SimConfig, open_manager
from pymm.simulate.core import PROBE_CAP, ConfigResult, Series
from pymm.simulate.workloads import ADMIT, Workload

TIERS = ("DRAM", "HBM", "CXL")


def _is_memory(resource: str) -> bool:
    return resource == "memory" or resource.startswith("hugepages-")


# -- probe and stranded memory ----------------------------------------------------------------


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
        a = copy.apply(_engine.Op.admit(pod))
        assert isinstance(a, _engine.AdmitResult)
        if not a.admit:
            break
        fits += 1
    by_node: dict[int, int] = {}
    for node, resource, _total, _sys, _alloc, _reserved, free in copy.usage():
        if resource in pods.resources:
            by_node[node] = by_node.get(node, 0) + free
    return Stranded(fits, by_node)


# -- the event loop ---------------------------------------------------------------------------


def _fake_hints(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    containers = {
        c["name"]: c.get("fakeHints")
        for key in ("initContainers", "containers")
        for c in pod.get(key) or ()
    }
    return [{"name": "fake", "containers": containers, "pod": pod.get("fakePodHints")}]


def _pod_of(raw: Mapping[str, Any], defaults: bool) -> Pod:
    spec = {k: v for k, v in raw.items() if k != "fakePodHints"}
    for key in ("initContainers", "containers"):
        spec[key] = [{k: v for k, v in c.items() if k != "fakeHints"} for c in raw.get(key) or ()]
    pod = Pod.from_dict(spec)
    return pod.with_defaults() if defaults else pod


def replay_scenario_ops(
    mm: MemoryManager,
    scenario: Mapping[str, Any],
    on_event: Callable[[int, Admission | None], None],
    batch: bool = False,
) -> str | None:
    """Replays a scenario's own operations on ``mm`` (with ``batch``, its admissions alone);
    returns why a restart failed, if one did (the run ends there)."""
    defaults = scenario.get("applyDefaults", True)
    fake = scenario.get("useFakeProvider", False)
    ops = [op for op in scenario["ops"] if not batch or op["op"] == "admit"]
    for i, op in enumerate(ops):
        kind = op["op"]
        a: Admission | None = None
        if kind == "admit":
            raw = op["pod"]
            hints = _fake_hints(raw) if fake else None
            a = mm.admit(_pod_of(raw, defaults), hints=hints, start=op.get("start", True))
        elif kind == "remove":
            mm.stop(op["podUID"], op["container"])
        elif kind == "removePod":
            mm.stop_pod(op["podUID"])
        elif kind == "restart":
            machine = op.get("machine")
            try:
                mm.restart(
                    machine=_engine.Scenarios(
                        {"scenarios": [{"name": "-", "machine": machine}]}
                    ).setup(0)[0]
                    if machine
                    else None,
                    reserved_memory=op.get("reservedMemory"),
                    node_allocatable=op.get("nodeAllocatableReservation"),
                )
            except PymmError as e:
                return f"event {i}: {e}"
        else:
            raise AssertionError(kind)
        on_event(i, a)
    return None


def replay_events(
    mm: MemoryManager,
    workload: Workload,
    on_event: Callable[[int, Admission | None], None],
) -> None:
    """Replays every event on ``mm``; ``on_event(i, admission)`` runs after each (admission is
    None for a stop). Stopping an instance that was rejected does nothing."""
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
        self.admitted_at = np.zeros(k, dtype=np.int64)
        self.rejected_at = np.zeros(k, dtype=np.int64)
        self.next_sample = 0
        self.events = 0

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
        self.events += 1

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
        self.admitted_at[j] = self.admitted
        self.rejected_at[j] = sum(self.reasons.values())
        for node, free in s.by_node.items():
            self.node_stranded[j, self.index[node]] = free
        self.next_sample += 1

    def result(self, config: SimConfig, valid: tuple[bool, str | None]) -> ConfigResult:
        n = max(self.events, 1)
        w = self.workload
        k = self.next_sample  # a failed restart ends the run before the later samples
        taken = self.sample_at[:k]
        stranded_total = self.node_stranded[:k].sum(axis=1)
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
            mean_stranded_bytes=round(float(stranded_total.mean())) if k else 0,
            final_state_valid=valid[0],
            final_state_error=valid[1],
            series=Series(
                event=taken.copy(),
                time=w.time[taken],
                reserved_fraction=self.fraction[:k],
                stranded_bytes=stranded_total,
                probe_fits=self.fits[:k],
                node_reserved_fraction=self.node_fraction[:k],
                node_stranded_bytes=self.node_stranded[:k],
                admitted=self.admitted_at[:k],
                rejected=self.rejected_at[:k],
                moves=np.zeros(k, dtype=np.int64),
            ),
            events_applied=self.events,
        )


def _tier(kind: str) -> str:
    return kind if kind in TIERS else "unknown"


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


def run_config_reference(
    workload: Workload,
    config: SimConfig,
    *,
    probe: Pod,
    sample_at: npt.NDArray[np.int64],
    scenario: Mapping[str, Any] | None = None,
) -> ConfigResult:
    """One configuration's results through the public API only, event by event: slow, and
    the reference the engine's core is tested against. ``scenario``: the raw scenario a
    scenario workload was made from."""
    mm = open_manager(config, workload.machine, workload.reserved_memory)
    observer = _Observer(mm, workload, sample_at, probe)
    if scenario is None:
        replay_events(mm, workload, observer)
        failed = None
    else:
        failed = replay_scenario_ops(mm, scenario, observer, workload.batch)
    result = observer.result(config, _final_state_valid(mm, config, workload))
    result.restart_error = failed
    return result
