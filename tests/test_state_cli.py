"""``pymm state verify|inspect|validate`` on real kubelet state files and on damaged ones."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers_checkpoint import spew_text, with_valid_checksum

from pymm import Container, Machine, MemoryManager, Pod, _engine
from pymm.cli import main
from pymm.errors import CheckpointCorruptedError
from pymm.replay import scenario_machine

STATE_FILES = Path(__file__).parent / "conformance" / "state-files"
SCENARIOS = Path(__file__).parent / "conformance" / "kubelet-oracle-small.scenarios.json"
INDEX = {f["file"]: f for f in json.loads((STATE_FILES / "index.json").read_text())["files"]}
REAL_FILES = sorted(INDEX)
GI = 1 << 30


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["state", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def scenario_of(file_name: str) -> dict[str, Any]:
    name = file_name.rsplit("-op", 1)[0]
    scenarios = json.loads(SCENARIOS.read_text())["scenarios"]
    return next(s for s in scenarios if s["name"] == name)


def reserved_flags(scenario: dict[str, Any]) -> list[str]:
    # The flag parser rejects explicit zeros that the config-file form allows; a zero
    # reservation is the same as none, so leave those out.
    flags = []
    for item in scenario["reservedMemory"]:
        limits = ",".join(f"{k}={v}" for k, v in item["limits"].items() if str(v) != "0")
        flags += ["--reserved-memory", f"{item['numaNode']}:{limits}"]
    return flags


def write_machine(tmp_path: Path, scenario: dict[str, Any], *, grow_node0: int = 0) -> Path:
    machine = scenario_machine(scenario["machine"])
    machine["nodes"][0]["memory_bytes"] += grow_node0
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(machine))
    return path


def manager_checkpoint() -> dict[str, Any]:
    """A consistent checkpoint with a two-node group (0,1), a pod on node 2, node 3 unused."""
    machine = Machine.synthetic(4, memory="16Gi")
    # A V1 file (the 1.32 kubelet's): what the tests below plant is in its V1 fields.
    mm = MemoryManager(
        machine,
        reserved_memory=machine.reserve_per_node("1Gi"),
        topology_policy="best-effort",
        kubelet_version="1.32",
    )
    assert mm.admit(Pod.of("wide", Container.of("c", cpu="1", memory="20Gi")))["c"].numa_nodes == (
        0,
        1,
    )
    assert mm.admit(Pod.of("small", Container.of("c", cpu="1", memory="2Gi"))).admitted
    state = mm.state
    assert state["machineState"]["2"]["numberOfAssignments"] == 1, state
    return state


def write(tmp_path: Path, text: str, name: str = "memory_manager_state") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- verify ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_FILES)
def test_verify_accepts_every_real_kubelet_file(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "verify", str(STATE_FILES / name))
    assert code == 0, out
    stored = INDEX[name]["storedChecksum"]
    assert out.startswith("OK ")
    assert "policy Static" in out
    assert f"checksum {stored}" in out
    assert out.count("\n") == 1


def test_index_spew_texts_match_the_test_checksum_helper() -> None:
    # The planted-inconsistency tests below trust this helper to produce checksums the
    # kubelet accepts; prove it on the kubelet's own texts first.
    for name, entry in INDEX.items():
        checkpoint = json.loads((STATE_FILES / name).read_text())
        assert spew_text(checkpoint) == entry["spewText"], name
        assert _engine.checkpoint_spew_text((STATE_FILES / name).read_text()) == entry["spewText"]


def _damaged(text: str) -> dict[str, str]:
    # The second digit of memory's free value on node 0 (non-zero in the file used).
    pos = text.index('"free":', text.index('"memory":')) + len('"free":') + 1
    assert text[pos - 1 : pos + 1].isdigit()
    flipped = text[:pos] + chr(ord(text[pos]) ^ 1) + text[pos + 1 :]
    return {
        "bit-flip": flipped,
        "truncated": text[: len(text) // 2],
        "empty": "",
        "garbage-json": '{"policyName": "Static", "machineState": [1, 2',
        "not-json": "\x00\x01 definitely not a checkpoint",
        "wrong-shape": '["policyName", "Static"]',
    }


@pytest.mark.parametrize(
    "kind", ["bit-flip", "truncated", "empty", "garbage-json", "not-json", "wrong-shape"]
)
def test_verify_rejects_damaged_files(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (STATE_FILES / "remove-readmit-op02.state.json").read_text()
    path = write(tmp_path, _damaged(text)[kind])
    code, out, err = cli(capsys, "verify", str(path))
    assert code == 1, (out, err)
    assert out.startswith(f"FAIL {path}: ")
    if kind == "bit-flip":
        assert "checkpoint is corrupted" in out
    if kind in ("truncated", "empty"):
        assert "unexpected end of JSON input" in out


def test_every_accepted_single_bit_flip_decodes_to_the_same_state(tmp_path: Path) -> None:
    # Go's decoder matches field names case-insensitively and ignores unknown ones, so some
    # flips inside key names are harmless; none may change what the file says unnoticed.
    # As the 1.32 kubelet reads it: from 1.36 on, a checksum of 0 (a flipped key name leaves
    # none) passes, as the kubelet's checkpoint manager lets it.
    raw = (STATE_FILES / "remove-readmit-op02.state.json").read_bytes()
    reference = _engine.decode_checkpoint(raw.decode(), "1.32")
    accepted = rejected = 0
    for i in range(len(raw)):
        for bit in range(8):
            damaged = bytearray(raw)
            damaged[i] ^= 1 << bit
            try:
                decoded = _engine.decode_checkpoint(damaged.decode(), "1.32")
            except UnicodeDecodeError:
                rejected += 1
                continue
            except CheckpointCorruptedError:
                rejected += 1
                continue
            accepted += 1
            assert decoded == reference, (i, bit)
    assert rejected > accepted > 0


def test_verify_missing_file_is_a_command_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "verify", str(tmp_path / "nope"))
    assert code == 2
    assert out == ""
    assert err.startswith("pymm: error: ") and "No such file" in err


def test_verify_directory_means_its_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "verify", str(tmp_path))
    assert code == 2
    assert f"{tmp_path / 'memory_manager_state'}: No such file or directory" in err
    (tmp_path / "memory_manager_state").mkdir()
    code, _, err = cli(capsys, "verify", str(tmp_path))
    assert code == 2 and "not a regular file" in err


def test_verify_follows_a_symlink_for_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "link"
    link.symlink_to(STATE_FILES / "remove-readmit-op02.state.json")
    code, out, _ = cli(capsys, "verify", str(link))
    assert code == 0, out


# -- inspect --------------------------------------------------------------------------------


def inspect_json(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = cli(capsys, "inspect", str(path), "--json")
    return code, json.loads(out)


@pytest.mark.parametrize("name", REAL_FILES)
def test_inspect_finds_nothing_wrong_in_real_files(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = inspect_json(capsys, STATE_FILES / name)
    assert report["inconsistencies"] == []
    assert code == 0
    stored = INDEX[name]["storedChecksum"]
    assert report["checksum"] == {"stored": stored, "computed": stored, "valid": True}


def test_inspect_json_reports_nodes_groups_and_pods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = inspect_json(
        capsys, STATE_FILES / "cross-numa-group-blocks-single-op03.state.json"
    )
    assert code == 0
    assert report["policyName"] == "Static"
    memory = {r["node"]: r for r in report["nodes"] if r["resource"] == "memory"}
    assert memory[0]["cells"] == [0, 1] and memory[1]["cells"] == [0, 1]
    for row in memory.values():
        assert row["total"] == 16 * GI and row["systemReserved"] == GI
        assert row["allocatable"] == 15 * GI
        assert row["reserved"] + row["free"] == row["allocatable"]
    groups = {tuple(g["nodes"]): g for g in report["groups"]}
    assert set(groups) == {(0, 1), (2,), (3,)}
    pair = groups[(0, 1)]["resources"]["memory"]
    # Group totals are sums over the group's nodes, whatever the split between them.
    assert pair["free"] == memory[0]["free"] + memory[1]["free"] == 10 * GI
    assert pair["reserved"] == 20 * GI
    assert groups[(3,)]["used"] is False and groups[(0, 1)]["used"] is True
    pods = {p["podUID"]: p["containers"] for p in report["pods"]}
    assert pods["p1"] == [
        {
            "name": "c1",
            "numaNodes": [0, 1],
            "blocks": [{"numaAffinity": [0, 1], "type": "memory", "size": 20 * GI}],
        }
    ]
    assert pods["p2"][0]["numaNodes"] == [2]


def test_inspect_human_output_shows_groups_and_pods(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = cli(
        capsys, "inspect", str(STATE_FILES / "cross-numa-group-blocks-single-op03.state.json")
    )
    assert code == 0
    assert "checksum 3278034986 (valid)" in out
    assert "Groups" in out
    group_rows = [line for line in out.splitlines() if line.startswith("│ 0,1 ")]
    assert group_rows and "yes" in group_rows[0] and "10Gi" in group_rows[0]
    assert "memory 20Gi on 0,1" in out
    assert "no inconsistencies found" in out


def _plant_overlap(cp: dict[str, Any]) -> None:
    cp["machineState"]["2"]["cells"] = [1, 2]


def _plant_not_own_group(cp: dict[str, Any]) -> None:
    cp["machineState"]["3"]["cells"] = [2]


def _plant_free_mismatch(cp: dict[str, Any]) -> None:
    cp["machineState"]["0"]["memoryMap"]["memory"]["free"] += GI


def _plant_assignment_count(cp: dict[str, Any]) -> None:
    cp["machineState"]["2"]["numberOfAssignments"] += 1


def _plant_unknown_node(cp: dict[str, Any]) -> None:
    cp["entries"]["small"]["c"].append({"numaAffinity": [7], "type": "memory", "size": GI})


def _plant_unknown_resource(cp: dict[str, Any]) -> None:
    block = {"numaAffinity": [2], "type": "hugepages-3Mi", "size": GI}
    cp["entries"]["small"]["c"].append(block)
    cp["machineState"]["2"]["numberOfAssignments"] += 1  # keep the count right: one finding


PLANTS = {
    "overlapping-groups": (_plant_overlap, "used nodes 0 and 2 are in overlapping groups"),
    "node-not-in-group": (_plant_not_own_group, "node 3 is not in its own group"),
    "reserved-free-allocatable": (_plant_free_mismatch, "node 0 memory: reserved"),
    "number-of-assignments": (
        _plant_assignment_count,
        "node 2: numberOfAssignments is 2 but 1 blocks use it",
    ),
    "unknown-node": (_plant_unknown_node, "uses NUMA node 7"),
    "unknown-resource": (_plant_unknown_resource, '"hugepages-3Mi"'),
}


def test_manager_checkpoint_is_consistent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The baseline every planted problem starts from must itself be clean, and the helper's
    # checksum must be the one the engine wrote.
    cp = manager_checkpoint()
    assert json.loads(with_valid_checksum(cp))["checksum"] == cp["checksum"]
    code, report = inspect_json(capsys, write(tmp_path, json.dumps(cp)))
    assert (code, report["inconsistencies"]) == (0, [])


@pytest.mark.parametrize("kind", list(PLANTS))
def test_inspect_finds_planted_inconsistency_in_a_file_the_kubelet_accepts(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plant, expected_text = PLANTS[kind]
    cp = copy.deepcopy(manager_checkpoint())
    plant(cp)
    path = write(tmp_path, with_valid_checksum(cp))

    code, out, _ = cli(capsys, "verify", str(path))
    assert code == 0, "the checksum is valid, so verify alone cannot see the problem: " + out

    code, report = inspect_json(capsys, path)
    assert code == 1
    kinds = [item["kind"] for item in report["inconsistencies"]]
    assert set(kinds) == {kind}, report["inconsistencies"]
    assert any(expected_text in item["message"] for item in report["inconsistencies"])

    code, out, _ = cli(capsys, "inspect", str(path))
    assert code == 1
    assert "inconsistencies:" in out and expected_text in out


def test_inspect_reports_bad_checksum_and_keeps_going(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cp = manager_checkpoint()
    _plant_free_mismatch(cp)  # edited without recomputing the checksum
    path = write(tmp_path, json.dumps(cp))

    code, out, _ = cli(capsys, "verify", str(path))
    assert (code, "checkpoint is corrupted" in out) == (1, True)

    code, report = inspect_json(capsys, path)
    assert code == 1
    # The content's checksum, computed here independently of the engine.
    computed = json.loads(with_valid_checksum(cp))["checksum"]
    assert report["checksum"] == {"stored": cp["checksum"], "computed": computed, "valid": False}
    kinds = {item["kind"] for item in report["inconsistencies"]}
    assert kinds == {"checksum", "reserved-free-allocatable"}
    checksum_item = next(i for i in report["inconsistencies"] if i["kind"] == "checksum")
    assert "checksum mismatch" in checksum_item["message"]
    # The rest of the report still comes from the file's content.
    assert {p["podUID"] for p in report["pods"]} == {"wide", "small"}

    code, out, _ = cli(capsys, "inspect", str(path))
    assert code == 1 and "MISMATCH" in out and "checksum mismatch" in out


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage-json", "wrong-shape"])
def test_inspect_refuses_what_is_not_a_checkpoint(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (STATE_FILES / "remove-readmit-op02.state.json").read_text()
    path = write(tmp_path, _damaged(text)[kind])
    code, out, _ = cli(capsys, "inspect", str(path))
    assert code == 1 and out.startswith(f"FAIL {path}: ")
    code, report = inspect_json(capsys, path)
    assert code == 1 and report["error"]


# -- inspect: fragmentation ------------------------------------------------------------------

# Memory free per node in this kubelet file: node 0 6.5Gi (pods p1, p3), nodes 1 and 2 a group
# {1,2} with 0 and 9Gi free (p2, 20Gi), node 3 14.5Gi free and unused; 30Gi free in all.
FRAGMENTED = STATE_FILES / "restart-restore-op04.state.json"


@pytest.mark.parametrize(
    ("probe", "fits", "stranded"),
    [
        # 8Gi, best-effort: node 3 takes one (6.5Gi left); the group {1,2} takes one more
        # (a container spanning exactly the group may join it; 1Gi left, all on node 2);
        # node 0's 6.5Gi is too small, and no new group can form over used nodes.
        ("8Gi", 2, {0: 6.5, 1: 0, 2: 1, 3: 6.5}),
        # 4Gi: node 0 takes 1 (2.5Gi left), node 3 takes 3 (2.5Gi left), the group 2 (1Gi).
        ("4Gi", 6, {0: 2.5, 1: 0, 2: 1, 3: 2.5}),
    ],
)
def test_inspect_fragmentation_counts_what_still_fits(
    capsys: pytest.CaptureFixture[str], probe: str, fits: int, stranded: dict[int, float]
) -> None:
    code, out, _ = cli(capsys, "inspect", str(FRAGMENTED), "--json", "--probe", probe)
    report = json.loads(out)
    assert code == 0 and report["inconsistencies"] == [] and report["pods"]
    frag = report["fragmentation"]
    assert frag["probe"] == {"memory": probe}
    assert (frag["topologyPolicy"], frag["scope"], frag["configuration"]) == (
        "best-effort",
        "container",
        "the defaults",
    )
    assert (frag["fits"], frag["capped"]) == (fits, False)
    by_node = {row["node"]: row for row in frag["byNode"]}
    assert {n: row["stranded"] / GI for n, row in by_node.items()} == stranded
    assert {n: row["free"] / GI for n, row in by_node.items()} == {0: 6.5, 1: 0, 2: 9, 3: 14.5}
    assert frag["stranded"] == sum(stranded.values()) * GI
    assert frag["free"] == 30 * GI

    code, out, _ = cli(capsys, "inspect", str(FRAGMENTED), "--probe", probe)
    assert code == 0
    assert f"Fragmentation for probe memory={probe} under best-effort, container scope" in out
    total = sum(stranded.values())
    assert f"{fits} more such pods fit; then {total:g}Gi of the 30Gi free is stranded" in out
    section = out.split("Fragmentation for probe", 1)[1].split("└", 1)[0]
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in section.splitlines()
        if line.startswith("│")
    ]
    assert rows == [
        ["0", "6.5Gi", f"{stranded[0]:g}Gi"],
        ["1", "0", "0"],
        ["2", "9Gi", f"{stranded[2]:g}Gi"],
        ["3", "14.5Gi", f"{stranded[3]:g}Gi"],
    ]


def test_inspect_fragmentation_of_a_file_that_does_not_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cp = copy.deepcopy(manager_checkpoint())
    _plant_free_mismatch(cp)
    path = write(tmp_path, with_valid_checksum(cp))
    code, report = inspect_json(capsys, path)
    # The rest of the report is there; the section says why it has no numbers.
    assert code == 1 and report["inconsistencies"] and report["pods"]
    frag = report["fragmentation"]
    assert "fits" not in frag
    assert frag["error"].startswith("the file does not restore: ")
    assert "expected machine state is different" in frag["error"]
    code, out, err = cli(capsys, "inspect", str(path))
    assert code == 1 and err == ""
    assert "Fragmentation for probe memory=8Gi" in out
    assert "not computed, the file does not restore" in out


def test_inspect_fragmentation_uses_a_directorys_recorded_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = tmp_path / "m.json"
    machine.write_text(json.dumps(Machine.synthetic(2, memory="16Gi").to_dict()))
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "kind: Pod\nmetadata: {name: p, uid: p}\nspec:\n  containers:\n  - name: c\n"
        "    resources: {limits: {cpu: '1', memory: 1Gi}}\n"
    )
    state = tmp_path / "state"
    flags = ["--machine", str(machine), "--topology-policy", "single-numa-node"]
    assert main(["admit", str(pod), *flags, "--state-dir", str(state), "--quiet"]) == 0
    assert main(["remove", "p", "--state-dir", str(state)]) == 0
    capsys.readouterr()
    # An empty machine of two 15Gi nodes and a 20Gi probe: single-numa-node admits none
    # (no node holds it), so all 30Gi is stranded; the same file alone, under best-effort,
    # takes one across {0,1}, lowest node first: 15Gi of node 0 and 5Gi of node 1.
    code, report = inspect_json_probe(capsys, state, "20Gi")
    frag = report["fragmentation"]
    assert code == 0 and frag["topologyPolicy"] == "single-numa-node"
    assert frag["configuration"] == f"recorded in {state / 'pymm-config.json'}"
    assert (frag["fits"], frag["stranded"]) == (0, 30 * GI)
    alone = write(tmp_path, (state / "memory_manager_state").read_text(), "copy")
    code, report = inspect_json_probe(capsys, alone, "20Gi")
    frag = report["fragmentation"]
    assert frag["topologyPolicy"] == "best-effort" and frag["fits"] == 1
    assert {row["node"]: row["stranded"] for row in frag["byNode"]} == {0: 0, 1: 10 * GI}
    # A directory whose recorded configuration is unreadable still inspects, with the defaults.
    (state / "pymm-config.json").write_text("{not json")
    code, report = inspect_json_probe(capsys, state, "20Gi")
    frag = report["fragmentation"]
    assert code == 0 and frag["fits"] == 1
    assert frag["configuration"].startswith("the defaults (cannot use ")


def inspect_json_probe(
    capsys: pytest.CaptureFixture[str], path: Path, probe: str
) -> tuple[int, dict[str, Any]]:
    code, out, _ = cli(capsys, "inspect", str(path), "--json", "--probe", probe)
    return code, json.loads(out)


@pytest.mark.parametrize(
    ("probe", "needle"),
    [
        ("cpu=1", "expected a quantity (8Gi) or memory=QTY,hugepages-SIZE=QTY"),
        ("8Gx", "quantities must match the regular expression"),
        ("0", "memory must be more than 0"),
    ],
)
def test_inspect_bad_probe_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], probe: str, needle: str
) -> None:
    code, out, err = cli(capsys, "inspect", str(FRAGMENTED), "--probe", probe)
    assert (code, out) == (2, "")
    assert err.startswith("pymm: error: --probe") and needle in err and err.count("\n") == 1


# -- validate -------------------------------------------------------------------------------

VALIDATE_FILES = [
    "cross-numa-group-blocks-single-op03.state.json",
    "hugepages-2Mi-op02.state.json",
    "hugepages-both-op01.state.json",
    "restart-restore-op04.state.json",
]


@pytest.mark.parametrize("name", VALIDATE_FILES)
def test_validate_real_file_on_its_own_machine_would_start(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = scenario_of(name)
    machine = write_machine(tmp_path, scenario)
    code, out, err = cli(
        capsys,
        "validate",
        str(STATE_FILES / name),
        "--machine",
        str(machine),
        "--kubelet-version",
        scenario.get("kubeletVersion", "latest"),
        *reserved_flags(scenario),
    )
    assert (code, err) == (0, ""), out
    assert out.startswith("would start: ")


def node0_grown_by_1gi(tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of a real kubelet file, and validate's arguments for its machine with 1Gi more on
    node 0 (as after a firmware or DIMM change)."""
    name = "restart-restore-op04.state.json"
    scenario = scenario_of(name)
    machine = write_machine(tmp_path, scenario, grow_node0=GI)
    path = write(tmp_path, (STATE_FILES / name).read_text())
    return path, ["validate", str(path), "--machine", str(machine), *reserved_flags(scenario)]


