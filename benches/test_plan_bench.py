"""Batch placement (``mm.plan``) against the optimum (issue 18, item 2; target: the optimum,
or the solver's proven bound within 1 %), on the three static batches of
:mod:`pymm._bench.batches`, beside the kubelet's sequential admission of the same pods. Each
plan is applied to a copy of the manager by the engine, which refuses any set the kubelet's
rules would not reach, before it is returned.
"""

from __future__ import annotations

from typing import Any

import pytest

from pymm import MemoryManager
from pymm._bench.batches import BATCHES, make_batch

CONFIGS = {
    "kubelet-defaults": {},
    "single-numa-node": {"topology_policy": "single-numa-node"},
}


# The AI-training batch under the kubelet's defaults takes the solver seconds to prove: it runs
# in the slow suite (`-m slow`), the other batches in every run.
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n.startswith("ai-training") else n
        for n in sorted(BATCHES)
    ],
)
def test_plan_reaches_the_optimum(benchmark: Any, name: str, config: str) -> None:
    batch = make_batch(name)
    mm = MemoryManager(batch.machine, **CONFIGS[config])

    def solve() -> Any:
        return mm.plan(batch.pods, hints=batch.hints, time_limit=60)

    p = solve()
    assert p.admitted >= 0.99 * p.bound
    assert p.admitted >= (p.kubelet_admitted or 0)
    assert len(p.rejected) == len(batch.pods) - p.admitted
    assert mm.active_pods == []
    benchmark.extra_info.update(
        pods=len(batch.pods),
        plan=p.admitted,
        bound=p.bound,
        kubelet=p.kubelet_admitted,
        plan_gib=p.memory / 2**30,
        optimal=p.optimal,
    )
    benchmark.pedantic(solve, rounds=1, iterations=1)
