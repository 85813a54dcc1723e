"""NodeResourceTopology objects: exact numbers on hand-computed cases, the group rule, the CRD's
schema (a real JSON-schema validator over deploy/crd.yaml), real kubelet state files, tiered and
64-node machines, and the kubernetes client's models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pymm import Container, Machine, MemoryManager, Pod, _engine, parse_quantity
from pymm.commands.state import inspect_text
from pymm.errors import ConfigError, MachineError
from pymm.nrt import node_resource_topology

ROOT = Path(__file__).parent.parent
STATE_FILES = Path(__file__).parent / "conformance" / "state-files"
GI = 2**30


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((ROOT / "deploy" / "crd.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    schema = version["schema"]["openAPIV3Schema"]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def zone(obj: dict[str, Any], node: int) -> dict[str, Any]:
    (z,) = [z for z in obj["zones"] if z["name"] == f"node-{node}"]
    found: dict[str, Any] = z
    return found


def res(z: dict[str, Any], name: str = "memory") -> dict[str, int]:
    (r,) = [r for r in z["resources"] if r["name"] == name]
    return {k: parse_quantity(r[k]) for k in ("capacity", "allocatable", "available")}


def attrs(entity: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in entity.get("attributes", [])}


def two_nodes(policy: str = "single-numa-node", **kw: Any) -> MemoryManager:
    m = Machine.synthetic(2, memory="16Gi", **kw)
    return MemoryManager(m, reserved_memory="0:memory=1Gi;1:memory=1Gi", topology_policy=policy)


def test_single_numa_numbers_are_total_allocatable_and_free() -> None:
    mm = two_nodes()
    assert mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="4Gi"))).admitted
    obj = mm.nrt("worker-1")
    assert obj["apiVersion"] == "topology.node.k8s.io/v1alpha2"
    assert obj["kind"] == "NodeResourceTopology"
    assert obj["metadata"] == {
        "name": "worker-1",
        "labels": {"app.kubernetes.io/managed-by": "pymm"},
    }
    assert res(zone(obj, 0)) == {"capacity": 16 * GI, "allocatable": 15 * GI, "available": 11 * GI}
    assert res(zone(obj, 1)) == {"capacity": 16 * GI, "allocatable": 15 * GI, "available": 15 * GI}
    # Binary-SI text as the kubelet writes memory quantities.
    assert [r["available"] for r in zone(obj, 0)["resources"] if r["name"] == "memory"] == ["11Gi"]
    # CPUs as resource-topology-exporter reports them: whole CPUs, all free without a CPU state.
    assert res(zone(obj, 0), "cpu") == {"capacity": 1, "allocatable": 1, "available": 1}
    assert zone(obj, 0)["type"] == "Node"
    assert zone(obj, 1)["costs"] == [
        {"name": "node-0", "value": 20},
        {"name": "node-1", "value": 10},
    ]
    assert attrs(obj)["topologyManagerPolicy"] == "single-numa-node"
    assert attrs(obj)["topologyManagerScope"] == "container"
    assert obj["topologyPolicies"] == ["SingleNUMANodeContainerLevel"]


@pytest.mark.parametrize(
    ("policy", "scope", "legacy"),
    [
        ("single-numa-node", "pod", "SingleNUMANodePodLevel"),
        ("restricted", "container", "Restricted"),
        ("restricted", "pod", "RestrictedPodLevel"),
        ("best-effort", "pod", "BestEffortPodLevel"),
        ("none", "container", "None"),
    ],
)
def test_policy_and_scope_in_kubelet_spelling(policy: str, scope: str, legacy: str) -> None:
    m = Machine.synthetic(2, memory="16Gi")
    mm = MemoryManager(
        m, reserved_memory="0:memory=1Gi;1:memory=1Gi", topology_policy=policy, scope=scope
    )
    obj = mm.nrt("n")
    assert attrs(obj)["topologyManagerPolicy"] == policy
    assert attrs(obj)["topologyManagerScope"] == scope
    assert obj["topologyPolicies"] == [legacy]


def test_group_nodes_report_zero_available_and_name_the_group() -> None:
    mm = two_nodes("best-effort")
    # 20Gi fits no single node (15Gi allocatable each): the pod spans the group {0, 1}.
    assert mm.admit(Pod.of("wide", Container.of("c", cpu="1", memory="20Gi")))["c"].numa_nodes == (
        0,
        1,
    )
    obj = mm.nrt("n")
    for node in (0, 1):
        z = zone(obj, node)
        assert res(z)["available"] == 0
        assert res(z)["allocatable"] == 15 * GI
        assert attrs(z)["pymm.io/numa-group"] == "node-0,node-1"
        # 30Gi allocatable over the group, 20Gi reserved.
        assert attrs(z)["pymm.io/group-available-memory"] == "10Gi"
    mm.remove("wide")
    obj = mm.nrt("n")
    assert res(zone(obj, 0))["available"] == 15 * GI
    assert "pymm.io/numa-group" not in attrs(zone(obj, 0))


def test_hugepages_are_resources_and_empty_page_sizes_are_left_out() -> None:
    m = Machine.synthetic(2, memory="16Gi", hugepages={"1Gi": 4})
    mm = MemoryManager(m, reserved_memory="0:memory=1Gi;1:memory=1Gi")
    pod = Pod.of("hp", Container.of("c", cpu="1", memory="1Gi", hugepages={"1Gi": "3Gi"}))
    assert mm.admit(pod)["c"].numa_nodes == (0,)
    obj = mm.nrt("n")
    names = [r["name"] for r in zone(obj, 0)["resources"]]
    assert names == ["cpu", "hugepages-1Gi", "memory"]
    assert res(zone(obj, 0), "hugepages-1Gi") == {
        "capacity": 4 * GI,
        "allocatable": 4 * GI,
        "available": 1 * GI,
    }
    # Hugepages come out of the node's memory: 16 - 4 - 1 reserved = 11Gi, 1Gi of it used.
    assert res(zone(obj, 0)) == {"capacity": 16 * GI, "allocatable": 11 * GI, "available": 10 * GI}


@pytest.mark.parametrize(
    ("name", "kinds"),
    [("spr-2s-cxl", {"DRAM", "CXL"}), ("xeon-max-2s-hbm-flat", {"DRAM", "HBM"})],
)
def test_tiered_machines_have_kind_and_cpu_attributes(
    name: str, kinds: set[str], validator: jsonschema.protocols.Validator
) -> None:
    m = Machine.from_catalog(name)
    mm = MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi"))
    for i, size in enumerate(("20Gi", "20Gi", "90Gi")):
        assert mm.admit(Pod.of(f"p{i}", Container.of("c", cpu="2", memory=size))).admitted
    obj = mm.nrt("tiered")
    validator.validate(obj)
    assert_matches_state_inspect(obj, mm.checkpoint())
    seen = set()
    for n in m.nodes:
        a = attrs(zone(obj, n.id))
        seen.add(a["pymm.io/memory-kind"])
        assert a["pymm.io/memory-kind"] == n.kind
        assert a["pymm.io/has-cpus"] == ("true" if n.cpus else "false")
        assert a["pymm.io/cpus"] == str(n.cpus)
    assert seen == kinds
    # CPU-less memory nodes (CXL expanders, HBM in flat mode) exist on both machines.
    assert any(attrs(z)["pymm.io/has-cpus"] == "false" for z in obj["zones"])


def test_64_node_machine(validator: jsonschema.protocols.Validator) -> None:
    m = Machine.synthetic(64, memory="8Gi")
    mm = MemoryManager(m, reserved_memory=m.reserve_per_node("512Mi"), search="bounded")
    for i in range(10):
        assert mm.admit(Pod.of(f"p{i}", Container.of("c", cpu="1", memory="6Gi"))).admitted
    obj = mm.nrt("big")
    validator.validate(obj)
    assert_matches_state_inspect(obj, mm.checkpoint())
    assert len(obj["zones"]) == 64
    assert all(len(z["costs"]) == 64 for z in obj["zones"])
    used = sum(1 for z in obj["zones"] if res(z)["available"] == int(1.5 * GI))
    assert used == 10
    assert sum(res(z)["available"] for z in obj["zones"]) == 64 * int(7.5 * GI) - 60 * GI


def _kubelet_files() -> list[Path]:
    return sorted(STATE_FILES.glob("*.state.json"))


def assert_matches_state_inspect(obj: dict[str, Any], text: str) -> None:
    """Each zone's numbers are `pymm state inspect`'s for that node (group nodes: available 0,
    and the group's free sum in the attribute)."""
    found = inspect_text(text)
    groups = {tuple(g["nodes"]): g for g in found.group_rows()}
    for row in found.node_rows():
        z = zone(obj, row["node"])
        if row["total"] == 0 and row["resource"] != "memory":
            assert row["resource"] not in [r["name"] for r in z["resources"]]
            continue
        got = res(z, row["resource"])
        assert got["capacity"] == row["total"]
        assert got["allocatable"] == row["allocatable"]
        group = tuple(sorted(set(row["cells"] or [row["node"]])))
        if len(group) == 1:
            assert got["available"] == row["free"]
        else:
            assert got["available"] == 0
            group_free = groups[group]["resources"][row["resource"]]["free"]
            key = f"pymm.io/group-available-{row['resource']}"
            assert parse_quantity(attrs(z)[key]) == group_free


@pytest.mark.parametrize("path", _kubelet_files(), ids=lambda p: p.name.removesuffix(".state.json"))
def test_real_kubelet_state_files_match_state_inspect(
    path: Path, validator: jsonschema.protocols.Validator
) -> None:
    text = path.read_text()
    _, _, data = _engine.decode_checkpoint(text)
    m = Machine.synthetic(len(data["machineState"]), memory="16Gi")
    obj = node_resource_topology(data, m, node_name="kubelet-node")
    validator.validate(obj)
    assert_matches_state_inspect(obj, text)


def test_some_kubelet_files_have_groups() -> None:
    # Guards the parametrised test above against silently testing only the easy case.
    with_groups = [
        p
        for p in _kubelet_files()
        if any(len(n["cells"]) > 1 for n in json.loads(p.read_text())["machineState"].values())
    ]
    assert with_groups


def test_manager_nrt_equals_the_state_file_path(tmp_path: Path) -> None:
    m = Machine.from_catalog("xeon-8480-2s-snc4")
    with MemoryManager(
        m,
        reserved_memory=m.reserve_per_node("1Gi"),
        state_dir=tmp_path,
        topology_policy="restricted",
    ) as mm:
        mm.admit(Pod.of("a", Container.of("c", cpu="2", memory="20Gi")))
        mm.admit(Pod.of("b", Container.of("c", cpu="2", memory="90Gi")))
        live = mm.nrt("n")
    policy, _, data = _engine.decode_checkpoint((tmp_path / "memory_manager_state").read_text())
    from_file = node_resource_topology(
        data,
        m,
        node_name="n",
        topology_policy="restricted",
        scope="container",
        memory_policy=policy,
    )
    assert live == from_file


def test_node_name_defaults_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "from-downward-api")
    assert two_nodes().nrt()["metadata"]["name"] == "from-downward-api"


