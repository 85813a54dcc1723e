"""Fuzzing every parser through the public API and the command line (issue 9).

Valid documents (pods, manifests, machines, configuration, hint providers, real kubelet state
files, replay scenarios) are mutated structurally: keys dropped or added, values replaced by
other types, extreme numbers, unicode, duplicated list items (duplicate container names),
nesting past the decoders' depth limit; text inputs are also cut, spliced and wrapped in deep
brackets. The API may only raise ``pymm.errors.PymmError``; the CLI may only exit 0 or 1, or
2 with exactly one ``pymm: error:`` line. Anything else (a bare KeyError, TypeError,
AttributeError, RecursionError, OverflowError, a traceback) fails the test.

Fast by default (twice the ``fast`` profile's examples of conftest.py, about 15 s in all);
``HYPOTHESIS_PROFILE=slow`` runs 2,000 examples of each property (a few minutes).
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from pymm import Container, Machine, MemoryManager, Pod, _engine, load_pods, merge_hints
from pymm._text import json_loads
from pymm.cli import main
from pymm.errors import ConfigError, PymmError
from pymm.replay import load_scenarios, replay
from pymm.statefile import CONFIG_FILE_NAME, STATE_FILE_NAME

pytestmark = pytest.mark.fuzz

CONFORMANCE = Path(__file__).parent / "conformance"

# -- seeds: one valid document of each kind ---------------------------------------------------

POD_DICT: dict[str, Any] = {
    "uid": "p1",
    "name": "db",
    "namespace": "default",
    "containers": [
        {
            "name": "c1",
            "requests": {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "4Mi"},
            "limits": {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "4Mi"},
            "restart_policy": None,
        }
    ],
    "init_containers": [
        {
            "name": "i1",
            "requests": {"cpu": "1", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
            "restart_policy": "Always",
        }
    ],
    "resources": {"requests": {}, "limits": {}},
    "annotations": {"pymm.io/memory-tier": "DRAM"},
}
SCENARIO_POD: dict[str, Any] = {
    "uid": "p2",
    "containers": [
        {
            "name": "c1",
            "limits": {"cpu": "1", "memory": "2Gi"},
            "fakeHints": {"cpu": [{"affinity": [1], "preferred": True}]},
        }
    ],
    "initContainers": [{"name": "i", "restartPolicy": "Always", "limits": {"memory": "1Gi"}}],
    "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2", "memory": "4Gi"}},
}
MANIFEST: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "db",
        "namespace": "prod",
        "uid": "u-1",
        "annotations": {"pymm.io/memory-tier": "DRAM"},
    },
    "spec": {
        "containers": [
            {
                "name": "postgres",
                "image": "postgres:16",
                "resources": {
                    "requests": {"cpu": "2", "memory": "4Gi"},
                    "limits": {"cpu": "2", "memory": "4Gi", "hugepages-1Gi": "1Gi"},
                },
            }
        ],
        "initContainers": [
            {
                "name": "proxy",
                "restartPolicy": "Always",
                "resources": {"limits": {"cpu": "1", "memory": "256Mi"}},
            }
        ],
        "overhead": {"memory": "10Mi"},
    },
    "status": {"phase": "Running"},
}
# Two pods: a list may hold a uid once (issue 19), so the second has its own.
POD_LIST: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [MANIFEST, {**MANIFEST, "metadata": {**MANIFEST["metadata"], "uid": "u-2"}}],
}
MACHINE = Machine.synthetic(2, memory="16Gi", hugepages={"2Mi": 512, "1Gi": 2})
MACHINE_DICT: dict[str, Any] = {
    **Machine.from_catalog("xeon-gold-6242-2s").to_dict(),
    "cpulist": ["0-15", "16-31"],
}
MACHINE_DICT["nodes"][0]["hugepages"][0]["num_pages"] = 512
CONFIG: dict[str, Any] = {
    "reserved_memory": "0:memory=1Gi,hugepages-2Mi=8Mi;1:memory=1Gi",
    "node_allocatable": {"memory": "2Gi", "hugepages-2Mi": "8Mi"},
    "memory_policy": "Static",
    "topology_policy": "single-numa-node",
    "scope": "pod",
    "policy_options": {"prefer-closest-numa-nodes": "true", "max-allowable-numa-nodes": "8"},
    "memory_policy_options": {"admit-when-fits": "true", "spread-hugepages": "false"},
    "kubelet_version": "latest",
    "search": "bounded",
    "tolerate_drift": "256Mi",
}
RESERVED_LIST: list[dict[str, Any]] = [
    {"numaNode": 0, "limits": {"memory": "1Gi"}},
    {"numaNode": 1, "limits": {"memory": "1Gi", "hugepages-1Gi": "1Gi"}},
]
PROVIDERS: list[dict[str, Any]] = [
    {
        "name": "cpu",
        "containers": {
            "c1": {
                "cpu": [
                    {"affinity": [0], "preferred": True},
                    {"affinity": [0, 1], "preferred": False},
                ]
            },
            "i1": {"cpu": None},
        },
        "pod": {"cpu": [{"affinity": [1], "preferred": True}]},
    },
    {"name": "devices", "containers": {"c1": {"gpu": []}}},
]
ENTRIES: dict[str, Any] = {
    "p1": {"c1": [{"numaAffinity": [0], "type": "memory", "size": 1073741824}]},
    "p2": {"c": [{"numaAffinity": [0, 1], "type": "hugepages-2Mi", "size": 4194304}]},
}
STATE_FILES = sorted(
    p.read_text()
    for p in (CONFORMANCE / "state-files").glob("*.state.json")
    if "hugepages" in p.name or "cross-numa" in p.name
)[:6]
SCENARIOS = [
    s
    for s in json.loads((CONFORMANCE / "kubelet-oracle-small.scenarios.json").read_text())[
        "scenarios"
    ]
    if s["name"]
    in {"fake-cpu-steers", "restart-restore", "restart-machine-changed", "fill-nodes-in-order"}
]
POD = Pod.of("probe", Container.of("c1", cpu="1", memory="1Gi"))


# -- values and structured mutation -----------------------------------------------------------

NUMBERS = [0, -1, 1, 2, 10, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]
WORDS = [
    "",
    " ",
    "0",
    "1Gi",
    "-1Gi",
    "1.5Mi",
    "1e400",
    "18446744073709551616",
    "NaN",
    "²",
    "١٢",
    "0x10",
    "memory",
    "cpu",
    "hugepages-2Mi",
    "hugepages-1Gi",
    "hugepages-3Ki",
    "hugepages-",
    "Always",
    "Static",
    "None",
    "single-numa-node",
    "pod",
    "1.26",
    "true",
    "\x00",
    "🚀",
    "é" * 3,
    "a" * 300,
]


def _collect_keys(doc: Any, out: set[str]) -> set[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(k)
            _collect_keys(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _collect_keys(v, out)
    return out


KEYS = sorted(
    _collect_keys(
        [POD_DICT, SCENARIO_POD, MANIFEST, MACHINE_DICT, PROVIDERS, ENTRIES, SCENARIOS],
        set(CONFIG),
    )
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)

Path_ = tuple[str | int, ...]


def _paths(doc: Any, at: Path_ = ()) -> Iterator[Path_]:
    yield at
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*at, i))


def _get(doc: Any, path: Path_) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _nest(value: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


ACTIONS = ["replace", "drop", "add", "duplicate", "nest", "number", "unicode"]


def _mutate(draw: st.DrawFn, doc: Any) -> Any:
    paths = list(_paths(doc))
    # The root itself one time in ten: a decoder's first type check is the easy part.
    inner = paths[1:] if len(paths) > 1 and draw(st.integers(0, 9)) else paths
    path = draw(st.sampled_from(inner))
    target = _get(doc, path)
    action = draw(st.sampled_from(ACTIONS))
    if action == "drop" and path:
        del _get(doc, path[:-1])[path[-1]]
        return doc
    if action == "add" and isinstance(target, dict):
        target[draw(keys)] = draw(values)
        return doc
    if action == "add" and isinstance(target, list):
        target.insert(draw(st.integers(0, len(target))), draw(values))
        return doc
    if action == "duplicate" and isinstance(target, list) and target:
        target.append(copy.deepcopy(draw(st.sampled_from(target))))
        return doc
    if action == "nest":
        depth = draw(st.sampled_from([1, 2, 64, 65, 200]))
        return _set(doc, path, _nest(target, depth, draw(st.booleans())))
    if action == "number":
        return _set(doc, path, draw(st.one_of(st.sampled_from(NUMBERS), st.floats())))
    if action == "unicode":
        return _set(doc, path, draw(st.text(st.characters(codec="utf-8"), min_size=1)))
    return _set(doc, path, draw(values))


@st.composite
def mutants(draw: st.DrawFn, seed: Any, most: int = 3) -> Any:
    """``seed`` with one to ``most`` mutations (or none, one time in eight: the seed itself
    must pass as well)."""
    doc = copy.deepcopy(seed)
    if draw(st.integers(0, 7)) == 0:
        return doc
    for _ in range(draw(st.integers(1, most))):
        doc = _mutate(draw, doc)
    return doc


def _dump(doc: Any, fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(doc, allow_unicode=True)
    return json.dumps(doc, ensure_ascii=False)


@st.composite
def texts(draw: st.DrawFn, seed: Any, formats: tuple[str, ...] = ("json",)) -> str:
    """A mutant of ``seed`` as text, and then perhaps cut, spliced or wrapped in deep
    brackets (a JSON/YAML parser's recursion is its own limit)."""
    text = _dump(draw(mutants(seed)), draw(st.sampled_from(formats)))
    action = draw(st.sampled_from(["none", "none", "cut", "splice", "deep"]))
    if action == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if action == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(max_size=8)) + text[at + draw(st.integers(0, 4)) :]
    if action == "deep":
        depth = draw(st.sampled_from([1000, 100_000]))
        return "[" * depth + text + "]" * depth
    return text


