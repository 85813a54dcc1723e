"""Workloads for ``pymm simulate``: event arrays over a few pod shapes.

A generated :class:`Workload` is a machine, a tuple of pod templates (*shapes*) and four equally
long numpy arrays, one entry per event: ``time`` (seconds, nondecreasing), ``op`` (0 admit, 1 stop
the pod), ``pod`` (the instance number) and ``shape`` (index into ``shapes``). Instance ``k`` of
shape ``s`` is the pod ``shapes[s]`` with uid ``f"{shapes[s].uid}-{k}"``. Arrays rather than pod
objects keep a million-event workload small and let a compiled simulation core read it without
Python objects.

Workloads come from a named mix (:func:`generate`, the mixes in :data:`MIXES`) or from a replay
scenario (:func:`from_scenario`): then the events are the scenario's own operations, decoded by
the engine and applied as replay applies them (its pods, uids and provider hints as written).

A *static batch* (``batch=True``) has no departures: a mix's arrivals all admitted one after
another (by default until they ask for :data:`BATCH_OVERLOAD` times the machine's memory), or
a scenario's admissions alone. The simulation then reports beside each configuration the best
placement of the same batch (:func:`pymm.plan.plan`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pymm import _engine
from pymm.errors import ConfigError, ScenarioError
from pymm.machine import Machine
from pymm.pod import Container, Pod

__all__ = [
    "ADMIT",
    "BATCH_OVERLOAD",
    "MIXES",
    "STOP_POD",
    "Arrivals",
    "Exponential",
    "Lognormal",
    "Mix",
    "PodKind",
    "Workload",
    "draw_arrivals",
    "from_scenario",
    "generate",
    "load_scenario",
    "machine_by_name",
    "offered_load",
]

ADMIT = 0
STOP_POD = 1
HOUR = 3600.0
_GIB = 1 << 30


# eq=False: field-wise == on numpy arrays has no single truth value.
@dataclass(frozen=True, eq=False)
class Workload:
    """Events to replay against a machine (see the module docstring for the arrays).

    ``reserved_memory`` is the reservation the workload comes with (a scenario's
    ``reservedMemory``); None means the simulator's default of 1Gi of memory per node.
    ``scenario`` is ``(scenarios, index)`` for a scenario's own operations: ``shapes`` and
    ``op``/``pod``/``shape`` are then empty and ``time`` counts the operations. ``batch``: a
    static batch (admissions only; of a scenario, only its admissions are replayed).
    """

    name: str
    machine: Machine
    shapes: tuple[Pod, ...]
    time: npt.NDArray[np.float64]
    op: npt.NDArray[np.uint8]
    pod: npt.NDArray[np.int64]
    shape: npt.NDArray[np.int32]
    description: str = ""
    reserved_memory: Sequence[Mapping[str, Any]] | None = None
    scenario: tuple[_engine.Scenarios, int] | None = None
    batch: bool = False

    def __post_init__(self) -> None:
        arrays = {
            "time": np.ascontiguousarray(self.time, dtype=np.float64),
            "op": np.ascontiguousarray(self.op, dtype=np.uint8),
            "pod": np.ascontiguousarray(self.pod, dtype=np.int64),
            "shape": np.ascontiguousarray(self.shape, dtype=np.int32),
        }
        for name, value in arrays.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "shapes", tuple(self.shapes))
        self._check()

    def __len__(self) -> int:
        return int(self.time.size)

    def uid(self, index: int) -> str:
        """The uid of the pod instance that event ``index`` admits or removes."""
        return f"{self.shapes[int(self.shape[index])].uid}-{int(self.pod[index])}"

    def instance(self, index: int) -> Pod:
        """The pod that event ``index`` admits."""
        return dataclasses.replace(self.shapes[int(self.shape[index])], uid=self.uid(index))

    def _check(self) -> None:
        if self.scenario is not None:
            if self.op.size or self.pod.size or self.shape.size or self.shapes:
                raise ScenarioError("a scenario's workload has no shapes or event arrays")
            return
        n = self.op.size
        if any(a.ndim != 1 or a.size != n for a in (self.time, self.pod, self.shape)):
            raise ScenarioError("workload arrays time, op, pod and shape must be 1-D and equal")
        if n and (np.any(np.diff(self.time) < 0) or not np.all(np.isfinite(self.time))):
            raise ScenarioError("workload times must be finite and nondecreasing")
        if np.any(self.op > STOP_POD):
            raise ScenarioError("workload op must be 0 (admit) or 1 (stop pod)")
        if self.batch and np.any(self.op != ADMIT):
            raise ScenarioError("a static batch only admits pods")
        if np.any((self.shape < 0) | (self.shape >= len(self.shapes))):
            raise ScenarioError(f"workload shape indices must be in 0..{len(self.shapes) - 1}")
        _check_removes(self.op, self.pod, self.shape)


def _check_removes(
    op: npt.NDArray[np.uint8], pod: npt.NDArray[np.int64], shape: npt.NDArray[np.int32]
) -> None:
    """Each instance is admitted at most once, and removed at most once after its admit."""
    admits = np.flatnonzero(op == ADMIT)
    removes = np.flatnonzero(op == STOP_POD)
    keys = pod[admits]
    if np.unique(keys).size != keys.size:
        raise ScenarioError("workload admits an instance number twice")
    if np.unique(pod[removes]).size != removes.size:
        raise ScenarioError("workload removes an instance number twice")
    order = np.argsort(keys, kind="stable")
    pos = np.searchsorted(keys[order], pod[removes])
    found = pos < keys.size
    found[found] = keys[order][pos[found]] == pod[removes][found]
    if not np.all(found):
        raise ScenarioError("workload removes an instance it never admits")
    admitted_at = admits[order][pos]
    if np.any(admitted_at > removes) or np.any(shape[admitted_at] != shape[removes]):
        raise ScenarioError("workload removes an instance before its admit, or with another shape")


# -- named mixes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lognormal:
    """Lifetime ``median * exp(sigma * Z)``, Z standard normal; mean ``median*exp(sigma²/2)``."""

    median_s: float
    sigma: float

    @property
    def mean_s(self) -> float:
        return self.median_s * float(np.exp(self.sigma**2 / 2))

    def __str__(self) -> str:
        return f"lognormal, median {_hours(self.median_s)}, sigma {self.sigma:g}"


@dataclass(frozen=True)
class Exponential:
    """Lifetime exponential with mean ``mean_s``."""

    mean_s: float

    def __str__(self) -> str:
        return f"exponential, mean {_hours(self.mean_s)}"


def _hours(seconds: float) -> str:
    return f"{seconds / HOUR:g} h" if seconds >= HOUR else f"{seconds / 60:g} min"


@dataclass(frozen=True)
class PodKind:
    """One kind of pod in a mix: a Guaranteed pod with one container of ``cpu`` CPUs.

    Its size is drawn uniformly from ``memory_gi`` (GiB of memory) and, independently, from each
    ``hugepages`` grid (page size -> GiB of hugepages of that size).
    """

    name: str
    weight: float
    memory_gi: tuple[int, ...]
    lifetime: Lognormal | Exponential
    cpu: int = 2
    hugepages: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def shapes(self) -> list[Pod]:
        """Every size this kind can take, memory grid first, then each hugepage grid."""
        grids: list[tuple[str, tuple[int, ...]]] = [("memory", self.memory_gi)]
        grids += [(f"hugepages-{size}", amounts) for size, amounts in self.hugepages.items()]
        out = []
        for combo in np.ndindex(*(len(g) for _, g in grids)):
            res = {name: grid[i] for (name, grid), i in zip(grids, combo, strict=True)}
            label = "-".join(f"{gi}Gi" for gi in res.values())
            hp = {k.removeprefix("hugepages-"): f"{v}Gi" for k, v in res.items() if k != "memory"}
            c = Container.of(
                self.name, cpu=str(self.cpu), memory=f"{res['memory']}Gi", hugepages=hp
            )
            out.append(Pod.of(f"{self.name}-{label}", c, name=self.name))
        return out

    def mean_bytes(self) -> float:
        """The mean memory plus hugepages of one pod of this kind."""
        return _GIB * (
            float(np.mean(self.memory_gi)) + sum(float(np.mean(g)) for g in self.hugepages.values())
        )


@dataclass(frozen=True)
class Mix:
    """A named workload mix: Poisson arrivals at ``rate_per_hour`` on ``machine``, each arrival
    of a kind drawn by weight. ``hugepages`` pools (page size -> pages per node) are added to
    every node with CPUs of whatever machine the mix runs on."""

    name: str
    description: str
    machine: str
    rate_per_hour: float
    kinds: tuple[PodKind, ...]
    hugepages: Mapping[str, int] = field(default_factory=dict)

    def shapes(self) -> tuple[tuple[Pod, ...], npt.NDArray[np.int64]]:
        """All shapes of all kinds, and the index of each kind's first shape."""
        shapes: list[Pod] = []
        first = []
        for kind in self.kinds:
            first.append(len(shapes))
            shapes += kind.shapes()
        return tuple(shapes), np.array(first, dtype=np.int64)

    def prepare(self, machine: Machine) -> Machine:
        if not self.hugepages:
            return machine
        return machine.with_hugepages(self.hugepages, nodes=[n.id for n in machine.nodes if n.cpus])


