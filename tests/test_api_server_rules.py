"""Pods as strict as the API server, output that cannot be forged, errors that name their source
(issue 19).

The properties compare the engine's decoder with a reference written here from the Kubernetes
sources (``k8s.io/apimachinery/pkg/util/validation/validation.go``: IsDNS1123Label,
IsDNS1123Subdomain; ``pkg/api/validate/content/kube.go``: IsLabelKey;
``pkg/apis/core/validation/validation.go``: validateContainerResourceName,
validatePodResourceName, validateResourceRequirements,
validateResourceQuantityHugePageValue; ``pkg/apis/core/helper``: IsOvercommitAllowed,
IsExtendedResourceName), on generated names, quantities and documents, so that a rule the
engine drops or bends shows up as a counterexample. The examples below them are the issue's
hostile inputs, each one ``pymm: error:`` line and exit 2 with nothing changed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from pymm import Container, Machine, MemoryManager, Pod, load_pods, load_pods_file
from pymm._text import printable
from pymm.cli import main
from pymm.errors import (
    ConfigError,
    InputFileError,
    MachineError,
    NotFoundError,
    PodError,
    PymmError,
    WrongTypeError,
)

pytestmark = pytest.mark.fuzz

# -- the reference: Kubernetes' rules, restated ----------------------------------------------

LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
QNAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
STANDARD = {
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
}


def is_label(v: str) -> bool:
    return len(v.encode()) <= 63 and LABEL.fullmatch(v) is not None and v.isascii()


def is_subdomain(v: str) -> bool:
    return len(v.encode()) <= 253 and SUBDOMAIN.fullmatch(v) is not None and v.isascii()


def is_qualified_name(v: str) -> bool:
    parts = v.split("/")
    if len(parts) > 2:
        return False
    if len(parts) == 2 and not (parts[0] and is_subdomain(parts[0])):
        return False
    name = parts[-1]
    return 0 < len(name.encode()) <= 63 and name.isascii() and QNAME.fullmatch(name) is not None


def page_bytes(name: str) -> int | None:
    """The page size of a ``hugepages-<size>`` name, if it is a whole positive quantity."""
    size = name.removeprefix("hugepages-")
    units = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|k|M|G|)", size)
    if m is None or int(m[1]) == 0:
        return None
    return int(m[1]) * units[m[2]]


def is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def is_extended(name: str) -> bool:
    return (
        not is_native(name)
        and not name.startswith("requests.")
        and is_qualified_name(f"requests.{name}")
    )


def container_resource_ok(name: str) -> bool:
    """validateContainerResourceName, and a hugepage size that parses."""
    if not is_qualified_name(name):
        return False
    if "/" not in name:
        if name not in STANDARD and not name.startswith(("hugepages-", "requests.hugepages-")):
            return False
        if name not in ("cpu", "memory", "ephemeral-storage") and not name.startswith("hugepages-"):
            return False
    elif not is_native(name) and not is_extended(name):
        return False
    return not name.startswith("hugepages-") or page_bytes(name) is not None


def overcommit(name: str) -> bool:
    return is_native(name) and not name.startswith("hugepages-")


# -- strategies --------------------------------------------------------------------------------

# Letters that look like ASCII ones: the Cyrillic ie, a and o, the Greek omicron, a dotless i.
LOOK_ALIKES = "\u0435\u0430\u043e\u03bf\u0131"
_ascii_name = st.text(alphabet="abcz09-._/AZ", min_size=0, max_size=14)
_names = st.one_of(
    _ascii_name,
    st.sampled_from(["c1", "pod-1", "fakeContainer1", "a" * 63, "a" * 64, "a.b", "-a", "a-"]),
    st.builds(
        lambda base, i, c: base[:i] + c + base[i + 1 :],
        st.sampled_from(["memory", "postgres", "c1"]),
        st.integers(0, 5),
        st.sampled_from(LOOK_ALIKES),
    ),
    st.text(max_size=8),
)
_resource_names = st.one_of(
    st.sampled_from(
        [
            "memory",
            "cpu",
            "ephemeral-storage",
            "hugepages-2Mi",
            "hugepages-1Gi",
            "hugepages-3Mi",
            "hugepages-0",
            "hugepages-foo",
            "pods",
            "storage",
            "gpu",
            "example.com/gpu",
            "kubernetes.io/foo",
            "requests.example.com/x",
            "a/b/c",
            "Example.com/gpu",
        ]
    ),
    st.builds(
        lambda i, c: "memory"[:i] + c + "memory"[i + 1 :],
        st.integers(0, 5),
        st.sampled_from(LOOK_ALIKES),
    ),
    _ascii_name,
)


def _pod(container: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"uid": "u", "containers": [container], **extra}


def _accepted(data: dict[str, Any]) -> bool:
    try:
        Pod.from_dict(data)
    except PodError:
        return False
    return True


# -- properties: the engine agrees with the reference ------------------------------------------


@given(_names)
def test_container_names_are_dns_1123_labels(name: str) -> None:
    assume(name)
    assert _accepted(_pod({"name": name})) == is_label(name)


@given(_names)
def test_pod_names_are_subdomains_and_namespaces_labels(name: str) -> None:
    assume(name)
    assert _accepted({"uid": "u", "name": name}) == is_subdomain(name)
    assert _accepted({"uid": "u", "namespace": name}) == is_label(name)
    manifest = {"kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c"}]}}
    try:
        load_pods(json.dumps(manifest))
        loaded = True
    except PodError:
        loaded = False
    assert loaded == is_subdomain(name)


# The characters a printed uid must not hold (engine/src/decode.rs is_unprintable): control,
# bidi and invisible format characters.
_HIDDEN = (
    "\x00\n\r\t\x1b\x7f\x85\u00ad\u061c\u200b\u200e\u200f\u2028\u2029\u202a\u202e\u2066\u2069\ufeff"
)
_visible = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), include_characters=" "),
    min_size=1,
    max_size=16,
)


@given(_visible, st.sampled_from(_HIDDEN), st.integers(0, 16))
def test_a_uid_is_any_printable_text_and_nothing_that_hides(uid: str, hidden: str, at: int) -> None:
    assert Pod(uid).uid == uid
    forged = uid[:at] + hidden + uid[at:]
    with pytest.raises(PodError) as info:
        Pod(forged)
    message = str(info.value)
    assert message.startswith("uid: ") and f"U+{ord(hidden):04X}" in message
    assert message.isprintable() or "\\" in message  # shown escaped, never raw
    assert hidden not in message


@given(_resource_names)
def test_resource_names_follow_validate_container_resource_name(name: str) -> None:
    assume(name)
    # A whole value of every kind (two pages of a hugepage size): a request equal to its
    # limit, cpu beside hugepages.
    page = page_bytes(name) if name.startswith("hugepages-") else None
    value = str(2 * page) if page else "1"
    c = {"name": "c", "requests": {name: value}, "limits": {name: value, "cpu": "1"}}
    assert _accepted(_pod(c)) == container_resource_ok(name), name


@given(st.sampled_from(["memory", "cpu"]), st.integers(0, 5), st.sampled_from(LOOK_ALIKES))
def test_a_look_alike_letter_is_pointed_at(name: str, i: int, letter: str) -> None:
    assume(i < len(name))
    odd = name[:i] + letter + name[i + 1 :]
    with pytest.raises(PodError) as info:
        Pod.from_dict(_pod({"name": "c", "limits": {odd: "1Gi"}}))
    assert f"character {i + 1} is U+{ord(letter):04X}" in str(info.value)


@given(
    st.sampled_from(["hugepages-2Mi", "hugepages-1Gi", "hugepages-64Ki"]),
    st.integers(0, 4096),
    st.sampled_from(["Ki", "Mi", "Gi", ""]),
)
def test_hugepages_come_in_whole_pages(name: str, n: int, unit: str) -> None:
    value = f"{n}{unit}"
    page = page_bytes(name)
    assert page is not None
    scale = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]
    c = {"name": "c", "requests": {name: value}, "limits": {name: value, "memory": "1Gi"}}
    assert _accepted(_pod(c)) == ((n * scale) % page == 0)


@given(
    st.sampled_from(["memory", "cpu", "hugepages-2Mi", "example.com/gpu", "ephemeral-storage"]),
    st.integers(0, 4),
    st.integers(0, 4) | st.none(),
)
def test_requests_against_limits(name: str, request: int, limit: int | None) -> None:
    q = (lambda n: f"{2 * n}Mi") if name.startswith("hugepages-") else str
    c: dict[str, Any] = {"name": "c", "requests": {name: q(request)}, "limits": {"cpu": "1"}}
    if limit is not None:
        c["limits"][name] = q(limit)
    if name == "cpu" and limit is None:
        c["limits"] = {}
    if limit is None:
        expected = overcommit(name)
    elif overcommit(name):
        expected = request <= limit
    else:
        expected = request == limit
    assert _accepted(_pod(c)) == expected, c


@given(st.sampled_from(["hugepages-2Mi", "hugepages-1Gi"]), st.booleans(), st.booleans())
def test_hugepages_need_cpu_or_memory(name: str, cpu: bool, memory: bool) -> None:
    limits = {name: "2Gi", **({"cpu": "1"} if cpu else {}), **({"memory": "1Gi"} if memory else {})}
    assert _accepted(_pod({"name": "c", "limits": limits})) == (cpu or memory)


_pod_level_names = st.sampled_from(
    ["cpu", "memory", "hugepages-2Mi", "ephemeral-storage", "example.com/gpu", "pods"]
)


@given(
    st.dictionaries(_pod_level_names, st.integers(0, 8), max_size=3),
    st.dictionaries(_pod_level_names, st.integers(0, 8), max_size=3),
)
def test_pod_level_resources_follow_validate_pod_resource_name(
    requests: dict[str, int], limits: dict[str, int]
) -> None:
    def q(name: str, n: int) -> str:
        return f"{2 * n}Mi" if name.startswith("hugepages-") else str(n)

    res = {
        "requests": {k: q(k, v) for k, v in requests.items()},
        "limits": {k: q(k, v) for k, v in limits.items()},
    }
    supported = all(k in ("cpu", "memory", "hugepages-2Mi") for k in (*requests, *limits))
    relations = all(
        (requests[k] <= limits[k] if overcommit(k) else requests[k] == limits[k])
        if k in limits
        else overcommit(k)
        for k in requests
    )
    names = {*requests, *limits}
    hugepages_alone = "hugepages-2Mi" in names and not names & {"cpu", "memory"}
    expected = supported and relations and not hugepages_alone
    assert _accepted({"uid": "u", "resources": res}) == expected, res
    if expected:
        pod = Pod.from_dict({"uid": "u", "resources": res})
        assert pod.has_pod_level_resources == bool(names)
        assert Pod.from_dict(pod.to_dict()) == pod


@given(
    st.lists(st.integers(0, 8), min_size=1, max_size=4),
    st.integers(1, 64),
    st.booleans(),
)
def test_pod_level_defaulting_and_consistency(
    container_gi: list[int], pod_limit_gi: int, sidecar: bool
) -> None:
    """defaults.go fills pod-level requests from the containers' (cpu, memory) and then from
    the pod's limits; validatePodResourceConsistency then wants them to cover the
    containers' aggregate, and every app container's limit within the pod's."""
    containers = [
        {"name": f"c{i}", "resources": {"limits": {"cpu": "1", "memory": f"{g}Gi"}}}
        for i, g in enumerate(container_gi)
    ]
    init = [
        {
            "name": "side",
            "restartPolicy": "Always",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
        }
    ]
    spec: dict[str, Any] = {
        "containers": containers,
        "resources": {"limits": {"memory": f"{pod_limit_gi}Gi"}},
    }
    if sidecar:
        spec["initContainers"] = init
    manifest = {"kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    total = sum(container_gi) + (1 if sidecar else 0)
    ok = total <= pod_limit_gi and max(container_gi) <= pod_limit_gi
    try:
        pod = Pod.from_manifest(manifest, defaults=True)
    except PodError as e:
        assert not ok, e
        return
    assert ok
    assert (
        pod.resources.requests["memory"]
        == Pod.from_dict(
            {"uid": "x", "resources": {"limits": {"memory": f"{total}Gi"}}}
        ).resources.limits["memory"]
    )
    assert pod.resources.requests["cpu"] == str(len(container_gi) + (1 if sidecar else 0))


_YAML_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: p
  uid: u-1
spec:
  containers:
  - name: c
    resources:
      limits:
        cpu: "1"
        memory: 1Gi
"""
_JSON_POD = json.dumps(yaml.safe_load(_YAML_POD), indent=1)


def _leaf_lines(text: str) -> list[int]:
    """Lines holding one ``key: scalar``, whatever their depth."""
    return [
        i
        for i, line in enumerate(text.splitlines())
        if re.fullmatch(r'\s*"?[A-Za-z]+"?: ("[^"]*"|[\w.-]+),?', line)
    ]


@given(st.booleans(), st.integers(0, 100))
def test_a_key_given_twice_is_refused_naming_it_and_its_line(as_json: bool, pick: int) -> None:
    text = _JSON_POD if as_json else _YAML_POD
    lines = text.splitlines()
    i = _leaf_lines(text)[pick % len(_leaf_lines(text))]
    # A copy before the line (with a comma in JSON): the original is now the second.
    copy = lines[i].rstrip(",") + "," if as_json else lines[i]
    lines.insert(i, copy)
    key = lines[i].split(":")[0].strip().strip('"')
    with pytest.raises(PodError) as info:
        load_pods("\n".join(lines) + "\n")
    message = str(info.value)
    assert f"key {key!r} is given twice" in message
    assert f"at line {i + 2}," in message


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=5))
def test_a_uid_at_most_once_per_input(uids: list[str]) -> None:
    items = [
        {"metadata": {"name": f"p{i}", "uid": u}, "spec": {"containers": [{"name": "c"}]}}
        for i, u in enumerate(uids)
    ]
    text = json.dumps({"kind": "List", "items": items})
    unique = len(set(uids)) == len(uids)
    try:
        pods = load_pods(text)
    except PodError as e:
        assert not unique
        assert "is given twice" in str(e)
        return
    assert unique and [p.uid for p in pods] == uids
    mm = MemoryManager(Machine.synthetic(2, memory="8Gi"))
    assert len(mm.admit_many(pods)) == len(pods)


@given(st.integers(0, 2**22))
def test_machine_hugepage_sizes_are_powers_of_two(kib: int) -> None:
    node = {
        "id": 0,
        "memory_bytes": 2**62,
        "hugepages": [{"page_size_kib": kib, "num_pages": 1}],
    }
    try:
        Machine.from_dict({"name": "m", "nodes": [node]})
        ok = True
    except MachineError:
        ok = False
    assert ok == (kib > 0 and kib & (kib - 1) == 0)


@given(st.text(max_size=24))
def test_printable_escapes_exactly_what_could_forge_or_hide(text: str) -> None:
    shown = printable(text)
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown
    assert not any(c in shown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    if text.isprintable():
        assert shown == text


# -- the hostile inputs, one error line each --------------------------------------------

POD_YAML = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, uid: {uid}}}
spec:
  containers:
  - name: {container}
    resources:
      limits: {{cpu: "1", {limits}}}
"""


def _manifest(
    tmp_path: Path,
    *,
    name: str = "web",
    uid: str = "u-1",
    container: str = "c",
    limits: str = "memory: 1Gi",
    file: str = "pod.yaml",
) -> str:
    path = tmp_path / file
    path.write_text(POD_YAML.format(name=name, uid=uid, container=container, limits=limits))
    return str(path)


def _one_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pymm: error: ")
    assert captured.out == ""
    return lines[0]


def _state(tmp_path: Path) -> list[str]:
    return ["--state-dir", str(tmp_path / "state"), "--quiet"]


def _snapshot(tmp_path: Path) -> dict[str, bytes]:
    d = tmp_path / "state"
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"limits": "memory: 1Gi, memory: 100Gi"}, ["key 'memory' is given twice", "line 8"]),
        ({"limits": "hugepages-2Mi: 3Mi, memory: 1Gi"}, ["not positive integer multiple"]),
        ({"container": "Ünicode"}, ["spec.containers[0].name", "U+00DC"]),
        ({"container": "c" * 64}, ["no more than 63 characters"]),
        ({"name": "p" * 254}, ["metadata.name", "no more than 253 characters"]),
        ({"limits": "m\u0435mory: 1Gi"}, ["character 2 is U+0435"]),
        ({"uid": '"a\\nadmitted root: 999 GiB"'}, ["metadata.uid", "U+000A"]),
        ({"uid": '"x\\u202ey"'}, ["U+202E"]),
        ({"limits": "memory: 10Ei"}, ["out of range", "9223372036854775807"]),
    ],
)
def test_a_pod_the_api_server_refuses_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kwargs: dict[str, str], fragments: list[str]
) -> None:
    pod = _manifest(tmp_path, **kwargs)
    line = _one_error(["admit", pod, *_state(tmp_path)], capsys)
    assert line.startswith(f"pymm: error: {pod}: ")
    for fragment in fragments:
        assert fragment in line
    assert _snapshot(tmp_path) == {}  # nothing created


