"""Checkpoint V3 (kubelet 1.37+) and the layouts before it, on the kubelet's own V3 files and
on damaged and converted ones: what each kubelet version reads, what pymm writes, what
``pymm state verify|inspect|convert`` report.

Checksums asserted here are computed by the test helpers (FNV-1a over go-spew's text, and over
``(string)`` + ``data`` for ``dataChecksum``), independently of the engine.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
from helpers_checkpoint import fnv1a32, with_valid_checksum
from hypothesis import given
from hypothesis import strategies as st

from pymm import Container, Machine, MemoryManager, Pod, _engine
from pymm.cli import main
from pymm.errors import CheckpointCorruptedError, ConfigError
from pymm.replay import compare_results, load_scenarios, replay, scenario_machine
from pymm.statefile import STATE_FILE_NAME

CONF = Path(__file__).parent / "conformance"
V3_DIR = CONF / "state-files" / "v3"
V3_PLAIN = V3_DIR / "state-v3-example.json"
V3_POD_ENTRIES = V3_DIR / "state-v3-podentries-example.json"
V1_REAL = CONF / "state-files" / "hugepages-both-op01.state.json"
GI = 1 << 30


def data_checksum(data: str) -> int:
    """``checksum.New(string)``: FNV-1a 32 of go-spew's ``%#v`` of a Go string."""
    return fnv1a32(b"(string)" + data.encode())


