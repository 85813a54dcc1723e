"""Static batches for the batch planner (issue 18's three workloads, reconstructed): pods drawn
from a workload's shapes until they ask for about ``overload`` times what the machine has, all
arriving at once (a node booting, a drain target). Deterministic for a seed.

- ``db-hugepages``: ``xeon-8480-2s-snc4`` (8 nodes, SNC4) with 16 pages of 1Gi on every node;
  databases (16-96Gi in 8Gi steps, plus 2-8Gi of 1Gi hugepages) beside batch jobs (4-32Gi);
- ``dpdk-cpu``: 5 nodes of 64Gi with 2048 pages of 2Mi each; DPDK pods (1-4Gi and 1-4Gi of 2Mi
  hugepages) whose CPU manager prefers the node of their NIC (a CPU hint on one node), beside
  inference servers (16-64Gi);
- ``ai-training``: the GB200-like tray with the ``ai-training-gb200`` mix's shapes (trainers of
  1-8 GPUs' memory, loaders with 2Mi hugepages, notebooks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pymm.machine import Machine
from pymm.pod import Container, Pod

__all__ = ["BATCHES", "Batch", "make_batch"]

_GIB = 1 << 30


@dataclass(frozen=True)
class Batch:
    name: str
    machine: Machine
    pods: tuple[Pod, ...]
    #: Pod uid -> hint providers (the ``hints=`` of ``MemoryManager.admit``).
    hints: Mapping[str, Sequence[Mapping[str, Any]]]

    def offered(self) -> int:
        return sum(
            _bytes(q)
            for p in self.pods
            for c in p.containers
            for r, q in c.requests.items()
            if r != "cpu"
        )


def _bytes(q: str) -> int:
    from pymm import parse_quantity

    return int(parse_quantity(q))


def _capacity(machine: Machine) -> int:
    # What the default reservation (1Gi of memory per node) leaves.
    return sum(n.memory_bytes for n in machine.nodes) - len(machine.nodes) * _GIB


def _draw(
    rng: np.random.Generator,
    kinds: Sequence[tuple[float, Any]],
    capacity: int,
    overload: float,
) -> list[tuple[Pod, list[dict[str, Any]] | None]]:
    weights = np.array([w for w, _ in kinds], dtype=float)
    weights /= weights.sum()
    out: list[tuple[Pod, list[dict[str, Any]] | None]] = []
    total = 0
    while total < overload * capacity:
        k = int(rng.choice(len(kinds), p=weights))
        pod, hints = kinds[k][1](rng, len(out))
        total += sum(_bytes(q) for c in pod.containers for r, q in c.requests.items() if r != "cpu")
        out.append((pod, hints))
    return out


def _pick(rng: np.random.Generator, values: Sequence[int]) -> int:
    return int(values[int(rng.integers(len(values)))])


def db_hugepages(seed: int = 0, overload: float = 1.3) -> Batch:
    machine = Machine.from_catalog("xeon-8480-2s-snc4").with_hugepages({"1Gi": 16})

    def db(rng: np.random.Generator, i: int) -> tuple[Pod, None]:
        mem, hp = _pick(rng, range(16, 97, 8)), _pick(rng, (2, 4, 8))
        c = Container.of("db", cpu="8", memory=f"{mem}Gi", hugepages={"1Gi": f"{hp}Gi"})
        return Pod.of(f"db-{i}", c), None

    def batch(rng: np.random.Generator, i: int) -> tuple[Pod, None]:
        c = Container.of("batch", cpu="2", memory=f"{_pick(rng, range(4, 33, 4))}Gi")
        return Pod.of(f"batch-{i}", c), None

    drawn = _draw(
        np.random.default_rng(seed), [(0.4, db), (0.6, batch)], _capacity(machine), overload
    )
    return Batch("db-hugepages", machine, tuple(p for p, _ in drawn), {})


def dpdk_cpu(seed: int = 0, overload: float = 1.3) -> Batch:
    machine = Machine.synthetic(5, memory="64Gi", name="dpdk-5").with_hugepages({"2Mi": 2048})
    nodes = machine.node_ids

    def dpdk(rng: np.random.Generator, i: int) -> tuple[Pod, list[dict[str, Any]]]:
        mem, hp = _pick(rng, (1, 2, 4)), _pick(rng, (1, 2, 4))
        c = Container.of("dpdk", cpu="4", memory=f"{mem}Gi", hugepages={"2Mi": f"{hp}Gi"})
        nic = _pick(rng, nodes)
        cpu = {"cpu": [{"affinity": [nic], "preferred": True}]}
        return Pod.of(f"dpdk-{i}", c), [{"name": "cpu", "containers": {"dpdk": cpu}}]

    def inference(rng: np.random.Generator, i: int) -> tuple[Pod, None]:
        c = Container.of("inference", cpu="16", memory=f"{_pick(rng, (16, 32, 48, 64))}Gi")
        return Pod.of(f"inference-{i}", c), None

    drawn = _draw(
        np.random.default_rng(seed), [(0.75, dpdk), (0.25, inference)], _capacity(machine), overload
    )
    hints = {p.uid: h for p, h in drawn if h is not None}
    return Batch("dpdk-cpu", machine, tuple(p for p, _ in drawn), hints)


def ai_training(seed: int = 0, overload: float = 1.2) -> Batch:
    from pymm.simulate.workloads import MIXES, machine_by_name

    mix = MIXES["ai-training-gb200"]
    machine = mix.prepare(machine_by_name(mix.machine))
    shapes: list[tuple[float, Any]] = []
    for kind in mix.kinds:

        def make(rng: np.random.Generator, i: int, kind: Any = kind) -> tuple[Pod, None]:
            options = kind.shapes()
            shape = options[int(rng.integers(len(options)))]
            return Pod.of(f"{kind.name}-{i}", *shape.containers, name=kind.name), None

        shapes.append((kind.weight, make))
    drawn = _draw(np.random.default_rng(seed), shapes, _capacity(machine), overload)
    return Batch("ai-training", machine, tuple(p for p, _ in drawn), {})


BATCHES = {"db-hugepages": db_hugepages, "dpdk-cpu": dpdk_cpu, "ai-training": ai_training}


def make_batch(name: str, seed: int = 0) -> Batch:
    return BATCHES[name](seed)
