"""``pymm nrt`` reads what a state directory recorded, refuses a foreign machine as ``admit``
does, takes CPUs from a kubelet's checksummed ``cpu_manager_state``, fingerprints the pods it
reflects, and (``--watch``) waits for a state file that does not exist yet."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers_cpu_checkpoint import cpu_checksum, cpu_manager_state, cpu_spew_text

from pymm import Container, Machine, MemoryManager, Pod, _engine
from pymm.cli import main
from pymm.errors import CheckpointCorruptedError
from pymm.nrt import pod_fingerprint

ROOT = Path(__file__).resolve().parent.parent
STATE_FILES = Path(__file__).parent / "conformance" / "state-files"
KUBELET_FILE = STATE_FILES / "single-numa-fit-single-numa-node-op01.state.json"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["nrt", "--node-name", "w1", "--json", *args]) == 0, capsys.readouterr().err
    obj: dict[str, Any] = json.loads(capsys.readouterr().out)
    return obj


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["nrt", "--node-name", "w1", *args]) == 2
    # One error line, then (for a state the kubelet would refuse) its details and advice, as
    # every pymm command reports it.
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("pymm: error: "), err
    return "\n".join(err)


def attrs(entity: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in entity.get("attributes", [])}


def resource(obj: dict[str, Any], node: int, name: str) -> dict[str, str]:
    (z,) = [z for z in obj["zones"] if z["name"] == f"node-{node}"]
    (r,) = [r for r in z["resources"] if r["name"] == name]
    return {k: r[k] for k in ("capacity", "allocatable", "available")}


def pod_yaml(directory: Path, uid: str, memory: str, namespace: str = "apps") -> Path:
    path = directory / f"{uid}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": uid, "namespace": namespace, "uid": uid},
                "spec": {
                    "containers": [
                        {"name": "c", "resources": {"limits": {"cpu": "1", "memory": memory}}}
                    ]
                },
            }
        )
    )
    return path


@pytest.fixture
def xeon_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    for uid, memory in (("a", "10Gi"), ("b", "4Gi")):
        args = ["admit", str(pod_yaml(tmp_path, uid, memory)), "--state-dir", str(state)]
        args += ["--machine", "xeon-gold-6242-2s", "--topology-policy", "single-numa-node"]
        assert main(args) == 0
    return state


def test_a_state_directory_is_read_as_recorded(
    xeon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = run_json(capsys, "--state-dir", str(xeon_dir))
    assert attrs(obj)["topologyManagerPolicy"] == "single-numa-node"
    assert obj["topologyPolicies"] == ["SingleNUMANodeContainerLevel"]
    m = Machine.from_catalog("xeon-gold-6242-2s")
    assert resource(obj, 0, "cpu") == dict.fromkeys(
        ("capacity", "allocatable", "available"), str(m.node(0).cpus)
    )
    # Confirming the recorded machine and policy is allowed, and changes nothing.
    again = run_json(
        capsys,
        "--state-dir",
        str(xeon_dir),
        "--machine",
        "xeon-gold-6242-2s",
        "--topology-policy",
        "single-numa-node",
    )
    assert again == obj


def test_a_foreign_machine_or_policy_is_refused(
    xeon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(capsys, "--state-dir", str(xeon_dir), "--machine", "epyc-7413-2s-nps4")
    # The kubelet's start-up refusal, as `pymm admit` gives it for the same directory.
    assert "the expected machine state is different from the real one" in err
    capsys.readouterr()
    pod = pod_yaml(xeon_dir.parent, "c", "1Gi")
    assert (
        main(["admit", str(pod), "--state-dir", str(xeon_dir), "--machine", "epyc-7413-2s-nps4"])
        == 2
    )
    assert capsys.readouterr().err.splitlines()[0] == err.splitlines()[0]
    err = fails(capsys, "--state-dir", str(xeon_dir), "--topology-policy", "none")
    assert "--topology-policy none conflicts with the state directory's single-numa-node" in err


def test_a_directory_without_its_configuration_needs_the_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = Machine.synthetic(2, memory="16Gi")
    with MemoryManager(
        m, reserved_memory=m.reserve_per_node("1Gi"), state_dir=tmp_path / "s"
    ) as mm:
        mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="1Gi")))
    err = fails(capsys, "--state-dir", str(tmp_path / "s"))
    assert "records no configuration" in err


# -- CPUs from the kubelet's cpu_manager_state ------------------------------------------------


def test_the_cpu_state_writer_matches_the_kubelets_vectors() -> None:
    # pkg/kubelet/cm/cpumanager/state TestCheckpointStateRestore: files the kubelet restores.
    assert cpu_checksum("none", "4-6", {}) == 354655845
    assert (
        cpu_checksum("none", "1-3", {"pod": {"container1": "4-6", "container2": "1-3"}})
        == 3610638499
    )
    assert "Entries:(map[string]map[string]string)map[pod:map[container1:4-6" in cpu_spew_text(
        "none", "1-3", {"pod": {"container1": "4-6", "container2": "1-3"}}
    )


def test_the_engine_decodes_real_shaped_cpu_states() -> None:
    text = cpu_manager_state("static", "0,3-7", {"pod-a": {"c": "1-2"}, "pod-b": {"x": "8,10"}})
    policy, checksum, default, entries = _engine.decode_cpu_checkpoint(text)
    assert (policy, default) == ("static", [0, 3, 4, 5, 6, 7])
    assert entries == {"pod-a": {"c": [1, 2]}, "pod-b": {"x": [8, 10]}}
    assert checksum == json.loads(text)["checksum"]
    tampered = text.replace('"1-2"', '"1-3"')
    with pytest.raises(CheckpointCorruptedError) as info:
        _engine.decode_cpu_checkpoint(tampered)
    assert (info.value.stored_checksum, info.value.computed_checksum) == (
        checksum,
        cpu_checksum("static", "0,3-7", {"pod-a": {"c": "1-3"}, "pod-b": {"x": "8,10"}}),
    )


def kubelet_node(tmp_path: Path) -> tuple[Path, Path]:
    """A kubelet root with its memory state, and a machine file whose nodes carry their CPU
    lists (as sysfs discovery records them)."""
    root = tmp_path / "kubelet"
    root.mkdir()
    shutil.copy(KUBELET_FILE, root / "memory_manager_state")
    m = Machine.synthetic(2, memory="16Gi").to_dict()
    for n, cpus in zip(m["nodes"], ("0-3", "4-7"), strict=True):
        n["cpus"], n["cpulist"] = 4, cpus
    machine = tmp_path / "machine.json"
    machine.write_text(json.dumps(m))
    return root, machine


def test_kubelet_cpus_are_capacity_minus_reserved_minus_exclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, machine = kubelet_node(tmp_path)
    (root / "cpu_manager_state").write_text(
        cpu_manager_state("static", "0,3-7", {"p1": {"c1": "1-2"}})
    )
    args = ("--kubelet-state", str(root / "memory_manager_state"), "--machine", str(machine))
    obj = run_json(capsys, *args, "--reserved-cpus", "0", "--topology-policy", "single-numa-node")
    assert resource(obj, 0, "cpu") == {"capacity": "4", "allocatable": "3", "available": "1"}
    assert resource(obj, 1, "cpu") == {"capacity": "4", "allocatable": "4", "available": "4"}
    # A damaged CPU state is refused, with the kubelet's word for it.
    (root / "cpu_manager_state").write_text(
        cpu_manager_state("static", "0,3-7", {"p1": {"c1": "1-2"}}).replace('"1-2"', '"2-3"')
    )
    assert "checkpoint is corrupted" in fails(capsys, *args)
    # Reserved CPUs need the machine's CPU lists to be placed.
    err = fails(
        capsys,
        "--kubelet-state",
        str(root / "memory_manager_state"),
        "--machine",
        "xeon-gold-6242-2s",
        "--reserved-cpus",
        "0",
    )
    assert "CPU lists" in err


def test_the_fingerprint_covers_the_pods_the_state_holds(
    xeon_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = tmp_path / "pods.json"
    items = [
        {
            "metadata": {"namespace": "apps", "name": "a", "uid": "a"},
            "status": {"phase": "Running"},
        },
        {
            "metadata": {"namespace": "apps", "name": "b", "uid": "b"},
            "status": {"phase": "Running"},
        },
        # Not in the state (a BestEffort pod, a finished one): not part of the fingerprint.
        {"metadata": {"namespace": "web", "name": "x", "uid": "x"}, "status": {"phase": "Running"}},
        {
            "metadata": {"namespace": "web", "name": "y", "uid": "y"},
            "status": {"phase": "Succeeded"},
        },
    ]
    pods.write_text(json.dumps({"kind": "PodList", "items": items}))
    obj = run_json(capsys, "--state-dir", str(xeon_dir), "--pods", str(pods))
    assert attrs(obj)["nodeTopologyPodsFingerprint"] == pod_fingerprint(
        [("apps", "a"), ("apps", "b")]
    )
    assert attrs(obj)["nodeTopologyPodsFingerprintMethod"] == "with-exclusive-resources"
    # A pod of the state that the list does not name: no fingerprint rather than a wrong one.
    pods.write_text(json.dumps({"kind": "PodList", "items": items[:1]}))
    obj = run_json(capsys, "--state-dir", str(xeon_dir), "--pods", str(pods))
    assert "nodeTopologyPodsFingerprint" not in attrs(obj)


@pytest.mark.slow
def test_watch_waits_for_the_state_file(tmp_path: Path) -> None:
    root, machine = kubelet_node(tmp_path)
    (root / "memory_manager_state").unlink()
    args = ["nrt", "--kubelet-state", str(root / "memory_manager_state"), "--machine", str(machine)]
    args += ["--node-name", "w1", "--json", "--watch", "--poll", "0.1", "--resync", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pymm.cli", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        assert proc.poll() is None, "the exporter exited while the kubelet had written nothing"
        shutil.copy(KUBELET_FILE, root / "memory_manager_state")
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out)["metadata"]["name"] == "w1"
    logs = [json.loads(line) for line in err.splitlines()]
    assert any(r["message"] == "waiting for the state file" for r in logs)