def test_validate_with_different_node_memory_would_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, argv = node0_grown_by_1gi(tmp_path)
    code, out, _ = cli(capsys, *argv)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (
        "would not start: [memorymanager] the expected machine state is different from the real one"
    )
    # Node 0 (16Gi, 1Gi reserved, 512Mi of 2Mi pages, 8Gi assigned) gained 1Gi; nothing else
    # changed, so only its total, allocatable and free differ.
    assert lines[1:3] == [
        "differences (file vs. expected: this machine and reservation with the file's",
        "assignments placed):",
    ]
    assert lines[3:-2] == [
        "  - node 0 memory total: file 16Gi, expected 17Gi",
        "  - node 0 memory allocatable: file 14848Mi, expected 15872Mi",
        "  - node 0 memory free (sum over group [0]): file 6656Mi, expected 7680Mi",
        "  - beyond the kubelet: node totals drifted by at most 1Gi and every assignment still "
        "fits; a drift tolerance of at least 1Gi keeps the reservations and rebases the totals",
    ]
    assert lines[-2].startswith("advice: ") and "--reserved-memory" in lines[-2]
    assert "--tolerate-drift" in lines[-2]
    # The file itself is intact: the layout and its checksum, as verify reports them.
    assert re.fullmatch(r"state file: v1, checksum (\d+) \(valid\)", lines[-1]), lines[-1]


