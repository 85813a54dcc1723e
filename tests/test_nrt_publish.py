"""``pymm nrt`` printing and ``--apply``/``--watch`` publishing, against a local server that
answers as the API server does, with the exact request sequence asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers_apiserver import FakeApiServer

from pymm import Container, Machine, MemoryManager, Pod, parse_quantity
from pymm.cli import main
from pymm.nrt import pod_fingerprint
from pymm.publish import NrtPublisher, custom_objects_api

ROOT = Path(__file__).parent.parent
MACHINE = "xeon-gold-6242-2s"
GI = 2**30


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    admit(d, "first", "10Gi")
    return d


def admit(state_dir: Path, uid: str, memory: str) -> None:
    m = Machine.from_catalog(MACHINE)
    with MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi"), state_dir=state_dir) as mm:
        assert mm.admit(Pod.of(uid, Container.of("c", cpu="1", memory=memory))).admitted


def available(obj: dict[str, Any], node: int = 0) -> int:
    (z,) = [z for z in obj["zones"] if z["name"] == f"node-{node}"]
    (r,) = [r for r in z["resources"] if r["name"] == "memory"]
    return parse_quantity(r["available"])


def nrt_args(state_dir: Path, *extra: str) -> list[str]:
    return ["nrt", "--state-dir", str(state_dir), "--machine", MACHINE, "--node-name", "w1", *extra]


def test_prints_yaml_and_json(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(nrt_args(state_dir)) == 0
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    assert main(nrt_args(state_dir, "--json", "--topology-policy", "restricted")) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_yaml["metadata"]["name"] == as_json["metadata"]["name"] == "w1"
    assert as_yaml["zones"] == as_json["zones"]
    m = Machine.from_catalog(MACHINE)
    assert available(as_json) == m.node(0).memory_bytes - GI - 10 * GI
    assert {"name": "topologyManagerPolicy", "value": "restricted"} in as_json["attributes"]


def test_kubelet_state_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "tests/conformance/state-files/hugepages-both-op01.state.json"
    nodes = len(json.loads(path.read_text())["machineState"])
    machine = Path(os.environ.get("TMPDIR", "/tmp")) / f"pymm-nrt-test-{os.getpid()}.json"
    machine.write_text(json.dumps(Machine.synthetic(nodes, memory="16Gi").to_dict()))
    try:
        args = ["nrt", "--kubelet-state", str(path), "--machine", str(machine), "--json"]
        assert main([*args, "--node-name", "k"]) == 0
    finally:
        machine.unlink()
    obj = json.loads(capsys.readouterr().out)
    names = {r["name"] for z in obj["zones"] for r in z["resources"]}
    assert names == {"cpu", "memory", "hugepages-1Gi", "hugepages-2Mi"}


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(nrt_args(tmp_path / "missing")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"pymm: error: cannot read state file {tmp_path}/missing/memory_manager_state: "
        "No such file or directory"
    ]
    assert main([*nrt_args(tmp_path), "--kubeconfig", "x"]) == 2
    assert "only make sense with --apply" in capsys.readouterr().err


def test_publisher_creates_replaces_and_retries_conflicts(
    state_dir: Path, api: FakeApiServer, tmp_path: Path
) -> None:
    publisher = NrtPublisher(custom_objects_api(str(api.kubeconfig(tmp_path))))
    m = Machine.from_catalog(MACHINE)
    with MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi"), state_dir=state_dir) as mm:
        first = publisher.publish(mm.nrt("w1"))
        assert first["metadata"]["resourceVersion"] == "1"
        mm.admit(Pod.of("second", Container.of("c", cpu="1", memory="5Gi")))
        publisher.publish(mm.nrt("w1"))
        api.touch("w1")  # someone else writes: our version 2 is stale now
        mm.admit(Pod.of("third", Container.of("c", cpu="1", memory="5Gi")))
        final = publisher.publish(mm.nrt("w1"))
    assert api.calls() == [
        ("POST", None, 201),
        ("PUT", "1", 200),
        ("PUT", "2", 409),
        ("GET", None, 200),
        ("PUT", "3", 200),
    ]
    assert final["metadata"]["resourceVersion"] == "4"
    assert available(api.objects["w1"]) == m.node(0).memory_bytes - GI - 20 * GI
    assert api.objects["w1"]["zones"] == final["zones"]


def test_apply_twice_from_the_cli(
    state_dir: Path, api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = str(api.kubeconfig(tmp_path))
    assert main(nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig)) == 0
    assert "published NodeResourceTopology w1 (resourceVersion 1)" in capsys.readouterr().err
    admit(state_dir, "second", "3Gi")
    # A new process knows no version: create, told it exists, read it, replace.
    assert main(nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig)) == 0
    assert api.calls() == [
        ("POST", None, 201),
        ("POST", None, 409),
        ("GET", None, 200),
        ("PUT", "1", 200),
    ]
    m = Machine.from_catalog(MACHINE)
    assert available(api.objects["w1"]) == m.node(0).memory_bytes - GI - 13 * GI


def test_api_server_refusal_is_one_line(
    state_dir: Path, api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.fail_next["POST"] = 403
    kubeconfig = str(api.kubeconfig(tmp_path))
    assert main(nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("pymm: error: NodeResourceTopology w1: the API server answered 403")


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--poll", "0.1"]], ids=["inotify", "poll"])
def test_watch_republishes_on_change_and_stops_on_sigterm(
    state_dir: Path, api: FakeApiServer, tmp_path: Path, mode: list[str]
) -> None:
    kubeconfig = str(api.kubeconfig(tmp_path))
    args = nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig, "--watch", *mode)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pymm.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "w1" in api.objects)
        time.sleep(1.5)  # the watch starts after the first publish
        before = available(api.objects["w1"])
        admit(state_dir, "second", "4Gi")
        wait_for(lambda: available(api.objects["w1"]) == before - 4 * GI)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert [c[0] for c in api.calls()] == ["POST", "PUT"]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(rec["message"] == "stopping" and rec["signal"] == "SIGTERM" for rec in logs)


# -- ownership, the pod list, and what the API server refuses ---------------------------------


def foreign_object(name: str) -> dict[str, Any]:
    """What resource-topology-exporter publishes: no pymm label, its own attributes."""
    return {
        "apiVersion": "topology.node.k8s.io/v1alpha2",
        "kind": "NodeResourceTopology",
        "metadata": {"name": name, "resourceVersion": "7", "uid": "rte"},
        "topologyPolicies": ["SingleNUMANodeContainerLevel"],
        "attributes": [{"name": "nodeTopologyPodsFingerprint", "value": "pfp0v001aaaa"}],
        "zones": [{"name": "node-0", "type": "Node", "resources": []}],
    }


def test_apply_never_overwrites_an_object_it_did_not_create(
    state_dir: Path, api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.objects["w1"] = foreign_object("w1")
    kubeconfig = str(api.kubeconfig(tmp_path))
    assert main(nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was not created by pymm" in err[0] and "--force" in err[0]
    assert api.objects["w1"]["metadata"]["uid"] == "rte"
    assert api.objects["w1"]["attributes"][0]["value"] == "pfp0v001aaaa"  # untouched
    assert [c[0] for c in api.calls()] == ["POST", "GET"]
    # --force takes it over: replaced with pymm's object, which now carries pymm's label.
    assert main(nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig, "--force")) == 0
    labels = api.objects["w1"]["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/managed-by": "pymm"}
    assert [c[0] for c in api.calls()][-3:] == ["POST", "GET", "PUT"]
    # From then on it is pymm's: no --force needed.
    assert main(nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig)) == 0


def test_apply_fingerprints_the_pods_the_api_server_lists(
    state_dir: Path, api: FakeApiServer, tmp_path: Path
) -> None:
    def pod(ns: str, name: str, uid: str, node: str, phase: str = "Running") -> dict[str, Any]:
        meta = {"namespace": ns, "name": name, "uid": uid}
        return {"metadata": meta, "spec": {"nodeName": node}, "status": {"phase": phase}}

    api.pods = [
        pod("db", "first-0", "first", "w1"),  # the pod the state holds
        pod("web", "front", "front-uid", "w1"),  # on the node, holding nothing exclusive
        pod("db", "other", "other-uid", "w2"),  # another node
    ]
    kubeconfig = str(api.kubeconfig(tmp_path))
    assert main(nrt_args(state_dir, "--apply", "--kubeconfig", kubeconfig)) == 0
    found = {a["name"]: a["value"] for a in api.objects["w1"]["attributes"]}
    assert found["nodeTopologyPodsFingerprint"] == pod_fingerprint([("db", "first-0")])
    assert found["nodeTopologyPodsFingerprintMethod"] == "with-exclusive-resources"
    assert api.pod_listings() == ["fieldSelector=spec.nodeName%3Dw1"]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda o: o["zones"][0].pop("type"), "'type' is a required property"),
        (lambda o: o["zones"][0]["resources"][0].update(capacity="lots"), "does not match"),
        (lambda o: o["metadata"].update(name="Worker_1"), "RFC 1123"),
        (lambda o: o.update(apiVersion="topology.node.k8s.io/v1beta9"), "apiVersion"),
    ],
    ids=["zone-without-type", "capacity-lots", "name-Worker_1", "wrong-version"],
)
def test_the_fake_api_server_refuses_what_the_real_one_refuses(
    api: FakeApiServer, tmp_path: Path, break_it: Any, message: str
) -> None:
    from kubernetes.client import ApiException

    m = Machine.from_catalog(MACHINE)
    obj = MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi")).nrt("w1")
    broken = json.loads(json.dumps(obj))
    break_it(broken)
    objects = custom_objects_api(str(api.kubeconfig(tmp_path)))
    with pytest.raises(ApiException) as info:
        objects.create_cluster_custom_object(
            "topology.node.k8s.io", "v1alpha2", "noderesourcetopologies", broken
        )
    assert info.value.status == 422 and message in json.loads(info.value.body or "{}")["message"]
    # The object as pymm writes it is accepted, under either served version (v1alpha1
    # requires topologyPolicies, which pymm always sets).
    objects.create_cluster_custom_object(
        "topology.node.k8s.io", "v1alpha2", "noderesourcetopologies", obj
    )
    v1 = {**obj, "apiVersion": "topology.node.k8s.io/v1alpha1", "metadata": {"name": "w2"}}
    objects.create_cluster_custom_object(
        "topology.node.k8s.io", "v1alpha1", "noderesourcetopologies", v1
    )
    assert set(api.objects) == {"w1", "w2"}
