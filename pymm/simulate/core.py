"""Running a simulation: each configuration's replay in the engine's simulation core
(``engine/src/simulate.rs``, a ``Simulation`` per configuration, every event one lifecycle
operation, the configurations on threads of their own), and the results it reports. What
each metric means is written on :class:`ConfigResult`; an independent reference driver
through the public API (``tests/simulate_reference.py``) checks the core event for event.

With a defragmentation policy (``defrag=K``) the core pauses at each rejected admission of a
pinned pod; :func:`pymm.defrag.defrag_plan` plans on a copy of the simulated manager, and a
plan that moves at most K pods is applied (all or nothing) before the run goes on. On a
static batch (:attr:`Workload.batch`) the best placement of the same batch under the same
rules (:func:`pymm.plan.plan`) is reported beside each configuration.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pymm import _engine
from pymm.errors import ConfigError, SolverTimeLimitError
from pymm.pod import Pod, probe_pod
from pymm.simulate.configs import Defrag, SimConfig, open_manager, parse_configs
from pymm.simulate.workloads import Workload

__all__ = [
    "PROBE_CAP",
    "ConfigResult",
    "Optimum",
    "Series",
    "SimulationResult",
    "probe_pod",
    "run",
    "run_config",
    "sample_points",
]

#: At most this many probe pods are admitted when measuring stranded memory.
PROBE_CAP = 100_000
_MEMORY_PREFIX = "hugepages-"


def _is_memory(resource: str) -> bool:
    return resource == "memory" or resource.startswith(_MEMORY_PREFIX)


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
    #: Admissions, rejections and defragmentation moves so far, at each sample point.
    admitted: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rejected: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    moves: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class Optimum:
    """The best placement of a static batch under a configuration's rules
    (:func:`pymm.plan.plan`): ``admitted`` pods by the best plan found, at most ``bound``
    (proven), ``optimal`` when the two are equal."""

    admitted: int
    bound: int
    optimal: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "admitted": self.admitted,
            "bound": self.bound,
            "optimal": self.optimal,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ConfigResult:
    """One configuration's results. Every event is one lifecycle operation (admit, stop a
    container, stop a pod, restart), applied as every driver applies it. ``admitted`` /
    ``rejected``: admissions and their verdicts (by reason and by message). ``cross_numa``:
    admitted containers whose memory spans several NUMA nodes, as the admission placed them;
    ``mean_numa_distance`` their mean distance between distinct node pairs. Reserved
    fractions are sampled after every event; stranded memory and probe fits at the sample
    points. A restart that fails ends the run there (``restart_error``; ``events_applied``
    counts the events before it), as a kubelet that does not start runs nothing after it.
    ``final_state_valid``: a manager with the same configuration restores the final state.
    With a defragmentation policy, ``defragmented`` rejections became admissions (counted in
    ``admitted``, not in ``rejected``) by plans that moved ``moves`` running pods and evicted
    ``evictions``. On a static batch, ``optimum`` is what batch placement reaches."""

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
    events_applied: int = 0
    restart_error: str | None = None
    defragmented: int = 0
    moves: int = 0
    evictions: int = 0
    optimum: Optimum | None = None

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
            "eventsApplied": self.events_applied,
            "restartError": self.restart_error,
            "defragmented": self.defragmented,
            "moves": self.moves,
            "evictions": self.evictions,
            "optimum": None if self.optimum is None else self.optimum.to_dict(),
            "series": {
                "event": s.event.tolist(),
                "time": s.time.tolist(),
                "reservedFraction": s.reserved_fraction.tolist(),
                "strandedBytes": s.stranded_bytes.tolist(),
                "probeFits": s.probe_fits.tolist(),
                "admitted": s.admitted.tolist(),
                "rejected": s.rejected.tolist(),
                "moves": s.moves.tolist(),
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
    configs: list[ConfigResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document. Its top level is exactly machine, events and configs, so
        what applies to the whole run (the probe) is repeated in each config."""
        run_wide = {"probe": dict(self.probe)}
        return {
            "machine": self.machine,
            "events": self.events,
            "configs": [{**c.to_dict(self.node_ids), **run_wide} for c in self.configs],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# -- running ----------------------------------------------------------------------------------


def sample_points(events: int, samples: int) -> npt.NDArray[np.int64]:
    """``min(samples, events)`` event indices, evenly spaced, the last one the last event."""
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {samples}")
    k = min(samples, events)
    return (np.arange(1, k + 1, dtype=np.int64) * events) // k - 1


def _engine_config(config: SimConfig, workload: Workload) -> dict[str, Any]:
    with open_manager(config, workload.machine, workload.reserved_memory) as mm:
        return mm.config


def _simulation(
    workload: Workload,
    engine_config: Mapping[str, Any],
    probe: Pod,
    sample_at: npt.NDArray[np.int64],
) -> _engine.Simulation:
    return _engine.Simulation(
        workload.machine.to_dict(),
        engine_config,
        [s.compiled for s in workload.shapes],
        workload.op.astype("<u1").tobytes(),
        workload.pod.astype("<i8").tobytes(),
        workload.shape.astype("<i4").tobytes(),
        probe.compiled,
        [int(i) for i in sample_at],
        PROBE_CAP,
        workload.scenario,
        workload.batch,
    )


def _defrag_steps(
    sim: _engine.Simulation, policy: Defrag, node_ids: Sequence[int]
) -> list[_engine.Op] | None:
    """The steps of a plan that makes the pending pod fit by moving at most
    ``policy.max_moves`` pods, or None (no such plan, or none found in time)."""
    from pymm.defrag import defrag_plan, operations

    pending = sim.pending()
    if pending is None:
        return None
    pod, hints = pending
    try:
        plan = defrag_plan(
            sim.engine(),
            node_ids,
            pod,
            hints=hints,
            time_limit=policy.time_limit,
            max_moves=policy.max_moves,
            evict=policy.evict,
        )
    except SolverTimeLimitError:
        return None  # past the time limit without any plan: the rejection stands
    if not plan.fits or not plan.moves:
        return None
    return operations(plan)


def run_config(
    workload: Workload,
    config: SimConfig,
    *,
    probe: Pod,
    sample_at: npt.NDArray[np.int64],
    tick: Callable[[int], None] | None = None,
) -> ConfigResult:
    """One configuration's results, from the engine's simulation core."""
    sim = _simulation(workload, _engine_config(config, workload), probe, sample_at)
    policy = config.defrag
    if policy is None:
        sim.run(False, tick)
    else:
        node_ids = workload.machine.node_ids
        while sim.run(True, tick) is not None:
            sim.settle(_defrag_steps(sim, policy, node_ids), tick)
    raw = sim.finish()
    n = max(raw["events"], 1)
    samples = raw["samples"]
    taken = sample_at[: len(samples)]
    node_ids = workload.machine.node_ids
    stranded = np.array([sum(s["nodeStranded"]) for s in samples], dtype=np.int64)
    distances = workload.machine.distances is not None and raw["crossNuma"] > 0

    def by_count(pairs: list[tuple[str, int]]) -> dict[str, int]:
        # Most frequent first; ties in order of first occurrence, as Counter.most_common.
        return dict(sorted(pairs, key=lambda kv: kv[1], reverse=True))

    reasons = by_count(raw["rejectedByReason"])
    return ConfigResult(
        label=config.label,
        options=dict(config.options),
        admitted=raw["admitted"],
        rejected=sum(reasons.values()),
        rejected_by_reason=reasons,
        rejected_by_message=by_count(raw["rejectedByMessage"]),
        cross_numa=raw["crossNuma"],
        mean_numa_distance=raw["distanceSum"] / raw["crossNuma"] if distances else None,
        mean_reserved_fraction=raw["fractionSum"] / n,
        peak_reserved_fraction=raw["peakFraction"],
        reserved_by_tier={t: v / n for t, v in raw["tierSum"].items()},
        mean_stranded_bytes=round(float(stranded.mean())) if samples else 0,
        final_state_valid=raw["finalError"] is None,
        final_state_error=raw["finalError"],
        events_applied=raw["events"],
        restart_error=raw["restartError"],
        defragmented=raw["defragmented"],
        moves=raw["moves"],
        evictions=raw["evictions"],
        series=Series(
            event=taken.copy(),
            time=workload.time[taken],
            reserved_fraction=np.array([s["reservedFraction"] for s in samples]),
            stranded_bytes=stranded,
            probe_fits=np.array([s["fits"] for s in samples], dtype=np.int64),
            node_reserved_fraction=np.array([s["nodeReservedFraction"] for s in samples]).reshape(
                len(samples), len(node_ids)
            ),
            node_stranded_bytes=np.array(
                [s["nodeStranded"] for s in samples], dtype=np.int64
            ).reshape(len(samples), len(node_ids)),
            admitted=np.array([s["admitted"] for s in samples], dtype=np.int64),
            rejected=np.array([s["rejected"] for s in samples], dtype=np.int64),
            moves=np.array([s["moves"] for s in samples], dtype=np.int64),
        ),
    )


def batch_optimum(workload: Workload, config: SimConfig, time_limit: float) -> Optimum:
    """The best placement of a static batch's pods, in their order, under ``config``'s rules
    on an empty machine (:func:`pymm.plan.plan`)."""
    from pymm.plan import plan

    pods: list[_engine.Pod] = []
    hints: dict[str, Any] = {}
    if workload.scenario is not None:
        scenarios, index = workload.scenario
        for pod, fake in scenarios.admits(index):
            pods.append(pod)
            if fake is not None:
                hints[pod.uid] = fake
    else:
        specs = [s.to_dict() for s in workload.shapes]
        for i in np.flatnonzero(workload.op == 0):
            spec = specs[int(workload.shape[i])]
            pods.append(_engine.Pod({**spec, "uid": workload.uid(int(i))}))
    engine = _engine.Engine(workload.machine.to_dict(), _engine_config(config, workload))
    p = plan(engine, pods, hints=hints or None, time_limit=time_limit, compare=False)
    return Optimum(p.admitted, p.bound, p.optimal, p.seconds)


def _threads(configs: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(configs, cores))


def run(
    workload: Workload,
    configs: Sequence[SimConfig | str] | None = None,
    *,
    probe: str | Pod | None = None,
    samples: int = 200,
    progress: Callable[[int], None] | None = None,
    threads: int | None = None,
    time_limit: float = 10.0,
) -> SimulationResult:
    """Replays ``workload`` under each configuration (default: the default set).

    ``configs`` are :class:`SimConfig` or ``--config`` texts. ``progress(done)`` is told how
    many events (summed over configurations) have been replayed so far. Every configuration
    is opened before any event runs, so a bad one fails at once. The configurations run on
    ``threads`` threads at once (default: one per configuration, at most one per core; the
    engine releases the GIL while it replays). On a static batch each configuration's
    :class:`Optimum` is computed too, the solver given ``time_limit`` seconds for each.
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
    )
    if workload.batch and not (np.isfinite(time_limit) and time_limit > 0):
        raise ConfigError(f"--time-limit: expected seconds > 0, got {time_limit}")
    done = 0
    lock = threading.Lock()

    def tick(n: int) -> None:
        nonlocal done
        with lock:
            done += n
            if progress is not None:
                progress(done)

    def one(c: SimConfig) -> ConfigResult:
        r = run_config(workload, c, probe=probe_spec, sample_at=sample_at, tick=tick)
        if workload.batch:
            r.optimum = batch_optimum(workload, c, time_limit)
        return r

    workers = _threads(len(chosen)) if threads is None else max(1, threads)
    if workers == 1:
        result.configs.extend(one(c) for c in chosen)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            result.configs.extend(pool.map(one, chosen))
    return result