def v1_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("policyName", "machineState", "entries", "checksum") if k in doc}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["state", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def copy_to(tmp_path: Path, source: Path, name: str = STATE_FILE_NAME) -> Path:
    path = tmp_path / name
    path.write_bytes(source.read_bytes())
    path.chmod(0o644)
    return path


def with_data(doc: dict[str, Any], data: str, checksum: int | None = None) -> str:
    """``doc`` with ``data`` replaced and ``dataChecksum`` fixed (or set to ``checksum``)."""
    out = {**doc, "data": data}
    out["dataChecksum"] = data_checksum(data) if checksum is None else checksum
    return json.dumps(out, separators=(",", ":"))


# -- the kubelet's own V3 files -------------------------------------------------------------


@pytest.mark.parametrize("path", [V3_PLAIN, V3_POD_ENTRIES], ids=lambda p: p.name)
def test_real_v3_files_carry_checksums_the_helpers_reproduce(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert doc["dataChecksum"] == data_checksum(doc["data"])
    # The V1 part keeps the V1 checksum, so that a kubelet up to 1.36 reads the file.
    assert json.loads(with_valid_checksum(v1_fields(doc)))["checksum"] == doc["checksum"]
    data = json.loads(doc["data"])
    assert {k: data[k] for k in ("policyName", "machineState", "entries")} == {
        k: doc[k] for k in ("policyName", "machineState", "entries")
    }


@pytest.mark.parametrize("path", [V3_PLAIN, V3_POD_ENTRIES], ids=lambda p: p.name)
def test_verify_reports_v3_and_both_checksums(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(path.read_text())
    code, out, _ = cli(capsys, "verify", str(path))
    assert code == 0, out
    assert out.startswith(f"OK {path}: v3, checksum {doc['checksum']} (valid), ")
    assert f"dataChecksum {doc['dataChecksum']} (valid)" in out
    code, out, _ = cli(capsys, "verify", str(path), "--kubelet-version", "1.38")
    assert code == 0 and "kubelet 1.38 restores it as v3" in out
    code, out, _ = cli(capsys, "verify", str(path), "--kubelet-version", "1.32")
    assert code == 0 and "kubelet 1.32 restores it as v1" in out


def test_inspect_json_shows_data_pod_entries_and_what_each_kubelet_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(V3_POD_ENTRIES.read_text())
    code, out, _ = cli(capsys, "inspect", "--json", str(V3_POD_ENTRIES))
    report = json.loads(out)
    assert report["format"] == "v3"
    assert report["checksum"] == {
        "stored": doc["checksum"],
        "computed": doc["checksum"],
        "valid": True,
    }
    assert report["dataChecksum"] == {
        "stored": doc["dataChecksum"],
        "computed": data_checksum(doc["data"]),
        "valid": True,
        "error": None,
    }
    assert report["kubelet"] == {"upTo1.35": {"restores": "v1"}, "from1.37": {"restores": "v3"}}
    assert report["podEntryCount"] == 1
    assert report["podEntries"] == [
        {
            "podUID": "p1",
            "numaNodes": [0],
            "blocks": [{"numaAffinity": [0], "type": "memory", "size": 6 * GI}],
        }
    ]
    # Pod p1's containers are slices of its pod-level block: node 0's two assignments are
    # p1 (once) and p2/c1, which inspect does not report as an inconsistency.
    assert report["inconsistencies"] == []
    assert code == 0


def test_decode_checkpoint_follows_the_kubelet_version() -> None:
    text = V3_POD_ENTRIES.read_text()
    doc = json.loads(text)
    policy, checksum, state = _engine.decode_checkpoint(text, "1.38")
    assert (policy, checksum) == ("Static", doc["checksum"])
    assert state["podEntries"] == json.loads(doc["data"])["podEntries"]
    # A 1.32 kubelet reads the V1 fields: no pod entries there.
    _, _, old = _engine.decode_checkpoint(text, "1.32")
    assert "podEntries" not in old and old["entries"] == doc["entries"]


POD_LEVEL = json.loads((V3_DIR / "kubelet-138-pod-level-checkpoints.json").read_text())["files"]


@pytest.mark.parametrize("entry", POD_LEVEL, ids=lambda e: f"{e['scenario']}-op{e['op']}")
def test_the_kubelets_pod_level_checkpoints_are_written_back_byte_for_byte(
    entry: dict[str, Any],
) -> None:
    text = entry["text"]
    doc = json.loads(text)
    assert json.loads(doc["data"])["podEntries"], "every one of these has pod entries"
    found = _engine.Inspection(text)
    assert (found.format, found.intact, found.accepted_as("1.38")) == ("v3", True, "v3")
    assert found.pod_entry_count == len(json.loads(doc["data"])["podEntries"])
    file, notes, checksum, data_sum = found.convert("v3")
    assert (file.decode(), notes, checksum, data_sum) == (
        text,
        [],
        doc["checksum"],
        data_checksum(doc["data"]),
    )
    # Through V2 (the one other layout that holds pod entries) and back.
    v2 = found.convert("v2")[0].decode()
    assert _engine.Inspection(v2).convert("v3")[0].decode() == text


# -- damaged V3 files -------------------------------------------------------------------------


def test_a_wrong_data_checksum_is_refused_by_1_38_and_ignored_by_1_32(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(V3_PLAIN.read_text())
    good = doc["dataChecksum"]
    path = tmp_path / STATE_FILE_NAME
    path.write_text(with_data(doc, doc["data"], good ^ 1))
    code, out, _ = cli(capsys, "verify", str(path))
    assert code == 1
    assert out == (
        f"FAIL {path}: could not load v3 checkpoint: checkpoint is corrupted: the stored "
        f"dataChecksum {good ^ 1} does not match data ({good})\n"
    )
    # The machine the kubelet wrote the file on: 4 x 16Gi, 512Mi of 2Mi pages, 1Gi reserved.
    machine = scenario_machine(
        {
            "numaNodes": [
                {"id": i, "memory": "16Gi", "hugepages": {"2Mi": "512Mi"}} for i in range(4)
            ]
        }
    )
    reserved = ";".join(f"{i}:memory=1Gi" for i in range(4))
    with pytest.raises(CheckpointCorruptedError) as info:
        MemoryManager(machine, reserved_memory=reserved, kubelet_version="1.38", state_dir=tmp_path)
    e = info.value
    assert (e.stored_checksum, e.computed_checksum, e.checksum_field) == (
        good ^ 1,
        good,
        "dataChecksum",
    )
    assert str(e) == (
        "could not restore state from checkpoint: could not load v3 checkpoint: checkpoint is "
        f'corrupted, please drain this node and delete the memory manager checkpoint file "{path}" '
        "before restarting Kubelet"
    )
    # A 1.32 kubelet neither reads nor checks data: the V1 fields restore.
    with MemoryManager(
        machine, reserved_memory=reserved, kubelet_version="1.32", state_dir=tmp_path
    ) as mm:
        assert mm.restored and mm.numa_nodes("p2", "c1") == (1, 2)


_DATA = "failed to deserialize memory manager checkpoint data: "


@pytest.mark.parametrize(
    ("data", "checksum", "error"),
    [
        ("{", None, _DATA + "unexpected end of JSON input"),
        (
            '{"policyName":5}',
            None,
            _DATA + "json: cannot unmarshal number into Go struct field policyName of type string",
        ),
        # No data, but a dataChecksum: still a V3 file, so no fallback to the V1 fields.
        ("", 1234, _DATA + "unexpected end of JSON input"),
    ],
)
def test_data_that_does_not_decode_is_a_hard_error_for_1_38(
    data: str, checksum: int | None, error: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = json.loads(V3_PLAIN.read_text())
    path = tmp_path / STATE_FILE_NAME
    path.write_text(with_data(doc, data, checksum))
    found = _engine.Inspection(path.read_text())
    assert found.format == "v3" and found.data_error == error and not found.intact
    with pytest.raises(CheckpointCorruptedError) as info:
        found.accepted_as("1.38")
    assert str(info.value) == f"could not load v3 checkpoint: {error}"
    assert info.value.checksum_field is None
    assert found.accepted_as("1.32") == "v1"  # the V1 fields are intact
    code, out, _ = cli(capsys, "verify", str(path))
    assert code == 1 and f"could not load v3 checkpoint: {error}" in out
    report = json.loads(cli(capsys, "inspect", "--json", str(path))[1])
    assert [i["kind"] for i in report["inconsistencies"]] == ["data"]


def test_v1_fields_that_differ_from_data_fail_verify_but_not_1_38(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(V3_PLAIN.read_text())
    v1 = {**v1_fields(doc), "entries": {"p1": doc["entries"]["p1"]}}
    # Both checksums valid: the V1 part describes another state than data.
    mixed = {**json.loads(with_valid_checksum(v1)), "data": doc["data"]}
    mixed["dataChecksum"] = doc["dataChecksum"]
    path = tmp_path / STATE_FILE_NAME
    path.write_text(json.dumps(mixed, separators=(",", ":")))
    code, out, _ = cli(capsys, "verify", str(path))
    assert code == 1 and "the V1 fields differ from data" in out
    assert cli(capsys, "verify", str(path), "--kubelet-version", "1.38")[0] == 0
    # Each kubelet restores its own half.
    _, _, new = _engine.decode_checkpoint(path.read_text(), "1.38")
    _, _, old = _engine.decode_checkpoint(path.read_text(), "1.32")
    assert sorted(new["entries"]) == ["p1", "p2", "p3"] and sorted(old["entries"]) == ["p1"]


def test_corrupted_checkpoint_error_pickles_with_which_checksum() -> None:
    e = CheckpointCorruptedError(
        "m", stored_checksum=1, computed_checksum=2, checksum_field="dataChecksum"
    )
    again: Any = pickle.loads(pickle.dumps(e))
    assert again.__dict__ == e.__dict__ and again.checksum_field == "dataChecksum"


# -- what pymm writes, and migration -----------------------------------------------------------


def _machine() -> Machine:
    return Machine.synthetic(2, memory="16Gi")


def _open(tmp_path: Path, version: str, gates: dict[str, bool] | None = None) -> MemoryManager:
    machine = _machine()
    return MemoryManager(
        machine,
        reserved_memory=machine.reserve_per_node("1Gi"),
        kubelet_version=version,
        feature_gates=gates,
        state_dir=tmp_path,
    )


PLRM = {"PodLevelResourceManagers": True}


def test_1_38_writes_v3_whose_v1_part_is_what_1_32_writes(tmp_path: Path) -> None:
    pod = Pod.of("db", Container.of("c", cpu="1", memory="4Gi"))
    with _open(tmp_path / "new", "1.38") as new, _open(tmp_path / "old", "1.32") as old:
        assert new.admit(pod).admitted and old.admit(pod).admitted
        v3 = json.loads((tmp_path / "new" / STATE_FILE_NAME).read_text())
        v1 = json.loads((tmp_path / "old" / STATE_FILE_NAME).read_text())
    assert list(v3) == ["policyName", "machineState", "entries", "checksum", "data", "dataChecksum"]
    assert v1_fields(v3) == v1
    assert v3["dataChecksum"] == data_checksum(v3["data"])
    assert json.loads(v3["data"]) == {k: v1[k] for k in ("policyName", "machineState", "entries")}


def test_a_v1_file_migrates_to_v3_on_the_next_write(tmp_path: Path) -> None:
    with _open(tmp_path, "1.32") as mm:
        assert mm.admit(Pod.of("db", Container.of("c", cpu="1", memory="4Gi"))).admitted
    v1_text = (tmp_path / STATE_FILE_NAME).read_text()
    with _open(tmp_path, "1.38") as mm:
        assert mm.restored and mm.numa_nodes("db", "c") == (0,)
        # Restoring is not a write: the file stays V1 until the state changes.
        assert (tmp_path / STATE_FILE_NAME).read_text() == v1_text
        assert mm.admit(Pod.of("web", Container.of("c", cpu="1", memory="2Gi"))).admitted
    doc = json.loads((tmp_path / STATE_FILE_NAME).read_text())
    assert _engine.Inspection(json.dumps(doc)).format == "v3"
    assert sorted(json.loads(doc["data"])["entries"]) == ["db", "web"]
    # And back: a 1.32 kubelet reads the V3 file's V1 fields and writes V1 again.
    with _open(tmp_path, "1.32") as mm:
        assert mm.numa_nodes("web", "c") is not None
        mm.remove("web")
    assert "data" not in json.loads((tmp_path / STATE_FILE_NAME).read_text())


def _v3_with_pod_entries(tmp_path: Path) -> str:
    """A V3 file written by pymm 1.38 plus pod entries of pods without containers, which the
    restart validation does not count (it counts the pods of the container entries), with
    valid checksums."""
    with _open(tmp_path, "1.38") as mm:
        assert mm.admit(Pod.of("db", Container.of("c", cpu="1", memory="4Gi"))).admitted
    doc = json.loads((tmp_path / STATE_FILE_NAME).read_text())
    data = json.loads(doc["data"])
    data["podEntries"] = {
        "ghost": {"memoryBlocks": [{"numaAffinity": [1], "type": "memory", "size": GI}]},
        "empty": {},
    }
    text = with_data(doc, json.dumps(data, separators=(",", ":")))
    (tmp_path / STATE_FILE_NAME).write_text(text)
    return text


def test_pod_entries_survive_restore_and_every_write(tmp_path: Path) -> None:
    text = _v3_with_pod_entries(tmp_path)
    entries = json.loads(json.loads(text)["data"])["podEntries"]
    with _open(tmp_path, "1.38", PLRM) as mm:
        assert mm.admit(Pod.of("web", Container.of("c", cpu="1", memory="2Gi"))).admitted
        mm.remove("db")
        written = mm.checkpoint()
    doc = json.loads(written)
    assert doc == json.loads((tmp_path / STATE_FILE_NAME).read_text())
    assert json.loads(doc["data"])["podEntries"] == entries
    assert doc["dataChecksum"] == data_checksum(doc["data"])
    assert _engine.decode_checkpoint(written, "1.38")[2]["podEntries"] == entries


def test_pod_entries_are_restored_and_written_only_with_the_gate(tmp_path: Path) -> None:
    # The 1.38 kubelet restores podEntries only with PodLevelResourceManagers, and writes
    # them only then (state_checkpoint.go): without the gate the next write drops them.
    _v3_with_pod_entries(tmp_path)
    with _open(tmp_path, "1.38") as mm:
        assert mm.restored
        assert "podEntries" not in json.loads(mm.checkpoint()).get("data", "{}")
        assert mm.admit(Pod.of("web", Container.of("c", cpu="1", memory="2Gi"))).admitted
    doc = json.loads((tmp_path / STATE_FILE_NAME).read_text())
    assert "podEntries" not in json.loads(doc["data"])


# -- convert ------------------------------------------------------------------------------------


def test_convert_v1_to_v3_in_place_keeps_the_v1_part_and_the_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_to(tmp_path, V1_REAL)
    path.chmod(0o640)
    before = json.loads(path.read_text())
    code, out, _ = cli(capsys, "convert", str(tmp_path), "--to", "v3")
    assert code == 0, out
    doc = json.loads(path.read_text())
    assert out == (
        f"converted {path}: v1 -> v3; checksum {before['checksum']}, dataChecksum "
        f"{data_checksum(doc['data'])}, policy Static, 2 NUMA nodes, 1 pods\n"
    )
    assert v1_fields(doc) == before
    assert doc["dataChecksum"] == data_checksum(doc["data"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == [STATE_FILE_NAME]  # no temporary left behind
    # Converting again changes nothing; back to v1 gives the kubelet's file byte for byte.
    mtime = path.stat().st_mtime_ns
    code, out, _ = cli(capsys, "convert", str(path), "--to", "v3")
    assert (code, path.stat().st_mtime_ns) == (0, mtime) and out.startswith("unchanged ")
    assert cli(capsys, "convert", str(path), "--to", "v1")[0] == 0
    assert path.read_bytes() == V1_REAL.read_bytes()


def test_convert_the_pod_entries_file_through_v2_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_to(tmp_path, V3_POD_ENTRIES)
    out_path = tmp_path / "v2"
    code, out, _ = cli(capsys, "convert", str(path), "--to", "v2", "-o", str(out_path))
    assert code == 0, out
    assert path.read_bytes() == V3_POD_ENTRIES.read_bytes()  # -o leaves the source alone
    v2 = json.loads(out_path.read_text())
    data = json.loads(json.loads(V3_POD_ENTRIES.read_text())["data"])
    assert v2["podEntries"] == data["podEntries"]
    # A V2 checksum covers the pod entries: a 1.32 kubelet refuses the file, 1.38 reads it.
    assert v2["checksum"] != json.loads(with_valid_checksum(v1_fields(v2)))["checksum"]
    assert cli(capsys, "verify", str(out_path), "--kubelet-version", "1.32")[0] == 1
    code, out, _ = cli(capsys, "verify", str(out_path), "--kubelet-version", "1.38")
    assert code == 0 and "restores it as v2" in out
    assert cli(capsys, "convert", str(out_path), "--to", "v3")[0] == 0
    assert out_path.read_bytes() == V3_POD_ENTRIES.read_bytes()


def test_convert_refuses_to_lose_pod_entries_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_to(tmp_path, V3_POD_ENTRIES)
    code, out, _ = cli(capsys, "convert", str(path), "--to", "v1")
    assert code == 1 and "--drop-pod-entries" in out
    assert path.read_bytes() == V3_POD_ENTRIES.read_bytes()
    code, out, _ = cli(capsys, "convert", str(path), "--to", "v1", "--drop-pod-entries")
    assert code == 0 and "note: dropped 1 pod-level reservation(s) (podEntries)" in out
    doc = json.loads(path.read_text())
    assert set(doc) == {"policyName", "machineState", "entries", "checksum"}
    with pytest.raises(ConfigError) as info:
        _engine.Inspection(V3_POD_ENTRIES.read_text()).convert("v1")
    assert info.value.key == "drop-pod-entries"


def test_convert_refuses_a_damaged_file_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(V1_REAL.read_text())
    doc["checksum"] += 1
    path = tmp_path / STATE_FILE_NAME
    path.write_text(json.dumps(doc, separators=(",", ":")))
    before = path.read_bytes()
    code, out, _ = cli(capsys, "convert", str(path), "--to", "v3")
    assert code == 1 and "refusing to convert" in out and "--ignore-checksum" in out
    assert f"checksum {doc['checksum']} (MISMATCH: content {doc['checksum'] - 1})" in out
    assert path.read_bytes() == before
    code, out, _ = cli(capsys, "convert", str(path), "--to", "v3", "--ignore-checksum")
    assert code == 0 and "note: the file failed its checks" in out
    assert cli(capsys, "verify", str(path))[0] == 0
    assert json.loads(path.read_text())["checksum"] == doc["checksum"] - 1


def test_convert_waits_for_no_running_pymm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _open(tmp_path, "1.32"):
        code, _, err = cli(capsys, "convert", str(tmp_path), "--to", "v3")
    assert code == 2 and err.startswith("pymm: error: state directory ") and "locked" in err
    assert "data" not in json.loads((tmp_path / STATE_FILE_NAME).read_text())
    assert cli(capsys, "convert", str(tmp_path), "--to", "v3")[0] == 0


def test_state_help_names_the_layouts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["state", "convert", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "v2 is what a 1.36 kubelet writes" in text and "--ignore-checksum" in text
    assert main(["state", "convert", "x", "--to", "v4"]) == 2
    assert "invalid choice: 'v4'" in capsys.readouterr().err


# -- conformance: the 1.38 kubelet's results ---------------------------------------------------


def test_replay_matches_kubelet_1_38_including_v3_state_files() -> None:
    # The 54 small scenarios, without a file of their own for 1.38: the same as latest-small's.
    reference = json.loads((CONF / "kubelet-oracle-138-small.json").read_text())
    raw = json.loads((CONF / "kubelet-oracle-latest-small.scenarios.json").read_text())
    assert [r["scenario"] for r in reference["results"]] == raw["scenarios"]
    got = replay(load_scenarios(CONF / "kubelet-oracle-latest-small.scenarios.json"), "1.38")
    assert compare_results(got, reference) == []
    assert all("data" in r["initialCheckpoint"] for r in got["results"] if "setupError" not in r)


def test_the_v3_comparison_sees_data_and_its_checksum() -> None:
    reference = json.loads((CONF / "kubelet-oracle-138-small.json").read_text())
    scenarios = json.loads((CONF / "kubelet-oracle-latest-small.scenarios.json").read_text())
    sc = next(s for s in scenarios["scenarios"] if s["name"] == "single-numa-fit-single-numa-node")
    ref = {"results": [r for r in reference["results"] if r["name"] == sc["name"]]}
    got = replay([sc], "1.38")
    assert compare_results(got, ref) == []
    # latest writes V1: a format difference.
    assert "format: V1 != V3" in compare_results(replay([sc], "1.32"), ref)[0]
    cp = got["results"][0]["results"][0]["checkpoint"]
    data = json.loads(cp["data"])
    # A pod entry only in pymm's data, with a valid dataChecksum: a difference in podEntries.
    data["podEntries"] = {
        "x": {"memoryBlocks": [{"numaAffinity": [0], "type": "memory", "size": 1}]}
    }
    text = json.dumps(data, separators=(",", ":"))
    got["results"][0]["results"][0]["checkpoint"] = {
        **cp,
        "data": text,
        "dataChecksum": data_checksum(text),
    }
    assert compare_results(got, ref) == [
        "single-numa-fit-single-numa-node op 0 (admit): checkpoint: data: podEntries differ"
    ]
    # The same data with a stale dataChecksum.
    got["results"][0]["results"][0]["checkpoint"]["dataChecksum"] = cp["dataChecksum"]
    assert compare_results(got, ref) == [
        "single-numa-fit-single-numa-node op 0 (admit): checkpoint: pymm data does not decode or "
        "match its dataChecksum"
    ]


# -- V3 round trips over arbitrary states --------------------------------------------------------

_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
_ints = st.one_of(st.none(), st.lists(st.integers(0, 7), max_size=3))
_u64 = st.integers(0, (1 << 64) - 1)
_block = st.fixed_dictionaries(
    {
        "numaAffinity": _ints,
        "type": st.sampled_from(["memory", "hugepages-2Mi", 'x<&>"']),
        "size": _u64,
    }
)
_blocks = st.lists(_block, max_size=3)
_table = st.fixed_dictionaries(
    {k: _u64 for k in ("total", "systemReserved", "allocatable", "reserved", "free")}
)
_node = st.fixed_dictionaries(
    {
        "numberOfAssignments": st.integers(0, 50),
        "memoryMap": st.dictionaries(st.sampled_from(["memory", "hugepages-1Gi"]), _table),
        "cells": _ints,
    }
)
_state = st.fixed_dictionaries(
    {
        "policyName": st.sampled_from(["Static", "None", "p\u2028<>"]),
        "machineState": st.dictionaries(st.integers(0, 12).map(str), _node, max_size=4),
        "entries": st.dictionaries(
            _names, st.dictionaries(_names, _blocks, min_size=1), max_size=3
        ),
        "podEntries": st.dictionaries(
            _names,
            st.one_of(st.just({}), st.fixed_dictionaries({"memoryBlocks": _blocks.filter(bool)})),
            max_size=3,
        ),
    }
)


@given(_state)
def test_v3_round_trips_any_state(state: dict[str, Any]) -> None:
    # Any state reaches the engine as a V2 file (the one layout with top-level pod entries);
    # its checksum is left 0 and given a fresh one on the way.
    v2 = json.dumps({**state, "checksum": 0})
    file, notes, checksum, data_sum = _engine.Inspection(v2).convert("v3", ignore_checksum=True)
    assert notes == [
        "the file failed its checks (checkpoint is corrupted); its content was kept as it is "
        "and given fresh checksums"
    ]
    v3 = file.decode()
    doc = json.loads(v3)
    assert (doc["checksum"], doc["dataChecksum"]) == (checksum, data_sum)
    found = _engine.Inspection(v3)
    assert (found.format, found.intact) == ("v3", True)
    assert doc["dataChecksum"] == data_checksum(doc["data"])
    # The V1 part is V1, with the V1 checksum (the test helper's, not the engine's).
    v1 = {k: doc[k] for k in ("policyName", "machineState", "entries") if k in doc}
    assert json.loads(with_valid_checksum(v1))["checksum"] == doc["checksum"]
    # data holds the whole state; empty entries and pod entries are left out (omitempty).
    expected = {k: v for k, v in state.items() if v or k in ("policyName", "machineState")}
    assert json.loads(doc["data"]) == expected
    assert (doc.get("entries") or {}) == state["entries"]
    # What each kubelet restores: all of it (1.38), the V1 fields (1.32).
    _, _, new = _engine.decode_checkpoint(v3, "1.38")
    assert new.get("podEntries", {}) == state["podEntries"]
    assert new["entries"] == state["entries"]
    _, _, old = _engine.decode_checkpoint(v3, "1.32")
    assert "podEntries" not in old and old["entries"] == state["entries"]
    # A fixed point: V3 -> V2 -> V3 gives the same bytes, and V3 -> V3 too.
    v2_again = _engine.Inspection(v3).convert("v2")[0].decode()
    assert _engine.Inspection(v2_again).convert("v3")[0] == file
    assert found.convert("v3") == (file, [], checksum, data_sum)
