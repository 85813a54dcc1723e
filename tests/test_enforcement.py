"""MemoryManager pins admitted containers with cpuset.mems and widens them on removal."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from test_cgroups import FakeKernel, kernel, make_v1  # noqa: F401  (kernel is a fixture)

from pymm import Container, Enforcement, Machine, MemoryManager, Pod
from pymm.cgroups import CpusetEnforcer
from pymm.cli import main
from pymm.sysfs import parse_list


def four_nodes(enforcement: Enforcement) -> MemoryManager:
    m = Machine.synthetic(4, memory="16Gi")
    return MemoryManager(
        m,
        reserved_memory=m.reserve_per_node(),
        topology_policy="best-effort",
        enforcement=enforcement,
    )


def test_admission_pins_and_removal_relaxes(tmp_path: Path, kernel: list[FakeKernel]) -> None:  # noqa: F811
    root = make_v1(
        tmp_path,
        {
            "kubepods": "0-3",
            "kubepods/podA": "0-3",
            "kubepods/podA/c1": "0-3",
            "kubepods/podA/c2": "0-3",
        },
    )
    e = Enforcement(CpusetEnforcer(root), lambda uid, c: f"kubepods/pod{uid}/{c}")
    mm = four_nodes(e)
    a = mm.admit(
        Pod.of(
            "A",
            Container.of("c1", cpu="1", memory="4Gi"),
            Container.of("c2", cpu="1", memory="20Gi"),
        )
    )
    assert a["c1"].cpuset_mems == "0" and a["c2"].cpuset_mems == "1,2"
    hier = root / "cpuset"
    assert parse_list((hier / "kubepods/podA/c1/cpuset.mems").read_text()) == [0]
    assert parse_list((hier / "kubepods/podA/c2/cpuset.mems").read_text()) == [1, 2]
    assert {str(w.path.relative_to(hier)) for w in a.cgroup_writes} == {
        "kubepods/podA/c1/cpuset.mems",
        "kubepods/podA/c2/cpuset.mems",
    }
    mm.remove("A", "c1")
    assert parse_list((hier / "kubepods/podA/c1/cpuset.mems").read_text()) == [0, 1, 2, 3]
    assert parse_list((hier / "kubepods/podA/c2/cpuset.mems").read_text()) == [1, 2]
    mm.remove("A")  # the rest of the pod
    assert parse_list((hier / "kubepods/podA/c2/cpuset.mems").read_text()) == [0, 1, 2, 3]


def test_dry_run_writes_nothing_and_missing_cgroups_are_skipped_on_removal(tmp_path: Path) -> None:
    root = make_v1(tmp_path, {"pod": "0-3", "pod/c": "0-3"})
    e = Enforcement(CpusetEnforcer(root), lambda uid, c: "pod/c", dry_run=True)
    mm = four_nodes(e)
    a = mm.admit(Pod.of("A", Container.of("c", cpu="1", memory="1Gi")))
    assert [w.value for w in a.cgroup_writes] == ["0"]
    assert (root / "cpuset/pod/c/cpuset.mems").read_text().strip() == "0-3"
    e.locate = lambda uid, c: "gone/c"
    mm.remove("A")  # the runtime removed the cgroup already: nothing to relax


def test_cli_admit_with_cgroup_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_v1(tmp_path, {"pod": "0-1", "pod/c": "0-1"}, root_mems="0-1")
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "kind: Pod\napiVersion: v1\nmetadata: {name: p}\nspec:\n  containers:\n"
        "  - name: c\n    resources: {limits: {cpu: '1', memory: 1Gi}}\n"
    )
    rc = main(
        [
            "admit",
            str(pod),
            "--machine",
            "xeon-gold-6242-2s",
            "--cgroup",
            "pod/c",
            "--cgroup-root",
            str(root),
            "--dry-run",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "would write '0' to" in out and "pod/c/cpuset.mems" in out
    assert (root / "cpuset/pod/c/cpuset.mems").read_text().strip() == "0-1"


def _writable_v1_cpuset() -> bool:
    return os.access("/sys/fs/cgroup/cpuset/cpuset.mems", os.W_OK)


@pytest.mark.skipif(
    not _writable_v1_cpuset(),
    reason="no writable cgroup v1 cpuset controller at /sys/fs/cgroup/cpuset",
)
def test_real_process_is_pinned_by_admission() -> None:
    enforcer = CpusetEnforcer("/sys/fs/cgroup")
    nodes = parse_list((enforcer.hierarchy / "cpuset.mems").read_text())
    # Discover this machine for real: its node ids are what the cgroup accepts.
    machine = Machine.from_sysfs("/")
    assert sorted(machine.node_ids) == sorted(nodes)
    name = f"pymm-test-{secrets.token_hex(4)}"
    leaf = enforcer.create(f"{name}/c")
    proc = subprocess.Popen(["sleep", "30"])
    try:
        enforcer.attach(leaf, proc.pid)
        mm = MemoryManager(
            machine,
            reserved_memory=machine.reserve_per_node("64Mi"),
            enforcement=Enforcement(enforcer, lambda uid, c: f"{name}/c"),
        )
        a = mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="16Mi")))
        assert a.admitted and a["c"].numa_nodes is not None
        status = Path(f"/proc/{proc.pid}/status").read_text()
        allowed = next(line for line in status.splitlines() if line.startswith("Mems_allowed_list"))
        assert parse_list(allowed.split(":")[1].strip()) == list(a["c"].numa_nodes)
        mm.remove("p")
        assert enforcer.mems(leaf) == set(nodes)
    finally:
        proc.kill()
        proc.wait()
        enforcer.remove(leaf)
        enforcer.remove(leaf.parent)
