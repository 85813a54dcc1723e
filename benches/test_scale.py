"""Admission latency as machines grow, from Python, with pods already placed.

The scenarios (:mod:`pymm._bench.suite`, shared with ``pymm bench``): ``scale_machine(n)`` nodes
of 64Gi with 2Mi and 1Gi pools, the reference benchmark's four pods plus one per four nodes
from 16 up, one admission released again after each timing. Up to 16 nodes with the kubelet's
exact enumeration (``max-allowable-numa-nodes`` raised to 16); the GB200-like tray (34 nodes),
64 and 128 nodes with ``search="auto"``, which is bounded above 8 nodes. Also the DESIGN target
case, hint generation alone, and a 100,000-cycle admit+remove replay.

Targets (not asserted here, since CI machines vary; ``pymm bench`` reports them): <= 10 µs for
the DESIGN target, <= 1 ms at 16 nodes exact, <= 100 µs at 34 and 64 nodes bounded, <= 2 s for
the replay.
"""

from __future__ import annotations

from typing import Any

import pytest

from pymm import MemoryManager, compile_pod
from pymm._bench.suite import (
    DESIGN_TARGET_SHAPE,
    SHAPES,
    check_placed_admission,
    design_target_manager,
    gb200_like,
    guaranteed,
    placed_manager,
    replay_throughput,
)

# Rounds per timing; each round is a few µs, so this stays quick even at 128 nodes.
ROUNDS = 1000
# The replay's length: the target's 100,000 cycles when timing; with --benchmark-disable (CI)
# the point is correctness, and 2,000 cycles exercise every pod shape many times over.
REPLAY_OPS = 100_000
SMOKE_REPLAY_OPS = 2_000


def _scaled_manager(n: int) -> tuple[MemoryManager, str]:
    if n == 34:
        return placed_manager(gb200_like(32), search="auto"), "auto (bounded)"
    if n <= 16:
        return placed_manager(n, search="exact"), "exact"
    return placed_manager(n, search="auto"), "auto (bounded)"


def _time_admission(benchmark: Any, mm: MemoryManager, resources: dict[str, str]) -> None:
    pod = compile_pod(guaranteed("bench", resources))
    # Correctness first: placed where the kubelet would place it, and released exactly.
    check_placed_admission(mm, pod, resources)

    def admit() -> None:
        mm.admit(pod)

    def release() -> None:
        # pytest-benchmark runs the setup before the first round too, before any admission.
        mm.remove("bench", missing_ok=True)

    benchmark.pedantic(admit, setup=release, rounds=ROUNDS, warmup_rounds=5)
    assert mm.numa_nodes("bench", "c") is not None


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("n", [2, 4, 8, 16, 34, 64, 128])
def test_scaled_admission(benchmark: Any, n: int, shape: str) -> None:
    mm, mode = _scaled_manager(n)
    assert len(mm.machine.nodes) == n
    benchmark.group = f"scaled admission, {shape}"
    benchmark.extra_info.update(numa_nodes=n, shape=shape, mode=mode)
    _time_admission(benchmark, mm, SHAPES[shape])


def test_design_target(benchmark: Any) -> None:
    """Guaranteed container memory + hugepages-1Gi, 8 NUMA nodes, single-numa-node, 16
    containers already placed (target <= 10 µs)."""
    mm = design_target_manager()
    assert sum(len(p) for p in mm.state["entries"].values()) == 16
    benchmark.group = "DESIGN target"
    benchmark.extra_info.update(numa_nodes=8, shape="memory+hugepages-1Gi", mode="exact")
    _time_admission(benchmark, mm, DESIGN_TARGET_SHAPE)


@pytest.mark.parametrize("n", [8, 16])
def test_hint_generation(benchmark: Any, n: int) -> None:
    """``mm.hints`` lists every candidate node set; at 16 nodes that is thousands of dicts,
    and building them in Python costs far more than finding them. Compare with
    ``test_admission_without_trace``: admission computes the preferred hints only."""
    mm = placed_manager(n, search="exact")
    pod = compile_pod(guaranteed("bench", SHAPES["memory+hugepages"]))
    hints = mm.hints(pod, "c")
    assert hints is not None and set(hints) == {"memory", "hugepages-2Mi"}
    assert len(hints["memory"]) == len(hints["hugepages-2Mi"])
    preferred = [h["affinity"] for h in hints["memory"] if h["preferred"]]
    # Preferred hints are the single nodes outside the groups of the pods too big for one
    # node (100Gi, 80Gi).
    groups = mm.groups()
    assert preferred == [[i] for i in range(n) if len(groups[i]) == 1]
    benchmark.group = "hints vs admission"
    benchmark.extra_info.update(numa_nodes=n, hints=len(hints["memory"]))
    benchmark.pedantic(mm.hints, args=(pod, "c"), rounds=200 if n == 8 else 20, warmup_rounds=1)


@pytest.mark.parametrize("n", [8, 16])
def test_admission_without_trace(benchmark: Any, n: int) -> None:
    """The same manager and pod as ``test_hint_generation``, admitted with ``trace=False``:
    the engine picks the hint itself and returns only the verdict."""
    mm = placed_manager(n, search="exact")
    resources = SHAPES["memory+hugepages"]
    pod = compile_pod(guaranteed("bench", resources))
    check_placed_admission(mm, pod, resources)

    def admit() -> None:
        mm.admit(pod, trace=False)

    def release() -> None:
        # pytest-benchmark runs the setup before the first round too, before any admission.
        mm.remove("bench", missing_ok=True)

    benchmark.group = "hints vs admission"
    benchmark.extra_info.update(numa_nodes=n)
    benchmark.pedantic(admit, setup=release, rounds=ROUNDS, warmup_rounds=5)


def test_replay_throughput(benchmark: Any) -> None:
    # replay_throughput asserts every admission succeeded and the state came back; a short
    # run first so a wrong engine fails before anything is timed.
    assert replay_throughput(200) > 0
    ops = SMOKE_REPLAY_OPS if benchmark.disabled else REPLAY_OPS
    loops: list[float] = []

    def replay() -> None:
        loops.append(replay_throughput(ops, 8))

    benchmark.group = "replay"
    benchmark.pedantic(replay, rounds=3, iterations=1)
    # The timed call includes building the manager (well under a millisecond); the loop alone:
    benchmark.extra_info.update(numa_nodes=8, cycles=ops, loop_seconds=min(loops))
