"""Pods with pod-level resources (``spec.resources``) through the Python API and the CLI, as
the 1.38 kubelet handles them: skipped by the Static policy with the default gates, and with
``PodLevelResourceManagers`` in pod scope allocated once for the whole pod (KEP-5526). The
engine's results are the kubelet's (``kubelet-oracle-138-pod-level.json``, replayed by
``test_replay.py``); these tests check what pymm adds around them: the gates as options, the
state file the manager writes and restores, the metrics, the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pymm import Container, Machine, MemoryManager, Pod
from pymm.cli import main
from pymm.errors import ConfigError
from pymm.metrics import Metrics
from pymm.statefile import CONFIG_FILE_NAME, STATE_FILE_NAME

GI = 1 << 30
PLRM = {"PodLevelResourceManagers": True}


def _machine() -> Machine:
    return Machine.synthetic(2, memory="16Gi")


def _manager(
    tmp: Path | None = None, policy: str = "single-numa-node", **kw: object
) -> MemoryManager:
    m = _machine()
    return MemoryManager(
        m,
        reserved_memory=m.reserve_per_node("1Gi"),
        topology_policy=policy,
        scope="pod",
        state_dir=tmp,
        **kw,  # type: ignore[arg-type]
    )


def _budget(memory: str) -> dict[str, dict[str, str]]:
    return {"requests": {"cpu": "2", "memory": memory}, "limits": {"cpu": "2", "memory": memory}}


# One exclusive container (cpu and memory requests equal to their limits) and one sharing
# the pool: 6Gi for the pod, 2Gi of it exclusive.
MIXED = Pod.of(
    "mixed",
    Container.of("own", cpu="1", memory="2Gi"),
    Container("shared"),
    resources=_budget("6Gi"),
)


def test_with_the_default_gates_the_static_policy_leaves_the_pod_alone() -> None:
    mm = _manager()
    a = mm.admit(MIXED)
    assert a.admitted
    assert mm.state.get("entries", {}) == {}
    assert not mm.engine.copy().hints(MIXED.compiled)  # no hints: no preference


def test_the_gate_allocates_the_pod_once_and_keeps_its_entry(tmp_path: Path) -> None:
    with _manager(tmp_path, feature_gates=PLRM) as mm:
        a = mm.admit(MIXED, trace=True)
        assert a.admitted
        (alloc,) = a.allocations
        assert alloc["container"] == ""  # the pod-level allocation, as the results record it
        assert alloc["blocks"] == [{"numaAffinity": [0], "type": "memory", "size": 6 * GI}]
        assert a["own"].blocks[0].size == 2 * GI and a["shared"].blocks[0].size == 4 * GI
        node0 = mm.state["machineState"]["0"]["memoryMap"]["memory"]
        assert node0["reserved"] == 6 * GI  # the budget, taken once
    doc = json.loads((tmp_path / STATE_FILE_NAME).read_text())
    data = json.loads(doc["data"])
    assert data["podEntries"] == {
        "mixed": {"memoryBlocks": [{"numaAffinity": [0], "type": "memory", "size": 6 * GI}]}
    }
    # Restored with the gate, the pod counts once at restart, and its last container frees it.
    with _manager(tmp_path, feature_gates=PLRM) as mm:
        assert mm.restored
        mm.stop("mixed", "own")
        assert mm.state["machineState"]["0"]["memoryMap"]["memory"]["reserved"] == 6 * GI
        mm.stop("mixed", "shared")
        assert mm.state["machineState"]["0"]["memoryMap"]["memory"]["reserved"] == 0
        assert "podEntries" not in json.loads(json.loads(mm.checkpoint())["data"])


def test_restored_without_the_gate_the_pod_entry_is_gone_and_the_file_refused(
    tmp_path: Path,
) -> None:
    with _manager(tmp_path, feature_gates=PLRM) as mm:
        assert mm.admit(MIXED).admitted
    # The kubelet without the gate does not restore pod entries, so it counts each container's
    # slice and finds more reserved than the file says: it refuses to start.
    with pytest.raises(Exception, match="expected machine state is different"):
        _manager(tmp_path)


def test_an_empty_shared_pool_is_refused_with_the_kubelets_text() -> None:
    mm = _manager(policy="best-effort", feature_gates=PLRM)
    full = Pod.of(
        "full",
        Container.of("own", cpu="2", memory="6Gi"),
        Container("shared"),
        resources=_budget("6Gi"),
    )
    a = mm.admit(full)
    assert not a.admitted
    assert (a.reason, a.message) == (
        "EmptyPodSharedPoolError",
        "pod rejected, sum of exclusive container memory requests equals pod budget, leaving "
        "no memory for shared containers",
    )
    # Under single-numa-node the Topology Manager already refuses it, in its own words.
    strict = _manager(feature_gates=PLRM).admit(full)
    assert (strict.reason, strict.message) == (
        "TopologyAffinityError",
        "Pod Scope pod with pod-level resources failed admission under pod-scope topology manager",
    )


def test_metrics_count_the_pod_level_allocation() -> None:
    registry = CollectorRegistry()
    mm = _manager(feature_gates=PLRM, metrics=Metrics(registry))
    assert mm.admit(MIXED).admitted

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    rm = {"resource_name": "memory"}
    assert value("resource_manager_allocations_total", **rm, source="pod") == 2
    assert value("resource_manager_container_assignments", **rm, assignment_type="pod_exclusive")
    assert value("resource_manager_container_assignments", **rm, assignment_type="pod_shared") == 1
    # AllocatePod's pinning request, and one for the exclusive app container.
    assert value("kubelet_memory_manager_pinning_requests_total") == 2
    assert value("resource_manager_allocations_total", **rm, source="node") in (None, 0)


def test_gates_are_checked_against_the_kubelet_version() -> None:
    with pytest.raises(ConfigError, match="unrecognized feature gate: PodLevelResourceManagers"):
        _manager(kubelet_version="1.32", feature_gates=PLRM)
    with pytest.raises(ConfigError) as info:
        _manager(feature_gates={"PodLevelResourceManager": True})
    assert info.value.suggestion == "PodLevelResourceManagers"
    # The kubelet's flag syntax is taken too.
    mm = _manager(feature_gates="PodLevelResourceManagers=true,PodLevelResources=true")
    both = {"PodLevelResourceManagers": True, "PodLevelResources": True}
    assert mm.config["feature_gates"] == both


def test_max_allowable_numa_nodes_needs_the_beta_gate_only_before_1_38() -> None:
    m = _machine()
    kw = {
        "reserved_memory": m.reserve_per_node("1Gi"),
        "policy_options": {"max-allowable-numa-nodes": "16"},
        "feature_gates": {"TopologyManagerPolicyBetaOptions": False},
    }
    with pytest.raises(ConfigError) as info:
        MemoryManager(m, kubelet_version="1.32", **kw)  # type: ignore[arg-type]
    assert str(info.value) == (
        "Topology Manager Policy Beta-level Options not enabled, but option "
        '"max-allowable-numa-nodes" provided'
    )
    # GA in 1.35: the 1.38 kubelet takes it without the gate.
    mm = MemoryManager(m, **kw)  # type: ignore[arg-type]
    assert mm.config["policy_options"] == {"max-allowable-numa-nodes": "16"}


def test_the_cli_takes_and_records_feature_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: p}\nspec:\n"
        # Pod-level requests given: the API server would default them to what the containers
        # request together (1 cpu, 2Gi), and a Burstable pod gets no exclusive memory.
        "  resources: {requests: {cpu: '2', memory: 6Gi}, limits: {cpu: '2', memory: 6Gi}}\n"
        "  containers:\n"
        "  - name: own\n    resources: {limits: {cpu: '1', memory: 2Gi}}\n"
        "  - name: shared\n"
    )
    state = tmp_path / "state"
    flags = ["--machine", "xeon-gold-6242-2s", "--topology-policy", "single-numa-node"]
    flags += ["--scope", "pod", "--state-dir", str(state), "--json"]
    args = ["admit", str(pod), *flags, "--feature-gates", "PodLevelResourceManagers=true"]
    assert main(args) == 0, capsys.readouterr().err
    (out,) = json.loads(capsys.readouterr().out)
    assert out["admit"] is True
    recorded = json.loads((state / CONFIG_FILE_NAME).read_text())["flags"]
    assert recorded["feature_gates"] == ["PodLevelResourceManagers=true"]
    assert json.loads(json.loads((state / STATE_FILE_NAME).read_text())["data"])["podEntries"]
    # A bad gate is one line and exit 2.
    assert main(["admit", str(pod), *flags, "--feature-gates", "Nope=true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymm: error: --feature-gates 'Nope=true': unrecognized feature gate")
    assert err.count("\n") == 1


def test_a_scenarios_feature_gates_are_the_configurations() -> None:
    from pymm.replay import replay_scenario

    scenario = {
        "name": "gates",
        "machine": {"numaNodes": [{"id": 0, "memory": "16Gi"}]},
        "reservedMemory": [{"numaNode": 0, "limits": {"memory": "1Gi"}}],
        "featureGates": {"PodLevelResourceManagers": True},
        "ops": [],
    }
    assert "setupError" not in replay_scenario(scenario)
    # A gate the scenario's kubelet does not have keeps it from starting, as a bad flag would.
    old = replay_scenario({**scenario, "kubeletVersion": "1.32"})
    assert old["setupError"].startswith("unrecognized feature gate: PodLevelResourceManagers")
    bogus = replay_scenario({**scenario, "featureGates": {"Nope": True}})
    assert bogus["setupError"].startswith("unrecognized feature gate: Nope")