def test_schema_rejects_broken_objects(validator: jsonschema.protocols.Validator) -> None:
    good = two_nodes().nrt("n")
    validator.validate(good)
    bad_quantity = json.loads(json.dumps(good))
    bad_quantity["zones"][0]["resources"][-1]["available"] = "12 Gi"
    missing = json.loads(json.dumps(good))
    del missing["zones"][1]["resources"][0]["allocatable"]
    for bad in (bad_quantity, missing):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(bad)


def test_machine_without_the_state_nodes_is_refused() -> None:
    _, _, data = _engine.decode_checkpoint(two_nodes().checkpoint())
    with pytest.raises(MachineError, match=r"NUMA node\(s\) 1 that machine"):
        node_resource_topology(data, Machine.synthetic(1), node_name="n")
    with pytest.raises(ConfigError, match="topology policy"):
        node_resource_topology(data, Machine.synthetic(2), node_name="n", topology_policy="x")


def test_round_trips_through_the_kubernetes_client_models() -> None:
    from kubernetes.client import ApiClient

    obj = two_nodes("best-effort").nrt("worker-7")
    client = ApiClient()
    # What CustomObjectsApi sends is the sanitised body: it must be the object unchanged.
    assert client.sanitize_for_serialization(obj) == obj  # type: ignore[no-untyped-call]

    text = json.dumps({**obj["metadata"], "resourceVersion": "42", "uid": "u-1"})
    meta = client.deserialize(text, "V1ObjectMeta", "application/json")
    assert meta.name == "worker-7"
    assert meta.resource_version == "42"
    back = client.sanitize_for_serialization(meta)  # type: ignore[no-untyped-call]
    assert back == {
        "name": "worker-7",
        "labels": {"app.kubernetes.io/managed-by": "pymm"},
        "resourceVersion": "42",
        "uid": "u-1",
    }
