"""Tests for pymm.pod: the Pod/Container model, its dict shapes, and Kubernetes manifest reading."""

from __future__ import annotations

import copy
import errno
import json
import os
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymm import canonical_quantity
from pymm.errors import InputFileError, PodError, PymmError
from pymm.pod import Container, Pod, load_pods, load_pods_file

CONFORMANCE = Path(__file__).parent / "conformance"

# What `kubectl get pod -o yaml` prints for a running pod with a native sidecar (1.29+), an
# ordinary init container, hugepages, and pod-level noise (status, managedFields, ...).
KUBECTL_POD_YAML = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Pod
    metadata:
      annotations:
        kubectl.kubernetes.io/restartedAt: "2024-05-02T10:11:12Z"
      creationTimestamp: "2024-05-02T10:11:13Z"
      generateName: dpdk-router-7c9f8d6b5-
      labels:
        app: dpdk-router
        pod-template-hash: 7c9f8d6b5
      managedFields:
      - apiVersion: v1
        fieldsType: FieldsV1
        fieldsV1:
          f:metadata:
            f:generateName: {}
          f:spec:
            f:containers:
              k:{"name":"router"}:
                f:resources:
                  f:limits:
                    f:hugepages-2Mi: {}
        manager: kube-controller-manager
        operation: Update
        time: "2024-05-02T10:11:13Z"
      name: dpdk-router-7c9f8d6b5-x2x7q
      namespace: netfn
      ownerReferences:
      - apiVersion: apps/v1
        blockOwnerDeletion: true
        controller: true
        kind: ReplicaSet
        name: dpdk-router-7c9f8d6b5
        uid: 0c3d1f5e-0b7a-4a4c-9d0e-2f3f0f8f1a11
      resourceVersion: "4815162342"
      uid: 8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b
    spec:
      containers:
      - image: registry.example.com/netfn/router:2.4.1
        imagePullPolicy: IfNotPresent
        name: router
        resources:
          limits:
            cpu: "4"
            hugepages-2Mi: 1Gi
            memory: 8Gi
          requests:
            cpu: "4"
            hugepages-2Mi: 1Gi
            memory: 8Gi
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
        volumeMounts:
        - mountPath: /dev/hugepages
          name: hugepage
      - image: registry.example.com/netfn/metrics:1.0
        name: metrics
        resources:
          limits:
            memory: 256Mi
      dnsPolicy: ClusterFirst
      enableServiceLinks: true
      initContainers:
      - command: ["sh", "-c", "sysctl -w vm.nr_hugepages=512"]
        image: busybox:1.36
        name: setup
        resources:
          limits:
            cpu: 500m
            memory: 64Mi
          requests:
            cpu: 500m
            memory: 64Mi
      - image: registry.example.com/mesh/proxy:1.22
        name: mesh-proxy
        restartPolicy: Always
        resources:
          limits:
            cpu: "1"
            memory: 512Mi
      nodeName: worker-17
      preemptionPolicy: PreemptLowerPriority
      priority: 0
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {}
      serviceAccountName: default
      terminationGracePeriodSeconds: 30
      tolerations:
      - effect: NoExecute
        key: node.kubernetes.io/not-ready
        operator: Exists
        tolerationSeconds: 300
      volumes:
      - emptyDir:
          medium: HugePages-2Mi
        name: hugepage
    status:
      conditions:
      - lastProbeTime: null
        lastTransitionTime: "2024-05-02T10:11:20Z"
        status: "True"
        type: Ready
      containerStatuses:
      - containerID: containerd://abc
        image: registry.example.com/netfn/router:2.4.1
        name: router
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: "2024-05-02T10:11:19Z"
      hostIP: 10.0.0.17
      phase: Running
      podIP: 10.244.3.9
      qosClass: Burstable
      startTime: "2024-05-02T10:11:13Z"
    """
)


def _manifest(**spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": spec,
    }


def _pod_error(fn: Any, *args: Any) -> str:
    with pytest.raises(PodError) as info:
        fn(*args)
    # Callers catch bad input as ValueError; the message must stay on one line for CLIs.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PymmError)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# The model


class TestContainer:
    def test_of_makes_requests_equal_limits(self) -> None:
        c = Container.of("c", memory="1Gi", cpu=2, hugepages={"2Mi": "64Mi", "hugepages-1Gi": 1})
        expected = {"cpu": "2", "memory": "1Gi", "hugepages-2Mi": "64Mi", "hugepages-1Gi": "1"}
        assert c.requests == expected
        assert c.limits == expected
        assert c.restart_policy is None
        assert not c.is_sidecar

    def test_of_limits_only(self) -> None:
        c = Container.of("c", memory="1Gi", limits_only=True)
        assert c.requests == {}
        assert c.limits == {"memory": "1Gi"}

    def test_of_explicit_requests_and_limits_merge_last(self) -> None:
        c = Container.of("c", memory="1Gi", requests={"memory": "512Mi"}, limits={"x/y": 3})
        assert c.requests == {"memory": "512Mi"}
        assert c.limits == {"memory": "1Gi", "x/y": "3"}

    def test_numbers_become_strings_and_strings_are_not_parsed(self) -> None:
        # The fields are typed for the normalised form; untyped callers may still pass numbers.
        requests: dict[str, Any] = {"memory": 1073741824, "cpu": 0.5}
        c = Container("c", requests, {"memory": " 1Gi"})
        assert dict(c.requests) == {"memory": "1073741824", "cpu": "0.5"}
        # Parsing (and rejecting) quantity text is the engine's job.
        assert c.limits["memory"] == " 1Gi"

    def test_sidecar(self) -> None:
        assert Container.of("s", memory="1Gi", restart_policy="Always").is_sidecar
        assert not Container("s", restart_policy="Never").is_sidecar

    def test_immutable_and_hashable(self) -> None:
        c = Container.of("c", memory="1Gi")
        with pytest.raises(TypeError):
            c.requests["memory"] = "2Gi"  # type: ignore[index]
        with pytest.raises(AttributeError):
            c.name = "d"  # type: ignore[misc]
        assert hash(c) == hash(Container.of("c", memory="1Gi"))
        assert {c, Container.of("c", memory="1Gi")} == {c}

    def test_input_mapping_is_copied(self) -> None:
        requests = {"memory": "1Gi"}
        c = Container("c", requests)
        requests["memory"] = "2Gi"
        assert c.requests["memory"] == "1Gi"

    def test_repr_reads_like_data(self) -> None:
        assert repr(Container.of("c", memory="1Gi")) == (
            "Container(name='c', requests={'memory': '1Gi'}, limits={'memory': '1Gi'}, "
            "restart_policy=None)"
        )

    def test_with_defaults(self) -> None:
        c = Container("c", {"cpu": "1"}, {"cpu": "2", "memory": "1Gi", "hugepages-2Mi": "2Mi"})
        d = c.with_defaults()
        # An existing request is kept, even when it differs from the limit.
        assert d.requests == {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "2Mi"}
        assert d.limits == c.limits
        assert c.requests == {"cpu": "1"}
        full = Container.of("g", memory="1Gi")
        assert full.with_defaults() is full

    @pytest.mark.parametrize(
        ("value", "kind"),
        [(True, "bool"), (None, "null"), ([1], "list"), ({"a": 1}, "mapping"), (b"1", "bytes")],
    )
    def test_bad_quantity(self, value: object, kind: str) -> None:
        msg = _pod_error(Container, "c", {}, {"memory": value})
        assert msg == f"container 'c': limits.memory: expected a quantity, got {kind}"

    @pytest.mark.parametrize("value", [float("nan"), float("inf")])
    def test_bad_quantity_values(self, value: object) -> None:
        msg = _pod_error(Container, "c", {"memory": value})
        assert msg.startswith("container 'c': requests.memory: expected a quantity, got")

    def test_quantity_text_is_checked_by_the_engine_in_a_pod(self) -> None:
        # A Container alone only converts Python values; the engine judges the text (with
        # the field's path) when the container joins a pod.
        c = Container("c", {"memory": ""})
        msg = _pod_error(Pod.of, "u", c)
        assert msg.startswith("containers[0].requests.memory: quantities must match")
        assert _pod_error(Pod.of, "u", Container("")) == "containers[0].name: must not be empty"

    def test_api_server_rules(self) -> None:
        # What the API server refuses, the engine refuses, naming the field.
        cases = {
            "containers[0].limits.memory: must be greater than or equal to 0, got -1Gi": (
                Container("c", {}, {"memory": "-1Gi"})
            ),
            "containers[0].requests.memory: must be less than or equal to memory limit of "
            "1Gi, got 2Gi": Container("c", {"memory": "2Gi"}, {"memory": "1Gi"}),
            'containers[0].limits.hugepages-foo: "hugepages-foo" is not a hugepage resource: '
            'the size after "hugepages-" must be a quantity such as 2Mi or 1Gi': Container(
                "c", {}, {"hugepages-foo": "1Gi"}
            ),
        }
        for message, container in cases.items():
            assert _pod_error(Pod.of, "u", container) == message

    def test_bad_fields(self) -> None:
        assert _pod_error(Container, 3) == "container name: expected a string, got int"
        assert _pod_error(Container, "c", ["memory"]) == (
            "container 'c': requests: expected a mapping of resource name to quantity, got list"
        )
        assert _pod_error(Container, "c", {1: "1Gi"}) == (
            "container 'c': requests: resource name must be a string, got 1"
        )
        assert _pod_error(Container, "c", {}, {}, 1) == (
            "container 'c': restart_policy: expected a string, got int"
        )


class TestPod:
    def test_of(self) -> None:
        app = Container.of("app", memory="1Gi")
        side = Container.of("side", memory="64Mi", restart_policy="Always")
        pod = Pod.of("u", app, init=[side], name="n", namespace="ns")
        assert pod == Pod("u", "n", "ns", (app,), (side,))
        assert pod.init_containers[0].is_sidecar

    def test_lists_become_tuples(self) -> None:
        pod = Pod("u", containers=[Container("a")])  # type: ignore[arg-type]
        assert pod.containers == (Container("a"),)
        assert hash(pod) == hash(Pod("u", containers=(Container("a"),)))

    def test_an_empty_uid_only_by_the_kubelets_rules(self) -> None:
        # The API server never stores a pod without a uid; the kubelet's unit tests, and so
        # the conformance vectors, hand the kubelet such pods.
        assert _pod_error(Pod, "") == "uid: must not be empty"
        assert Pod.from_dict({"uid": ""}, kubelet=True).uid == ""

    def test_pickle_and_copy(self) -> None:
        pod = Pod.of("u", Container.of("a", memory="1Gi"), init=[Container("i")])
        assert pickle.loads(pickle.dumps(pod)) == pod
        assert copy.deepcopy(pod) == pod

    def test_with_defaults_covers_init_and_app_containers(self) -> None:
        pod = Pod.of(
            "u",
            Container.of("a", memory="1Gi", limits_only=True),
            init=[Container.of("i", cpu="1", limits_only=True, restart_policy="Always")],
            resources={"limits": {"memory": "1Gi"}},
        )
        d = pod.with_defaults()
        assert d.containers[0].requests == {"memory": "1Gi"}
        assert d.init_containers[0].requests == {"cpu": "1"}
        assert d.init_containers[0].restart_policy == "Always"
        assert (d.uid, d.has_pod_level_resources) == ("u", True)
        # defaultPodRequests: the containers' requests for cpu and memory, then the limit.
        assert d.resources.requests == {"cpu": "1", "memory": "1Gi"}
        assert pod.containers[0].requests == {}

    def test_to_dict(self) -> None:
        pod = Pod.of(
            "u",
            Container.of("a", memory="1Gi"),
            init=[Container.of("s", cpu=1, limits_only=True, restart_policy="Always")],
            name="n",
        )
        assert pod.to_dict() == {
            "uid": "u",
            "name": "n",
            "namespace": "default",
            "containers": [
                {
                    "name": "a",
                    "requests": {"memory": "1Gi"},
                    "limits": {"memory": "1Gi"},
                    "restart_policy": None,
                }
            ],
            "init_containers": [
                {"name": "s", "requests": {}, "limits": {"cpu": "1"}, "restart_policy": "Always"}
            ],
            "resources": {"requests": {}, "limits": {}},
            "annotations": {},
        }
        # Plain data only: it must survive JSON unchanged.
        assert json.loads(json.dumps(pod.to_dict())) == pod.to_dict()
        assert type(pod.to_dict()["containers"][0]["requests"]) is dict

    def test_bad_fields(self) -> None:
        assert _pod_error(Pod, None) == "uid: expected a string, got null"
        assert _pod_error(Pod, "u", 1) == "name: expected a string, got int"
        assert _pod_error(Pod, "u", "n", None) == "namespace: expected a string, got null"
        assert _pod_error(Pod, "u", "", "d", (), (), 1) == "resources: expected a mapping, got int"
        assert _pod_error(Pod, "u", "", "d", ({"name": "c"},)) == (
            "containers[0]: expected a Container, got mapping"
        )
        assert _pod_error(Pod, "u", "", "d", "abc") == (
            "containers: expected a sequence of Container, got string"
        )

    def test_duplicate_names_across_init_and_app(self) -> None:
        msg = _pod_error(Pod.of, "u", Container("x"), Container("x"))
        assert msg == "containers[1].name: duplicate container name 'x' (also containers[0].name)"
        msg = _pod_error(lambda: Pod.of("u", Container("a"), init=[Container("a")]))
        assert msg == (
            "containers[0].name: duplicate container name 'a' (also init_containers[0].name)"
        )


# --------------------------------------------------------------------------------------------
# Dict shapes


class TestFromDict:
    def test_camel_case_scenario_pod(self) -> None:
        scenario_pod = {
            "uid": "p1",
            "name": "p1",
            "namespace": "default",
            "containers": [
                {
                    "name": "c1",
                    "requests": {"cpu": "1", "memory": "2Gi"},
                    "limits": {"cpu": "1", "memory": "2Gi", "hugepages-2Mi": "64Mi"},
                    "fakeHints": {"cpu": [{"affinity": [0], "preferred": True}]},
                }
            ],
            "initContainers": [
                {"name": "side", "limits": {"memory": 1073741824}, "restartPolicy": "Always"}
            ],
            "fakePodHints": {"cpu": []},
        }
        pod = Pod.from_dict(scenario_pod)
        assert pod.containers[0].limits["hugepages-2Mi"] == "64Mi"
        assert pod.init_containers == (Container("side", {}, {"memory": "1073741824"}, "Always"),)
        assert Pod.from_dict(pod.to_dict()) == pod

    def test_minimal(self) -> None:
        assert Pod.from_dict({"uid": "u"}) == Pod("u")
        assert Pod.from_dict({"uid": "u", "containers": [{"name": "c"}]}) == Pod.of(
            "u", Container("c")
        )
        pod = Pod.from_dict({"uid": "u", "resources": {"limits": {"cpu": "1"}}})
        assert pod.has_pod_level_resources
        assert pod.resources.limits == {"cpu": "1"}
        # The flag the data replaced may not claim resources the data does not give.
        assert Pod.from_dict({"uid": "u", "hasPodLevelResources": False}) == Pod("u")
        assert _pod_error(Pod.from_dict, {"uid": "u", "hasPodLevelResources": True}).startswith(
            "hasPodLevelResources: true without pod-level resources"
        )

    def test_namespace_kept_exactly(self) -> None:
        assert Pod.from_dict(Pod("u", namespace="").to_dict()).namespace == ""

    def test_container_from_dict(self) -> None:
        c = Container.of("c", memory="1Gi", restart_policy="Always")
        assert Container.from_dict(c.to_dict()) == c
        assert Container.from_dict({"name": "c", "restartPolicy": "Always"}).is_sidecar

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ([], "expected a mapping for a pod, got list"),
            ({}, "uid: required"),
            ({"uid": None}, "uid: expected a string, got null"),
            ({"uid": "u", "name": 1}, "name: expected a string, got int"),
            ({"uid": "u", "containers": {}}, "containers: expected a list, got mapping"),
            ({"uid": "u", "containers": ["c"]}, "containers[0]: expected a mapping, got string"),
            ({"uid": "u", "containers": [{}]}, "containers[0].name: required"),
            (
                {"uid": "u", "initContainers": [{"name": "c", "limits": {"memory": [1]}}]},
                "initContainers[0].limits.memory: expected a quantity, got list",
            ),
            (
                {"uid": "u", "containers": [{"name": "c", "restartPolicy": 1}]},
                "containers[0].restartPolicy: expected a string, got int",
            ),
            (
                {"uid": "u", "init_containers": [], "initContainers": []},
                "both 'init_containers' and 'initContainers' given; use one",
            ),
            (
                {"uid": "u", "has_pod_level_resources": "yes"},
                "has_pod_level_resources: expected a bool, got string",
            ),
            (
                {"uid": "u", "initContainers": [{"name": "a"}], "containers": [{"name": "a"}]},
                "containers[0].name: duplicate container name 'a' (also initContainers[0].name)",
            ),
        ],
    )
    def test_errors(self, data: Any, message: str) -> None:
        assert _pod_error(Pod.from_dict, data) == message

    def test_every_pod_in_the_conformance_data(self) -> None:
        # Both shapes occur there: snake_case in the kubelet vectors, camelCase in scenarios.
        pods: list[dict[str, Any]] = []

        def walk(node: object) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "pod" and isinstance(value, dict) and "uid" in value:
                        pods.append(value)
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        # The vectors are the kubelet's own unit tests' pods (container names such as
        # fakeContainer1, no uid), which only the kubelet's rules take; the scenarios are
        # pods the API server would accept.
        for name, kubelet in (
            ("kubelet-vectors.json", True),
            ("kubelet-oracle-small.scenarios.json", False),
        ):
            pods.clear()
            walk(json.loads((CONFORMANCE / name).read_text()))
            assert pods, name
            for data in pods:
                pod = Pod.from_dict(data, kubelet=kubelet)
                assert Pod.from_dict(pod.to_dict(), kubelet=kubelet) == pod
                assert len(pod.containers) == len(data["containers"])


# --------------------------------------------------------------------------------------------
# Manifests


class TestManifest:
    def test_kubectl_get_pod_yaml(self) -> None:
        [pod] = load_pods(KUBECTL_POD_YAML)
        assert pod.uid == "8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
        assert (pod.name, pod.namespace) == ("dpdk-router-7c9f8d6b5-x2x7q", "netfn")
        assert [c.name for c in pod.init_containers] == ["setup", "mesh-proxy"]
        assert [c.is_sidecar for c in pod.init_containers] == [False, True]
        assert [c.name for c in pod.containers] == ["router", "metrics"]
        router = pod.containers[0]
        assert router.limits == {"cpu": "4", "hugepages-2Mi": "1Gi", "memory": "8Gi"}
        assert router.requests == router.limits
        # No defaulting here: the metrics container asked for limits only.
        assert pod.containers[1].requests == {}
        assert pod.with_defaults().containers[1].requests == {"memory": "256Mi"}
        assert not pod.has_pod_level_resources
        # The pod-level restartPolicy is not a container's.
        assert pod.containers[0].restart_policy is None

    def test_from_manifest_matches_load_pods(self) -> None:
        import yaml

        assert [Pod.from_manifest(yaml.safe_load(KUBECTL_POD_YAML))] == load_pods(KUBECTL_POD_YAML)

    def test_json(self) -> None:
        import yaml

        text = json.dumps(yaml.safe_load(KUBECTL_POD_YAML), indent=2)
        assert load_pods(text) == load_pods(KUBECTL_POD_YAML)

    def test_uid_defaults_to_namespace_and_name(self) -> None:
        m = _manifest()
        del m["metadata"]["uid"]
        del m["metadata"]["namespace"]
        pod = Pod.from_manifest(m)
        assert (pod.uid, pod.namespace) == ("default/p", "default")

    def test_pod_level_resources(self) -> None:
        assert Pod.from_manifest(
            _manifest(resources={"limits": {"memory": "2Gi"}})
        ).has_pod_level_resources
        assert not Pod.from_manifest(_manifest(resources={})).has_pod_level_resources
        assert not Pod.from_manifest(_manifest(resources=None)).has_pod_level_resources

    def test_yaml_numbers_and_nulls(self) -> None:
        # YAML numbers are quantities too; a pod read through the engine shows each in its
        # canonical text (0.5 CPU is 500m).
        text = textwrap.dedent(
            """\
            apiVersion: v1
            kind: Pod
            metadata: {name: p}
            spec:
              containers:
              - name: c
                resources:
                  requests:
                  limits: {cpu: 0.5, memory: 1073741824}
            """
        )
        [pod] = load_pods(text)
        assert pod.containers[0].requests == {}
        assert pod.containers[0].limits == {"cpu": "500m", "memory": "1073741824"}

    def test_multi_document(self) -> None:
        text = "---\n" + KUBECTL_POD_YAML + "---\n\n---\n" + yaml_dump(_manifest()) + "...\n"
        pods = load_pods(text)
        assert [p.uid for p in pods] == ["8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "u-1"]

    @pytest.mark.parametrize("kind", ["List", "PodList"])
    def test_list(self, kind: str) -> None:
        second = _manifest()
        if kind == "PodList":
            # Items from the API server's PodList carry no kind/apiVersion of their own.
            del second["kind"], second["apiVersion"]
        second["metadata"] = {**second["metadata"], "uid": "u-2"}
        doc = {"apiVersion": "v1", "kind": kind, "items": [_manifest(), second], "metadata": {}}
        assert [p.uid for p in load_pods(yaml_dump(doc))] == ["u-1", "u-2"]
        assert load_pods(json.dumps(doc)) == load_pods(yaml_dump(doc))
        assert load_pods(json.dumps({"kind": kind, "items": []})) == []
        # A uid once per list: the second copy would be reported admitted beside the first.
        doc["items"] = [_manifest(), _manifest()]
        assert _pod_error(load_pods, json.dumps(doc)) == (
            'items[1]: pod uid "u-1" is given twice (also items[0]); a pod is admitted once'
        )

    def test_empty_inputs(self) -> None:
        assert load_pods("") == []
        assert load_pods("---\n---\n# nothing\n") == []

    def test_text_starting_like_json_is_json(self) -> None:
        # As with kubectl: a YAML flow mapping at the top is read as (invalid) JSON.
        text = "{apiVersion: v1, kind: Pod}"
        assert _pod_error(load_pods, text).startswith("invalid JSON at line 1, column 2:")

    def test_load_pods_file(self, tmp_path: Path) -> None:
        path = tmp_path / "pod.yaml"
        path.write_text(KUBECTL_POD_YAML)
        assert load_pods_file(path) == load_pods(KUBECTL_POD_YAML)
        assert load_pods_file(str(path)) == load_pods(KUBECTL_POD_YAML)

    def test_load_pods_file_errors_name_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("kind: Deployment\n")
        assert _pod_error(load_pods_file, path) == f"{path}: kind: expected 'Pod', got 'Deployment'"
        path.write_bytes(b"kind: Pod\nmetadata: {name: \xff}\n")
        assert _pod_error(load_pods_file, path) == f"{path}: not UTF-8 text (bad byte at offset 27)"
        # Issue 19: a missing file or a directory was a plain OSError, /dev/null no pods.
        for where, code in ((tmp_path / "missing.yaml", errno.ENOENT), (tmp_path, errno.EISDIR)):
            with pytest.raises(InputFileError) as info:
                load_pods_file(where)
            assert (info.value.errno, info.value.path) == (code, str(where))
            assert str(info.value).startswith(f"cannot read manifest {where}: ")
            assert isinstance(info.value, OSError)
        for empty in (tmp_path / "empty.yaml", Path(os.devnull)):
            if empty != Path(os.devnull):
                empty.write_text("# nothing\n---\n")
            assert _pod_error(load_pods_file, empty) == (
                f"{empty}: no pods in the manifest (expected a Pod, a List or a PodList)"
            )


def yaml_dump(obj: object) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


def _c(name: str = "c", **resources: Any) -> dict[str, Any]:
    return {"name": name, "resources": resources}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            _manifest(containers=[_c(), _c("c2", limits={"memory": [1]})]),
            "spec.containers[1].resources.limits.memory: expected a quantity, got list",
        ),
        (
            _manifest(containers=[_c(requests={"cpu": True})]),
            "spec.containers[0].resources.requests.cpu: expected a quantity, got bool",
        ),
        (
            _manifest(containers=[_c(limits={"memory": None})]),
            "spec.containers[0].resources.limits.memory: expected a quantity, got null",
        ),
        (
            _manifest(containers=[_c(limits="1Gi")]),
            "spec.containers[0].resources.limits: expected a mapping of resource name to quantity,"
            " got string",
        ),
        (
            _manifest(containers=[{"name": "c", "resources": []}]),
            "spec.containers[0].resources: expected a mapping, got list",
        ),
        (_manifest(containers=[{"resources": {}}]), "spec.containers[0].name: required"),
        (_manifest(containers=[{"name": ""}]), "spec.containers[0].name: must not be empty"),
        (
            _manifest(containers=[{"name": 7}]),
            "spec.containers[0].name: expected a string, got int",
        ),
        (_manifest(containers=["c"]), "spec.containers[0]: expected a mapping, got string"),
        (_manifest(containers=[]), "spec.containers: must list at least one container"),
        (_manifest(containers=None), "spec.containers: required"),
        (_manifest(containers={"name": "c"}), "spec.containers: expected a list, got mapping"),
        (
            _manifest(initContainers={"name": "c"}),
            "spec.initContainers: expected a list, got mapping",
        ),
        (
            _manifest(initContainers=[{"name": "i", "restartPolicy": True}]),
            "spec.initContainers[0].restartPolicy: expected a string, got bool",
        ),
        (
            _manifest(initContainers=[_c("i", limits={"memory": {"a": 1}})]),
            "spec.initContainers[0].resources.limits.memory: expected a quantity, got mapping",
        ),
        (
            _manifest(initContainers=[{"name": "c"}]),
            "spec.containers[0].name: duplicate container name 'c'"
            " (also spec.initContainers[0].name)",
        ),
        (
            _manifest(containers=[{"name": "a"}, {"name": "a"}]),
            "spec.containers[1].name: duplicate container name 'a' (also spec.containers[0].name)",
        ),
        (
            _manifest(resources={"limits": {"memory": []}}),
            "spec.resources.limits.memory: expected a quantity, got list",
        ),
        (_manifest(resources="big"), "spec.resources: expected a mapping, got string"),
        ({**_manifest(), "kind": "Deployment"}, "kind: expected 'Pod', got 'Deployment'"),
        ({**_manifest(), "kind": None}, "kind: expected 'Pod', got nothing"),
        ({**_manifest(), "apiVersion": "apps/v1"}, "apiVersion: expected 'v1', got 'apps/v1'"),
        ({**_manifest(), "metadata": None}, "metadata: expected a mapping, got null"),
        ({**_manifest(), "metadata": {"uid": "u"}}, "metadata.name: required"),
        (
            {**_manifest(), "metadata": {"name": "p", "uid": 5}},
            "metadata.uid: expected a string, got int",
        ),
        (
            {**_manifest(), "metadata": {"name": "p", "namespace": ["a"]}},
            "metadata.namespace: expected a string, got list",
        ),
        ({**_manifest(), "spec": None}, "spec: expected a mapping, got null"),
    ],
)
def test_manifest_errors(manifest: dict[str, Any], message: str) -> None:
    assert _pod_error(Pod.from_manifest, manifest) == message
    assert _pod_error(load_pods, json.dumps(manifest)) == message


def test_from_manifest_rejects_lists_with_a_hint() -> None:
    msg = _pod_error(Pod.from_manifest, {"kind": "List", "items": []})
    assert msg == "kind: expected 'Pod', got 'List'; use load_pods() for a List"
    assert _pod_error(Pod.from_manifest, ["x"]) == "expected a mapping, got list"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a mapping (a Pod, List or PodList), got list"),
        ("just text\n", "expected a mapping (a Pod, List or PodList), got string"),
        (
            "kind: List\nitems:\n- " + json.dumps({**_manifest(), "kind": "Service"}) + "\n",
            "items[0].kind: expected 'Pod', got 'Service'",
        ),
        ("kind: List\nitems: 3\n", "items: expected a list, got int"),
        (
            "kind: List\nitems:\n- " + json.dumps(_manifest(containers=[{}])) + "\n",
            "items[0].spec.containers[0].name: required",
        ),
        (
            yaml_dump(_manifest()) + "---\n" + yaml_dump(_manifest(containers=[{"name": 1}])),
            "document 2: spec.containers[0].name: expected a string, got int",
        ),
        (
            "kind: Pod\nmetadata:\n  name: p\n spec: {}\n",
            "invalid YAML at line 4, column 2:",
        ),
        ("kind: Pod\nmetadata: [a, b\n", "invalid YAML at line 3, column 1:"),
        ("kind: Pod\nm: !!python/object:os.system {}\n", "invalid YAML at line 2, column 4:"),
        (
            '{"kind": "Pod",\n "metadata": {"name": "p",}}',
            "invalid JSON at line 2, column 27: Expecting property name",
        ),
        ('[{"kind": "Pod"}\n', "invalid JSON at line 2, column 1:"),
    ],
)
def test_load_pods_errors(text: str, message: str) -> None:
    assert _pod_error(load_pods, text).startswith(message)


# --------------------------------------------------------------------------------------------
# Round trip property

# Names as the API server takes them: container names and namespaces DNS-1123 labels, pod
# names subdomains, uids any printable text.
_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
_pod_names = st.just("") | st.from_regex(r"[a-z0-9]{1,5}(\.[a-z0-9]{1,5}){0,2}", fullmatch=True)
_uids = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")),
    min_size=1,
    max_size=20,
)
# Valid quantities in canonical text, as a pod read back from the engine shows them, small
# enough that any six add up within the int64 the memory manager holds sizes in.
_quantities = st.builds(
    lambda n, unit: canonical_quantity(f"{n}{unit}"),
    st.integers(min_value=0, max_value=2**30),
    st.sampled_from(["", "m", "Ki", "Mi", "Gi", "k", "M", "G"]),
)
_PAGES = {"hugepages-2Mi": "2Mi", "hugepages-1Gi": "1Gi"}
# Hugepages come in whole pages; extended resources in whole units.
_values = {
    "memory": _quantities,
    "cpu": _quantities,
    "ephemeral-storage": _quantities,
    "hugepages-2Mi": st.integers(0, 4096).map(lambda n: canonical_quantity(f"{2 * n}Mi")),
    "hugepages-1Gi": st.integers(0, 64).map(lambda n: canonical_quantity(f"{n}Gi")),
    "example.com/gpu": st.integers(0, 8).map(str),
}
_resource_lists = st.sets(st.sampled_from(sorted(_values)), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: _values[k] for k in keys})
)


def _overcommit(name: str) -> bool:
    return name in ("memory", "cpu", "ephemeral-storage")


@st.composite
def _pods(draw: st.DrawFn) -> Pod:
    names = draw(st.lists(_names, unique=True, max_size=6))
    split = draw(st.integers(min_value=0, max_value=len(names)))
    # The engine keeps what matters to memory: whether an init container is a sidecar.
    policies = st.none() | st.just("Always")

    def container(name: str) -> Container:
        # The API server's rules: a request at most its limit, equal to it for hugepages and
        # extended resources (which also need a limit), and hugepages beside cpu or memory.
        limits = draw(_resource_lists)
        requests = {}
        for k, v in draw(_resource_lists).items():
            if k in limits:
                requests[k] = limits[k]
            elif _overcommit(k):
                requests[k] = v
            else:
                requests[k] = limits[k] = v
        if any(k in _PAGES for k in (*requests, *limits)) and not any(
            _overcommit(k) and k != "ephemeral-storage" for k in (*requests, *limits)
        ):
            limits["memory"] = "1Gi"
        return Container(name, requests, limits, draw(policies))

    # Pod-level limits above anything the containers can add up to.
    resources = draw(st.sampled_from([{}, {"limits": {"cpu": "8Ei", "memory": "7Ei"}}]))
    return Pod(
        uid=draw(_uids),
        name=draw(_pod_names),
        namespace=draw(_names),
        containers=tuple(container(n) for n in names[split:]),
        init_containers=tuple(container(n) for n in names[:split]),
        resources=resources,  # type: ignore[arg-type]
    )


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    def container(c: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": c["name"],
            "requests": c["requests"],
            "limits": c["limits"],
            "restartPolicy": c["restart_policy"],
        }

    return {
        "uid": d["uid"],
        "name": d["name"],
        "namespace": d["namespace"],
        "containers": [container(c) for c in d["containers"]],
        "initContainers": [container(c) for c in d["init_containers"]],
        "resources": d["resources"],
        "annotations": d["annotations"],
    }


@given(_pods())
def test_to_dict_from_dict_round_trip(pod: Pod) -> None:
    data = pod.to_dict()
    assert Pod.from_dict(data) == pod
    assert Pod.from_dict(json.loads(json.dumps(data))) == pod
    assert Pod.from_dict(_camel(data)) == pod
    assert Pod.from_dict(data).to_dict() == data


@given(_pods())
def test_with_defaults_properties(pod: Pod) -> None:
    defaulted = pod.with_defaults()
    assert defaulted.with_defaults() == defaulted
    for before, after in zip(
        pod.init_containers + pod.containers,
        defaulted.init_containers + defaulted.containers,
        strict=True,
    ):
        assert after.limits == before.limits
        assert set(after.requests) == set(before.requests) | set(before.limits)
        for key, value in before.requests.items():
            assert after.requests[key] == value
