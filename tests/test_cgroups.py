"""Tests for pymm.cgroups: cpuset.mems enforcement on fake v1/v2 trees and on this machine."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymm import cgroups
from pymm.cgroups import CpusetEnforcer, Write, detect_version, find_container_cgroup
from pymm.errors import CgroupError
from pymm.sysfs import format_list, parse_list

UID = "6f1b2c3d-aaaa-4bbb-8ccc-123456789abc"
UID_US = UID.replace("-", "_")
CID = "0123456789abcdef" * 4


# -- fake cgroup trees and a fake kernel enforcing the cpuset rules -------------------------


def _put(path: Path, text: str) -> None:
    path.write_text(text + "\n" if text else "")


def make_v1(tmp_path: Path, cgroups_: dict[str, str], root_mems: str = "0-3") -> Path:
    """A v1 cgroup root with the cpuset controller at ROOT/cpuset; values are mems strings."""
    root = tmp_path / "cgroup"
    hier = root / "cpuset"
    hier.mkdir(parents=True)
    (root / "memory").mkdir()  # another v1 controller, as on a real host
    for path, mems in [(hier, root_mems), *((hier / k, v) for k, v in cgroups_.items())]:
        path.mkdir(parents=True, exist_ok=True)
        _put(path / "cpuset.mems", mems)
        _put(path / "cpuset.effective_mems", mems)
        _put(path / "cpuset.cpus", "0-15" if mems else "")
        _put(path / "cgroup.procs", "")
        _put(path / "tasks", "")
    return root


def make_v2(
    tmp_path: Path, cgroups_: dict[str, str | None], root_mems: str = "0-3", enabled: bool = True
) -> Path:
    """A v2 root. A value of None means the parent has not enabled cpuset for that cgroup."""
    root = tmp_path / "unified"
    root.mkdir(parents=True)
    _put(root / "cgroup.controllers", "cpuset cpu io memory hugetlb pids")
    _put(root / "cgroup.subtree_control", "cpuset memory" if enabled else "memory")
    _put(root / "cpuset.mems.effective", root_mems)
    _put(root / "cpuset.cpus.effective", "0-15")
    _put(root / "cgroup.procs", "")
    for rel, mems in cgroups_.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        _put(path / "cgroup.subtree_control", "")
        _put(path / "cgroup.procs", "")
        if mems is not None:
            _put(path / "cpuset.mems", mems)
            _put(path / "cpuset.cpus", "")
    for rel, mems in cgroups_.items():
        if mems is not None and rel.count("/"):
            parent = root / rel.rsplit("/", 1)[0]
            _put(parent / "cgroup.subtree_control", "cpuset")
    _recompute_v2(root)
    return root


def _ids(path: Path) -> set[int]:
    return set(parse_list(path.read_text())) if path.exists() else set()


def _recompute_v2(root: Path) -> None:
    def walk(path: Path, parent_eff: set[int]) -> None:
        for child in sorted(p for p in path.iterdir() if p.is_dir()):
            if (child / "cpuset.mems").exists():
                eff = (_ids(child / "cpuset.mems") & parent_eff) or parent_eff
                _put(child / "cpuset.mems.effective", format_list(sorted(eff)))
            else:
                eff = parent_eff
            walk(child, eff)

    walk(root, _ids(root / "cpuset.mems.effective"))


class FakeKernel:
    """Stands in for cgroupfs writes and refuses what the real kernel refuses."""

    def __init__(self, hierarchy: Path, version: int) -> None:
        self.hierarchy = hierarchy
        self.version = version
        self.log: list[Write] = []

    def __call__(self, write: Write) -> None:
        path, value = write
        cg = path.parent
        if not cg.is_dir():
            raise CgroupError(f"cannot write {value!r} to {path}: No such file or directory")
        if self.version == 1:
            self._v1(cg, path.name, value)
        else:
            self._v2(cg, path.name, value)
        self.log.append(write)

    def _v1(self, cg: Path, name: str, value: str) -> None:
        if name == "cpuset.mems":
            new = set(parse_list(value))
            if cg != self.hierarchy and not new <= _ids(cg.parent / "cpuset.mems"):
                raise CgroupError(f"EINVAL: {cg} mems {value} not within parent")
            for child in (p for p in cg.iterdir() if p.is_dir()):
                if not _ids(child / "cpuset.mems") <= new:
                    raise CgroupError(f"EBUSY: child {child} not within {value}")
            _put(cg / name, format_list(sorted(new)))
            _put(cg / "cpuset.effective_mems", format_list(sorted(new)))
        elif name == "cpuset.cpus":
            _put(cg / name, value)
        elif name == "cgroup.procs":
            if not _ids(cg / "cpuset.mems") or not _ids(cg / "cpuset.cpus"):
                raise CgroupError(f"ENOSPC: {cg} has no cpus or mems")
            _put(cg / name, (cg / name).read_text() + value)
        else:
            raise AssertionError(f"unexpected v1 write to {name}")

    def _v2(self, cg: Path, name: str, value: str) -> None:
        if name == "cgroup.subtree_control":
            assert value == "+cpuset"
            if cg != self.hierarchy and not (cg / "cpuset.mems").exists():
                raise CgroupError(f"ENOENT: cpuset not enabled in the parent of {cg}")
            _put(cg / name, " ".join(sorted({*(cg / name).read_text().split(), "cpuset"})))
            for child in (p for p in cg.iterdir() if p.is_dir()):
                if not (child / "cpuset.mems").exists():
                    _put(child / "cpuset.mems", "")
                    _put(child / "cpuset.cpus", "")
        elif name == "cpuset.mems":
            if not (cg / name).exists():
                raise CgroupError(f"ENOENT: {cg / name}")
            _put(cg / name, format_list(parse_list(value)))
        else:
            raise AssertionError(f"unexpected v2 write to {name}")
        _recompute_v2(self.hierarchy)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeKernel]]:
    """Route cgroups' file writes through a FakeKernel bound to the enforcer's hierarchy."""
    kernels: list[FakeKernel] = []
    original_init = CpusetEnforcer.__init__

    def init(self: CpusetEnforcer, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        kernels.append(FakeKernel(self.hierarchy, self.version))

    monkeypatch.setattr(CpusetEnforcer, "__init__", init)
    monkeypatch.setattr(cgroups, "_write", lambda w: kernels[-1](w))
    yield kernels


def rel(writes: list[Write], base: Path) -> list[tuple[str, str]]:
    return [(str(w.path.relative_to(base)), w.value) for w in writes]


# -- detection ------------------------------------------------------------------------


def test_detect_version(tmp_path: Path) -> None:
    assert detect_version(make_v1(tmp_path / "a", {})) == 1
    assert detect_version(make_v2(tmp_path / "b", {})) == 2
    # The v1 cpuset mount itself given as the root.
    assert detect_version(make_v1(tmp_path / "c", {}) / "cpuset") == 1
    with pytest.raises(CgroupError, match="neither"):
        detect_version(tmp_path)


def test_v2_without_cpuset_controller(tmp_path: Path) -> None:
    root = make_v2(tmp_path, {})
    _put(root / "cgroup.controllers", "cpu memory")
    with pytest.raises(CgroupError, match="cpuset controller not available"):
        CpusetEnforcer(root)


# -- v1 ordering --------------------------------------------------------------------------


def test_v1_widen_is_top_down(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-1", "kubepods/pod1": "0", "kubepods/pod1/c1": "0"})
    enforcer = CpusetEnforcer(root)
    hier = root / "cpuset"
    writes = enforcer.apply("kubepods/pod1/c1", "0,2")
    assert rel(writes, hier) == [
        ("kubepods/cpuset.mems", "0-2"),
        ("kubepods/pod1/cpuset.mems", "0,2"),
        ("kubepods/pod1/c1/cpuset.mems", "0,2"),
    ]
    assert kernel[-1].log == writes
    assert enforcer.mems("kubepods/pod1/c1") == {0, 2}
    assert enforcer.mems("kubepods") == {0, 1, 2}  # widened minimally, sibling's node 1 kept


def test_v1_narrow_is_bottom_up(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(
        tmp_path,
        {
            "kubepods": "0-3",
            "kubepods/pod1": "0-3",
            "kubepods/pod1/c1": "0-3",
            "kubepods/pod1/c1/sub": "1-3",
            "kubepods/pod1/c1/sub/deep": "3",
        },
    )
    enforcer = CpusetEnforcer(root)
    writes = enforcer.apply("kubepods/pod1/c1", [1])
    assert rel(writes, root / "cpuset") == [
        # deep (3) has nothing in common with 1: widened first while sub still allows it...
        ("kubepods/pod1/c1/sub/deep/cpuset.mems", "1,3"),
        # ...then everything is narrowed from the leaf up.
        ("kubepods/pod1/c1/sub/deep/cpuset.mems", "1"),
        ("kubepods/pod1/c1/sub/cpuset.mems", "1"),
        ("kubepods/pod1/c1/cpuset.mems", "1"),
    ]
    assert enforcer.mems("kubepods/pod1") == {0, 1, 2, 3}  # ancestors are never narrowed


def test_v1_disjoint_change_widens_then_narrows(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-1", "kubepods/c": "0", "kubepods/c/t": "0"})
    enforcer = CpusetEnforcer(root)
    writes = enforcer.apply("kubepods/c", "1")
    assert rel(writes, root / "cpuset") == [
        ("kubepods/c/cpuset.mems", "0-1"),
        ("kubepods/c/t/cpuset.mems", "0-1"),
        ("kubepods/c/t/cpuset.mems", "1"),
        ("kubepods/c/cpuset.mems", "1"),
    ]


def test_fake_kernel_rejects_wrong_order(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    # The ordering tests above only mean something if the fake kernel refuses bad orders.
    root = make_v1(tmp_path, {"kubepods": "0", "kubepods/c": "0"})
    CpusetEnforcer(root)
    with pytest.raises(CgroupError, match="EINVAL"):
        cgroups._write(Write(root / "cpuset/kubepods/c/cpuset.mems", "0-1"))
    with pytest.raises(CgroupError, match="EBUSY"):
        cgroups._write(Write(root / "cpuset/kubepods/cpuset.mems", "1"))


def test_v1_new_cgroup_gets_parent_values(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-1", "kubepods/new": "", "kubepods/new/c": ""})
    enforcer = CpusetEnforcer(root)
    _put(root / "cpuset/kubepods/cpuset.cpus", "0-7")
    writes = enforcer.apply("kubepods/new/c", "1")
    assert rel(writes, root / "cpuset") == [
        ("kubepods/new/cpuset.cpus", "0-7"),
        ("kubepods/new/cpuset.mems", "0-1"),
        ("kubepods/new/c/cpuset.cpus", "0-7"),
        ("kubepods/new/c/cpuset.mems", "1"),
    ]
    # The fake kernel refuses tasks in a cpuset without cpus/mems: attaching proves the init.
    enforcer.attach("kubepods/new/c", 4242)
    assert "4242" in (root / "cpuset/kubepods/new/c/cgroup.procs").read_text()


def test_v1_create_copies_parent(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-2"})
    enforcer = CpusetEnforcer(root)
    path = enforcer.create("kubepods/a/b")
    assert path == root / "cpuset/kubepods/a/b"
    assert enforcer.mems("kubepods/a") == {0, 1, 2}
    assert enforcer.mems("kubepods/a/b") == {0, 1, 2}
    assert (path / "cpuset.cpus").read_text().strip() == "0-15"


def test_v1_noop_when_already_set(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-3", "kubepods/c": "0-1"})
    assert CpusetEnforcer(root).apply("kubepods/c", "1,0") == []


def test_subset_violation_writes_nothing(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-3", "kubepods/c": "0"})
    enforcer = CpusetEnforcer(root)
    with pytest.raises(CgroupError, match=r"mems 4-5 not a subset of the root cpuset's 0-3"):
        enforcer.apply("kubepods/c", "4,5")
    assert kernel[-1].log == []
    assert enforcer.mems("kubepods/c") == {0}


@pytest.mark.parametrize("bad", ["", "x", "1-0", [-1]])
def test_invalid_mems(tmp_path: Path, bad: str | list[int]) -> None:
    root = make_v1(tmp_path, {"c": "0"})
    with pytest.raises(CgroupError):
        CpusetEnforcer(root).plan("c", bad)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-3", "kubepods/c": "0-3"})
    enforcer = CpusetEnforcer(root)
    writes = enforcer.apply("kubepods/c", "2", dry_run=True)
    assert rel(writes, root / "cpuset") == [("kubepods/c/cpuset.mems", "2")]
    assert enforcer.mems("kubepods/c") == {0, 1, 2, 3}


def test_real_write_errors_become_cgroup_errors(tmp_path: Path) -> None:
    root = make_v1(tmp_path, {"c": "0"})
    enforcer = CpusetEnforcer(root)
    writes = enforcer.plan("c", "1")
    assert [w.value for w in writes] == ["0-1", "1"]
    (root / "cpuset/c/cpuset.mems").unlink()
    (root / "cpuset/c/cpuset.mems").mkdir()  # an unwritable file, like a refusing kernel
    with pytest.raises(CgroupError, match=r"cannot write '0-1' to .*c/cpuset.mems: "):
        cgroups._write(writes[0])


def test_relax_widens_to_parent(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path, {"kubepods": "0-2", "kubepods/pod": "0-1", "kubepods/pod/c": "1"})
    enforcer = CpusetEnforcer(root)
    writes = enforcer.relax("kubepods/pod/c")
    assert rel(writes, root / "cpuset") == [("kubepods/pod/c/cpuset.mems", "0-1")]
    assert enforcer.mems("kubepods/pod/c") == {0, 1}
    enforcer.relax("kubepods")  # parent is the root: everything it has
    assert enforcer.mems("kubepods") == {0, 1, 2, 3}


def test_noprefix_v1_mount(tmp_path: Path) -> None:
    hier = tmp_path / "cpuset"
    (hier / "c").mkdir(parents=True)
    for path, mems in ((hier, "0-1"), (hier / "c", "0-1")):
        _put(path / "mems", mems)
        _put(path / "cpus", "0-3")
    enforcer = CpusetEnforcer(tmp_path)
    assert enforcer.version == 1
    assert rel(enforcer.plan("c", "0"), hier) == [("c/mems", "0")]


# -- v2 ----------------------------------------------------------------------------------


def test_v2_enables_subtree_control_top_down(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    pod = f"kubepods.slice/kubepods-pod{UID_US}.slice"
    root = make_v2(
        tmp_path,
        {"kubepods.slice": None, pod: None, f"{pod}/cri-containerd-{CID}.scope": None},
        enabled=False,
    )
    enforcer = CpusetEnforcer(root)
    target = find_container_cgroup(root, UID, CID)
    writes = enforcer.apply(target, "1")
    assert rel(writes, root) == [
        ("cgroup.subtree_control", "+cpuset"),
        ("kubepods.slice/cgroup.subtree_control", "+cpuset"),
        (f"{pod}/cgroup.subtree_control", "+cpuset"),
        (f"{pod}/cri-containerd-{CID}.scope/cpuset.mems", "1"),
    ]
    assert enforcer.effective_mems(target) == {1}
    assert enforcer.mems("kubepods.slice") == set()  # still inherits everything


def test_v2_widens_restricted_ancestor_and_narrows_children(
    tmp_path: Path, kernel: list[FakeKernel]
) -> None:
    root = make_v2(
        tmp_path,
        {"kubepods": "0", "kubepods/pod": "", "kubepods/pod/c": "0", "kubepods/pod/c/x": "0"},
    )
    enforcer = CpusetEnforcer(root)
    writes = enforcer.apply("kubepods/pod/c", "2-3")
    assert rel(writes, root) == [
        ("kubepods/cpuset.mems", "0,2-3"),
        ("kubepods/pod/c/cpuset.mems", "0,2-3"),
        ("kubepods/pod/c/x/cpuset.mems", "0,2-3"),
        ("kubepods/pod/c/x/cpuset.mems", "2-3"),
        ("kubepods/pod/c/cpuset.mems", "2-3"),
    ]
    assert enforcer.effective_mems("kubepods/pod/c") == {2, 3}
    assert enforcer.effective_mems("kubepods/pod/c/x") == {2, 3}


def test_v2_verify_checks_effective(tmp_path: Path) -> None:
    root = make_v2(tmp_path, {"kubepods": "0-1", "kubepods/c": "1"})
    enforcer = CpusetEnforcer(root)
    enforcer.verify("kubepods/c", "1")
    _put(root / "kubepods/c/cpuset.mems.effective", "0-1")  # e.g. parent lost node 1
    with pytest.raises(CgroupError, match=r"cpuset.mems.effective: is 0-1, expected 1"):
        enforcer.verify("kubepods/c", "1")


# -- verify with a pid ---------------------------------------------------------------------


def _fake_proc(tmp_path: Path, pid: int, mems: str) -> Path:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    _put(
        proc / str(pid) / "status",
        f"Name:\tsleep\nPid:\t{pid}\nMems_allowed:\t00000003\nMems_allowed_list:\t{mems}\n",
    )
    return proc


def test_verify_pid(tmp_path: Path) -> None:
    root = make_v1(tmp_path, {"c": "0-1"})
    proc = _fake_proc(tmp_path, 77, "0-1")
    enforcer = CpusetEnforcer(root, proc_root=proc)
    with pytest.raises(CgroupError, match="pid 77 is not in the cgroup"):
        enforcer.verify("c", "0,1", pid=77)
    _put(root / "cpuset/c/cgroup.procs", "12\n77")
    enforcer.verify("c", "0,1", pid=77)
    _put(proc / "77" / "status", "Mems_allowed_list:\t0-3\n")
    with pytest.raises(CgroupError, match="Mems_allowed_list is 0-3, expected 0-1"):
        enforcer.verify("c", "0,1", pid=77)
    with pytest.raises(CgroupError, match=r"cpuset.mems: is 0-1, expected 0"):
        enforcer.verify("c", "0")


# -- finding containers and refusing escapes ------------------------------------------------

LAYOUTS = [
    f"kubepods/pod{UID}/{CID}",
    f"kubepods/burstable/pod{UID}/{CID}",
    f"kubepods/besteffort/pod{UID}/{CID}",
    f"kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{CID}.scope",
    f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-{CID}.scope",
    f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/docker-{CID}.scope",
    # kind / nested kubelet: not a well-known path, found by the search.
    f"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
    f"kubelet-kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{CID}.scope",
    f"kubelet/kubepods/burstable/pod{UID}/{CID}",
]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_find_container_cgroup(tmp_path: Path, layout: str, version: int) -> None:
    other = layout.replace(CID, "f" * 64).replace(UID, "0" * 8).replace(UID_US, "0" * 8)
    if version == 1:
        root = make_v1(tmp_path, {layout: "0", other: "0"})
        hier = root / "cpuset"
    else:
        root = make_v2(tmp_path, {layout: "0", other: "0"})
        hier = root
    # Sidecar cgroups that must not be mistaken for the container.
    pod_dir = (hier / layout).parent
    (pod_dir / f"crio-conmon-{CID}.scope").mkdir()
    found = find_container_cgroup(root, UID, f"containerd://{CID}")
    assert found == hier / layout
    assert find_container_cgroup(root, UID_US, CID) == hier / layout
    with pytest.raises(CgroupError, match="no cgroup for pod"):
        find_container_cgroup(root, UID, "e" * 64)


def test_find_container_cgroup_ambiguous(tmp_path: Path) -> None:
    root = make_v1(
        tmp_path,
        {f"kubepods/pod{UID}/{CID}": "0", f"kubepods/burstable/pod{UID}/{CID}": "0"},
    )
    with pytest.raises(CgroupError, match="ambiguous"):
        find_container_cgroup(root, UID, CID)


def test_find_container_cgroup_explicit_path(tmp_path: Path) -> None:
    root = make_v1(tmp_path, {"custom/group": "0"})
    assert find_container_cgroup(root, path="custom/group") == root / "cpuset/custom/group"
    assert find_container_cgroup(root, path=root / "cpuset/custom/group") == (
        root / "cpuset/custom/group"
    )
    with pytest.raises(CgroupError, match="no such cgroup"):
        find_container_cgroup(root, path="custom/missing")
    with pytest.raises(CgroupError, match="need either path"):
        find_container_cgroup(root, UID)


def test_path_escapes_are_refused(tmp_path: Path, kernel: list[FakeKernel]) -> None:
    root = make_v1(tmp_path / "t", {"kubepods": "0-3"})
    hier = root / "cpuset"
    outside = tmp_path / "outside"
    outside.mkdir()
    _put(outside / "cpuset.mems", "0")
    os.symlink(outside, hier / "kubepods" / "evil")
    pod = hier / "kubepods" / f"pod{UID}"
    pod.mkdir()
    os.symlink(outside, pod / CID)
    enforcer = CpusetEnforcer(root)
    for bad in ["../memory", "kubepods/../../memory", "kubepods/evil", str(outside), "/etc"]:
        with pytest.raises(CgroupError, match=r"'\.\.' is not allowed|outside"):
            enforcer.apply(bad, "0")
    with pytest.raises(CgroupError, match="outside"):
        find_container_cgroup(root, path="kubepods/evil")
    with pytest.raises(CgroupError, match="outside"):
        find_container_cgroup(root, UID, CID)  # well-known layout, but a symlink out
    # The v1 memory controller is beside the cpuset hierarchy: also outside.
    with pytest.raises(CgroupError, match="outside"):
        enforcer.apply(root / "memory", "0")
    with pytest.raises(CgroupError, match="root cgroup"):
        enforcer.apply(hier, "0")
    assert kernel[-1].log == []
    assert (outside / "cpuset.mems").read_text() == "0\n"


# -- the real machine ------------------------------------------------------------------------


def _writable_v1_cpuset() -> Path | None:
    hier = Path("/sys/fs/cgroup/cpuset")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    mounted = any(
        line.split()[1] == str(hier) and line.split()[2] == "cgroup" and "cpuset" in line
        for line in mounts
        if len(line.split()) > 3
    )
    if not mounted or not os.access(hier, os.W_OK) or not (hier / "cpuset.mems").exists():
        return None
    return hier


@pytest.mark.skipif(
    _writable_v1_cpuset() is None,
    reason="no writable cgroup v1 cpuset controller at /sys/fs/cgroup/cpuset",
)
def test_real_cgroup_v1_enforcement() -> None:
    enforcer = CpusetEnforcer("/sys/fs/cgroup")
    assert enforcer.version == 1
    available = sorted(parse_list((enforcer.hierarchy / "cpuset.mems").read_text()))
    assert available, "root cpuset has no memory nodes"
    want = [available[-1]]  # one node: narrows on multi-node hosts, exact on single-node
    name = f"pymm-test-{secrets.token_hex(4)}"
    proc: subprocess.Popen[bytes] | None = None
    created: list[Path] = []
    try:
        leaf = enforcer.create(f"{name}/container")
        created = [leaf, leaf.parent]
        # A brand-new v1 cpuset was given the parent's cpus and mems, so it can hold tasks.
        assert enforcer.mems(leaf) == set(available)
        proc = subprocess.Popen(["sleep", "30"])
        enforcer.attach(leaf, proc.pid)
        writes = enforcer.apply(leaf, format_list(want))
        if len(available) > 1:
            assert writes == [Write(leaf / "cpuset.mems", format_list(want))]
        enforcer.verify(leaf, want, pid=proc.pid)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("Mems_allowed_list:"))
        assert parse_list(line.split(":", 1)[1]) == want
        # A node the machine does not have is refused before any write...
        missing = max(available) + 1
        with pytest.raises(CgroupError, match="not a subset"):
            enforcer.apply(leaf, [missing])
        # ...and the kernel's own refusal surfaces as a CgroupError too.
        with pytest.raises(CgroupError, match="cannot write"):
            cgroups._write(Write(leaf / "cpuset.mems", str(missing)))
        enforcer.verify(leaf, want, pid=proc.pid)
        enforcer.relax(leaf)
        enforcer.verify(leaf, available, pid=proc.pid)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        for path in created:
            # The killed task can take a moment to leave the cgroup.
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
    assert not (enforcer.hierarchy / name).exists()