def test_the_same_uid_twice_across_files_or_in_a_list_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = _manifest(tmp_path, limits="memory: 1Gi", file="a.yaml")
    assert main(["admit", small, *_state(tmp_path)]) == 0
    capsys.readouterr()
    before = _snapshot(tmp_path)
    big = _manifest(tmp_path, limits="memory: 30Gi", file="b.yaml")
    line = _one_error(["admit", small, big, *_state(tmp_path)], capsys)
    assert f'{big}: pod uid "u-1" is given twice (also {small})' in line
    listed = tmp_path / "list.json"
    item = load_pods_file(small)[0].to_dict()
    manifest = {"metadata": {"name": "web", "uid": item["uid"]}, "spec": {"containers": []}}
    manifest["spec"]["containers"] = [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}]
    listed.write_text(json.dumps({"kind": "List", "items": [manifest, manifest]}))
    line = _one_error(["admit", str(listed), *_state(tmp_path)], capsys)
    assert "items[1]: pod uid" in line
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--reserved-memory", "0:memory=-1Gi"], ["--reserved-memory '0:memory=-1Gi'", "negative"]),
        (["--reserved-memory", "0:memory=10Ei"], ["out of range", "8Ei - 1"]),
        (["--tolerate-drift=-1Gi"], ["--tolerate-drift '-1Gi'", "negative"]),
        (["--tolerate-drift", "99Ei"], ["--tolerate-drift '99Ei'", "16Ei - 1"]),
        (["--node-allocatable", "1Gx"], ["--node-allocatable '1Gx'"]),
        (["--hugepages", "3Mi=10"], ["--hugepages '3Mi=10'", "powers of two"]),
        (["--policy-option", "nope=1"], ["--policy-option 'nope=1'"]),
        (["--memory-policy-option", "admit-when-fits=yes"], ["--memory-policy-option"]),
    ],
)
def test_a_bad_flag_names_itself_and_its_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], fragments: list[str]
) -> None:
    line = _one_error(["admit", _manifest(tmp_path), *_state(tmp_path), *flags], capsys)
    for fragment in fragments:
        assert fragment in line
    assert "17179869183" not in line and "drift_tolerance" not in line
    assert _snapshot(tmp_path) == {}


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("topology_policy", "bogus", "flags.topology_policy: expected one of"),
        ("reserved_memory", ["0:memory=-1Gi"], "flags.reserved_memory:"),
        ("memory_policy_option", ["nope=1"], "flags.memory_policy_option:"),
        ("node_allocatable", "lots", "flags.node_allocatable:"),
    ],
)
def test_a_bad_value_in_pymm_config_json_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any, fragment: str
) -> None:
    pod = _manifest(tmp_path)
    assert main(["admit", pod, *_state(tmp_path)]) == 0
    capsys.readouterr()
    config = tmp_path / "state" / "pymm-config.json"
    doc = json.loads(config.read_text())
    assert doc["machineSource"] == "xeon-8480-2s-snc4"
    doc["flags"][key] = value
    config.write_text(json.dumps(doc))
    before = _snapshot(tmp_path)
    line = _one_error(["admit", pod, *_state(tmp_path)], capsys)
    assert f"cannot use {config}: {fragment}" in line
    assert _snapshot(tmp_path) == before


