"""The real kubelet's results, reproduced by `pymm replay`: every reference set in
``tests/conformance/`` through the CLI (the engine replays them again in ``cargo test``), and
the 54 small scenarios one by one (v1.26.15, and v1.32.10 for the default behaviour)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pymm.cli import main
from pymm.errors import ScenarioError
from pymm.replay import (
    compare_results,
    load_reference,
    load_scenarios,
    replay,
    replay_scenario,
)

CONF = Path(__file__).parent / "conformance"
SCENARIOS: list[dict[str, Any]] = json.loads(
    (CONF / "kubelet-oracle-small.scenarios.json").read_text()
)["scenarios"]
REFERENCE = json.loads((CONF / "kubelet-oracle-small.json").read_text())
REF_BY_NAME = {r["name"]: r for r in REFERENCE["results"]}
LATEST_SCENARIOS: list[dict[str, Any]] = json.loads(
    (CONF / "kubelet-oracle-latest-small.scenarios.json").read_text()
)["scenarios"]
LATEST = json.loads((CONF / "kubelet-oracle-latest-small.json").read_text())
LATEST_BY_NAME = {r["name"]: r for r in LATEST["results"]}
NEWEST = json.loads((CONF / "kubelet-oracle-138-small.json").read_text())
NEWEST_BY_NAME = {r["name"]: r for r in NEWEST["results"]}


def _reference_sets() -> list[tuple[str, Path, Path]]:
    """Each reference file with its scenarios (or itself, when its results embed them)."""
    out = []
    for ref in sorted(CONF.glob("kubelet-*.json*")):
        stem = ref.name.removesuffix(".gz").removesuffix(".json")
        if stem.endswith(".scenarios") or stem == "kubelet-vectors":
            continue
        scenarios = next(
            (
                p
                for p in (CONF / f"{stem}.scenarios.json", CONF / f"{stem}.scenarios.json.gz")
                if p.exists()
            ),
            ref,
        )
        out.append((stem, ref, scenarios))
    return out


def _version_of(ref: Path) -> str:
    """The kubelet version a reference file was produced by, from its own meta."""
    meta = load_reference(ref).meta["kubernetes"]
    for prefix, version in (("v1.26", "1.26"), ("v1.32", "1.32")):
        if meta.startswith(prefix):
            return version
    if "v1.38" in meta:
        return "1.38"
    raise AssertionError(f"{ref.name}: unknown kubelet {meta!r}")


def test_the_shared_reference_sets_are_all_here() -> None:
    names = {stem for stem, _, _ in _reference_sets()}
    assert {
        "kubelet-oracle-small",
        "kubelet-oracle-latest-small",
        "kubelet-oracle-latest-lifecycle",
        "kubelet-bugs",
        "kubelet-oracle-138-small",
        "kubelet-oracle-138-pod-level",
        "kubelet-oracle-138-pod-scope-restart",
    } <= names


@pytest.mark.parametrize(
    ("stem", "ref", "scenarios"), _reference_sets(), ids=[s for s, _, _ in _reference_sets()]
)
def test_cli_replay_matches_every_reference_set(
    stem: str, ref: Path, scenarios: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    args = ["replay", str(scenarios), "-o", str(out), "--compare", str(ref)]
    rc = main([*args, "--kubelet-version", _version_of(ref)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert " 0 differences" in err
    assert len(json.loads(out.read_text())["results"]) == len(
        json.loads(
            __import__("gzip").decompress(ref.read_bytes())
            if ref.suffix == ".gz"
            else ref.read_text()
        )["results"]
    )


def test_all_54_scenarios_are_present() -> None:
    assert len(SCENARIOS) == 54
    assert {s["name"] for s in SCENARIOS} == set(REF_BY_NAME)
    assert load_scenarios(CONF / "kubelet-oracle-small.scenarios.json").names == [
        s["name"] for s in SCENARIOS
    ]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_scenario_matches_the_kubelet(scenario: dict[str, Any]) -> None:
    got = {"results": [replay_scenario(scenario, "1.26")]}
    ref = {"results": [REF_BY_NAME[scenario["name"]]]}
    assert compare_results(got, ref) == []


@pytest.mark.parametrize("scenario", LATEST_SCENARIOS, ids=lambda s: s["name"])
def test_scenario_matches_kubelet_1_32(scenario: dict[str, Any]) -> None:
    assert "kubeletVersion" not in scenario
    got = {"results": [replay_scenario(scenario, "1.32")]}
    ref = {"results": [LATEST_BY_NAME[scenario["name"]]]}
    assert compare_results(got, ref) == []


@pytest.mark.parametrize("scenario", LATEST_SCENARIOS[::6], ids=lambda s: s["name"])
def test_the_default_and_latest_are_the_1_38_kubelet(scenario: dict[str, Any]) -> None:
    # No kubeletVersion in these scenarios: the default, and "latest", are the newest kubelet.
    ref = {"results": [NEWEST_BY_NAME[scenario["name"]]]}
    for version in (None, "latest"):
        got = {"results": [replay_scenario(scenario, version)]}
        assert compare_results(got, ref) == [], version
    # The 1.32 kubelet's results differ from it in the state file's layout.
    if "setupError" not in ref["results"][0]:
        old = {"results": [replay_scenario(scenario, "1.32")]}
        assert any("format: V1 != V3" in d for d in compare_results(old, ref))


@pytest.mark.parametrize(
    ("stem", "version"),
    [
        ("kubelet-oracle-small", "1.26"),
        ("kubelet-oracle-latest-small", "1.32"),
        ("kubelet-oracle-138-pod-scope-restart", "1.38"),
    ],
)
def test_compare_replays_as_the_references_kubelet(
    stem: str, version: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = CONF / f"{stem}.json"
    scenarios = CONF / f"{stem}.scenarios.json"
    scenarios = scenarios if scenarios.exists() else ref
    assert load_reference(ref).kubelet_version == version
    out = tmp_path / "results.json"
    assert main(["replay", str(scenarios), "-o", str(out), "--compare", str(ref)]) == 0
    assert " 0 differences" in capsys.readouterr().err
    assert json.loads(out.read_text())["meta"]["kubeletVersion"] == version
    if version == "1.26":
        return  # these scenarios name their kubelet themselves
    # A version named on the command line wins over the reference's.
    other = "1.32" if version != "1.32" else "1.38"
    args = ["replay", str(scenarios), "-o", str(out), "--compare", str(ref)]
    assert main([*args, "--kubelet-version", other]) == 1


def test_panic_scenario_gives_a_clear_error() -> None:
    sc = next(s for s in SCENARIOS if s["name"] == "mm-panic-unknown-hugepage-size")
    r = replay_scenario(sc, "1.26")["results"][0]
    assert r["admit"] is False
    assert "hugepages-1Gi" in r["error"] and "panic" not in r["error"]


def test_comparator_catches_a_difference() -> None:
    sc = next(s for s in SCENARIOS if s["name"] == "fill-nodes-in-order")
    got = replay([sc], "1.26")
    tampered = json.loads(json.dumps(got))
    tampered["results"][0]["results"][1]["allocations"][0]["blocks"][0]["numaAffinity"] = [0, 1]
    assert compare_results(got, {"results": [REF_BY_NAME[sc["name"]]]}) == []
    assert compare_results(tampered, {"results": [REF_BY_NAME[sc["name"]]]}) != []


def test_cli_replay_writes_results_and_compares(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    rc = main(
        [
            "replay",
            str(CONF / "kubelet-oracle-small.scenarios.json"),
            "-o",
            str(out),
            "--kubelet-version",
            "1.26",
            "--compare",
            str(CONF / "kubelet-oracle-small.json"),
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert len(data["results"]) == 54


def test_1_32_differs_from_126_where_documented() -> None:
    # 1.26 compares free/reserved per node at restart; group sums (1.32+) are more lenient,
    # so at least the scenarios still pass under 1.32 where the state stays valid.
    sc = next(s for s in SCENARIOS if s["name"] == "restart-restore")
    latest = replay_scenario({**sc, "kubeletVersion": None}, "1.32")
    assert all("error" not in r for r in latest["results"])


def test_malformed_scenario_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scenarios": [{"name": "x", "machine": {"numaNodes": "nope"}}]}))
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymm: error:") and "numaNodes" in err and "Traceback" not in err
    assert err.count("\n") == 1 and str(bad) in err and 'scenario "x"' in err


@pytest.mark.parametrize(
    ("op", "needle"),
    [
        ({"op": "admit", "pod": {"uid": None, "containers": []}}, "ops[0].pod.uid"),
        ({"op": "admit"}, "ops[0].pod: required"),
        ({"op": "remove", "podUID": "p"}, "ops[0].container: required"),
        ({"op": "removepod", "podUID": "p"}, 'did you mean "removePod"'),
        ({"op": "restart", "machien": {}}, 'did you mean "machine"'),
        ({"op": ["admit"]}, "ops[0].op: expected a string"),
    ],
)
def test_a_malformed_operation_names_its_place(op: dict[str, Any], needle: str) -> None:
    sc = {"name": "bad", "machine": {"numaNodes": [{"id": 0, "memory": "4Gi"}]}, "ops": [op]}
    with pytest.raises(ScenarioError, match='scenario "bad"') as e:
        replay([sc])
    assert needle in str(e.value)


def test_a_scenario_key_misspelt_is_refused() -> None:
    sc = {"name": "s", "machine": {"numaNodes": []}, "topologyManagerPolcy": "restricted"}
    with pytest.raises(ScenarioError, match='did you mean "topologyManagerPolicy"'):
        replay([sc])


# -- in memory, and the options only pymm has ---------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "version"),
    [(s, "1.26") for s in SCENARIOS] + [(s, None) for s in LATEST_SCENARIOS],
    ids=lambda v: v["name"] if isinstance(v, dict) else str(v),
)
def test_in_memory_replay_equals_the_durable_one(
    scenario: dict[str, Any], version: str | None, tmp_path: Path
) -> None:
    # Every result, checkpoints included, as when each operation went through the state file.
    durable = replay_scenario(scenario, version, tmp_path, durable=True)
    assert replay_scenario(scenario, version, tmp_path) == durable


def test_only_restarts_go_through_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from pymm import statefile

    written: list[Path] = []
    read: list[Path] = []

    def write(path: Path, data: bytes, **kw: Any) -> None:
        written.append(path)
        statefile.atomic_write(path, data, **kw)

    def read_file(path: Path) -> bytes | None:
        read.append(path)
        return real_read(path)

    real_read = statefile.read_file
    monkeypatch.setattr("pymm.replay.atomic_write", write)
    monkeypatch.setattr("pymm.replay.statefile.read_file", read_file)
    sc = next(s for s in SCENARIOS if s["name"] == "restart-restore")
    restarts = sum(1 for op in sc["ops"] if op["op"] == "restart")
    assert restarts >= 1 and len(sc["ops"]) > restarts
    out = replay_scenario(sc, "1.26")
    assert len(out["results"]) == len(sc["ops"])
    assert len(written) == restarts and written == read
    assert all(p.name == "memory_manager_state" for p in written)


def _admit_when_fits_scenario(options: dict[str, Any] | None) -> dict[str, Any]:
    """Two nodes of 15Gi allocatable; a fake CPU provider prefers node 0 for both pods."""

    def pod(uid: str, memory: str) -> dict[str, Any]:
        fake = {"cpu": [{"affinity": [0], "preferred": True}]}
        container = {"name": "c", "limits": {"cpu": "1", "memory": memory}, "fakeHints": fake}
        return {"uid": uid, "name": uid, "namespace": "default", "containers": [container]}

    sc: dict[str, Any] = {
        "name": "admit-when-fits",
        "machine": {"numaNodes": [{"id": 0, "memory": "16Gi"}, {"id": 1, "memory": "16Gi"}]},
        "reservedMemory": [{"numaNode": n, "limits": {"memory": "1Gi"}} for n in (0, 1)],
        "topologyManagerPolicy": "best-effort",
        "useFakeProvider": True,
        "ops": [
            {"op": "admit", "pod": pod("big", "13Gi")},
            {"op": "admit", "pod": pod("small", "4Gi")},
        ],
    }
    if options is not None:
        sc["memoryManagerPolicyOptions"] = options
    return sc


@pytest.mark.parametrize("value", ["true", True, "1"])
def test_memory_manager_policy_options_reach_the_manager(value: object) -> None:
    # "big" takes node 0 (13Gi of 15Gi). "small" (4Gi): node 0 has 2Gi left, so memory
    # hints only {1}; the CPU hint {0} AND {1} is empty, best-effort falls back to {0,1}
    # non-preferred, and {0,1} would join node 0's single-node group: the kubelet's Allocate
    # fails. Node 1 alone is a valid set that holds 4Gi: admit-when-fits puts it there.
    kubelet = replay_scenario(_admit_when_fits_scenario(None))["results"][1]
    assert kubelet["admit"] is False
    assert "preferred hint violates NUMA node allocation" in kubelet["message"]
    fits = replay_scenario(_admit_when_fits_scenario({"admit-when-fits": value}))["results"][1]
    assert fits["admit"] is True
    assert fits["allocations"][0]["blocks"] == [
        {"numaAffinity": [1], "type": "memory", "size": 4 * 2**30}
    ]
    assert fits["checkpoint"]["machineState"]["1"]["memoryMap"]["memory"]["free"] == 11 * 2**30


def test_bad_memory_manager_policy_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An option the engine does not know is a manager that does not start, like a bad
    # kubelet flag: a setup error in the results, with the close match.
    out = replay_scenario(_admit_when_fits_scenario({"admit-when-fit": "true"}))
    assert out["results"] == []
    assert "admit-when-fits" in out["setupError"]
    assert (
        "ParseBool"
        in replay_scenario(_admit_when_fits_scenario({"spread-hugepages": "y"}))["setupError"]
    )
    # A value that is not a map is a malformed scenario: one error line, exit 2.
    bad = tmp_path / "bad.json"
    sc = _admit_when_fits_scenario(None)
    sc["memoryManagerPolicyOptions"] = ["admit-when-fits=true"]
    bad.write_text(json.dumps({"scenarios": [sc]}))
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memoryManagerPolicyOptions: expected a map" in err
