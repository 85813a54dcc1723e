"""The manifests in deploy/ are well-formed Kubernetes objects (kubernetes-validate, strict, as
CI runs it; the client's models), run with the least privilege, and every pymm command they run
is one pymm's own parser accepts. The objects pymm publishes validate against every version the
CRD serves."""

from __future__ import annotations

import configparser
import json
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes.client import ApiClient

from pymm.cli import build_parser

DEPLOY = Path(__file__).parent.parent / "deploy"

MODELS = {
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
    "DaemonSet": "V1DaemonSet",
    "CustomResourceDefinition": "V1CustomResourceDefinition",
}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_round_trips_through_its_model(doc: dict[str, Any]) -> None:
    client = ApiClient()
    model = client.deserialize(json.dumps(doc), MODELS[doc["kind"]], "application/json")
    assert client.sanitize_for_serialization(model) == doc  # type: ignore[no-untyped-call]


def test_daemonsets_run_valid_pymm_commands() -> None:
    daemonsets = [d for d in documents() if d["kind"] == "DaemonSet"]
    assert len(daemonsets) == 2
    commands = [c["args"] for d in daemonsets for c in d["spec"]["template"]["spec"]["containers"]]
    assert {args[0] for args in commands} == {"nrt", "agent"}
    for args in commands:
        parsed = build_parser().parse_args(args)
        if args[0] == "nrt":
            assert parsed.apply and parsed.watch
            assert parsed.state_dir or parsed.kubelet_state
        else:
            assert parsed.state_dir == "/var/lib/pymm" and parsed.metrics_port == 9464


def test_the_rbac_allows_what_the_publisher_does() -> None:
    (role,) = [d for d in documents() if d["kind"] == "ClusterRole"]
    rules = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        ("topology.node.k8s.io", "noderesourcetopologies"): {"get", "create", "update"},
        ("", "pods"): {"list"},  # the node's pods, for the fingerprint
    }


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_validates_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_strict_validation_catches_a_broken_manifest() -> None:
    (ds,) = [d for d in documents() if d["metadata"]["name"] == "pymm-agent"]
    broken = json.loads(json.dumps(ds))
    broken["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagee"):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
    missing = json.loads(json.dumps(ds))
    del missing["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError, match="selector"):
        kubernetes_validate.validate(missing, kubernetes_validate.latest_version(), strict=True)


def containers(ds: dict[str, Any]) -> list[dict[str, Any]]:
    spec = ds["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_daemonsets_run_with_the_least_privilege() -> None:
    for ds in (d for d in documents() if d["kind"] == "DaemonSet"):
        spec = ds["spec"]["template"]["spec"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in containers(ds):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert not sc.get("privileged")
            # Root only where the files leave no choice (the kubelet's 0600 state files, the
            # one-time chown of the agent's directories), and then without capabilities but
            # the chown's own.
            if sc.get("runAsNonRoot") is not True:
                assert sc["runAsUser"] == 0
                assert set(sc["capabilities"].get("add", [])) <= {"CHOWN", "FOWNER"}
    (agent,) = [d for d in documents() if d["metadata"]["name"] == "pymm-agent"]
    assert {c["name"] for c in agent["spec"]["template"]["spec"]["containers"]} == {"agent", "nrt"}
    for c in agent["spec"]["template"]["spec"]["containers"]:
        assert c["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["runAsUser"] == 65532


def test_the_exporter_sees_the_state_files_not_the_kubelets_secrets() -> None:
    (exporter,) = [d for d in documents() if d["metadata"]["name"] == "pymm-nrt-exporter"]
    (c,) = exporter["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert all(m.get("readOnly") for m in mounts.values())
    kubelet = "/host/var/lib/kubelet"
    # The directory of memory_manager_state and cpu_manager_state, read-only ...
    assert mounts[kubelet]["name"] == "kubelet-dir"
    assert f"--kubelet-state={kubelet}/memory_manager_state" in c["args"]
    # ... with the keys, the pods' volumes and the plugin sockets hidden under empty dirs.
    for hidden in ("pki", "pods", "device-plugins", "pod-resources", "plugins", "plugins_registry"):
        assert mounts[f"{kubelet}/{hidden}"]["name"] == "masked"
    volumes = {v["name"]: v for v in exporter["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["masked"]


def test_the_crd_serves_both_versions_and_pymm_objects_validate() -> None:
    import jsonschema

    (crd,) = [d for d in documents() if d["kind"] == "CustomResourceDefinition"]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert set(versions) == {"v1alpha1", "v1alpha2"}
    assert all(v["served"] for v in versions.values())
    assert [n for n, v in versions.items() if v["storage"]] == ["v1alpha2"]
    from pymm import Machine, MemoryManager

    m = Machine.from_catalog("xeon-8480-2s-snc4")
    obj = MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi")).nrt("worker-1")
    for name, version in versions.items():
        schema = version["schema"]["openAPIV3Schema"]
        jsonschema.validate({**obj, "apiVersion": f"topology.node.k8s.io/{name}"}, schema)
    # v1alpha1 requires topologyPolicies; an object without them is refused there only.
    bare = {k: v for k, v in obj.items() if k != "topologyPolicies"}
    jsonschema.validate(bare, versions["v1alpha2"]["schema"]["openAPIV3Schema"])
    with pytest.raises(jsonschema.ValidationError, match="topologyPolicies"):
        jsonschema.validate(bare, versions["v1alpha1"]["schema"]["openAPIV3Schema"])


def test_systemd_unit_runs_a_valid_agent_command() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "pymm-agent.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[:2] == ["/usr/local/bin/pymm", "agent"]
    parsed = build_parser().parse_args(argv[1:])
    assert parsed.socket == "/run/pymm/agent.sock"
    assert unit["Service"]["StateDirectory"] == "pymm"
    assert unit["Service"]["KillSignal"] == "SIGTERM"
