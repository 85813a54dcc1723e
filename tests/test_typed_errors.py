"""Inputs the fuzz suite (tests/test_fuzz.py) found raising untyped errors (AttributeError,
TypeError, a bare ValueError), kept as examples: each must raise the pymm error named here.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pymm import Container, Machine, MemoryManager, Pod, load_pods
from pymm.cli import main
from pymm.errors import ConfigError, MachineError, PodError, PymmError, ScenarioError, SysfsError
from pymm.replay import replay
from pymm.statefile import CONFIG_FILE_NAME

MACHINE = Machine.synthetic(2, memory="8Gi")
POD = Pod.of("p", Container.of("c", cpu="1", memory="1Gi"))

CASES: dict[str, tuple[Callable[[], object], type[PymmError], str]] = {
    "Container.from_dict(None)": (
        lambda: Container.from_dict(None),  # type: ignore[arg-type]
        PodError,
        "a container must be a mapping, got null",
    ),
    "a container named 5 (was silently '5')": (
        lambda: Container.from_dict({"name": 5}),
        PodError,
        "container name: expected a string, got int",
    ),
    "requests: [] (was silently no requests)": (
        lambda: Container.from_dict({"name": "c", "requests": []}),
        PodError,
        "requests: expected a mapping",
    ),
    "Container.of(hugepages=[...])": (
        lambda: Container.of("c", hugepages=[1]),  # type: ignore[arg-type]
        PodError,
        "hugepages: expected a mapping, got list",
    ),
    "Container.of(limits='1Gi')": (
        lambda: Container.of("c", limits="1Gi"),  # type: ignore[arg-type]
        PodError,
        "limits: expected a mapping, got string",
    ),
    "MemoryManager(None)": (
        lambda: MemoryManager(None),  # type: ignore[arg-type]
        MachineError,
        "expected a Machine, a catalog name, a machine JSON file or a machine mapping",
    ),
    "a machine name with a NUL byte": (
        lambda: MemoryManager("xeon\x00"),
        MachineError,
        "NUL byte",
    ),
    "node_allocatable='2Gi'": (
        lambda: MemoryManager(MACHINE, node_allocatable="2Gi"),  # type: ignore[arg-type]
        ConfigError,
        "node_allocatable: expected a mapping, got string",
    ),
    "policy_options=[...]": (
        lambda: MemoryManager(MACHINE, policy_options=["a"]),  # type: ignore[arg-type]
        ConfigError,
        "policy_options: expected a mapping, got list",
    ),
    "memory_policy_options=''": (
        lambda: MemoryManager(MACHINE, memory_policy_options=""),  # type: ignore[arg-type]
        ConfigError,
        "memory_policy_options: expected a mapping, got string",
    ),
    "rebuild_from=0": (
        lambda: MemoryManager(MACHINE, rebuild_from=0),  # type: ignore[arg-type]
        PymmError,
        "",
    ),
    "admit(hints=5)": (
        lambda: MemoryManager(MACHINE).admit(POD, hints=5),  # type: ignore[arg-type]
        ConfigError,
        "hints: expected a list of hint providers, got int",
    ),
    "replay([None])": (
        lambda: replay([None]),  # type: ignore[list-item]
        ScenarioError,
        "scenarios[0]: expected a mapping, got null",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_found_input_is_a_typed_error(case: str) -> None:
    call, cls, words = CASES[case]
    with pytest.raises(cls) as info:
        call()
    assert words in str(info.value)


@pytest.mark.parametrize("wait", ["x", -1, float("nan")])
def test_a_bad_lock_wait_is_a_config_error(tmp_path: Path, wait: object) -> None:
    with pytest.raises(ConfigError) as info:
        MemoryManager(MACHINE, state_dir=tmp_path / "s", lock_wait=wait)  # type: ignore[arg-type]
    assert info.value.key == "lock_wait"
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("policy_option", [None]), ("policy_option", True), ("hugepages", "2Mi=1"), ("scope", 5)],
)
def test_an_edited_recorded_flag_is_one_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: object
) -> None:
    state = tmp_path / "state"
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "kind: Pod\nmetadata: {name: p, uid: p}\nspec:\n  containers:\n  - name: c\n"
        "    resources: {limits: {cpu: '1', memory: 1Gi}}\n"
    )
    assert main(["admit", str(pod), "--state-dir", str(state), "--quiet"]) == 0
    config = state / CONFIG_FILE_NAME
    doc = json.loads(config.read_text())
    doc["flags"][flag] = value
    config.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["remove", "p", "--state-dir", str(state)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"pymm: error: cannot use {config}: flags.{flag}: expected")


def test_a_sysfs_file_that_is_not_text_is_a_sysfs_error(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "sysfs" / "vm-1node"
    root = tmp_path / "root"
    shutil.copytree(fixture, root)
    damaged = root / "sys/devices/system/node/has_cpu"
    damaged.write_bytes(b"\x80")
    with pytest.raises(SysfsError) as info:
        Machine.from_sysfs(root)
    assert str(info.value) == f"{damaged}: not text (byte 0 is not UTF-8)"


def test_a_cpu_list_of_every_id_up_to_2_to_the_40_is_refused_not_allocated(
    tmp_path: Path,
) -> None:
    # The fuzz suite's run of this once took 24 GB before the kernel killed it.
    fixture = Path(__file__).parent / "fixtures" / "sysfs" / "vm-1node"
    root = tmp_path / "root"
    shutil.copytree(fixture, root)
    cpulist = root / "sys/devices/system/node/node0/cpulist"
    cpulist.write_text(f"0-{2**40}\n")
    with pytest.raises(SysfsError) as info:
        Machine.from_sysfs(root)
    assert str(cpulist) in str(info.value)
    assert "above 65535" in str(info.value)


def _alias_bomb(levels: int) -> str:
    anchors = ["  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        anchors.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\nstatus:\n" + "\n".join(
        anchors
    )


def test_a_yaml_alias_bomb_is_refused_before_the_engine_reads_it() -> None:
    # Nine nested nine-fold aliases: 387 million values from 600 bytes, which the engine
    # took minutes to read (seven levels: 2.3 s).
    started = time.perf_counter()
    with pytest.raises(PodError) as info:
        load_pods(_alias_bomb(9))
    assert time.perf_counter() - started < 1.0
    assert "excessive aliasing" in str(info.value)


def test_a_manifest_reusing_a_block_by_alias_still_loads() -> None:
    text = (
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
        "  - {name: a, resources: &r {limits: {cpu: '1', memory: 1Gi}}}\n"
        "  - {name: b, resources: *r}\n"
    )
    (pod,) = load_pods(text)
    assert [c.limits["memory"] for c in pod.containers] == ["1Gi", "1Gi"]


def test_too_many_simulated_events_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    # numpy refused the array size with a bare ValueError, printed as a traceback.
    argv = ["simulate", "--workload", "db-batch", "--events", "99999999999999999999"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "pymm: error: --events must be at most 10,000,000, got 99999999999999999999\n"
    )


@pytest.mark.parametrize(
    ("probe", "words"),
    [
        ("memory=0", "memory must be more than 0"),
        ("0", "memory must be more than 0"),
        ("memory=1Gi,memory=2Gi", "memory is given twice"),
        ("memory=x", "--probe 'memory=x': memory: quantities must match"),
        ("hugepages-2Mi=4Mi", "a probe must be Guaranteed (memory and cpu limits)"),
    ],
)
def test_a_probe_of_nothing_or_twice_is_one_error_line(
    capsys: pytest.CaptureFixture[str], probe: str, words: str
) -> None:
    # A zero or memory-less probe is never pinned: each of the 200 samples admitted 100,000
    # copies (minutes).
    argv = ["simulate", "--workload", "db-batch", "--events", "20", "--probe", probe]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymm: error: ") and err.count("\n") == 1
    assert words in err


def test_a_scenario_op_that_is_a_list_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # dict membership of a list raised a bare TypeError (unhashable type) in pymm simulate.
    scenario = {
        "name": "s",
        "machine": {"numaNodes": [{"id": 0, "memory": "16Gi"}]},
        "ops": [{"op": "admit", "pod": {"uid": "p", "containers": [{"name": "c"}]}}, {"op": []}],
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [scenario]}))
    assert main(["simulate", "--scenario", str(path)]) == 2
    assert capsys.readouterr().err == (
        f'pymm: error: {path}: scenario "s": ops[1].op: expected a string, got list\n'
    )
