"""Benchmark scenarios shared by ``benches/`` (pytest-benchmark) and ``pymm bench``.

Every builder returns a manager in a known state and every timing helper checks its results
before it reports a number: a fast wrong answer is not a benchmark result.

The admission scenarios follow the kubelet's reference benchmark (64Gi nodes with 2048 x 2Mi
pages, 1Gi reserved per node, best-effort, container scope, four pods already placed, one
admission released again after each timing), scaled up to large machines with more placed pods
and to a GB200-like tray.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from pymm import _engine
from pymm.machine import HugePages, Machine, NumaNode
from pymm.manager import MemoryManager, compile_pod
from pymm.pod import Container, Pod

__all__ = [
    "KUBELET_PUBLISHED_US",
    "SHAPES",
    "Case",
    "Row",
    "admit_timings_ns",
    "check_placed_admission",
    "design_target_manager",
    "expected_nodes",
    "gb200_like",
    "group_totals",
    "guaranteed",
    "placed_manager",
    "replay_throughput",
    "run_suite",
    "scale_machine",
    "suite_cases",
]

_GIB = 1 << 30

#: The one-container Guaranteed pods that are admitted (and released) while timing.
SHAPES: dict[str, dict[str, str]] = {
    "memory": {"memory": "1Gi"},
    "memory+hugepages": {"memory": "1Gi", "hugepages-2Mi": "64Mi"},
}

#: The kubelet's own published results for the reference benchmark (µs per admission), by
#: shape and NUMA node count; the plot shows them next to ours.
KUBELET_PUBLISHED_US: dict[str, dict[int, float]] = {
    "memory": {8: 340.0, 16: 104_000.0},
    "memory+hugepages": {8: 710.0, 16: 13_400_000.0},
}

# The reference benchmark's four pods; every scaled scenario starts from them.
_REFERENCE_PODS: tuple[dict[str, str], ...] = (
    {"memory": "100Gi"},
    {"memory": "2Gi"},
    {"memory": "2Gi", "hugepages-2Mi": "64Mi"},
    {"memory": "2Gi"},
)
# Extra pods on large machines (one per four nodes), cycling through these sizes: the 80Gi one
# does not fit a 64Gi node, so large machines also get more multi-node groups to respect.
_EXTRA_POD_SIZES = ("8Gi", "24Gi", "80Gi")


def guaranteed(uid: str, resources: Mapping[str, str], containers: int = 1) -> Pod:
    """A Guaranteed pod of ``containers`` containers (``c``, ``c1``, ...) with 1 CPU and
    ``resources`` each, requests equal to limits."""
    limits = {"cpu": "1", **resources}
    names = ["c"] + [f"c{i}" for i in range(1, containers)]
    return Pod.of(uid, *(Container(n, requests=limits, limits=limits) for n in names))


# -- machines ---------------------------------------------------------------------------------


def scale_machine(n: int) -> Machine:
    """``n`` identical nodes of 64Gi with 2048 x 2Mi and 4 x 1Gi hugepages, two sockets.

    Distances are two-level as on a two-socket server: 10 to itself, 12 inside its socket
    (first half / second half of the ids), 32 across.
    """
    if not 1 <= n <= 128:
        raise ValueError(f"scale_machine: 1..128 nodes, got {n}")
    pools = (HugePages(2048, 2048), HugePages(1 << 20, 4))
    nodes = tuple(NumaNode(i, 64 * _GIB, cpus=8, kind="DRAM", hugepages=pools) for i in range(n))
    half = max(1, n // 2)

    def distance(i: int, j: int) -> int:
        if i == j:
            return 10
        return 12 if i // half == j // half else 32

    dist = tuple(tuple(distance(i, j) for j in range(n)) for i in range(n))
    return Machine(f"scale-{n}", nodes, dist, description=f"{n} x 64Gi nodes, two sockets")


def gb200_like(n_gpu: int = 32) -> Machine:
    """:meth:`Machine.gb200_like` (kept here for the benchmark scenarios' names)."""
    return Machine.gb200_like(n_gpu)


# -- managers ---------------------------------------------------------------------------------


def placed_manager(
    machine: Machine | int,
    *,
    policy: str = "best-effort",
    search: str = "auto",
    max_allowable: int | None = None,
) -> MemoryManager:
    """A manager on ``machine`` (or ``scale_machine(n)``) with 1Gi reserved per node and the
    reference benchmark's four pods placed, plus one pod per four nodes from 16 nodes up.

    ``search="exact"`` raises ``max-allowable-numa-nodes`` to the node count (the kubelet's
    own benchmark does the same for 16 nodes); otherwise ``max_allowable`` or the default 8.
    """
    m = scale_machine(machine) if isinstance(machine, int) else machine
    n = len(m.nodes)
    limit = max_allowable or (max(8, n) if search == "exact" else None)
    mm = MemoryManager(
        m,
        reserved_memory=m.reserve_per_node("1Gi"),
        topology_policy=policy,
        scope="container",
        policy_options={"max-allowable-numa-nodes": str(limit)} if limit else None,
        search=search,
    )
    placed = list(_REFERENCE_PODS)
    if n >= 16:
        placed += [{"memory": _EXTRA_POD_SIZES[i % 3]} for i in range(n // 4)]
    for i, res in enumerate(placed):
        a = mm.admit(guaranteed(f"placed-{i}", res))
        if not a.admitted:
            raise AssertionError(f"placing pod {i} ({res}) on {m.name}: {a.reason}: {a.message}")
    return mm


#: The DESIGN target: a container with memory + hugepages-1Gi on 8 nodes under
#: single-numa-node, with 16 containers (4 pods of 4) already placed.
DESIGN_TARGET_SHAPE: dict[str, str] = {"memory": "1Gi", "hugepages-1Gi": "1Gi"}


def design_target_manager() -> MemoryManager:
    """8 ``scale_machine`` nodes, single-numa-node, 16 containers of 2Gi + 1Gi hugepages-1Gi
    placed (half of the 1Gi pages in use)."""
    m = scale_machine(8)
    mm = MemoryManager(
        m,
        reserved_memory=m.reserve_per_node("1Gi"),
        topology_policy="single-numa-node",
        scope="container",
        search="exact",
    )
    for i in range(4):
        pod = guaranteed(f"placed-{i}", {"memory": "2Gi", "hugepages-1Gi": "1Gi"}, containers=4)
        a = mm.admit(pod)
        if not a.admitted:
            raise AssertionError(f"placing pod {i}: {a.reason}: {a.message}")
    return mm


# -- correctness checks -----------------------------------------------------------------------


def group_totals(mm: MemoryManager) -> dict[tuple[tuple[int, ...], str], tuple[int, int]]:
    """Reserved and free bytes per (group, resource): what a release must restore exactly
    (inside a group the kubelet's greedy fill and release may move bytes between nodes)."""
    groups = mm.groups()
    out: dict[tuple[tuple[int, ...], str], tuple[int, int]] = {}
    for u in mm.usage():
        key = (groups[u.node], u.resource)
        r, f = out.get(key, (0, 0))
        out[key] = (r + u.reserved, f + u.free)
    return out


def expected_nodes(mm: MemoryManager, resources: Mapping[str, str]) -> tuple[int, ...]:
    """Where the kubelet puts a small container (one that fits on any single node's
    allocatable) under best-effort or single-numa-node without prefer-closest: the narrowest
    node set with enough free memory of every requested kind, lowest node mask first, where a
    set is a single ungrouped node or a whole existing group.

    An independent statement of the kubelet's rule, so the benchmarks check the engine's
    answer rather than repeat it.
    """
    want = {
        k: int(_engine.parse_quantity(v))
        for k, v in resources.items()
        if k == "memory" or k.startswith("hugepages-")
    }
    free: dict[tuple[int, str], int] = {(u.node, u.resource): u.free for u in mm.usage()}
    candidates = set(mm.groups().values())
    fits = [
        g
        for g in candidates
        if all(sum(free.get((n, r), 0) for n in g) >= size for r, size in want.items())
    ]
    if not fits:
        raise AssertionError(f"no node set fits {dict(resources)}")
    return min(fits, key=lambda g: (len(g), sum(1 << n for n in g)))


def check_placed_admission(
    mm: MemoryManager, pod: _engine.Pod, resources: Mapping[str, str], container: str = "c"
) -> tuple[int, ...]:
    """Admits ``pod``, checks it landed on :func:`expected_nodes`, releases it and checks that
    every group's totals are back; returns the nodes."""
    want = expected_nodes(mm, resources)
    before = group_totals(mm)
    a = mm.admit(pod)
    if not a.admitted:
        raise AssertionError(f"{pod.uid} rejected: {a.reason}: {a.message}")
    got = a[container].numa_nodes
    if got != want:
        raise AssertionError(f"{pod.uid} placed on {got}, expected {want}")
    mm.remove(pod.uid)
    if group_totals(mm) != before:
        raise AssertionError(f"releasing {pod.uid} did not restore the group totals")
    return want


# -- timing -----------------------------------------------------------------------------------


def admit_timings_ns(
    mm: MemoryManager, pod: _engine.Pod, rounds: int, warmup: int = 5
) -> list[int]:
    """Nanoseconds of ``rounds`` admissions of ``pod``, each released again (untimed)."""
    uid = pod.uid
    admit, remove, clock = mm.admit, mm.remove, time.perf_counter_ns
    for _ in range(warmup):
        admit(pod)
        remove(uid)
    out: list[int] = []
    for _ in range(rounds):
        t0 = clock()
        admit(pod)
        t1 = clock()
        remove(uid)
        out.append(t1 - t0)
    return out


def _call_timings_ns(fn: Callable[[], object], rounds: int, warmup: int = 1) -> list[int]:
    clock = time.perf_counter_ns
    for _ in range(warmup):
        fn()
    out: list[int] = []
    for _ in range(rounds):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


# The replay's pods: a mix of shapes, so the state moves between nodes and kinds of memory.
_REPLAY_SHAPES: tuple[dict[str, str], ...] = (
    {"memory": "1Gi"},
    {"memory": "2Gi", "hugepages-2Mi": "64Mi"},
    {"memory": "4Gi"},
    {"memory": "512Mi"},
    {"memory": "1Gi", "hugepages-1Gi": "1Gi"},
    {"memory": "3Gi"},
    {"memory": "256Mi", "hugepages-2Mi": "128Mi"},
    {"memory": "2Gi"},
)
_REPLAY_POOL = 32  # distinct precompiled pods
_REPLAY_LIVE = 16  # pods alive at any time; fewer than the pool, so a uid is free when reused


def replay_throughput(n_ops: int = 100_000, nodes: int = 8) -> float:
    """Seconds for ``n_ops`` admissions and as many removals of precompiled pods on
    ``placed_manager(nodes)``, with 16 pods alive at any time (admit one, remove the oldest).

    Raises AssertionError unless every admission succeeded and the state (the state file's
    machine state) is back to where it started once all are removed.
    """
    if n_ops < 1:
        raise ValueError("replay_throughput: n_ops must be positive")
    mm = placed_manager(nodes)
    start = mm.state["machineState"]
    pods = [
        compile_pod(guaranteed(f"replay-{i}", _REPLAY_SHAPES[i % len(_REPLAY_SHAPES)]))
        for i in range(_REPLAY_POOL)
    ]
    uids = [p.uid for p in pods]
    admit, remove = mm.admit, mm.remove
    admitted = 0
    t0 = time.perf_counter()
    for i in range(n_ops):
        # Admission.__bool__ is the verdict; counting keeps the check inside the timed loop
        # as cheap as the caller's own would be.
        admitted += bool(admit(pods[i % _REPLAY_POOL]))
        if i >= _REPLAY_LIVE:
            remove(uids[(i - _REPLAY_LIVE) % _REPLAY_POOL])
    for i in range(max(0, n_ops - _REPLAY_LIVE), n_ops):
        remove(uids[i % _REPLAY_POOL])
    elapsed = time.perf_counter() - t0
    if admitted != n_ops:
        raise AssertionError(f"replay: {n_ops - admitted} of {n_ops} admissions rejected")
    if mm.state["machineState"] != start:
        raise AssertionError("replay: the machine state differs from the start after all removals")
    if any(uid.startswith("replay-") for uid in mm.state.get("entries", {})):
        raise AssertionError("replay: assignments left behind after all removals")
    return elapsed


# -- suite ------------------------------------------------------------------------------------


class Row(TypedDict):
    case: str
    nodes: int
    shape: str
    mode: str
    median_us: float
    p90_us: float
    rounds: int
    total_s: NotRequired[float]


@dataclass(frozen=True)
class Case:
    """One suite entry: ``measure(quick)`` checks the result and returns per-round ns."""

    case: str
    nodes: int
    shape: str
    mode: str
    measure: Callable[[bool], tuple[list[int], dict[str, Any]]]


def _admission_case(
    case: str,
    nodes: int,
    shape: str,
    mode: str,
    build: Callable[[], MemoryManager],
    resources: Mapping[str, str],
    rounds: tuple[int, int],
) -> Case:
    def measure(quick: bool) -> tuple[list[int], dict[str, Any]]:
        mm = build()
        pod = compile_pod(guaranteed("bench", resources))
        check_placed_admission(mm, pod, resources)
        return admit_timings_ns(mm, pod, rounds[0] if quick else rounds[1]), {}

    return Case(case, nodes, shape, mode, measure)


def _hints_case(nodes: int, rounds: tuple[int, int]) -> Case:
    def measure(quick: bool) -> tuple[list[int], dict[str, Any]]:
        mm = placed_manager(nodes, search="exact")
        pod = compile_pod(guaranteed("bench", SHAPES["memory+hugepages"]))
        hints = mm.hints(pod, "c")
        # The kubelet lists a hint per node set that could hold the container, except sets
        # that cut an existing group or that widen a node already holding single-node
        # memory: both kinds come in one list per requested resource.
        if not hints or len(hints["memory"]) != len(hints["hugepages-2Mi"]):
            raise AssertionError(f"hints at {nodes} nodes: {hints and list(hints)}")
        if not any(h["preferred"] for h in hints["memory"]):
            raise AssertionError(f"no preferred hint at {nodes} nodes")
        ns = _call_timings_ns(lambda: mm.hints(pod, "c"), rounds[0] if quick else rounds[1])
        return ns, {"hints": len(hints["memory"])}

    return Case("hints() as Python lists", nodes, "memory+hugepages", "exact", measure)


def suite_cases() -> list[Case]:
    """The cases :func:`run_suite` times, in order (replay is added by the runner)."""
    cases: list[Case] = []
    full = 20_000
    for n in (2, 4, 8, 16, 34, 64, 128):
        for shape, res in SHAPES.items():
            if n == 34:

                def build(n: int = n) -> MemoryManager:
                    return placed_manager(gb200_like(n - 2), search="auto")

                name, mode = "admit GB200-like", "auto (bounded)"
            elif n <= 16:

                def build(n: int = n) -> MemoryManager:
                    return placed_manager(n, search="exact")

                name, mode = "admit", "exact"
            else:

                def build(n: int = n) -> MemoryManager:
                    return placed_manager(n, search="auto")

                name, mode = "admit", "auto (bounded)"
            cases.append(_admission_case(name, n, shape, mode, build, res, (300, full)))
    cases.append(
        _admission_case(
            "DESIGN target, 16 placed",
            8,
            "memory+hugepages-1Gi",
            "exact, single-numa-node",
            design_target_manager,
            DESIGN_TARGET_SHAPE,
            (300, full),
        )
    )
    cases.append(_hints_case(8, (50, 2000)))
    cases.append(_hints_case(16, (3, 40)))
    return cases


def _percentile(sorted_ns: Sequence[int], q: float) -> float:
    idx = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[idx] / 1000.0


def _row(case: Case, ns: list[int]) -> Row:
    ordered = sorted(ns)
    return Row(
        case=case.case,
        nodes=case.nodes,
        shape=case.shape,
        mode=case.mode,
        median_us=statistics.median(ordered) / 1000.0,
        p90_us=_percentile(ordered, 0.9),
        rounds=len(ns),
    )


def run_suite(
    quick: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    replay_ops: int | None = None,
) -> list[Row]:
    """Times every case of :func:`suite_cases` and the replay; ``progress(done, total, case)``
    is called before each case and once at the end. Quick mode (a few seconds) runs fewer
    rounds and a 2,000-operation replay; full mode takes well under a minute on two cores."""
    cases = suite_cases()
    ops = replay_ops or (2_000 if quick else 100_000)
    replay_runs = 1 if quick else 3
    total = len(cases) + 1
    rows: list[Row] = []
    report = progress or (lambda done, total, case: None)
    report(0, total, "warming up")
    # Untimed: otherwise the first case pays for cold caches and a CPU still clocking up,
    # and 2 nodes looks slower than 8.
    replay_throughput(5_000 if not quick else 500, 8)
    for i, case in enumerate(cases):
        report(i, total, case.case)
        ns, _ = case.measure(quick)
        rows.append(_row(case, ns))
    name = f"replay {ops:,} (per cycle)"
    report(len(cases), total, name)
    seconds = sorted(replay_throughput(ops, 8) for _ in range(replay_runs))
    per_cycle = [round(s / ops * 1e9) for s in seconds]
    row = _row(Case(name, 8, "mixed", "auto", lambda q: ([], {})), per_cycle)
    row["total_s"] = statistics.median(seconds)
    rows.append(row)
    report(total, total, "done")
    return rows
