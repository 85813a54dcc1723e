"""``pymm simulate`` beyond replaying events: the defragmentation policy (``defrag=K``), static
batches with the optimum beside each configuration (``--batch``), scenarios that carry node
kinds and CPU counts, options that cannot apply to a machine, and configurations on threads.

The hand-worked cases use 16Gi nodes with 1Gi reserved (15Gi allocatable each); the numbers
follow from the kubelet's rules (``shared/reference/kubelet-memory-manager.md`` §4.3, §4.5):
a single-container pod goes to the lowest node with room, and a set of two nodes may not be
formed from nodes that already serve single-node pods.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from simulate_reference import run_config_reference

from pymm import Container, Machine, Pod, parse_quantity
from pymm.cli import main
from pymm.errors import ConfigError
from pymm.simulate import SimConfig, Workload, from_scenario, generate, parse_config, run
from pymm.simulate.configs import PRESETS, Defrag
from pymm.simulate.core import Optimum, probe_pod, sample_points
from pymm.simulate.workloads import BATCH_OVERLOAD

GiB = 1 << 30


def _pod(uid: str, gi: int) -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory=f"{gi}Gi"))


def _workload(
    sizes: list[int], events: list[tuple[int, int, int]], nodes: int = 2, batch: bool = False
) -> Workload:
    """Shapes of the given sizes; events ``(op, instance, shape)``."""
    shapes = tuple(_pod(f"s{gi}", gi) for gi in sizes)
    op, pod, shape = (np.array(col) for col in zip(*events, strict=True))
    return Workload(
        "hand",
        Machine.synthetic(nodes, memory="16Gi"),
        shapes,
        time=np.arange(len(events), dtype=np.float64),
        op=op.astype(np.uint8),
        pod=pod.astype(np.int64),
        shape=shape.astype(np.int32),
        batch=batch,
    )


def _one_move() -> Workload:
    """7Gi pods s7-0, s7-1 on node 0, s7-2 on node 1; s7-0 stops; a 10Gi pod finds 8Gi free on
    each node and may not span both: the kubelet rejects it. Moving one 7Gi pod next to the
    other frees a node."""
    return _workload([7, 10], [(0, 0, 0), (0, 1, 0), (0, 2, 0), (1, 0, 0), (0, 3, 1)])


def _two_evictions() -> Workload:
    """Two 7Gi pods on each node (1Gi free on each): a 10Gi pod fits only if both pods of one
    node go, and no pod can move (nowhere has room): only two evictions make it fit."""
    return _workload([7, 10], [(0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 3, 0), (0, 4, 1)])


# -- the defragmentation policy ---------------------------------------------------------------


def test_defrag_keys_parse_and_are_checked() -> None:
    assert parse_config("d:defrag=3").defrag == Defrag(3, evict=False)
    assert parse_config("d:defrag=2,defrag-evict=true").defrag == Defrag(2, evict=True)
    assert parse_config("k:").defrag is None and PRESETS["defrag"].defrag == Defrag(2)
    for text, needle in [
        ("d:defrag=0", "a whole number of at least 1"),
        ("d:defrag=two", "a whole number of at least 1"),
        ("d:defrag=1,defrag-evict=yes", "expected true or false"),
        ("d:defrag-evict=true", "defrag-evict needs defrag=K"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            parse_config(text)


def test_a_rejection_that_one_move_undoes_is_admitted_after_the_move() -> None:
    r = run(_one_move(), ["kubelet:", "d:defrag=1"], samples=5)
    kubelet, d = r.configs
    assert (kubelet.admitted, kubelet.rejected, kubelet.moves) == (3, 1, 0)
    assert (d.admitted, d.rejected, d.defragmented, d.moves, d.evictions) == (4, 0, 1, 1, 0)
    # After the move one node holds both 7Gi pods, the other the 10Gi pod.
    final = sorted(d.series.node_reserved_fraction[-1].tolist())
    assert final == pytest.approx([10 / 15, 14 / 15])
    assert d.series.moves.tolist() == [0, 0, 0, 0, 1]
    assert d.series.admitted.tolist() == [1, 2, 3, 3, 4]
    assert d.final_state_valid


def test_evictions_need_their_own_permission_and_count_in_k() -> None:
    configs = [
        "kubelet:",
        "moves-only:defrag=5",
        "one:defrag=1,defrag-evict=true",
        "two:defrag=2,defrag-evict=true",
    ]
    kubelet, moves_only, one, two = run(_two_evictions(), configs, samples=2).configs
    assert (kubelet.admitted, kubelet.rejected) == (4, 1)
    assert (moves_only.admitted, moves_only.rejected, moves_only.moves) == (4, 1, 0)
    assert (one.admitted, one.rejected, one.evictions) == (4, 1, 0)
    assert (two.admitted, two.rejected, two.defragmented) == (5, 0, 1)
    assert (two.moves, two.evictions) == (0, 2)


def test_defrag_without_a_plan_that_fits_changes_nothing() -> None:
    # Rejections where no plan within the limits exists: the run is the kubelet's exactly,
    # which is the reference driver's.
    w = _two_evictions()
    kubelet = run(w, ["kubelet:"], samples=3).configs[0]
    d = run(w, ["kubelet:defrag=3"], samples=3).configs[0]
    reference = run_config_reference(
        w, SimConfig("kubelet", {}), probe=probe_pod(None), sample_at=sample_points(len(w), 3)
    )
    ids = w.machine.node_ids
    assert kubelet.to_dict(ids) == reference.to_dict(ids)
    assert kubelet.rejected == 1
    assert d.to_dict(ids) == kubelet.to_dict(ids) | {"options": {"defrag": "3"}}


def test_defrag_on_a_mix_reports_moves_and_keeps_the_state_valid() -> None:
    w = generate("db-batch", 2500, seed=1)
    kubelet, d = run(w, ["kubelet:", "d:defrag=2"], samples=5).configs
    assert kubelet.rejected > 0
    admits = int(np.count_nonzero(w.op == 0))
    assert d.admitted + d.rejected == admits == kubelet.admitted + kubelet.rejected
    assert d.defragmented > 0 and d.defragmented <= d.moves <= 2 * d.defragmented
    assert d.evictions == 0 and d.final_state_valid
    doc = json.loads(run(w, ["d:defrag=2"], samples=2).to_json())["configs"][0]
    assert (doc["defragmented"], doc["moves"], doc["evictions"]) == (
        d.defragmented,
        d.moves,
        0,
    )


# -- static batches ---------------------------------------------------------------------------


def test_a_batch_reports_the_optimum_beside_the_kubelet() -> None:
    # 5, 5, 10, 10 in this order: the kubelet puts both 5Gi pods on node 0, the first 10Gi pod
    # on node 1, and has 5Gi free on each node for the last. Placed together, each node takes
    # a 5Gi and a 10Gi pod: all four.
    w = _workload([5, 10], [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 1)], batch=True)
    c = run(w, ["kubelet:"], samples=2).configs[0]
    assert (c.admitted, c.rejected) == (3, 1)
    assert c.optimum is not None
    assert (c.optimum.admitted, c.optimum.bound, c.optimum.optimal) == (4, 4, True)
    doc = json.loads(run(w, ["kubelet:"], samples=2).to_json())["configs"][0]
    assert doc["optimum"]["admitted"] == 4 and doc["optimum"]["optimal"] is True
    # Without departures the same events are no batch: no optimum.
    plain = _workload([5, 10], [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 1)])
    assert run(plain, ["kubelet:"], samples=2).configs[0].optimum is None


def test_the_optimum_follows_each_configurations_rules() -> None:
    # 20Gi fits no node: best-effort may give it both nodes (an unused pair), single-numa-node
    # never does.
    w = _workload([20, 5], [(0, 0, 0), (0, 1, 1)], batch=True)
    be, snn = run(w, ["be:", "snn:topology-policy=single-numa-node"], samples=1).configs
    assert be.optimum == Optimum(2, 2, True, be.optimum.seconds if be.optimum else 0.0)
    assert (be.admitted, snn.admitted) == (2, 1)
    assert snn.optimum is not None and (snn.optimum.admitted, snn.optimum.bound) == (1, 1)


def test_a_batch_only_admits() -> None:
    with pytest.raises(Exception, match="a static batch only admits pods"):
        _workload([5], [(0, 0, 0), (1, 0, 0)], batch=True)


def test_a_mix_batch_asks_for_the_overload() -> None:
    w = generate("db-batch", None, seed=0, batch=True)
    assert w.batch and np.all(w.op == 0) and len(set(w.pod.tolist())) == len(w)
    sizes = [
        sum(int(parse_quantity(q)) for q in w.shapes[int(s)].containers[0].requests.values())
        for s in w.shape
    ]
    cpu = [int(parse_quantity(w.shapes[int(s)].containers[0].requests["cpu"])) for s in w.shape]
    memory = [a - b for a, b in zip(sizes, cpu, strict=True)]
    want = BATCH_OVERLOAD * sum(n.memory_bytes for n in w.machine.nodes)
    assert sum(memory) >= want > sum(memory[:-1])
    assert len(generate("db-batch", 10, seed=0, batch=True)) == 10


def _scenario_ops() -> dict[str, Any]:
    def admit(uid: str, gi: int) -> dict[str, Any]:
        c = {"name": "c", "limits": {"cpu": "1", "memory": f"{gi}Gi"}}
        return {"op": "admit", "pod": {"uid": uid, "containers": [c]}}

    return {
        "name": "batchy",
        "machine": {
            "numaNodes": [
                {"id": 0, "memory": "16Gi", "distances": [10, 20]},
                {"id": 1, "memory": "16Gi", "distances": [20, 10]},
            ]
        },
        "reservedMemory": [
            {"numaNode": 0, "limits": {"memory": "1Gi"}},
            {"numaNode": 1, "limits": {"memory": "1Gi"}},
        ],
        "ops": [
            admit("a", 5),
            admit("b", 5),
            {"op": "removePod", "podUID": "a"},
            admit("c", 10),
            admit("d", 10),
        ],
    }


def test_a_scenario_batch_replays_its_admissions_alone() -> None:
    sc = _scenario_ops()
    whole = run(from_scenario(sc), ["kubelet:"], samples=1).configs[0]
    assert (whole.admitted, whole.rejected, whole.optimum) == (4, 0, None)
    w = from_scenario(sc, batch=True)
    assert len(w) == 4
    c = run(w, ["kubelet:"], samples=1).configs[0]
    assert (c.admitted, c.rejected) == (3, 1)
    assert c.optimum is not None and (c.optimum.admitted, c.optimum.optimal) == (4, True)
    reference = run_config_reference(
        w, SimConfig("kubelet:", {}), probe=probe_pod(None), sample_at=sample_points(4, 1),
        scenario=sc,
    )  # fmt: skip
    assert (reference.admitted, reference.rejected) == (3, 1)


# -- scenarios with node kinds and CPU counts ---------------------------------------------------


def _tiered(kinds: bool = True, cpus: bool = True) -> dict[str, Any]:
    """A DRAM node with CPUs (0) and an HBM node without (1); a pod that asks for HBM, then
    one that does not."""

    def node(i: int, kind: str, n_cpus: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": i, "memory": "16Gi"}
        if kinds:
            out["kind"] = kind
        if cpus:
            out["cpus"] = n_cpus
        return out

    def admit(uid: str, tier: str | None) -> dict[str, Any]:
        c = {"name": "c", "limits": {"cpu": "1", "memory": "4Gi"}}
        pod: dict[str, Any] = {"uid": uid, "containers": [c]}
        if tier is not None:
            pod["annotations"] = {"pymm.io/memory-tier": tier}
        return {"op": "admit", "pod": pod}

    return {
        "name": "tiered",
        "machine": {"numaNodes": [node(0, "DRAM", 8), node(1, "HBM", 0)]},
        "reservedMemory": [
            {"numaNode": 0, "limits": {"memory": "1Gi"}},
            {"numaNode": 1, "limits": {"memory": "1Gi"}},
        ],
        "ops": [admit("fast", "hbm"), admit("plain", None), admit("plain-2", None)],
    }


def test_scenario_node_kinds_and_cpus_reach_the_machine_and_the_options() -> None:
    w = from_scenario(_tiered())
    assert [(n.kind, n.cpus) for n in w.machine.nodes] == [("DRAM", 8), ("HBM", 0)]
    configs = ["kubelet:", "tiers:memory-tiers=true", "restrict:restrict-to-cpu-numa-nodes=true"]
    r = run(w, configs, samples=3)
    by = {c.label: c for c in r.configs}
    node = {label: c.series.node_reserved_fraction[-1].tolist() for label, c in by.items()}
    # The kubelet ignores the annotation: everything on node 0 (lowest id).
    assert node["kubelet"] == pytest.approx([12 / 15, 0])
    # memory-tiers: the HBM pod on node 1, the others on the CPU nodes' kind (DRAM).
    assert node["tiers"] == pytest.approx([8 / 15, 4 / 15])
    assert by["tiers"].reserved_by_tier["HBM"] > 0
    # restrict: ordinary pods only on CPU nodes; the annotated one goes where its tier is.
    assert node["restrict"] == pytest.approx([8 / 15, 4 / 15])
    assert all(c.admitted == 3 and c.final_state_valid for c in r.configs)
    for label in ("tiers", "restrict"):
        reference = run_config_reference(
            w,
            parse_config(configs[[c.split(":")[0] for c in configs].index(label)]),
            probe=probe_pod(None),
            sample_at=sample_points(3, 3),
            scenario=_tiered(),
        )
        assert reference.to_dict([0, 1]) == by[label].to_dict([0, 1]), label


@pytest.mark.parametrize(
    ("kinds", "cpus", "config", "needle"),
    [
        (False, True, "tiers:memory-tiers=true", "memory-tiers cannot apply"),
        (True, False, "r:restrict-to-cpu-numa-nodes=true", "restrict-to-cpu-numa-nodes cannot"),
    ],
)
def test_an_option_that_cannot_apply_to_the_scenario_is_an_error(
    kinds: bool, cpus: bool, config: str, needle: str
) -> None:
    w = from_scenario(_tiered(kinds=kinds, cpus=cpus))
    label = config.split(":")[0]
    with pytest.raises(ConfigError, match=rf"^--config {label}: {needle}") as e:
        run(w, [config], samples=1)
    assert "tiered" in str(e.value)
    # Without the option, the same scenario runs (the annotation is then not honoured).
    assert run(w, ["kubelet:"], samples=1).configs[0].admitted == 3


def test_cli_option_that_cannot_apply_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [_tiered(kinds=False)]}))
    rc = main(["simulate", "--scenario", str(path), "--config", "tiers"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("pymm: error: --config tiers: memory-tiers cannot apply")


# -- the command line -------------------------------------------------------------------------


def test_cli_batch_and_defrag_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "r.json"
    args = ["simulate", "--batch", "--events", "12", "--samples", "2", "--config", "kubelet"]
    rc = main([*args, "--config", "defrag", "--json", str(out_json), "--time-limit", "5"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "optimum" in out and "moved" in out and "evicted" in out
    doc = json.loads(out_json.read_text())
    for c in doc["configs"]:
        assert c["optimum"]["bound"] >= c["optimum"]["admitted"] >= c["admitted"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--time-limit", "5"], "--time-limit needs --batch"),
        (["--batch", "--time-limit", "0"], "--time-limit must be more than 0"),
        (["--batch", "--time-limit", "soon"], "expected a number of seconds"),
        (["--batch", "--events", "0"], "--events must be at least 1"),
        (["--config", "d:defrag=x"], "a whole number of at least 1"),
    ],
)
def test_cli_bad_batch_and_defrag_input(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["simulate", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("pymm: error:") and needle in err
    assert err.count("\n") == 1


# -- threads ----------------------------------------------------------------------------------


def test_configurations_on_threads_give_the_sequential_results() -> None:
    w = generate("db-batch", 3000, seed=4)
    configs = ["kubelet", "least-allocated", "most-allocated", "least-stranded"]
    seq = run(w, configs, samples=5, threads=1)
    par = run(w, configs, samples=5, threads=4)
    assert seq.to_dict() == par.to_dict()
    seen: list[int] = []
    run(w, configs, samples=5, threads=4, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 4 * len(w)


def test_a_scenarios_resize_follows_each_configuration() -> None:
    """The kubelet (1.38, default gates) answers a memory resize of a Guaranteed pod
    Infeasible and keeps the reservation; with resize-in-place it grows where it is."""

    def pod(gi: int) -> dict[str, Any]:
        return {
            "uid": "a",
            "containers": [{"name": "c", "limits": {"cpu": "1", "memory": f"{gi}Gi"}}],
        }

    sc = {
        **_scenario_ops(),
        "ops": [{"op": "admit", "pod": pod(4)}, {"op": "resize", "pod": pod(8)}],
    }
    kubelet, grown = run(
        from_scenario(sc), ["kubelet:", "grow:resize-in-place=true"], samples=1
    ).configs
    # Reserved after each of the two events, over 2 x (16Gi - 1Gi reserved) allocatable.
    assert kubelet.admitted == grown.admitted == 1
    assert kubelet.mean_reserved_fraction == pytest.approx((4 + 4) / 2 / 30)
    assert grown.mean_reserved_fraction == pytest.approx((4 + 8) / 2 / 30)
    assert kubelet.final_state_valid and grown.final_state_valid