def typed_only(call: Callable[[], object]) -> object | None:
    """The call's result, or None when it raised a typed pymm error; anything else fails.
    Outcomes are hypothesis events (``--hypothesis-show-statistics``), to see how deep the
    mutants get: the error classes, where they are, and how often the input was accepted."""
    name = getattr(call, "__qualname__", "call").split(".<locals>")[0]
    try:
        result = call()
    except PymmError as e:
        where = getattr(e, "field", None) or getattr(e, "key", None) or str(e).split(": ")[-2:][0]
        event(f"{name}: {type(e).__name__} at {str(where)[:40]}")
        return None
    event(f"{name}: accepted")
    return result


def _admit(mm: MemoryManager, pod: Any) -> None:
    admission = typed_only(lambda: mm.admit(pod))
    if isinstance(pod, Pod) and admission is not None:
        for name in pod.compiled.container_names:
            typed_only(partial(mm.cpuset_mems, pod.uid, name))


# Twice the profile's examples: each one is cheap, and the inputs are many-dimensional.
FUZZ = settings(
    max_examples=2 * settings().max_examples,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the API --------------------------------------------------------------------------------------


@FUZZ
@given(doc=st.one_of(mutants(POD_DICT), mutants(SCENARIO_POD)))
def test_pod_from_dict(doc: Any) -> None:
    pod = typed_only(lambda: Pod.from_dict(doc))
    mm = MemoryManager(MACHINE)
    _admit(mm, doc)  # the mapping itself, compiled by the manager
    if isinstance(pod, Pod):
        # The API server's defaulting can make a pod invalid (pod-level requests that no
        # longer cover its containers'): a typed error too.
        defaulted = typed_only(pod.with_defaults)
        if defaulted is not None:
            _admit(mm, defaulted)


@FUZZ
@given(doc=mutants(POD_DICT["containers"][0]), name=st.one_of(st.text(max_size=4), values))
def test_container_from_dict_and_of(doc: Any, name: Any) -> None:
    container = typed_only(lambda: Container.from_dict(doc))
    if isinstance(container, Container):
        typed_only(lambda: Pod.of("p", container))
    kwargs = doc if isinstance(doc, dict) else {}
    typed_only(
        lambda: Container.of(name, memory=kwargs.get("memory"), hugepages=kwargs.get("limits"))
    )


@FUZZ
@given(doc=mutants(MANIFEST), defaults=st.booleans())
def test_pod_from_manifest(doc: Any, defaults: bool) -> None:
    pod = typed_only(lambda: Pod.from_manifest(doc, defaults=defaults))
    mm = MemoryManager(MACHINE)
    if isinstance(pod, Pod):
        _admit(mm, pod)
    _admit(mm, doc)


def _read_slowly(text: str) -> tuple[str, Any]:
    """What the agent's careful path reads from ``text``: the pods, or the error's text."""
    try:
        doc = json_loads(text)
        if not isinstance(doc, dict):
            return "error", "not an object"
        return "pods", [p.to_dict() for p in _engine.pods_from_manifest(doc, True)]
    except (ValueError, RecursionError) as e:
        return "error", str(e)


@FUZZ
@given(text=st.one_of(texts(MANIFEST), texts(POD_LIST), texts(POD_DICT)))
def test_the_engine_reads_manifest_text_as_the_careful_path_does(text: str) -> None:
    """The agent's one-call read of a manifest's text (``pods_from_json``) gives the pods the
    careful path (Python's json, then the engine) gives, raises the error it raises, or
    declines (None) and leaves the text to it."""
    try:
        fast = _engine.pods_from_json(text, True)
    except ValueError as e:
        event("read: an error")
        assert _read_slowly(text) == ("error", str(e))
        return
    event("read: declined" if fast is None else "read: pods")
    if fast is not None:
        assert _read_slowly(text) == ("pods", [p.to_dict() for p in fast])


@pytest.mark.parametrize(
    "text",
    [
        '{"kind": "Pod", "kind": "Pod"}',  # a key twice: Python's json would keep the last
        '{"kind": "Pod", "spec": {"x": 1.5}}',
        '{"kind": "Pod", "spec": {"x": 100000000000000000000000}}',  # wider than 64 bits
        '{"kind": "Pod", "spec": {"x": NaN}}',
        '{"kind": "Pod", "metadata": {"name": "\\ud800"}}',  # a lone surrogate
        '{"kind": "Pod", "spec": ' + "[" * 70 + "]" * 70 + "}",  # deeper than the conversion
        "[]",
        '"Pod"',
        "{",
        "",
    ],
)
def test_the_engine_declines_text_python_reads_differently(text: str) -> None:
    assert _engine.pods_from_json(text, True) is None


@FUZZ
@given(text=st.one_of(texts(MANIFEST, ("json", "yaml")), texts(POD_LIST, ("yaml",))))
def test_load_pods(text: str) -> None:
    pods = typed_only(lambda: load_pods(text))
    mm = MemoryManager(MACHINE)
    for pod in pods if isinstance(pods, list) else ():
        defaulted = typed_only(pod.with_defaults)
        if defaulted is not None:
            _admit(mm, defaulted)


def _open_and_admit(machine: Any, **kwargs: Any) -> None:
    mm = typed_only(lambda: MemoryManager(machine, **kwargs))
    if isinstance(mm, MemoryManager):
        _admit(mm, POD)
        _admit(mm, Pod.from_dict(POD_DICT))
        typed_only(mm.usage)


@FUZZ
@given(doc=mutants(MACHINE_DICT))
def test_machine_from_dict(doc: Any) -> None:
    machine = typed_only(lambda: Machine.from_dict(doc))
    if isinstance(machine, Machine):
        _open_and_admit(machine)
    _open_and_admit(doc)


@FUZZ
@given(text=texts(MACHINE_DICT))
def test_machine_from_json(text: str) -> None:
    machine = typed_only(lambda: Machine.from_json(text))
    if isinstance(machine, Machine):
        _open_and_admit(machine)


@st.composite
def manager_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Some keyword arguments with valid values, and one or two of them mutated or replaced,
    so that the decoder gets past the first key."""
    reserved = draw(st.sampled_from([CONFIG["reserved_memory"], RESERVED_LIST]))
    seeds = {**CONFIG, "reserved_memory": reserved}
    names = sorted(seeds)
    out = {k: seeds[k] for k in draw(st.lists(st.sampled_from(names), unique=True))}
    for key in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)):
        out[key] = draw(st.one_of(mutants(seeds[key]), values))
    return out


@FUZZ
@given(kwargs=manager_kwargs())
def test_manager_keyword_arguments(kwargs: dict[str, Any]) -> None:
    _open_and_admit(MACHINE, **kwargs)


@FUZZ
@given(entries=mutants(ENTRIES))
def test_rebuild_from(entries: Any) -> None:
    _open_and_admit(MACHINE, rebuild_from=entries)


@FUZZ
@given(providers=mutants(PROVIDERS))
def test_admit_with_hint_providers(providers: Any) -> None:
    mm = MemoryManager(MACHINE, topology_policy="restricted")
    typed_only(lambda: mm.admit(Pod.from_dict(POD_DICT), hints=providers, trace=True))
    typed_only(lambda: mm.admit(POD, hints=providers))


@FUZZ
@given(providers=mutants(PROVIDERS), policy=st.sampled_from(["best-effort", "restricted", "x"]))
def test_merge_hints_providers(providers: Any, policy: str) -> None:
    typed_only(
        lambda: merge_hints(
            providers, [0, 1], policy, {"prefer-closest-numa-nodes": "true"}, [[10, 20], [20, 10]]
        )
    )


@FUZZ
@given(
    numa_nodes=mutants([0, 1]),
    policy=st.one_of(st.sampled_from(["best-effort", "restricted"]), values),
    options=mutants({"prefer-closest-numa-nodes": "true"}),
    distances=mutants([[10, 20], [20, 10]]),
)
def test_merge_hints_arguments(numa_nodes: Any, policy: Any, options: Any, distances: Any) -> None:
    typed_only(lambda: merge_hints(PROVIDERS, numa_nodes, policy, options, distances))


MERGE_ARGUMENT_CASES = {
    "numa_nodes a string": ("01", "best-effort", None, None),
    "numa_nodes beyond 64 bits": ([2**64], "best-effort", None, None),
    "policy a number": ([0, 1], 5, None, None),
    "an option's value a list": ([0, 1], "best-effort", {"prefer-closest-numa-nodes": [1]}, None),
    "an unknown option": ([0, 1], "best-effort", {"prefer-closest": "true"}, None),
    "prefer-closest without distances": (
        [0, 1],
        "best-effort",
        {"prefer-closest-numa-nodes": "true"},
        None,
    ),
    "a negative distance": (
        [0, 1],
        "best-effort",
        {"prefer-closest-numa-nodes": "true"},
        [[10, -1], [-1, 10]],
    ),
    "a fractional distance": ([0, 1], "best-effort", None, [[10.5, 20], [20, 10]]),
}


@pytest.mark.parametrize("case", MERGE_ARGUMENT_CASES)
def test_merge_hints_argument_types(case: str) -> None:
    numa_nodes, policy, options, distances = MERGE_ARGUMENT_CASES[case]
    with pytest.raises(ConfigError):
        merge_hints(PROVIDERS, numa_nodes, policy, options, distances)  # type: ignore[arg-type]


def test_merge_hints_names_the_wrong_argument() -> None:
    with pytest.raises(ConfigError, match="policy"):
        merge_hints(PROVIDERS, [0, 1], 5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="numa_nodes"):
        merge_hints(PROVIDERS, "01")  # type: ignore[arg-type]


def test_merge_hints_option_values_follow_go_parse_bool() -> None:
    # The kubelet parses option values with strconv.ParseBool, which takes "1" as true; a
    # JSON number 1 reaches it as the same text. Node 2 is closer to 0 than 1 is, so the
    # option changes the answer between the two equally narrow non-preferred hints: without
    # it the kubelet keeps the lower mask {0,1}; with it, the closer pair {0,2}.
    providers = [
        {
            "memory": [
                {"affinity": [0, 1], "preferred": False},
                {"affinity": [0, 2], "preferred": False},
            ]
        }
    ]
    distances = [[10, 30, 11], [30, 10, 30], [11, 30, 10]]
    nodes = [0, 1, 2]
    one: Any = {"prefer-closest-numa-nodes": 1}
    zero: Any = {"prefer-closest-numa-nodes": 0}
    plain, _ = merge_hints(providers, nodes, "best-effort")
    as_number, _ = merge_hints(providers, nodes, "best-effort", one, distances)
    as_text, _ = merge_hints(
        providers, nodes, "best-effort", {"prefer-closest-numa-nodes": "true"}, distances
    )
    off, _ = merge_hints(providers, nodes, "best-effort", zero, distances)
    assert plain["affinity"] == [0, 1]
    assert as_text["affinity"] == [0, 2]
    assert as_number == as_text
    assert off == plain


def test_merge_hints_providers_not_a_list() -> None:
    with pytest.raises(ConfigError, match="providers"):
        merge_hints(5, [0, 1])  # type: ignore[arg-type]


def test_an_option_the_kubelet_version_lacks_is_not_suggested_as_itself() -> None:
    with pytest.raises(ConfigError) as info:
        MemoryManager(
            MACHINE, kubelet_version="1.26", policy_options={"max-allowable-numa-nodes": "8"}
        )
    assert info.value.key == "max-allowable-numa-nodes"
    assert info.value.suggestion != info.value.key
    assert "1.26" in str(info.value)


@FUZZ
@given(doc=st.one_of(*(mutants(json.loads(t)) for t in STATE_FILES)))
def test_inspection_of_mutated_state_files(doc: Any) -> None:
    _inspect(json.dumps(doc))


@FUZZ
@given(text=st.one_of(*(texts(json.loads(t)) for t in STATE_FILES)))
def test_inspection_of_damaged_state_text(text: str) -> None:
    _inspect(text)


def _inspect(text: str) -> None:
    inspection = typed_only(lambda: _engine.Inspection(text))
    if isinstance(inspection, _engine.Inspection):
        inspection.node_rows()
        inspection.group_rows()
        inspection.pod_rows()
        json.loads(inspection.to_json())
        assert isinstance(inspection.findings, list)


@FUZZ
@given(doc=st.one_of(*(mutants(json.loads(t)) for t in STATE_FILES)))
def test_restoring_a_mutated_state_file(doc: Any) -> None:
    machine = Machine.synthetic(2, memory="16Gi", hugepages={"2Mi": 256, "1Gi": 2})
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "state"
        state_dir.mkdir(mode=0o700)
        (state_dir / STATE_FILE_NAME).write_text(json.dumps(doc))
        for drift in (None, "1Gi"):
            mm = typed_only(
                partial(
                    MemoryManager,
                    machine,
                    state_dir=state_dir,
                    read_only=True,
                    tolerate_drift=drift,
                )
            )
            if isinstance(mm, MemoryManager):
                typed_only(mm.usage)
                mm.close()


@FUZZ
@given(scenario=st.one_of(*(mutants(s) for s in SCENARIOS)))
def test_replay_of_mutated_scenarios(scenario: Any) -> None:
    typed_only(lambda: replay([scenario]))


@FUZZ
@given(text=texts({"scenarios": SCENARIOS[:1]}))
def test_load_scenarios_of_damaged_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.json"
        path.write_text(text)
        scenarios = typed_only(lambda: load_scenarios(path))
        if isinstance(scenarios, list):
            typed_only(lambda: replay(scenarios))


SYSFS = Path(__file__).parent / "fixtures" / "sysfs" / "xeon-gold-6242-2s"
SYSFS_FILES = sorted(
    str(p.relative_to(SYSFS)) for p in SYSFS.rglob("*") if p.is_file() and p.suffix != ".json"
)
sysfs_contents = st.one_of(
    st.none(),  # the file removed
    st.sampled_from(
        [
            b"",
            b"0",
            b"-1",
            b"18446744073709551616",
            b"0-3,7",
            b"3-1",
            b"0-99999999999",
            b"10 20 30",
            b"Node 0 MemTotal: 99999999999999999999999 kB",
            b"\xff\xfe",
            "١٢".encode(),
        ]
    ),
    st.binary(max_size=16),
    st.text(max_size=16).map(str.encode),
)


@pytest.mark.slow
@FUZZ
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(SYSFS_FILES), sysfs_contents), min_size=1, max_size=3
    )
)
def test_sysfs_discovery_of_a_damaged_tree(changes: list[tuple[str, bytes | None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        shutil.copytree(SYSFS, root)
        for name, content in changes:
            if content is None:
                (root / name).unlink(missing_ok=True)
            else:
                (root / name).write_bytes(content)
        machine = typed_only(partial(Machine.from_sysfs, root))
        if isinstance(machine, Machine):
            _open_and_admit(machine)
        run_cli(["topology", "--sysfs", str(root)])


# -- the command line -----------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    """``main(argv)`` held to the CLI's contract: exit 0 or 1 without an error line, or exit 2
    with exactly one ``pymm: error:`` line (only a state file's details and advice, and notes
    before the error, may come with it); a traceback or any other exception fails."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    lines = err.getvalue().splitlines()
    errors = [line for line in lines if line.startswith("pymm: error:")]
    if currently_in_test_context():
        what = re.sub(r"/tmp/\S*", "FILE", errors[0][13:50]) if errors else ""
        event(f"{argv[0]}: exit {code} {what}")
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert len(errors) == 1, (argv, lines)
        others = [line for line in lines if line not in errors]
        assert all(line.startswith(("pymm: note:", "pymm: advice:", "  ")) for line in others), (
            argv,
            lines,
        )
    else:
        assert code in (0, 1), (argv, code, lines)
        assert errors == [], (argv, lines)
    return code


FLAG_VALUES: dict[str, st.SearchStrategy[str]] = {
    "--hugepages": st.one_of(
        st.sampled_from(
            ["2Mi=4", "1Gi=1", "2Mi=²", "2Mi=18446744073709551616", "x=1", "=", "2Mi="]
        ),
        st.text(max_size=12),
    ),
    "--reserved-memory": st.one_of(
        st.sampled_from(["0:memory=1Gi;1:memory=1Gi", "0:memory=1Gi", "9:memory=1Gi", "", ";;"]),
        st.text(max_size=16),
    ),
    "--node-allocatable": st.one_of(
        st.sampled_from(["2Gi", "", " ", "-1", "1e400"]), st.text(max_size=8)
    ),
    "--policy-option": st.one_of(
        st.sampled_from(["prefer-closest-numa-nodes=true", "max-allowable-numa-nodes=x", "=", "a"]),
        st.text(max_size=12),
    ),
    "--tolerate-drift": st.one_of(
        st.sampled_from(["256Mi", "-1", "", "1e400"]), st.text(max_size=8)
    ),
    "--topology-policy": st.sampled_from(["single-numa-node", "restricted", "x", ""]),
    "--kubelet-version": st.sampled_from(["1.26", "latest", "v1.26", ""]),
    "--lock-wait": st.sampled_from(["0", "0.1", "-1", "nan", "inf", "x", ""]),
    "--search": st.sampled_from(["exact", "bounded", "x"]),
}


@st.composite
def flags(draw: st.DrawFn) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=3, unique=True))
    argv: list[str] = []
    for flag in chosen:
        argv += [flag, draw(FLAG_VALUES[flag])]
    return argv


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


