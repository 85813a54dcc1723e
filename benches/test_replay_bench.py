"""``pymm replay`` per operation: a long generated scenario (admit / removePod on 8 NUMA nodes of
64Gi, best-effort) replayed in memory, and the first operations of it through a state directory
(``durable=True``, every operation written and read back: how replay ran before).

``extra_info`` records ``us_per_op``: the median round over the number of operations. Both
include everything a result carries (hint calls, allocations, active pods, the state file as
data after every operation).
"""

from __future__ import annotations

import json
import random
from typing import Any

from pymm import _engine, parse_quantity
from pymm.replay import replay_scenario

OPS = 20_000
DURABLE_OPS = 1_000
# With --benchmark-disable (CI) the point is correctness.
SMOKE_OPS = 2_000
SMOKE_DURABLE_OPS = 200
NODES = 8
SIZES_GI = (1, 2, 4, 8, 16, 32)


def generated(n_ops: int, seed: int = 0) -> dict[str, Any]:
    """Admissions of one-container Guaranteed pods (1-32Gi) and removals of random running
    ones, 30 to 40 pods placed from the 31st operation on: enough to fill nodes, so that some
    pods are rejected and others span nodes."""
    rng = random.Random(seed)
    live: list[str] = []
    ops: list[dict[str, Any]] = []
    while len(ops) < n_ops:
        if len(live) > 40 or (len(live) > 30 and rng.random() < 0.5):
            ops.append({"op": "removePod", "podUID": live.pop(rng.randrange(len(live)))})
            continue
        uid = f"p{len(ops)}"
        limits = {"cpu": "1", "memory": f"{rng.choice(SIZES_GI)}Gi"}
        pod = {"uid": uid, "name": uid, "namespace": "default"}
        ops.append({"op": "admit", "pod": {**pod, "containers": [{"name": "c", "limits": limits}]}})
        live.append(uid)
    return {
        "name": f"generated-{n_ops}",
        "machine": {"numaNodes": [{"id": i, "memory": "64Gi"} for i in range(NODES)]},
        "reservedMemory": [{"numaNode": i, "limits": {"memory": "1Gi"}} for i in range(NODES)],
        "topologyManagerPolicy": "best-effort",
        "ops": ops,
    }


def check(sc: dict[str, Any], out: dict[str, Any]) -> None:
    """The replay did what its operations say: the final state holds exactly the pods
    admitted and not removed since, each reserving its size, under a valid checksum."""
    results = out["results"]
    assert len(results) == len(sc["ops"])
    size = {
        op["pod"]["uid"]: parse_quantity(op["pod"]["containers"][0]["limits"]["memory"])
        for op in sc["ops"]
        if op["op"] == "admit"
    }
    live: set[str] = set()
    for op, r in zip(sc["ops"], results, strict=True):
        if op["op"] == "admit" and r["admit"]:
            live.add(r["podUID"])
        elif op["op"] == "removePod":
            live.discard(op["podUID"])
    admitted = sum(1 for r in results if r.get("admit") is True)
    rejected = sum(1 for r in results if r.get("admit") is False)
    assert admitted > 0 and rejected > 0, "the load must both place and reject pods"
    final = results[-1]["checkpoint"]
    assert set(final["entries"]) == live
    assert results[-1]["activePods"] == sorted(live)
    reserved = sum(n["memoryMap"]["memory"]["reserved"] for n in final["machineState"].values())
    assert reserved == sum(size[uid] for uid in live)
    _, checksum, _ = _engine.decode_checkpoint(json.dumps(final))
    assert checksum == final["checksum"]


def test_replay_in_memory_per_op(benchmark: Any) -> None:
    sc = generated(SMOKE_OPS if benchmark.disabled else OPS)
    # Correctness first: the in-memory replay is the durable one, result for result.
    prefix = {**sc, "ops": sc["ops"][:SMOKE_DURABLE_OPS]}
    assert replay_scenario(prefix) == replay_scenario(prefix, durable=True)
    check(sc, replay_scenario(sc))

    benchmark.group = "replay per operation"
    benchmark.pedantic(replay_scenario, args=(sc,), rounds=3, iterations=1)
    if not benchmark.disabled:
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(ops=len(sc["ops"]), us_per_op=median / len(sc["ops"]) * 1e6)


def test_replay_durable_per_op(benchmark: Any, tmp_path: Any) -> None:
    sc = generated(SMOKE_DURABLE_OPS if benchmark.disabled else DURABLE_OPS)
    check(sc, replay_scenario(sc, workdir=tmp_path, durable=True))

    benchmark.group = "replay per operation"
    benchmark.pedantic(
        replay_scenario, args=(sc,), kwargs={"workdir": tmp_path, "durable": True}, rounds=3
    )
    if not benchmark.disabled:
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(ops=len(sc["ops"]), us_per_op=median / len(sc["ops"]) * 1e6)