GB200_LIKE = "gb200-like"


def machine_by_name(name: str) -> Machine:
    """A catalog machine, a machine JSON file, or ``gb200-like`` (the modelled 34-node tray of
    :meth:`pymm.Machine.gb200_like`, for which no real topology is published)."""
    if name == GB200_LIKE:
        return Machine.gb200_like()
    return Machine.load(name)


# Shares, sizes and lifetimes are tuned (see the README) so that the kubelet's placement
# reserves 70-95 % of the machine and rejects some pods: below that, every setting admits
# everything and the comparison shows nothing.
MIXES: dict[str, Mix] = {
    m.name: m
    for m in (
        Mix(
            name="db-batch",
            description="long-lived databases (16-96Gi) beside short batch jobs (4-32Gi)",
            machine="xeon-8480-2s-snc4",
            rate_per_hour=7.0,
            kinds=(
                PodKind(
                    "db",
                    weight=0.1,
                    memory_gi=tuple(range(16, 97, 8)),
                    lifetime=Lognormal(median_s=12 * HOUR, sigma=0.8),
                    cpu=8,
                ),
                PodKind(
                    "batch",
                    weight=0.9,
                    memory_gi=tuple(range(4, 33, 4)),
                    lifetime=Exponential(mean_s=2 * HOUR),
                    cpu=2,
                ),
            ),
        ),
        Mix(
            name="dpdk-inference",
            description="DPDK packet processing (1Gi hugepages + 1-4Gi) beside inference "
            "servers (32-200Gi, the largest spanning two nodes)",
            machine="xeon-9242-2s",
            rate_per_hour=5.0,
            hugepages={"1Gi": 16},
            kinds=(
                PodKind(
                    "dpdk",
                    weight=1 / 3,
                    memory_gi=(1, 2, 4),
                    hugepages={"1Gi": (1, 2, 4)},
                    lifetime=Lognormal(median_s=12 * HOUR, sigma=0.8),
                    cpu=4,
                ),
                PodKind(
                    "inference",
                    weight=2 / 3,
                    memory_gi=(32, 48, 64, 96, 128, 200),
                    lifetime=Exponential(mean_s=3 * HOUR),
                    cpu=16,
                ),
            ),
        ),
        Mix(
            name="ai-training-gb200",
            description="training jobs holding the memory of 1-8 GPUs (180Gi each), data "
            "loaders with 2Mi hugepages and notebooks, on a GB200-like tray",
            machine=GB200_LIKE,
            rate_per_hour=6.0,
            kinds=(
                PodKind(
                    "trainer",
                    weight=0.25,
                    memory_gi=(180, 360, 720, 1440),
                    lifetime=Lognormal(median_s=6 * HOUR, sigma=1.0),
                    cpu=16,
                ),
                PodKind(
                    "loader",
                    weight=0.5,
                    memory_gi=(16, 32, 64),
                    hugepages={"2Mi": (1, 2, 4)},
                    lifetime=Exponential(mean_s=1 * HOUR),
                    cpu=8,
                ),
                PodKind(
                    "notebook",
                    weight=0.25,
                    memory_gi=(8, 16, 32),
                    lifetime=Exponential(mean_s=4 * HOUR),
                    cpu=4,
                ),
            ),
        ),
    )
}