@pytest.mark.slow
@FUZZ
@given(
    command=st.sampled_from(["admit", "hints"]),
    manifest=st.one_of(st.just(_dump(MANIFEST, "yaml")), texts(MANIFEST, ("yaml", "json"))),
    machine=st.one_of(
        st.none(),
        st.just(json.dumps(MACHINE_DICT)),
        texts(MACHINE_DICT),
        st.sampled_from(["xeon-9242-2s", "nope"]),
    ),
    extra=flags(),
    state_dir=st.booleans(),
)
def test_cli_admit_and_hints(
    command: str, manifest: str, machine: str | None, extra: list[str], state_dir: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        argv = [command, _write(d, "pod.yaml", manifest), *extra]
        if machine is not None:
            is_name = machine in ("xeon-9242-2s", "nope")
            argv += ["--machine", machine if is_name else _write(d, "m.json", machine)]
        if state_dir:
            argv += ["--state-dir", str(d / "state")]
        if command == "admit":
            argv += ["--quiet"]
        elif "--lock-wait" in argv:
            return  # hints takes no lock
        run_cli(argv)


@pytest.mark.slow
@FUZZ
@given(
    text=st.one_of(*(texts(json.loads(t)) for t in STATE_FILES)),
    command=st.sampled_from(["verify", "inspect", "inspect --json", "validate"]),
)
def test_cli_state_commands(text: str, command: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), STATE_FILE_NAME, text)
        words = command.split()
        argv = ["state", words[0], path, *words[1:]]
        if words[0] == "validate":
            argv += ["--machine", "xeon-gold-6242-2s"]
        run_cli(argv)