def test_a_forged_uid_cannot_print_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine refuses such uids from users; a state file written elsewhere may still hold
    one, and state inspect must print it escaped."""
    # A V1 file (the 1.32 kubelet's): the forged uid is in the fields it is read from.
    mm = MemoryManager(Machine.synthetic(2, memory="8Gi"), kubelet_version="1.32")
    mm.admit(Pod.of("forged", Container.of("c", cpu=1, memory="1Gi")))
    text = mm.checkpoint()
    forged = text.replace('"forged"', json.dumps("p\nadmitted root: 999 GiB\u202e"))
    assert forged != text
    path = tmp_path / "memory_manager_state"
    path.write_text(forged)
    main(["state", "inspect", str(path)])
    out = capsys.readouterr().out
    assert "\nadmitted root" not in out and "\u202e" not in out
    assert "p\\nadmitted root" in out


@pytest.mark.parametrize("make", ["missing", "directory", "empty", "devnull"])
def test_manifest_files_that_cannot_be_read_or_hold_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str
) -> None:
    path = {
        "missing": tmp_path / "missing.yaml",
        "directory": tmp_path,
        "empty": tmp_path / "empty.yaml",
        "devnull": Path(os.devnull),
    }[make]
    if make == "empty":
        path.write_text("")
    line = _one_error(["admit", str(path)], capsys)
    assert str(path) in line
    error: type[PymmError] = InputFileError if make in ("missing", "directory") else PodError
    with pytest.raises(error):
        load_pods_file(path)


@pytest.mark.parametrize("command", [["state", "verify"], ["state", "inspect"], ["nrt"]])
def test_a_state_file_that_links_to_itself_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    loop = tmp_path / "memory_manager_state"
    loop.symlink_to(loop.name)
    if command == ["nrt"]:
        argv = ["nrt", "--kubelet-state", str(loop), "--machine", "xeon-gold-6242-2s"]
    else:
        argv = [*command, str(tmp_path)]
    line = _one_error(argv, capsys)
    assert "symbolic link loop" in line


def test_the_python_api_raises_typed_errors() -> None:
    mm = MemoryManager(Machine.synthetic(2, memory="8Gi"))
    pod = Pod.of("p", Container.of("c", cpu=1, memory="1Gi"))
    for call, argument in (
        (lambda: mm.remove(1), "pod_uid"),  # type: ignore[arg-type]
        (lambda: MemoryManager(Machine.synthetic(1), state_dir=1), "state_dir"),  # type: ignore[arg-type]
        (lambda: mm.fragmentation(8), "probe"),  # type: ignore[arg-type]
        (lambda: mm.admit(5), "pod"),  # type: ignore[arg-type]
        (lambda: load_pods_file(3), "path"),  # type: ignore[arg-type]
        (lambda: load_pods(b"kind: Pod"), "text"),  # type: ignore[arg-type]
        (lambda: Machine.synthetic("2"), "n"),  # type: ignore[arg-type]
    ):
        with pytest.raises(WrongTypeError) as info:
            call()
        assert isinstance(info.value, TypeError) and info.value.argument == argument
    with pytest.raises(NotFoundError) as missing:
        mm.hints(pod, "unknown-container")
    assert isinstance(missing.value, LookupError)
    assert (missing.value.pod_uid, missing.value.container) == ("p", "unknown-container")
    with pytest.raises(PodError, match="is given twice"):
        mm.admit_many([pod, pod])
    assert mm.state.get("entries") is None  # nothing admitted
    with pytest.raises(ConfigError, match=r"^tolerate_drift: "):
        MemoryManager(Machine.synthetic(1), tolerate_drift="-1Gi")


def test_simulate_plot_without_matplotlib_fails_before_simulating(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__
    simulated: list[object] = []

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    import pymm.commands.simulate as command

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.setattr(command, "run", lambda *a, **k: simulated.append(a))
    line = _one_error(["simulate", "--events", "10", "--plot", "x.png"], capsys)
    assert "--plot needs matplotlib" in line
    assert simulated == []


def test_logs_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """The agent's and nrt --watch's JSON lines escape as JSON does; a command's plain log
    lines on stderr (a durability doubt, say) go through the same escaping as its output."""
    import io
    import logging

    from pymm.cli import _log_to_stderr
    from pymm.logs import setup_json_logging

    logger = logging.getLogger("pymm")
    saved = logger.handlers[:], logger.propagate, logger.level
    try:
        buf = io.StringIO()
        setup_json_logging("INFO", buf)
        logging.getLogger("pymm.test").warning("pod %s", "a\nb\u202ec")
        line = buf.getvalue()
        assert line.count("\n") == 1 and "\u202e" not in line
        assert json.loads(line)["message"] == "pod a\nb\u202ec"
        logger.handlers[:] = []
        logger.propagate = False
        with _log_to_stderr():
            logging.getLogger("pymm.test").warning("pod %s", "a\nadmitted root\u202e")
        err = capsys.readouterr().err
        assert err == "pymm: warning: pod a\\nadmitted root\\u202e\n"
        # Only while the command runs: afterwards the program's logging is as it was.
        assert logger.handlers == []
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
