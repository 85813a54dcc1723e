"""``nodeTopologyPodsFingerprint`` as k8stopologyawareschedwg/podfingerprint computes it: the
library's own golden vectors (tests/fixtures/podfingerprint, its testdata/), order independence,
and the pod set an object vouches for."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pymm import Container, Machine, MemoryManager, Pod
from pymm.errors import ConfigError
from pymm.nrt import CpuState, PodRef, node_resource_topology, pod_fingerprint, pod_refs

VECTORS = Path(__file__).parent / "fixtures" / "podfingerprint"


def load(path: Path) -> list[tuple[str, str]]:
    # As the library's parsePodsTxt: "#" lines skipped, the first two fields namespace, name.
    pods = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 2:
            continue
        pods.append((fields[0], fields[1]))
    return pods


@pytest.mark.parametrize("txt", sorted(VECTORS.glob("*.txt")), ids=lambda p: p.stem)
def test_the_librarys_golden_vectors(txt: Path) -> None:
    pods = load(txt)
    expected = txt.with_suffix(".sign").read_text().strip()
    assert pod_fingerprint(pods) == expected
    shuffled = list(pods)
    random.Random(12345).shuffle(shuffled)
    assert pod_fingerprint(shuffled) == expected


def test_the_vectors_are_all_there() -> None:
    assert len(list(VECTORS.glob("*.sign"))) == 3


def test_namespace_and_name_are_not_interchangeable() -> None:
    assert pod_fingerprint([("a", "b")]) != pod_fingerprint([("b", "a")])
    assert pod_fingerprint([]) == "pfp0v001ef46db3751d8e999"


def test_the_object_vouches_for_the_pods_of_its_states() -> None:
    m = Machine.synthetic(2, memory="16Gi")
    mm = MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi"))
    mm.admit(Pod.of("uid-a", Container.of("c", cpu="1", memory="1Gi")))
    named = [PodRef("ns", "a", "uid-a"), PodRef("ns", "be", "uid-be"), PodRef("ns", "cpu", "uid-c")]

    def attrs(**kw: object) -> dict[str, str]:
        obj = node_resource_topology(mm.state, m, node_name="n", pods=named, **kw)  # type: ignore[arg-type]
        return {a["name"]: a["value"] for a in obj["attributes"]}

    assert attrs()["nodeTopologyPodsFingerprint"] == pod_fingerprint([("ns", "a")])
    # A pod holding exclusive CPUs (not memory) is reflected too.
    cpus = CpuState("static", frozenset({0}), {"uid-c": frozenset({1})})
    assert attrs(cpu_state=cpus)["nodeTopologyPodsFingerprint"] == pod_fingerprint(
        [("ns", "a"), ("ns", "cpu")]
    )
    # One the names do not cover: no fingerprint at all.
    strays = CpuState("static", frozenset({0}), {"uid-unknown": frozenset({1})})
    assert "nodeTopologyPodsFingerprint" not in attrs(cpu_state=strays)


def test_pod_lists_skip_finished_pods_and_need_names() -> None:
    doc = {
        "kind": "List",
        "items": [
            {"metadata": {"name": "a", "uid": "1"}, "status": {"phase": "Pending"}},
            {
                "metadata": {"namespace": "x", "name": "b", "uid": "2"},
                "status": {"phase": "Failed"},
            },
        ],
    }
    assert pod_refs(doc) == [PodRef("default", "a", "1")]
    with pytest.raises(ConfigError, match=r"metadata\.name and metadata\.uid"):
        pod_refs({"items": [{"metadata": {"name": "a"}}]})
