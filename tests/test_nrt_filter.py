"""What a real scheduler decides on pymm's NodeResourceTopology objects: the
NodeResourceTopologyMatch filter (transcribed in helpers_nrt_filter.py from scheduler-plugins)
run on objects from a pymm state directory and from real kubelet state files, its verdicts
compared with the kubelet's own admission of the same pods on the same state (pymm's engine,
kubelet-exact)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers_checkpoint import with_valid_checksum
from helpers_nrt_filter import Container, Pod, filter_pod

from pymm import Container as PContainer
from pymm import Machine, MemoryManager, _engine
from pymm import Pod as PPod
from pymm.cli import main
from pymm.nrt import node_resource_topology

GI = 2**30
STATE_FILES = Path(__file__).parent / "conformance" / "state-files"
ALLOCATABLE = {"cpu": "16", "memory": "30Gi", "pods": "110", "hugepages-1Gi": "8Gi"}


def guaranteed(name: str, *sizes: str, cpu: str = "2", init: tuple[str, ...] = ()) -> Pod:
    def c(i: int, size: str, prefix: str) -> Container:
        r = {"cpu": cpu, "memory": size}
        return Container(f"{prefix}{i}", dict(r), dict(r))

    return Pod(
        name,
        [c(i, s, "c") for i, s in enumerate(sizes)],
        [c(i, s, "i") for i, s in enumerate(init)],
    )


def machine_file(directory: Path, cpus: int = 8) -> Path:
    m = Machine.synthetic(2, memory="16Gi").to_dict()
    for n in m["nodes"]:
        n["cpus"] = cpus
    path = directory / "machine.json"
    path.write_text(json.dumps(m))
    return path


def admit_cli(state: Path, machine: Path, uid: str, memory: str, *flags: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": uid, "namespace": "apps", "uid": uid},
        "spec": {
            "containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": memory}}}]
        },
    }
    path = state.parent / f"{uid}.yaml"
    path.write_text(yaml.safe_dump(pod))
    args = ["admit", str(path), "--machine", str(machine), "--state-dir", str(state), *flags]
    assert main(args) == 0


def nrt_cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()  # what the admissions printed
    assert main(["nrt", "--node-name", "worker-1", "--json", *args]) == 0
    obj: dict[str, Any] = json.loads(capsys.readouterr().out)
    return obj


@pytest.fixture
def single_numa(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A state directory made with single-numa-node: 10Gi on node 0 (5Gi left there, 15Gi
    on node 1, 1Gi reserved on each)."""
    machine = machine_file(tmp_path)
    state = tmp_path / "state"
    admit_cli(state, machine, "db", "10Gi", "--topology-policy", "single-numa-node")
    yield state, machine


def kubelet_decision(state: Path, machine: Path, pod: Pod, **config: Any) -> tuple[bool, list[int]]:
    """The kubelet's admission of ``pod`` on a copy of the state (nothing is written)."""
    m = Machine.load(str(machine))
    with MemoryManager(
        m,
        reserved_memory=m.reserve_per_node("1Gi"),
        state_dir=state,
        read_only=True,
        **config,
    ) as mm:
        containers = [
            PContainer.of(c.name, cpu=c.limits["cpu"], memory=c.limits["memory"])
            for c in pod.containers
        ]
        a = mm.copy().admit(PPod.of(pod.name, *containers))
        nodes = [n for c in pod.containers for n in (a[c.name].numa_nodes or ())[:1]]
        return a.admitted, nodes if a.admitted else []