def test_validate_with_a_drift_tolerance_would_start_beyond_the_kubelet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, argv = node0_grown_by_1gi(tmp_path)
    before = path.read_bytes()
    code, out, _ = cli(capsys, *argv, "--tolerate-drift", "1Gi")
    assert code == 0, out
    first, note, layout = out.splitlines()
    assert layout.startswith("state file: v1, checksum ")
    assert first.startswith("would start: ")
    assert note.startswith("  beyond the kubelet, which would not start: ")
    assert note.endswith("within the tolerance of 1Gi and every assignment still fits, so the "
                         "totals were rebased")  # fmt: skip
    code, out, _ = cli(capsys, *argv, "--tolerate-drift", "1023Mi")
    assert code == 1
    assert "(the configured tolerance is 1023Mi)" in out
    # A dry run: the rebased totals are not written back.
    assert path.read_bytes() == before


def test_validate_against_the_machine_in_sysfs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).parent / "fixtures" / "sysfs" / "xeon-gold-6242-2s"
    machine = Machine.from_sysfs(root)
    with MemoryManager(
        machine, reserved_memory=machine.reserve_per_node("1Gi"), state_dir=tmp_path
    ) as mm:
        assert mm.admit(Pod.of("db", Container.of("c", cpu="1", memory="8Gi"))).admitted
    path = tmp_path / "memory_manager_state"
    code, out, _ = cli(capsys, "validate", str(path), "--sysfs", str(root))
    assert code == 0, out
    doc = json.loads(path.read_text())
    assert out == (
        f"would start: {path} restores on this machine (sysfs under {root}) with policy Static "
        f"(kubelet 1.38, read as v3)\nstate file: v3, checksum {doc['checksum']} (valid), "
        f"dataChecksum {doc['dataChecksum']} (valid)\n"
    )
    # A different machine is not this one.
    code, out, _ = cli(capsys, "validate", str(path), "--sysfs", str(root.parent / "vm-1node"))
    assert code == 1 and "node 1: in the file, not on this machine" in out
    assert main(["state", "validate", str(path), "--sysfs", str(root), "--machine", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymm: error: ") and "not allowed with argument" in err
    assert err.count("\n") == 1


def test_validate_default_reservation_differs_from_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The files were written with 1Gi reserved per node, which is also validate's default.
    name = "remove-readmit-op02.state.json"
    machine = write_machine(tmp_path, scenario_of(name))
    code, out, _ = cli(capsys, "validate", str(STATE_FILES / name), "--machine", str(machine))
    assert code == 0, out
    code, out, _ = cli(
        capsys, "validate", str(STATE_FILES / name), "--machine", str(machine),
        "--reserved-memory", "0:memory=2Gi;1:memory=1Gi",
    )  # fmt: skip
    assert code == 1 and "expected machine state is different" in out


def test_validate_policy_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "remove-readmit-op02.state.json"
    machine = write_machine(tmp_path, scenario_of(name))
    code, out, _ = cli(
        capsys, "validate", str(STATE_FILES / name), "--machine", str(machine), "--policy", "None"
    )
    assert code == 1
    assert 'configured policy "None" differs from state checkpoint policy "Static"' in out
    assert "advice: start with the policy the file was written with ('Static')" in out


def test_validate_corrupted_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "remove-readmit-op02.state.json"
    machine = write_machine(tmp_path, scenario_of(name))
    path = write(tmp_path, _damaged((STATE_FILES / name).read_text())["bit-flip"])
    code, out, _ = cli(capsys, "validate", str(path), "--machine", str(machine))
    assert code == 1
    assert "checkpoint is corrupted" in out.splitlines()[0]
    assert "advice: the file is damaged" in out


def test_validate_unknown_numa_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A 4-node file on a 2-node machine; pod 'small' sits on node 2.
    path = write(tmp_path, json.dumps(manager_checkpoint()))
    machine = tmp_path / "two.json"
    machine.write_text(json.dumps(Machine.synthetic(2, memory="16Gi").to_dict()))
    code, out, _ = cli(capsys, "validate", str(path), "--machine", str(machine))
    assert code == 1
    first, advice, layout = out.splitlines()
    assert layout.startswith("state file: v1, checksum ") and layout.endswith(" (valid)")
    assert first.endswith("the memory assignment uses the NUMA that does not exist")
    assert "(pod: small, container: c)" in first
    assert advice.startswith("advice: the file assigns memory on a NUMA node this machine lacks")


def test_validate_unknown_machine_is_a_command_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = cli(
        capsys,
        "validate",
        str(STATE_FILES / "remove-readmit-op02.state.json"),
        "--machine",
        "no-such-machine",
    )
    assert code == 2 and out == ""
    assert err.startswith("pymm: error: unknown machine 'no-such-machine'")
