"""``pymm simulate`` at scale: 1,000,000 events of the ``db-batch`` mix on 8 NUMA nodes under
four configurations (target: 10 s), the engine's simulation loop against the same events
through the public Python API in the same run (target: at least 4x faster per event), and
pymm's placement options against the kubelet's rules on one admission (target: options add at
most 20 %).

With ``--benchmark-disable`` (CI) the simulations are small: the point there is that the core
still gives the reference driver's answers and the API loop's final state, which is asserted
before any timing.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pymm import Container, Machine, MemoryManager, Pod, _engine, compile_pod
from pymm.pod import probe_pod
from pymm.simulate import generate, run
from pymm.simulate.configs import open_manager, parse_configs
from pymm.simulate.core import run_config, sample_points
from pymm.simulate.workloads import ADMIT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from simulate_reference import run_config_reference

CONFIGS = ["kubelet", "least-allocated", "most-allocated", "admit-when-fits"]


def test_core_matches_the_reference_before_timing() -> None:
    w = generate("db-batch", events=3000, seed=7)
    sample_at = sample_points(len(w), 10)
    probe = probe_pod(None)
    for c in parse_configs(CONFIGS):
        fast = run_config(w, c, probe=probe, sample_at=sample_at)
        slow = run_config_reference(w, c, probe=probe, sample_at=sample_at)
        assert fast.to_dict(w.machine.node_ids) == slow.to_dict(w.machine.node_ids), c.label


def test_simulate_a_million_events(benchmark: Any) -> None:
    events = 20_000 if benchmark.disabled else 1_000_000
    w = generate("db-batch", events=events, seed=0)
    assert len(w) == events and len(w.machine.nodes) == 8

    def simulate() -> Any:
        return run(w, CONFIGS, samples=200)

    result = benchmark.pedantic(simulate, rounds=1, iterations=1)
    assert [c.label for c in result.configs] == CONFIGS
    for c in result.configs:
        assert c.admitted + c.rejected == int(np.count_nonzero(w.op == 0))
        assert 0 < c.mean_reserved_fraction <= c.peak_reserved_fraction <= 1
        assert c.final_state_valid
    benchmark.extra_info.update(events=events, configs=len(CONFIGS))


def _api_loop(w: Any, config: Any) -> tuple[str, int]:
    """The workload's events through the public API, one call per event, the fastest way it
    offers (each instance compiled from plain data, as ``compile_pod`` takes it; no
    metrics): the final state file and the number admitted."""
    mm = open_manager(config, w.machine, w.reserved_memory)
    admitted = 0
    specs = [s.to_dict() for s in w.shapes]
    uids = [s.uid for s in w.shapes]
    op, pod, shape = w.op.tolist(), w.pod.tolist(), w.shape.tolist()
    for i in range(len(op)):
        uid = f"{uids[shape[i]]}-{pod[i]}"
        if op[i] == ADMIT:
            admitted += mm.admit(compile_pod({**specs[shape[i]], "uid": uid})).admitted
        else:
            mm.stop_pod(uid)
    return mm.checkpoint(), admitted


def _median(f: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        f()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def test_engine_loop_against_the_python_api(benchmark: Any) -> None:
    events = 2_000 if benchmark.disabled else 200_000
    w = generate("db-batch", events=events, seed=3)
    config = parse_configs(["kubelet"])[0]
    probe = probe_pod(None)
    sample_at = sample_points(events, 1)
    core = run_config(w, config, probe=probe, sample_at=sample_at)
    final, admitted = _api_loop(w, config)
    # The same events give the same state, through either.
    assert core.admitted == admitted > 0
    assert _engine.Inspection(final).pod_count == len(json.loads(final)["entries"])
    sim = _engine.Simulation(
        w.machine.to_dict(),
        open_manager(config, w.machine, w.reserved_memory).config,
        [s.compiled for s in w.shapes],
        w.op.astype("<u1").tobytes(),
        w.pod.astype("<i8").tobytes(),
        w.shape.astype("<i4").tobytes(),
        probe.compiled,
        [],
    )
    assert sim.run() is None
    raw = sim.finish()
    assert raw["finalCheckpoint"] == final
    if benchmark.disabled:
        benchmark(lambda: None)  # a smoke test: what was asserted above is the point
        return
    rounds = 3
    engine = _median(lambda: run_config(w, config, probe=probe, sample_at=sample_at), rounds)
    api = _median(lambda: _api_loop(w, config), rounds)
    benchmark.extra_info.update(
        events=events,
        engine_us_per_event=round(engine / events * 1e6, 3),
        api_us_per_event=round(api / events * 1e6, 3),
        ratio=round(api / engine, 2),
    )
    benchmark.pedantic(lambda: run_config(w, config, probe=probe, sample_at=sample_at), rounds=1)
    assert api / engine >= 4, benchmark.extra_info


def _placed(options: dict[str, Any]) -> MemoryManager:
    m = Machine.synthetic(8, memory="64Gi", hugepages={"2Mi": 2048})
    mm = MemoryManager(m, topology_policy="best-effort", **options)
    for i, size in enumerate(("100Gi", "2Gi", "2Gi", "2Gi")):
        assert mm.admit(Pod.of(f"placed-{i}", Container.of("c", cpu="1", memory=size))).admitted
    return mm


BEST = {
    "policy_options": {"numa-allocation-strategy": "most-allocated"},
    "memory_policy_options": {"admit-when-fits": "true", "spread-hugepages": "true"},
}


@pytest.mark.parametrize("setting", ["kubelet", "options"])
def test_admission_with_options(benchmark: Any, setting: str) -> None:
    mm = _placed(BEST if setting == "options" else {})
    pod = compile_pod(
        Pod.of("bench", Container.of("c", cpu="1", memory="1Gi", hugepages={"2Mi": "64Mi"}))
    )
    a = mm.admit(pod)
    assert a.admitted and a["c"].numa_nodes is not None and len(a["c"].numa_nodes) == 1
    mm.remove("bench")

    def cycle() -> None:
        mm.admit(pod)
        mm.remove("bench")

    benchmark.group = "admit + remove, 8 nodes, kubelet rules vs pymm's options"
    benchmark.pedantic(cycle, rounds=2000, warmup_rounds=50)