@pytest.mark.slow
@FUZZ
@given(
    text=texts({"scenarios": SCENARIOS[:2]}),
    version=st.sampled_from([[], ["--kubelet-version", "1.26"]]),
)
def test_cli_replay(text: str, version: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_cli(["replay", _write(Path(tmp), "s.json", text), *version])


SIMULATE_CONFIGS = [
    "kubelet:",
    "best",
    "a:topology-policy=single-numa-node,prefer-closest-numa-nodes=true",
    "b:numa-allocation-strategy=least-allocated,admit-when-fits=true,scope=pod",
    "c:reserved-memory=0:memory=1Gi;1:memory=1Gi",
]
small_counts = st.one_of(
    st.integers(-2, 30).map(str), st.sampled_from(["", "x", "1e3", "²", "99999999999999999999"])
)


def _text_edit(seed: str, cut: bool = True) -> st.SearchStrategy[str]:
    """``seed``, with text inserted, or (``cut``) cut short."""
    edits = [
        st.just(seed),
        st.builds(
            lambda i, t: seed[:i] + t + seed[i:], st.integers(0, len(seed)), st.text(max_size=6)
        ),
    ]
    if cut:
        edits.append(st.builds(lambda i: seed[:i], st.integers(0, len(seed))))
    return st.one_of(edits)


# Not cut: "memory=2" (bytes) is a valid probe that fits 100,000 times per sample, minutes.
PROBES = st.one_of(
    st.sampled_from(
        ["8Gi", "memory=0", "memory=-1Gi", "hugepages-2Mi=4Mi", "memory=1Gi,cpu=1", ""]
    ),
    _text_edit("memory=2Gi,hugepages-2Mi=4Mi", cut=False),
)


@pytest.mark.slow
@FUZZ
@given(
    configs=st.lists(st.sampled_from(SIMULATE_CONFIGS).flatmap(_text_edit), max_size=2),
    counts=st.fixed_dictionaries(
        {},
        optional={"--events": small_counts, "--seed": small_counts, "--samples": small_counts},
    ),
    probe=st.one_of(st.none(), PROBES),
    scenario=st.one_of(st.none(), texts({"scenarios": SCENARIOS[:1]})),
)
def test_cli_simulate(
    configs: list[str], counts: dict[str, str], probe: str | None, scenario: str | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["simulate"]
        if scenario is None:
            argv += ["--workload", "db-batch", "--events", counts.pop("--events", "20")]
        else:
            argv += ["--scenario", _write(Path(tmp), "s.json", scenario)]
        for flag, value in counts.items():
            argv += [flag, value]
        for config in configs:
            argv += ["--config", config]
        if probe is not None:
            argv += ["--probe", probe]
        run_cli([*argv, "--json", str(Path(tmp) / "out.json")])


def _recorded_config() -> dict[str, Any]:
    """The pymm-config.json a first ``pymm admit`` writes, as the seed to mutate."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pod = _write(d, "pod.yaml", _dump(MANIFEST, "yaml"))
        state = d / "state"
        argv = ["admit", pod, "--state-dir", str(state), "--hugepages", "1Gi=2", "--quiet"]
        assert run_cli(argv) == 0
        return json.loads((state / CONFIG_FILE_NAME).read_text())  # type: ignore[no-any-return]


RECORDED = _recorded_config()


@pytest.mark.slow
@FUZZ
@given(
    config=texts(RECORDED),
    command=st.sampled_from(["admit", "hints", "remove", "validate"]),
)
def test_cli_with_a_damaged_recorded_configuration(config: str, command: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        state = d / "state"
        pod = _write(d, "pod.yaml", _dump(MANIFEST, "yaml"))
        assert run_cli(["admit", pod, "--state-dir", str(state), "--hugepages", "1Gi=2"]) == 0
        (state / CONFIG_FILE_NAME).write_text(config)
        argv = {
            "admit": ["admit", pod, "--state-dir", str(state), "--quiet"],
            "hints": ["hints", pod, "--state-dir", str(state)],
            "remove": ["remove", "u-1", "--state-dir", str(state)],
            "validate": ["state", "validate", str(state)],
        }[command]
        run_cli(argv)
