"""Every bad command-line input is one ``pymm: error:`` line naming what is wrong, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymm.cli import main
from pymm.machine import Machine

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: db, uid: db-1}
spec:
  containers:
  - name: postgres
    resources:
      limits: {cpu: "4", memory: 8Gi}
"""

DEEP = 100_000


def _machine_with(tmp_path: Path, name: str, **node0: object) -> str:
    data = Machine.load("xeon-gold-6242-2s").to_dict()
    data["nodes"][0].update(node0)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _scenario(tmp_path: Path, name: str, **fields: object) -> str:
    scenario: dict[str, object] = {
        "name": "s",
        "machine": {"numaNodes": [{"id": 0, "memory": "16Gi"}]},
        "reservedMemory": [{"numaNode": 0, "limits": {"memory": "1Gi"}}],
        "ops": [],
    }
    scenario.update(fields)
    path = tmp_path / name
    path.write_text(json.dumps({"scenarios": [scenario]}))
    return str(path)


def _cases(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (argv, fragments the error line must contain)."""
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    (tmp_path / "deep.json").write_text("[" * DEEP + "]" * DEEP)
    (tmp_path / "deep.yaml").write_text("spec: " + "[" * DEEP)
    (tmp_path / "empty.yaml").write_text("# nothing here\n")
    p = str(pod)
    huge = str(2**64)
    return {
        "superscript pages": (["admit", p, "--hugepages", "2Mi=²"], ["--hugepages", "2Mi=²"]),
        "pages beyond 64 bits": (
            ["admit", p, "--hugepages", f"2Mi={huge}"],
            ["--hugepages", "at most"],
        ),
        "bad page size": (["admit", p, "--hugepages", "x=1"], ["--hugepages", "'x'"]),
        "memory_bytes beyond 64 bits": (
            ["admit", p, "--machine", _machine_with(tmp_path, "m1.json", memory_bytes=2**70)],
            ["m1.json", "nodes[0].memory_bytes", "out of range"],
        ),
        "num_pages beyond 64 bits": (
            [
                "admit",
                p,
                "--machine",
                _machine_with(
                    tmp_path, "m2.json", hugepages=[{"page_size_kib": 2048, "num_pages": 2**64}]
                ),
            ],
            ["m2.json", "nodes[0].hugepages[0].num_pages", "out of range"],
        ),
        "node hugepages: 5": (
            ["admit", p, "--machine", _machine_with(tmp_path, "m3.json", hugepages=5)],
            ["m3.json", "nodes[0].hugepages", "expected a list"],
        ),
        "deep JSON manifest": (
            ["admit", str(tmp_path / "deep.json")],
            ["deep.json", "nested too deeply"],
        ),
        "deep YAML manifest": (
            ["hints", str(tmp_path / "deep.yaml")],
            ["deep.yaml", "nested too deeply"],
        ),
        "deep machine file": (
            ["admit", p, "--machine", str(tmp_path / "deep.json")],
            ["deep.json", "nested too deeply"],
        ),
        "deep scenario file": (
            ["replay", str(tmp_path / "deep.json")],
            ["deep.json", "nested too deeply"],
        ),
        "reservedMemory: [{}]": (
            ["replay", _scenario(tmp_path, "s1.json", reservedMemory=[{}])],
            ['scenario "s"', "reservedMemory[0]"],
        ),
        "ops: 5": (["replay", _scenario(tmp_path, "s2.json", ops=5)], ['scenario "s"', "ops"]),
        "hugepageSizes: [{}]": (
            [
                "replay",
                _scenario(
                    tmp_path,
                    "s3.json",
                    machine={"numaNodes": [{"id": 0, "memory": "16Gi"}], "hugepageSizes": [{}]},
                ),
            ],
            ['scenario "s"', "machine.hugepageSizes[0]"],
        ),
        "scenario memory beyond 64 bits": (
            [
                "replay",
                _scenario(tmp_path, "s4.json", machine={"numaNodes": [{"id": 0, "memory": 2**70}]}),
            ],
            ["machine.numaNodes[0].memory", "out of range"],
        ),
        "empty --cgroup": (["admit", p, "--cgroup", ""], ["--cgroup ''"]),
        "empty --node-allocatable": (
            ["admit", p, "--node-allocatable", ""],
            ["--node-allocatable ''"],
        ),
        "--cgroup-root without --cgroup": (
            ["admit", p, "--cgroup-root", str(tmp_path)],
            ["--cgroup-root", "only with --cgroup"],
        ),
        "--dry-run without --cgroup": (["admit", p, "--dry-run"], ["--dry-run", "only with"]),
        "empty manifest": (["admit", str(tmp_path / "empty.yaml")], ["empty.yaml", "no pods"]),
        "--kubelet-version v1.26": (
            ["admit", p, "--kubelet-version", "v1.26"],
            ["--kubelet-version", "v1.26", "latest", "1.26"],
        ),
        "unknown flag": (["admit", p, "--bogus"], ["--bogus"]),
    }


CASE_NAMES = [
    "superscript pages",
    "pages beyond 64 bits",
    "bad page size",
    "memory_bytes beyond 64 bits",
    "num_pages beyond 64 bits",
    "node hugepages: 5",
    "deep JSON manifest",
    "deep YAML manifest",
    "deep machine file",
    "deep scenario file",
    "reservedMemory: [{}]",
    "ops: 5",
    "hugepageSizes: [{}]",
    "scenario memory beyond 64 bits",
    "empty --cgroup",
    "empty --node-allocatable",
    "--cgroup-root without --cgroup",
    "--dry-run without --cgroup",
    "empty manifest",
    "--kubelet-version v1.26",
    "unknown flag",
]


def test_every_case_is_run(tmp_path: Path) -> None:
    assert set(CASE_NAMES) == set(_cases(tmp_path))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_error_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, fragments = _cases(tmp_path)[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pymm: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
