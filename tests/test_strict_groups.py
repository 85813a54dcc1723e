"""The kubelet's two group bugs (``tests/conformance/kubelet-bugs.json``, confirmed on the real
kubelet v1.32.10): reproduced exactly with every option off, and handled by the memory-manager
option ``strict-numa-groups``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pymm import Container, Machine, MemoryManager, Pod
from pymm.cli import main
from pymm.replay import compare_results, replay_scenario

CONF = Path(__file__).parent / "conformance"
RAW = json.loads((CONF / "kubelet-bugs.scenarios.json").read_text())["scenarios"]
SCENARIOS: dict[str, dict[str, Any]] = {s["name"]: s for s in RAW}
REFERENCE = json.loads((CONF / "kubelet-bugs.json").read_text())
REF_BY_NAME = {r["name"]: r for r in REFERENCE["results"]}
STRICT = {"strict-numa-groups": "true"}


def strict(name: str) -> dict[str, Any]:
    return {**SCENARIOS[name], "memoryManagerPolicyOptions": STRICT}


def groups_of(checkpoint: dict[str, Any]) -> list[tuple[int, ...]]:
    return [
        tuple(sorted(n["cells"]))
        for n in checkpoint["machineState"].values()
        if n["numberOfAssignments"] > 0
    ]


def overlapping(groups: list[tuple[int, ...]]) -> bool:
    return any(a != b and set(a) & set(b) for a in groups for b in groups)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_options_off_reproduce_the_kubelets_bug(name: str) -> None:
    got = {"results": [replay_scenario(SCENARIOS[name], "1.32")]}  # the bugs are v1.32.10's
    assert compare_results(got, {"results": [REF_BY_NAME[name]]}) == []


def test_the_reference_shows_the_bugs() -> None:
    # What the option must prevent is really in the kubelet's results.
    a = REF_BY_NAME["overlap-cpu-hint"]["results"][-1]
    assert a["admit"] and overlapping(groups_of(a["checkpoint"]))
    b = REF_BY_NAME["snn-pod-scope-nohint"]["results"][-1]
    assert b["admit"]
    spans = [x for x in b["allocations"] if len(x["blocks"][0]["numaAffinity"]) > 1]
    assert [x["container"] for x in spans] == ["c1"]


def test_strict_places_the_cpu_pinned_pod_in_the_group_it_would_overlap() -> None:
    ops = replay_scenario(strict("overlap-cpu-hint"))["results"]
    small = ops[-1]
    assert small["admit"]
    assert small["allocations"][0]["blocks"][0]["numaAffinity"] == [0, 1]
    assert groups_of(small["checkpoint"]) == [(0, 1), (0, 1)]
    assert not overlapping(groups_of(small["checkpoint"]))


def test_strict_rejects_the_pod_that_fits_no_single_node() -> None:
    ops = replay_scenario(strict("snn-pod-scope-nohint"))["results"]
    assert ops[0]["admit"]
    p1 = ops[1]
    assert not p1["admit"]
    assert p1["reason"] == "TopologyAffinityError"
    # The memory manager says it has no node set, instead of "no preference".
    assert p1["hintCalls"][0]["providers"]["memory"] == {"memory": []}
    # Nothing of p1 was allocated: only p0 holds memory, on one node.
    assert p1["checkpoint"]["entries"] == ops[0]["checkpoint"]["entries"]


def test_strict_single_numa_node_never_spans_from_the_python_api() -> None:
    mm = MemoryManager(
        Machine.synthetic(3, memory="16Gi"),
        topology_policy="single-numa-node",
        scope="pod",
        memory_policy_options=STRICT,
    )
    assert mm.admit(Pod.of("p0", Container.of("c", cpu="1", memory="1Gi")))
    big = Pod.of(
        "p1",
        Container.of("c1", cpu="1", memory="20Gi"),
        Container.of("c2", cpu="1", memory="14Gi"),
    )
    a = mm.admit(big)
    assert not a.admitted and a.reason == "TopologyAffinityError"
    # A pod that does fit one node is still placed, on one node.
    ok = mm.admit(Pod.of("p2", Container.of("c", cpu="1", memory="10Gi")))
    assert ok and len(ok["c"].numa_nodes or ()) == 1


def test_strict_is_a_memory_policy_option_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = tmp_path / "s.json"
    sc.write_text(json.dumps({"scenarios": [strict("overlap-cpu-hint")]}))
    out = tmp_path / "r.json"
    assert main(["replay", str(sc), "-o", str(out)]) == 0
    small = json.loads(out.read_text())["results"][0]["results"][-1]
    assert not overlapping(groups_of(small["checkpoint"]))
    pod = tmp_path / "pod.json"
    pod.write_text(
        json.dumps(
            {
                "kind": "Pod",
                "metadata": {"name": "p", "uid": "p"},
                "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}]},
            }
        )
    )
    capsys.readouterr()
    rc = main(["admit", str(pod), "--memory-policy-option", "strict-numa-groups=maybe"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("pymm: error:") and "strict-numa-groups" in err[0]