def offered_load(mix: Mix) -> float:
    """Mean bytes held in steady state if every pod were admitted (Little's law:
    arrival rate x mean lifetime x mean size, summed over kinds)."""
    total = sum(k.weight for k in mix.kinds)
    rate_s = mix.rate_per_hour / HOUR
    return sum(rate_s * (k.weight / total) * k.lifetime.mean_s * k.mean_bytes() for k in mix.kinds)


@dataclass(frozen=True)
class Arrivals:
    """``n`` pod arrivals: time (s), lifetime (s), kind index and shape index."""

    time: npt.NDArray[np.float64]
    lifetime: npt.NDArray[np.float64]
    kind: npt.NDArray[np.int64]
    shape: npt.NDArray[np.int64]


def draw_arrivals(mix: Mix, n: int, rng: np.random.Generator) -> Arrivals:
    """The first ``n`` arrivals of a mix, drawn from ``rng`` in a fixed order."""
    weights = np.array([k.weight for k in mix.kinds], dtype=np.float64)
    gaps = rng.exponential(HOUR / mix.rate_per_hour, size=n)
    kind = rng.choice(len(mix.kinds), size=n, p=weights / weights.sum())
    # One uniform per arrival picks a size within its kind, so kinds need no separate streams.
    _, first = mix.shapes()
    counts = np.array([len(k.shapes()) for k in mix.kinds], dtype=np.int64)
    pick = np.minimum((rng.random(n) * counts[kind]).astype(np.int64), counts[kind] - 1)
    z = rng.standard_normal(n)
    e = rng.standard_exponential(n)
    lifetime = np.empty(n, dtype=np.float64)
    for i, k in enumerate(mix.kinds):
        sel = kind == i
        if isinstance(k.lifetime, Lognormal):
            lifetime[sel] = k.lifetime.median_s * np.exp(k.lifetime.sigma * z[sel])
        else:
            lifetime[sel] = k.lifetime.mean_s * e[sel]
    return Arrivals(np.cumsum(gaps), lifetime, kind, first[kind] + pick)