def test_the_issue_pods_on_a_state_directory(
    single_numa: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, machine = single_numa
    # The recorded policy is used: no flag says single-numa-node here.
    obj = nrt_cli(capsys, "--state-dir", str(state))
    cases = {
        "wide": guaranteed("wide", "20Gi"),  # fits only across nodes
        "big": guaranteed("big", "12Gi"),  # fits node 1 only
        "small": guaranteed("small", "4Gi"),  # fits node 0 (the lowest) as well
        "cpu-heavy": guaranteed("cpu-heavy", "1Gi", cpu="9"),  # more CPUs than a node has
    }
    verdicts = {name: filter_pod(p, obj, ALLOCATABLE) for name, p in cases.items()}
    assert not verdicts["wide"].schedulable
    assert verdicts["wide"].status is not None
    assert verdicts["wide"].status.reason == "cannot align container"
    assert (verdicts["big"].schedulable, verdicts["big"].numa) == (True, [1])
    assert (verdicts["small"].schedulable, verdicts["small"].numa) == (True, [0])
    assert not verdicts["cpu-heavy"].schedulable
    # The scheduler and the kubelet agree, down to the NUMA node (CPU is pymm's to report,
    # not to place: the kubelet side checks memory).
    for name in ("wide", "big", "small"):
        admitted, nodes = kubelet_decision(
            state, machine, cases[name], topology_policy="single-numa-node"
        )
        assert (admitted, nodes) == (verdicts[name].schedulable, verdicts[name].numa), name


def test_without_cpu_in_the_zones_every_guaranteed_pod_is_refused(
    single_numa: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # What the issue found: the plugin treats cpu as NUMA-affine, not host-level.
    state, _ = single_numa
    obj = nrt_cli(capsys, "--state-dir", str(state))
    for z in obj["zones"]:
        z["resources"] = [r for r in z["resources"] if r["name"] != "cpu"]
    assert not filter_pod(guaranteed("p", "1Gi"), obj, ALLOCATABLE).schedulable


def test_burstable_and_best_effort_pods_pass(
    single_numa: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, _ = single_numa
    obj = nrt_cli(capsys, "--state-dir", str(state))
    burstable = Pod("b", [Container("c", {"cpu": "1", "memory": "40Gi"}, {"memory": "40Gi"})])
    best_effort = Pod("e", [Container("c")])
    assert filter_pod(burstable, obj, ALLOCATABLE).schedulable
    assert filter_pod(best_effort, obj, ALLOCATABLE).schedulable


def test_pod_scope(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    machine = machine_file(tmp_path)
    state = tmp_path / "state"
    admit_cli(
        state, machine, "db", "10Gi", "--topology-policy", "single-numa-node", "--scope", "pod"
    )
    obj = nrt_cli(capsys, "--state-dir", str(state))
    assert {"name": "topologyManagerScope", "value": "pod"} in obj["attributes"]
    # 5Gi + 11Gi: in pod scope 16Gi must fit one node (none has it); 12Gi fits node 1.
    split = guaranteed("split", "5Gi", "11Gi")
    assert not filter_pod(split, obj, ALLOCATABLE).schedulable
    fits = guaranteed("fits", "6Gi", "6Gi")
    assert filter_pod(fits, obj, ALLOCATABLE).numa == [1]
    # What the scheduler sends, the kubelet admits, on the node the plugin expected. (The
    # split pod it holds back the kubelet would admit: its memory hints for 16Gi are empty,
    # "no preference", and each container is then placed alone; the plugin is stricter.)
    admitted, nodes = kubelet_decision(
        state, machine, fits, topology_policy="single-numa-node", scope="pod"
    )
    assert admitted and nodes == [1, 1]
    # The same pods in container scope: each container on its own node is fine.
    container_scope = dict(
        obj, attributes=[a for a in obj["attributes"] if a["name"] != "topologyManagerScope"]
    )
    container_scope["topologyPolicies"] = ["SingleNUMANodeContainerLevel"]
    assert filter_pod(split, container_scope, ALLOCATABLE).numa == [0, 1]


@pytest.mark.parametrize("policy", ["restricted", "best-effort"])
def test_restricted_and_best_effort_filter_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    machine = machine_file(tmp_path)
    state = tmp_path / "state"
    admit_cli(state, machine, "db", "10Gi", "--topology-policy", policy)
    obj = nrt_cli(capsys, "--state-dir", str(state))
    # The plugin has no handler for them: the kubelet decides alone (restricted may still
    # refuse the pod after scheduling, which is what the kubelet does with any scheduler).
    assert filter_pod(guaranteed("wide", "20Gi"), obj, ALLOCATABLE).schedulable


# -- real kubelet state files -----------------------------------------------------------------


def machine_of(state: dict[str, Any]) -> tuple[Machine, list[dict[str, Any]]]:
    """The machine and reservation a kubelet state file was written on, from its tables."""
    nodes, reserved = [], []
    for key, node in sorted(state["machineState"].items(), key=lambda kv: int(kv[0])):
        tables = node["memoryMap"]
        pools = [
            {"page_size_kib": _engine.parse_quantity(r.removeprefix("hugepages-")) // 1024,
             "num_pages": t["total"] // _engine.parse_quantity(r.removeprefix("hugepages-"))}
            for r, t in tables.items() if r.startswith("hugepages-")
        ]  # fmt: skip
        nodes.append(
            {
                "id": int(key),
                "memory_bytes": tables["memory"]["total"],
                "cpus": 4,
                "hugepages": pools,
            }
        )
        reserved.append(
            {"numaNode": int(key), "limits": {"memory": str(tables["memory"]["systemReserved"])}}
        )
    return Machine.from_dict({"name": "kubelet-node", "nodes": nodes}), reserved


def kubelet_files() -> list[Path]:
    return sorted(STATE_FILES.glob("*.state.json"))


@pytest.mark.parametrize("path", kubelet_files(), ids=lambda p: p.name.removesuffix(".state.json"))
def test_real_kubelet_state_files(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    policy, _, state = _engine.decode_checkpoint(text)
    machine, reserved = machine_of(state)
    obj = node_resource_topology(
        state,
        machine,
        node_name="kubelet-node",
        topology_policy="single-numa-node",
        memory_policy=policy,
    )
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    (directory / "memory_manager_state").write_text(text)
    with MemoryManager(
        machine,
        reserved_memory=reserved,
        topology_policy="single-numa-node",
        state_dir=directory,
        read_only=True,
    ) as mm:
        checked = 0
        for gib in (1, 2, 4, 6, 8, 10, 12, 14, 15, 16, 20):
            pod = guaranteed(f"probe-{gib}", f"{gib}Gi", cpu="1")
            verdict = filter_pod(pod, obj, {"cpu": "64", "memory": "1Ti"})
            a = mm.copy().admit(PPod.of(pod.name, PContainer.of("c0", cpu="1", memory=f"{gib}Gi")))
            # A pod the scheduler sends is one the kubelet admits, on the node it expected;
            # a pod it holds back is one the kubelet would refuse.
            assert verdict.schedulable == a.admitted, (gib, verdict, a)
            if a.admitted:
                assert a["c0"].numa_nodes == tuple(verdict.numa)
            checked += 1
        assert checked == 11


def test_the_none_memory_policy_exports_the_capacity(tmp_path: Path) -> None:
    text = with_valid_checksum({"policyName": "None", "machineState": {}, "entries": {}})
    policy, _, state = _engine.decode_checkpoint(text)
    machine = Machine.from_dict(json.loads(machine_file(tmp_path).read_text()))
    obj = node_resource_topology(
        state, machine, node_name="n", topology_policy="single-numa-node", memory_policy=policy
    )
    assert [z["name"] for z in obj["zones"]] == ["node-0", "node-1"]
    memory = {r["name"]: r for r in obj["zones"][0]["resources"]}["memory"]
    assert memory["capacity"] == memory["allocatable"] == memory["available"] == "16Gi"
    assert filter_pod(guaranteed("p", "12Gi"), obj, ALLOCATABLE).schedulable
