"""``pymm simulate``: workloads, configurations, the reference driver's metrics, and the CLI.

The metric tests use a 2-node machine (16Gi per node, 1Gi reserved: 15Gi allocatable each)
where every number follows from the kubelet's rules in
``shared/reference/kubelet-memory-manager.md`` §4.3 (hints and group rules) and §4.5 (Allocate).
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from simulate_reference import _final_state_valid, stranded

from pymm import Container, Machine, MemoryManager, Pod, parse_quantity
from pymm.cli import main
from pymm.errors import CheckpointCorruptedError, ConfigError, PodError, ScenarioError
from pymm.simulate import SimConfig, Workload, from_scenario, generate, parse_config, run
from pymm.simulate.configs import manager_kwargs, open_manager, parse_configs
from pymm.simulate.core import probe_pod, sample_points
from pymm.simulate.workloads import MIXES, draw_arrivals, load_scenario

GiB = 1 << 30
HOUR = 3600.0


def _pod(uid: str, gi: int) -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory=f"{gi}Gi"))


def _two_nodes() -> Machine:
    return Machine.synthetic(2, memory="16Gi")  # distances: 10 local, 20 remote


def _hand_workload() -> Workload:
    """a(10Gi) b(10Gi) c(10Gi) admitted; a, c (rejected), b removed; d(20Gi) admitted."""
    shapes = (_pod("a", 10), _pod("b", 10), _pod("c", 10), _pod("d", 20))
    return Workload(
        "hand",
        _two_nodes(),
        shapes,
        time=np.arange(7, dtype=np.float64),
        op=np.array([0, 0, 0, 1, 1, 1, 0], dtype=np.uint8),
        pod=np.array([0, 1, 2, 0, 2, 1, 3], dtype=np.int64),
        shape=np.array([0, 1, 2, 0, 2, 1, 3], dtype=np.int32),
    )


# -- workloads --------------------------------------------------------------------------------


def test_generation_is_deterministic_per_seed() -> None:
    a, b = generate("db-batch", 3000, seed=7), generate("db-batch", 3000, seed=7)
    c = generate("db-batch", 3000, seed=8)
    for field in ("time", "op", "pod", "shape"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.time, c.time)
    assert [p.uid for p in a.shapes] == [p.uid for p in b.shapes]


# The documented parameters of each mix (README "Simulating placement"): arrivals per hour,
# and per kind its share, mean memory (GiB, the mean of its uniform grid), mean hugepages
# (GiB) and mean lifetime (hours; lognormal mean = median * exp(sigma^2 / 2)).
DOCUMENTED = {
    "db-batch": (
        7.0,
        {
            "db": (0.1, 56.0, 0.0, 12 * math.exp(0.8**2 / 2)),
            "batch": (0.9, 18.0, 0.0, 2.0),
        },
    ),
    "dpdk-inference": (
        5.0,
        {
            "dpdk": (1 / 3, 7 / 3, 7 / 3, 12 * math.exp(0.8**2 / 2)),
            "inference": (2 / 3, (32 + 48 + 64 + 96 + 128 + 200) / 6, 0.0, 3.0),
        },
    ),
    "ai-training-gb200": (
        6.0,
        {
            "trainer": (0.25, (180 + 360 + 720 + 1440) / 4, 0.0, 6 * math.exp(0.5)),
            "loader": (0.5, (16 + 32 + 64) / 3, 7 / 3, 1.0),
            "notebook": (0.25, (8 + 16 + 32) / 3, 0.0, 4.0),
        },
    ),
}


def _sizes(pod: Pod) -> tuple[float, float]:
    req = pod.containers[0].requests
    hp = sum(parse_quantity(v) for k, v in req.items() if k.startswith("hugepages-"))
    return parse_quantity(req["memory"]) / GiB, hp / GiB


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_mix_has_its_documented_statistics(name: str) -> None:
    rate, kinds = DOCUMENTED[name]
    mix = MIXES[name]
    n = 200_000
    a = draw_arrivals(mix, n, np.random.default_rng(1))
    assert np.all(np.diff(a.time) > 0)
    assert float(np.diff(a.time).mean()) == pytest.approx(HOUR / rate, rel=0.02)
    shapes, _ = mix.shapes()
    sizes = np.array([_sizes(shapes[s]) for s in range(len(shapes))])
    for i, kind in enumerate(mix.kinds):
        share, memory, hugepages, lifetime_h = kinds[kind.name]
        sel = a.kind == i
        assert sel.mean() == pytest.approx(share, abs=0.01)
        assert sizes[a.shape[sel], 0].mean() == pytest.approx(memory, rel=0.02)
        assert sizes[a.shape[sel], 1].mean() == pytest.approx(hugepages, rel=0.02, abs=1e-9)
        assert a.lifetime[sel].mean() / HOUR == pytest.approx(lifetime_h, rel=0.03)
        assert all(shapes[s].uid.startswith(kind.name + "-") for s in np.unique(a.shape[sel]))


def test_generated_events_follow_the_arrivals() -> None:
    w = generate("dpdk-inference", 4000, seed=3)
    a = draw_arrivals(MIXES["dpdk-inference"], 4000, np.random.default_rng(3))
    assert len(w) == 4000 and np.all(np.diff(w.time) >= 0)
    admits, removes = w.op == 0, w.op == 1
    assert np.array_equal(w.time[admits], a.time[w.pod[admits]])
    assert np.allclose(w.time[removes], (a.time + a.lifetime)[w.pod[removes]])
    assert np.array_equal(w.shape[admits], a.shape[w.pod[admits]])
    # Every remove follows the admit of the same instance.
    first = {int(p): i for i, p in enumerate(w.pod) if w.op[i] == 0}
    assert all(first[int(w.pod[i])] < i for i in np.flatnonzero(removes))
    assert w.uid(0) == f"{w.shapes[w.shape[0]].uid}-{w.pod[0]}"
    # Hugepages for the DPDK pods exist on every node of the mix's machine.
    assert all(n.hugepages and n.hugepages[0].page_size_kib == 1 << 20 for n in w.machine.nodes)


@pytest.mark.parametrize("name", sorted(MIXES))
def test_mix_load_makes_placement_matter_under_the_kubelet(name: str) -> None:
    r = run(generate(name, 3000, seed=0), ["kubelet:"], samples=3)
    c = r.configs[0]
    assert c.rejected >= 0.03 * (c.admitted + c.rejected)
    assert 0.65 <= c.mean_reserved_fraction <= 0.95
    assert c.peak_reserved_fraction >= 0.9


def test_workload_rejects_inconsistent_events() -> None:
    m, shapes = _two_nodes(), (_pod("a", 1),)
    with pytest.raises(ScenarioError, match="never admits"):
        Workload(
            "w",
            m,
            shapes,
            time=np.array([0.0], dtype=np.float64),
            op=np.array([1], dtype=np.uint8),
            pod=np.array([0], dtype=np.int64),
            shape=np.array([0], dtype=np.int32),
        )
    with pytest.raises(ScenarioError, match="before its admit"):
        Workload(
            "w",
            m,
            shapes,
            time=np.array([0.0, 1.0], dtype=np.float64),
            op=np.array([1, 0], dtype=np.uint8),
            pod=np.array([0, 0], dtype=np.int64),
            shape=np.array([0, 0], dtype=np.int32),
        )
    with pytest.raises(ScenarioError, match="nondecreasing"):
        Workload(
            "w",
            m,
            shapes,
            time=np.array([1.0, 0.0], dtype=np.float64),
            op=np.array([0, 0], dtype=np.uint8),
            pod=np.array([0, 1], dtype=np.int64),
            shape=np.array([0, 0], dtype=np.int32),
        )
    with pytest.raises(ScenarioError, match="equal"):
        Workload(
            "w",
            m,
            shapes,
            time=np.array([0.0], dtype=np.float64),
            op=np.array([0, 0], dtype=np.uint8),
            pod=np.array([0, 1], dtype=np.int64),
            shape=np.array([0, 0], dtype=np.int32),
        )
    with pytest.raises(ScenarioError, match="shape indices"):
        Workload(
            "w",
            m,
            shapes,
            time=np.array([0.0], dtype=np.float64),
            op=np.array([0], dtype=np.uint8),
            pod=np.array([0], dtype=np.int64),
            shape=np.array([1], dtype=np.int32),
        )


# -- scenarios --------------------------------------------------------------------------------


def _scenario() -> dict[str, Any]:
    def admit(uid: str, memory: str) -> dict[str, Any]:
        c = {"name": "c", "limits": {"cpu": "1", "memory": memory}}
        return {"op": "admit", "pod": {"uid": uid, "containers": [c]}}

    return {
        "name": "small",
        "description": "two pods, one re-admitted",
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
        "topologyManagerPolicy": "single-numa-node",
        "ops": [
            admit("p1", "4Gi"),
            admit("p2", "8Gi"),
            {"op": "remove", "podUID": "p2", "container": "c"},
            {"op": "removePod", "podUID": "p1"},
            {"op": "restart"},
            {"op": "removePod", "podUID": "never-admitted"},
            admit("p1", "12Gi"),
        ],
    }


def test_scenario_becomes_a_workload() -> None:
    w = from_scenario(_scenario())
    assert w.scenario is not None and len(w) == 7 and w.shapes == ()
    assert w.description == "two pods, one re-admitted"
    assert w.machine.node_ids == [0, 1] and w.machine.nodes[0].memory_bytes == 16 * GiB
    assert [dict(r["limits"]) for r in w.reserved_memory or ()] == [{"memory": "1Gi"}] * 2


def test_scenario_replays_every_operation_as_replay_does() -> None:
    # Configs set the policy (best-effort here; the scenario's single-numa-node is not
    # applied). p1 (4Gi) -> node 0; p2 (8Gi) -> node 0; stopping p2's started container
    # releases it; stopping p1 releases it; the restart keeps the (empty) state; stopping a
    # pod never admitted does nothing; p1 again (12Gi) -> node 0.
    r = run(from_scenario(_scenario()), ["kubelet:"], samples=7)
    c = r.configs[0]
    assert (c.admitted, c.rejected, c.events_applied, c.restart_error) == (3, 0, 7, None)
    assert c.series.node_reserved_fraction[:, 0].tolist() == pytest.approx(
        [4 / 15, 12 / 15, 4 / 15, 0, 0, 0, 12 / 15]
    )
    assert c.series.node_reserved_fraction[:, 1].tolist() == [0] * 7


def test_a_pod_that_never_started_keeps_its_memory_in_simulate_too() -> None:
    sc = _scenario()
    sc["ops"] = [
        {**sc["ops"][0], "start": False},  # p1 admitted, not started
        {"op": "remove", "podUID": "p1", "container": "c"},  # nothing to release
        {"op": "removePod", "podUID": "p1"},  # nothing released: stale until next admission
        sc["ops"][1],  # p2's admission removes p1's stale memory first
    ]
    c = run(from_scenario(sc), ["kubelet:"], samples=4).configs[0]
    assert c.series.node_reserved_fraction[:, 0].tolist() == pytest.approx(
        [4 / 15, 4 / 15, 4 / 15, 8 / 15]
    )


def test_a_failed_restart_ends_the_run() -> None:
    sc = _scenario()
    smaller = {"numaNodes": [{"id": 0, "memory": "2Gi"}, {"id": 1, "memory": "16Gi"}]}
    sc["ops"] = [sc["ops"][0], {"op": "restart", "machine": smaller}, sc["ops"][1]]
    c = run(from_scenario(sc), ["kubelet:"], samples=3).configs[0]
    assert c.events_applied == 1 and c.admitted == 1
    assert c.restart_error is not None and "event 1" in c.restart_error
    assert "the expected machine state is different from the real one" in c.restart_error


def test_scenario_file_needs_a_name_when_it_holds_many(conformance: Path) -> None:
    path = conformance / "kubelet-oracle-latest-small.scenarios.json"
    with pytest.raises(ScenarioError, match="pick one with --scenario-name"):
        load_scenario(path)
    names = [s["name"] for s in json.loads(path.read_text())["scenarios"]]
    with pytest.raises(ScenarioError, match=f"did you mean {names[0]!r}"):
        load_scenario(path, names[0] + "x")
    w = load_scenario(path, names[0])
    assert w.name == names[0] and len(w) >= 1


# -- configurations ---------------------------------------------------------------------------


def test_config_parsing() -> None:
    c = parse_config("a:topology-policy=single-numa-node, prefer-closest-numa-nodes=true")
    assert c == SimConfig(
        "a", {"topology-policy": "single-numa-node", "prefer-closest-numa-nodes": "true"}
    )
    r = parse_config("r:reserved-memory=0:memory=1Gi,hugepages-1Gi=1Gi;1:memory=1Gi,scope=pod")
    assert r.options == {
        "reserved-memory": "0:memory=1Gi,hugepages-1Gi=1Gi;1:memory=1Gi",
        "scope": "pod",
    }
    assert parse_config("plain:").options == {}
    assert parse_config("best").options == {
        "admit-when-fits": "true",
        "numa-allocation-strategy": "least-allocated",
        "prefer-closest-numa-nodes": "true",
    }
    assert [c.label for c in parse_configs(None)] == [
        "kubelet",
        "least-allocated",
        "most-allocated",
        "least-stranded",
        "admit-when-fits",
        "best",
    ]


def test_config_keys_become_manager_arguments() -> None:
    m = Machine.synthetic(2, memory="16Gi", hugepages={"1Gi": 2})
    c = parse_config(
        "x:scope=pod,restrict-to-cpu-numa-nodes=true,"
        "reserved-memory=0:memory=1Gi,hugepages-1Gi=1Gi;1:memory=2Gi"
    )
    kw = manager_kwargs(c, m)
    assert kw["scope"] == "pod" and kw["topology_policy"] == "best-effort"
    assert kw["search"] == "auto"
    assert kw["policy_options"] == {"restrict-to-cpu-numa-nodes": "true"}
    assert kw["reserved_memory"] == [
        {"numaNode": 0, "limits": {"memory": "1Gi", "hugepages-1Gi": "1Gi"}},
        {"numaNode": 1, "limits": {"memory": "2Gi"}},
    ]
    per_node = manager_kwargs(parse_config("y:reserved-memory=2Gi"), m)["reserved_memory"]
    assert per_node == [{"numaNode": n, "limits": {"memory": "2Gi"}} for n in (0, 1)]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "a:topology-polcy=restricted",
            "unknown key 'topology-polcy'; did you mean 'topology-policy'",
        ),
        ("a:prefer-closest=true", "did you mean 'prefer-closest-numa-nodes'"),
        ("a:scope", "'scope' is not KEY=VALUE"),
        (":scope=pod", "the label is empty"),
        ("a:scope=pod,scope=container", "'scope' given twice"),
        ("nonesuch", "not a named configuration"),
    ],
)
def test_config_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert needle in str(e.value)


def test_duplicate_labels_are_refused() -> None:
    with pytest.raises(ConfigError, match="label 'a' is used twice"):
        parse_configs(["a:", "a:scope=pod"])


def test_engine_errors_name_the_configuration() -> None:
    with pytest.raises(ConfigError, match=r"^--config bad: .*bogus"):
        open_manager(parse_config("bad:topology-policy=bogus"), _two_nodes())


def _accepts_memory_policy_options() -> bool:
    return "memory_policy_options" in inspect.signature(MemoryManager).parameters


def test_memory_policy_options_need_the_engine_keyword() -> None:
    c = parse_config("f:admit-when-fits=true,spread-hugepages=true")
    if _accepts_memory_policy_options():
        kw = manager_kwargs(c, _two_nodes())
        assert kw["memory_policy_options"] == {
            "admit-when-fits": "true",
            "spread-hugepages": "true",
        }
        assert "admit-when-fits" not in kw["policy_options"]
    else:
        with pytest.raises(ConfigError, match="'admit-when-fits' is a memory-manager policy"):
            manager_kwargs(c, _two_nodes())


# -- metrics on a hand-made workload ----------------------------------------------------------


def test_kubelet_metrics_on_the_hand_made_workload() -> None:
    r = run(_hand_workload(), ["kubelet:"], samples=7)
    c = r.configs[0]
    # a -> node 0 (5Gi left), b -> node 1 (5Gi left). c (10Gi): no single node has 10Gi free
    # and {0,1} joins two single-node groups (rule C), so no hint: best-effort merges to "any"
    # ({0,1}, not preferred), which holds 10Gi free but breaks the group rule at Allocate.
    assert (c.admitted, c.rejected) == (3, 1)
    assert c.rejected_by_reason == {"UnexpectedAdmissionError": 1}
    assert c.rejected_by_message == {
        "Allocate failed due to [memorymanager] preferred hint violates NUMA node allocation, "
        "which is unexpected": 1
    }
    # d (20Gi) on the emptied machine needs {0,1}: the one cross-NUMA container, distance 20.
    assert c.cross_numa == 1 and c.mean_numa_distance == 20.0
    # Reserved after each event: 10, 20, 20, 10, 10, 0, 20 of 30Gi.
    assert c.mean_reserved_fraction == pytest.approx(90 / 30 / 7)
    assert c.peak_reserved_fraction == pytest.approx(20 / 30)
    assert c.reserved_by_tier == {"DRAM": pytest.approx(90 * GiB / 7)}
    # 8Gi probes fill free single nodes; stranded is what is left (Gi per event):
    # 5+7 | 5+5 | 5+5 | 7+5 | 7+5 | 7+7 (two probes) | group {0,1} with 10 free: one probe, 2 left.
    assert c.series.probe_fits.tolist() == [1, 0, 0, 1, 1, 2, 1]
    assert (c.series.stranded_bytes // GiB).tolist() == [12, 10, 10, 12, 12, 14, 2]
    assert c.mean_stranded_bytes == round(72 * GiB / 7)
    assert c.series.node_stranded_bytes[-1].tolist() == [0, 2 * GiB]
    assert c.series.node_reserved_fraction[-1].tolist() == pytest.approx([1.0, 5 / 15])
    assert c.final_state_valid and c.final_state_error is None


def test_single_numa_node_metrics_on_the_hand_made_workload() -> None:
    r = run(_hand_workload(), ["snn:topology-policy=single-numa-node"], samples=7)
    c = r.configs[0]
    # c: no hint at all, so Allocate finds no default affinity; d (20Gi) fits only {0,1},
    # which single-numa-node refuses at admission.
    assert (c.admitted, c.rejected) == (2, 2)
    assert c.rejected_by_reason == {"UnexpectedAdmissionError": 1, "TopologyAffinityError": 1}
    assert c.rejected_by_message["Resources cannot be allocated with Topology locality"] == 1
    assert c.cross_numa == 0 and c.mean_numa_distance is None
    assert c.mean_reserved_fraction == pytest.approx(70 / 30 / 7)
    assert (c.series.stranded_bytes // GiB).tolist() == [12, 10, 10, 12, 12, 14, 14]
    assert c.mean_stranded_bytes == 12 * GiB


def test_stranded_leaves_the_manager_untouched() -> None:
    mm = open_manager(parse_config("k:"), _two_nodes())
    mm.admit(_pod("x", 3))
    before = mm.checkpoint()
    s = stranded(mm, probe_pod("4Gi"))
    # node 0: 12 free -> 3 probes, 0 left; node 1: 15 free -> 3 probes, 3 left.
    assert (s.fits, s.by_node, s.total) == (6, {0: 0, 1: 3 * GiB}, 3 * GiB)
    assert mm.checkpoint() == before


def test_probe_shapes() -> None:
    assert probe_pod(None).containers[0].requests == {"cpu": "1", "memory": "8Gi"}
    p = probe_pod("memory=1Gi,hugepages-1Gi=2Gi")
    assert p.containers[0].limits == {"cpu": "1", "memory": "1Gi", "hugepages-1Gi": "2Gi"}
    with pytest.raises(PodError, match=r"probe 'cpu=1': expected a quantity"):
        probe_pod("cpu=1")


def test_sample_points_are_evenly_spaced_and_end_at_the_last_event() -> None:
    assert sample_points(10, 3).tolist() == [2, 5, 9]
    assert sample_points(4, 200).tolist() == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        sample_points(4, 0)


def test_a_corrupted_final_state_is_reported_invalid() -> None:
    w = _hand_workload()
    config = parse_config("k:")
    mm = open_manager(config, w.machine)
    mm.admit(_pod("x", 3))
    good = mm.checkpoint()
    assert _final_state_valid(mm, config, w) == (True, None)
    # The checksum the configured kubelet (1.38) checks: the V3 file's dataChecksum.
    mm.checkpoint = lambda: good.replace('"dataChecksum":', '"dataChecksum":1')  # type: ignore[method-assign]
    valid, error = _final_state_valid(mm, config, w)
    assert not valid and error is not None and "checkpoint is corrupted" in error
    assert issubclass(CheckpointCorruptedError, ValueError)


def test_progress_counts_every_event_of_every_config() -> None:
    seen: list[int] = []
    run(generate("db-batch", 2500, seed=0), ["a:", "b:scope=pod"], samples=2, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 5000


def test_json_has_the_documented_shape() -> None:
    doc = json.loads(run(_hand_workload(), ["kubelet:"], samples=3).to_json())
    assert set(doc) == {"machine", "events", "configs"}
    assert doc["machine"] == "synthetic-2" and doc["events"] == 7
    (c,) = doc["configs"]
    types = {
        "label": str,
        "options": dict,
        "admitted": int,
        "rejected": int,
        "rejectedByReason": dict,
        "crossNuma": int,
        "meanReservedFraction": float,
        "peakReservedFraction": float,
        "meanStrandedBytes": int,
        "finalStateValid": bool,
        "eventsApplied": int,
    }
    for key, kind in types.items():
        assert type(c[key]) is kind, key
    assert c["rejectedByReason"] == {"UnexpectedAdmissionError": 1}
    assert len(c["series"]["reservedFraction"]) == 3
    assert set(c["series"]["nodeReservedFraction"]) == {"0", "1"}
    assert c["probe"] == {"memory": "8Gi"} and c["restartError"] is None


def test_table_rows_show_the_hand_worked_numbers() -> None:
    from rich.console import Console

    from pymm.simulate.report import rejections_table, table

    r = run(_hand_workload(), ["kubelet:", "snn:topology-policy=single-numa-node"], samples=7)
    con = Console(width=200, record=True)
    con.print(table(r))
    con.print(rejections_table(r))
    text = con.export_text()
    kubelet = next(line for line in text.splitlines() if "kubelet" in line and "%" in line)
    cells = [c.strip() for c in kubelet.strip("│ ").split("│")]
    # admitted, rejected, top reason, cross-NUMA, distance, reserved mean/peak, stranded, valid
    assert cells == [
        "kubelet", "3", "1", "UnexpectedAdmission", "1", "20.0", "42.9%", "66.7%", "10.3 GiB", "yes"
    ]  # fmt: skip
    assert "preferred hint violates NUMA node allocation" in text
    assert "Allocate failed due to" not in text


# -- command line -----------------------------------------------------------------------------


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["simulate", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


FAST = ["--events", "300", "--samples", "3"]


def test_cli_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    rc, out, err = _cli(
        [
            *FAST,
            "--config",
            "kubelet:",
            "--config",
            "snn:topology-policy=single-numa-node",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ],
        capsys,
    )
    assert rc == 0, err
    assert "db-batch on xeon-8480-2s-snc4: 300 events" in out
    assert "kubelet" in out and "snn" in out and "rejections by message" in out
    doc = json.loads(out_json.read_text())
    assert [c["label"] for c in doc["configs"]] == ["kubelet", "snn"] and doc["events"] == 300
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_to_stdout_prints_only_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli([*FAST, "--config", "kubelet:", "--json", "-"], capsys)
    assert rc == 0 and json.loads(out)["configs"][0]["label"] == "kubelet"


def test_cli_scenario_reports_a_failed_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = _scenario()
    sc["ops"] = [sc["ops"][0], {"op": "restart", "reservedMemory": []}, sc["ops"][1]]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [sc]}))
    rc, out, _ = _cli(["--scenario", str(path), "--config", "kubelet:"], capsys)
    assert rc == 1
    assert "stopped after 1 of 3 events: the restart failed" in out
    assert "you should specify the system reserved memory" in out


def test_cli_lists_the_mixes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(["--list"], capsys)
    assert rc == 0 and all(name in out for name in MIXES)
    assert "lognormal, median 12 h, sigma 0.8" in out


def test_cli_default_configs_run_or_name_the_missing_engine_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        MemoryManager(
            _two_nodes(),
            reserved_memory="0:memory=1Gi;1:memory=1Gi",
            policy_options={"numa-allocation-strategy": "least-allocated"},
        )
        missing = None if _accepts_memory_policy_options() else "admit-when-fits"
    except ConfigError:
        missing = "numa-allocation-strategy"
    rc, out, err = _cli(FAST, capsys)
    if missing is None:
        assert rc == 0 and "most-allocated" in out
    else:
        assert rc == 2 and err.count("\n") == 1 and missing in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--config", "a:topology-polcy=x"], "did you mean 'topology-policy'"),
        (["--config", "a:topology-policy=bogus"], "--config a:"),
        (["--events", "many"], "--events 'many': expected a whole number"),
        (["--events", "0"], "--events must be at least 1"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--workload", "db-bacth"], "unknown workload 'db-bacth'; did you mean 'db-batch'"),
        (["--machine", "no-such-machine"], "unknown machine"),
        (["--probe", "cpu=1"], "--probe"),
        (["--scenario", "MISSING"], "cannot read"),
        (["--scenario", "MANY"], "pick one with --scenario-name"),
        (["--scenario", "MANY", "--events", "5"], "--events does not apply to --scenario"),
        (["--scenario-name", "x"], "--scenario-name needs --scenario"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    args: list[str],
    needle: str,
    conformance: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subst = {
        "MISSING": str(tmp_path / "missing.json"),
        "MANY": str(conformance / "kubelet-oracle-latest-small.scenarios.json"),
    }
    rc, _, err = _cli([subst.get(a, a) for a in args], capsys)
    assert rc == 2
    assert err.startswith("pymm: error:") and needle in err and err.count("\n") == 1