#: The most events a generated workload may have: about 2 GB of arrays while drawing them, and
#: minutes per configuration to simulate.
MAX_EVENTS = 10_000_000
#: A static batch of a mix, unless its size is given, draws arrivals until they ask for this
#: many times the machine's memory (so that not every pod can fit and placement matters).
BATCH_OVERLOAD = 1.3


def generate(
    name: str,
    events: int | None,
    seed: int = 0,
    machine: Machine | str | None = None,
    *,
    batch: bool = False,
) -> Workload:
    """``events`` events of the named mix: arrivals and departures merged in time order, cut
    after the ``events``-th (pods still running then are never removed). With ``batch``, a
    static batch: the first ``events`` arrivals and no departures (``events`` None: as many
    as ask for :data:`BATCH_OVERLOAD` times the machine's memory)."""
    mix = MIXES.get(name)
    if mix is None:
        raise ConfigError(f"unknown workload {name!r}{_did_you_mean(name, MIXES)}")
    base = machine if isinstance(machine, Machine) else machine_by_name(machine or mix.machine)
    if batch:
        return _batch(mix, events, seed, mix.prepare(base))
    if events is None:
        raise ConfigError("--events: how many events to generate")
    if events < 1:
        raise ConfigError(f"--events must be at least 1, got {events}")
    if events > MAX_EVENTS:
        # numpy would try to allocate the arrays and fail with a bare ValueError or MemoryError.
        raise ConfigError(f"--events must be at most {MAX_EVENTS:,}, got {events}")
    if seed < 0:
        raise ConfigError(f"--seed must be at least 0, got {seed}")
    # n arrivals always cover the first n events: an event of arrival j comes after the
    # admits of arrivals 0..j, so no later arrival can be among them.
    a = draw_arrivals(mix, events, np.random.default_rng(seed))
    time = np.concatenate([a.time, a.time + a.lifetime])
    op = np.concatenate([np.full(events, ADMIT), np.full(events, STOP_POD)])
    index = np.concatenate([np.arange(events), np.arange(events)])
    # Stable: at equal times an admit (first half) stays before its own remove.
    order = np.argsort(time, kind="stable")[:events]
    shapes, _ = mix.shapes()
    return Workload(
        name=mix.name,
        machine=mix.prepare(base),
        shapes=shapes,
        time=time[order],
        op=op[order],
        pod=index[order],
        shape=a.shape[index[order]],
        description=mix.description,
    )


