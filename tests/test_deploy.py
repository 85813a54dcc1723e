"""The manifests in deploy/ are well-formed Kubernetes objects, and every pymm command they run
is one pymm's own parser accepts."""

from __future__ import annotations

import configparser
import json
import shlex
from pathlib import Path
from typing import Any

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
        else:
            assert parsed.state_dir == "/var/lib/pymm" and parsed.metrics_port == 9464


def test_the_rbac_allows_what_the_publisher_does() -> None:
    (role,) = [d for d in documents() if d["kind"] == "ClusterRole"]
    (rule,) = role["rules"]
    assert rule["resources"] == ["noderesourcetopologies"]
    assert set(rule["verbs"]) == {"get", "create", "update"}


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