def _batch(mix: Mix, events: int | None, seed: int, machine: Machine) -> Workload:
    if events is not None and not 1 <= events <= MAX_EVENTS:
        raise ConfigError(f"--events must be between 1 and {MAX_EVENTS:,}, got {events}")
    if seed < 0:
        raise ConfigError(f"--seed must be at least 0, got {seed}")
    shapes, _ = mix.shapes()
    if events is None:
        sizes = np.array([_pod_bytes(s) for s in shapes], dtype=np.float64)
        want = BATCH_OVERLOAD * sum(n.memory_bytes for n in machine.nodes)
        n = 64
        while True:
            a = draw_arrivals(mix, n, np.random.default_rng(seed))
            total = np.cumsum(sizes[a.shape])
            if total[-1] >= want or n >= MAX_EVENTS:
                count = min(n, int(np.searchsorted(total, want)) + 1)
                break
            n *= 2
    else:
        a = draw_arrivals(mix, events, np.random.default_rng(seed))
        count = events
    return Workload(
        name=mix.name,
        machine=machine,
        shapes=shapes,
        time=a.time[:count],
        op=np.full(count, ADMIT, dtype=np.uint8),
        pod=np.arange(count, dtype=np.int64),
        shape=a.shape[:count].astype(np.int32),
        description=f"a static batch of {mix.description}",
        batch=True,
    )


def _pod_bytes(pod: Pod) -> int:
    from pymm import parse_quantity

    return sum(
        int(parse_quantity(q))
        for c in pod.containers
        for r, q in c.requests.items()
        if r == "memory" or r.startswith("hugepages-")
    )


def _did_you_mean(name: str, known: Mapping[str, object] | Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.0)
    return f"; did you mean {close[0]!r}? (known: {', '.join(known)})" if close else ""


# -- scenarios ------------------------------------------------------------------------------


def load_scenario(path: str | Path, name: str | None = None, *, batch: bool = False) -> Workload:
    """The scenario called ``name`` in a replay scenario file (the only one if unnamed); with
    ``batch``, its admissions alone, as a static batch."""
    from pymm.replay import load_scenarios

    scenarios = load_scenarios(path)
    names = scenarios.names
    if name is None:
        if len(scenarios) != 1:
            raise ScenarioError(
                f"{path} holds {len(scenarios)} scenarios; pick one with --scenario-name "
                f"(e.g. {names[0]!r})"
                if len(scenarios)
                else f"{path} holds no scenario"
            )
        return from_scenario(scenarios, batch=batch)
    if name not in names:
        raise ScenarioError(f"{path}: no scenario {name!r}{_did_you_mean(name, names)}")
    return from_scenario(scenarios.select([names.index(name)]), batch=batch)


def from_scenario(
    scenario: Mapping[str, Any] | _engine.Scenarios, *, batch: bool = False
) -> Workload:
    """A replay scenario (one mapping, or a decoded :class:`pymm._engine.Scenarios` of one)
    as a workload: its machine, reservation and operations, each applied as replay applies
    it (``admit``, ``remove`` = stop the container, ``removePod`` = stop the pod,
    ``restart``), with its pods, uids and provider hints as written. The scenario's policy
    settings are not used: the configurations decide."""
    if isinstance(scenario, _engine.Scenarios):
        decoded = scenario
    elif isinstance(scenario, Mapping):
        decoded = _engine.Scenarios({"scenarios": [scenario]})
    else:
        raise ScenarioError("a scenario must be a mapping")
    if len(decoded) != 1:
        raise ScenarioError(f"expected one scenario, got {len(decoded)}")
    label = decoded.names[0]
    machine_spec, config = decoded.setup(0)
    machine = Machine.from_dict({**machine_spec, "name": label})
    steps = decoded.steps(0)
    if not any(kind == "admit" for kind in steps):
        raise ScenarioError(f"scenario {label!r} admits no pod: nothing to simulate")
    if batch:
        steps = [kind for kind in steps if kind == "admit"]
    return Workload(
        name=label,
        machine=machine,
        shapes=(),
        time=np.arange(len(steps), dtype=np.float64),
        op=np.zeros(0, dtype=np.uint8),
        pod=np.zeros(0, dtype=np.int64),
        shape=np.zeros(0, dtype=np.int32),
        description=decoded.descriptions[0],
        reserved_memory=config.get("reserved_memory") or [],
        scenario=(decoded, 0),
        batch=batch,
    )
