"""Enforce a container's NUMA memory placement through cgroup ``cpuset.mems``.

Works on cgroup v1 (the ``cpuset`` controller mounted at ``ROOT/cpuset``, or ``ROOT`` itself)
and cgroup v2 (the unified hierarchy at ``ROOT``). ``ROOT`` defaults to ``/sys/fs/cgroup``
and is a parameter so tests can use a fake tree.

Kernel rules this module honours:

* v1: a cpuset's ``mems`` must stay a subset of its parent's and a superset of every child's
  at every moment, so widening is written top-down (ancestors first) and narrowing bottom-up
  (deepest descendant first). A change that is neither (``0`` -> ``1``) is done as a widening
  to the union followed by a narrowing.
* v1: a new cpuset starts with empty ``cpus``/``mems`` and cannot hold tasks; the parent's
  values are copied into it first.
* v2: the ``cpuset`` files only exist in a cgroup whose parent lists ``cpuset`` in
  ``cgroup.subtree_control``; it is enabled top-down from the root. An empty ``cpuset.mems``
  means "inherit the parent's", and ``cpuset.mems.effective`` is what the kernel enforces.

Ancestors are only ever widened (siblings may need other nodes); the target cgroup gets exactly
the requested nodes; its descendants are narrowed to fit inside it.

Node lists are kubelet-style (``"0,1"``) or kernel-style (``"0-1"``) and are compared as sets.
Every failure is a :class:`~pymm.errors.CgroupError` (an :class:`OSError`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from pymm.errors import CgroupError
from pymm.sysfs import format_list, parse_list

__all__ = [
    "CpusetEnforcer",
    "Write",
    "detect_version",
    "find_container_cgroup",
    "hierarchy_root",
    "parse_mems",
    "resolve_cgroup",
]

DEFAULT_ROOT = "/sys/fs/cgroup"

Mems = str | Iterable[int]


class Write(NamedTuple):
    """One file write of a plan: ``value`` goes into ``path``."""

    path: Path
    value: str


def parse_mems(mems: Mems) -> frozenset[int]:
    """Normalise ``"0,1"``, ``"0-1"`` or ``[0, 1]`` to a set of node ids."""
    if isinstance(mems, str):
        try:
            return frozenset(parse_list(mems))
        except ValueError as exc:
            raise CgroupError(f"invalid node list {mems!r}: {exc}") from None
    ids = frozenset(int(m) for m in mems)
    if any(m < 0 for m in ids):
        raise CgroupError(f"invalid node list {sorted(ids)!r}: negative node id")
    return ids


def _fmt(ids: Iterable[int]) -> str:
    text = format_list(sorted(ids))
    return text if text else "(empty)"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_ids(path: Path) -> frozenset[int]:
    text = _read(path)
    try:
        return frozenset(parse_list(text))
    except ValueError:
        raise CgroupError(f"{path}: malformed node list {text.strip()[:40]!r}") from None


def _write(write: Write) -> None:
    try:
        # One write() per value: cgroup files act on each write call, not on the file content.
        with open(write.path, "w") as handle:
            handle.write(write.value)
    except OSError as exc:
        raise CgroupError(
            f"cannot write {write.value!r} to {write.path}: {exc.strerror or exc}"
        ) from None


def detect_version(root: str | os.PathLike[str] = DEFAULT_ROOT) -> int:
    """Return 2 for a unified (v2) hierarchy at ``root``, 1 for a v1 cpuset controller."""
    base = Path(root)
    if (base / "cgroup.controllers").is_file():
        return 2
    for candidate in (base / "cpuset", base):
        if (candidate / "cpuset.mems").is_file() or (candidate / "mems").is_file():
            return 1
    raise CgroupError(f"{base}: neither a cgroup v2 hierarchy nor a cgroup v1 cpuset mount")


def hierarchy_root(root: str | os.PathLike[str] = DEFAULT_ROOT, version: int | None = None) -> Path:
    """The directory whose subdirectories are cpuset cgroups (symlinks resolved)."""
    base = Path(root)
    version = detect_version(base) if version is None else version
    if version == 2:
        controllers = _read(base / "cgroup.controllers").split()
        if "cpuset" not in controllers:
            raise CgroupError(f"{base / 'cgroup.controllers'}: cpuset controller not available")
        return Path(os.path.realpath(base))
    if version != 1:
        raise CgroupError(f"unsupported cgroup version {version!r}")
    for candidate in (base / "cpuset", base):
        if (candidate / "cpuset.mems").is_file() or (candidate / "mems").is_file():
            return Path(os.path.realpath(candidate))
    raise CgroupError(f"{base}: no cgroup v1 cpuset controller (expected {base / 'cpuset'})")


def _inside(hierarchy: Path, cgroup: str | os.PathLike[str], must_exist: bool) -> Path:
    path = Path(cgroup)
    if ".." in path.parts:
        raise CgroupError(f"{path}: '..' is not allowed in a cgroup path")
    if path.is_absolute():
        real_arg = Path(os.path.realpath(path))
        if real_arg != hierarchy and hierarchy not in real_arg.parents:
            raise CgroupError(f"{path}: outside the cgroup hierarchy {hierarchy}")
        candidate = real_arg
    else:
        candidate = Path(os.path.realpath(hierarchy / path))
    # realpath follows symlinks, so this also catches a link that points out of the tree.
    if candidate != hierarchy and hierarchy not in candidate.parents:
        raise CgroupError(f"{path}: resolves to {candidate}, outside {hierarchy}")
    if must_exist and not candidate.is_dir():
        raise CgroupError(f"{candidate}: no such cgroup")
    return candidate


def resolve_cgroup(
    root: str | os.PathLike[str],
    cgroup: str | os.PathLike[str],
    version: int | None = None,
) -> Path:
    """Resolve ``cgroup`` (relative to the cpuset hierarchy, or absolute inside it).

    Refuses ``..`` and anything whose real path leaves the hierarchy.
    """
    return _inside(hierarchy_root(root, version), cgroup, must_exist=True)


_CONTAINER_SCOPES = ("{id}", "cri-containerd-{id}.scope", "crio-{id}.scope", "docker-{id}.scope")
_QOS = ("", "burstable", "besteffort")


def _known_layouts(uid: str, cid: str) -> list[Path]:
    uid_us = uid.replace("-", "_")
    paths: list[Path] = []
    for qos in _QOS:
        # cgroupfs driver: kubepods[/qos]/pod<uid>/<id>
        pod = Path("kubepods", qos, f"pod{uid}") if qos else Path("kubepods", f"pod{uid}")
        paths.append(pod / cid)
        # systemd driver: kubepods.slice[/kubepods-qos.slice]/kubepods[-qos]-pod<uid_>.slice
        if qos:
            slice_ = Path(
                "kubepods.slice", f"kubepods-{qos}.slice", f"kubepods-{qos}-pod{uid_us}.slice"
            )
        else:
            slice_ = Path("kubepods.slice", f"kubepods-pod{uid_us}.slice")
        paths.extend(slice_ / scope.format(id=cid) for scope in _CONTAINER_SCOPES)
    return paths


def find_container_cgroup(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    pod_uid: str | None = None,
    container_id: str | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    version: int | None = None,
    max_depth: int = 6,
) -> Path:
    """Find the cpuset cgroup of a Kubernetes container.

    Tries the kubelet's cgroupfs and systemd layouts (guaranteed, burstable and besteffort pods;
    containerd, CRI-O and Docker scopes) and then searches up to ``max_depth`` levels for a
    pod directory (``pod<uid>`` or ``*-pod<uid_with_underscores>.slice``) holding the
    container. ``container_id`` may carry a runtime prefix (``containerd://...``). With
    ``path``, that cgroup is used instead (after the same escape checks).
    """
    hierarchy = hierarchy_root(root, version)
    if path is not None:
        return _inside(hierarchy, path, must_exist=True)
    if not pod_uid or not container_id:
        raise CgroupError("need either path or both pod_uid and container_id")
    uid = pod_uid.replace("_", "-")
    cid = container_id.split("://", 1)[-1]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", uid) or not re.fullmatch(r"\w+", cid):
        raise CgroupError(f"invalid pod uid {pod_uid!r} or container id {container_id!r}")

    found = [hierarchy / p for p in _known_layouts(uid, cid) if (hierarchy / p).is_dir()]
    if not found:
        found = _search(hierarchy, uid, cid, max_depth)
    if not found:
        raise CgroupError(f"no cgroup for pod {uid} container {cid} under {hierarchy}")
    if len(found) > 1:
        listed = ", ".join(str(p.relative_to(hierarchy)) for p in found)
        raise CgroupError(f"pod {uid} container {cid} is ambiguous under {hierarchy}: {listed}")
    return _inside(hierarchy, found[0], must_exist=True)


def _search(hierarchy: Path, uid: str, cid: str, max_depth: int) -> list[Path]:
    pod_dir = re.compile(
        rf"pod{re.escape(uid)}|(?:[\w]+-)*pod{re.escape(uid.replace('-', '_'))}\.slice"
    )
    scopes = {scope.format(id=cid) for scope in _CONTAINER_SCOPES}
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(hierarchy, followlinks=False):
        here = Path(dirpath)
        if len(here.relative_to(hierarchy).parts) >= max_depth:
            dirnames[:] = []
            continue
        if pod_dir.fullmatch(here.name):
            found.extend(here / d for d in sorted(dirnames) if d in scopes)
            dirnames[:] = []
    return found


class CpusetEnforcer:
    """Plan, apply, verify and relax ``cpuset.mems`` of cgroups under one cgroup root."""

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        version: int | None = None,
        proc_root: str | os.PathLike[str] = "/proc",
    ) -> None:
        self.root = Path(root)
        self.version = detect_version(self.root) if version is None else version
        self.hierarchy = hierarchy_root(self.root, self.version)
        self.proc_root = Path(proc_root)
        if self.version == 2:
            prefix = "cpuset."
            self._effective = "cpuset.mems.effective"
        else:
            # A v1 cpuset mounted with -o noprefix names its files "mems", "cpus", ...
            prefix = "cpuset." if (self.hierarchy / "cpuset.mems").exists() else ""
            self._effective = f"{prefix}effective_mems"
        self._mems = f"{prefix}mems"
        self._cpus = f"{prefix}cpus"

    # -- reading -----------------------------------------------------------------------

    def resolve(self, cgroup: str | os.PathLike[str]) -> Path:
        """Absolute path of an existing cgroup below the hierarchy root (escapes refused)."""
        path = _inside(self.hierarchy, cgroup, must_exist=True)
        if path == self.hierarchy:
            raise CgroupError(f"{path}: refusing to change the root cgroup")
        return path

    def mems(self, cgroup: str | os.PathLike[str]) -> frozenset[int]:
        """The cgroup's configured ``cpuset.mems`` (empty set if unset or not yet enabled)."""
        path = _inside(self.hierarchy, cgroup, must_exist=True) / self._mems
        return _read_ids(path) if path.exists() else frozenset()

    def effective_mems(self, cgroup: str | os.PathLike[str]) -> frozenset[int]:
        """The nodes the kernel actually enforces for the cgroup."""
        path = _inside(self.hierarchy, cgroup, must_exist=True)
        if (path / self._effective).exists():
            return _read_ids(path / self._effective)
        if self.version == 1:
            return self.mems(path)
        raise CgroupError(f"{path / self._effective}: missing (cpuset not enabled here?)")

    def _available(self) -> frozenset[int]:
        if self.version == 2:
            return _read_ids(self.hierarchy / self._effective)
        return _read_ids(self.hierarchy / self._mems)

    def _read_optional(self, path: Path) -> frozenset[int]:
        return _read_ids(path) if path.exists() else frozenset()

    # -- planning ------------------------------------------------------------------------

    def plan(self, cgroup: str | os.PathLike[str], mems: Mems) -> list[Write]:
        """The ordered writes that give ``cgroup`` exactly ``mems`` (nothing is written)."""
        target = self.resolve(cgroup)
        want = parse_mems(mems)
        if not want:
            raise CgroupError(f"{target}: refusing to set an empty cpuset.mems")
        available = self._available()
        if not want <= available:
            raise CgroupError(
                f"mems {_fmt(want)} not a subset of the root cpuset's {_fmt(available)} "
                f"({self.hierarchy})"
            )
        chain = [target, *target.parents]
        chain = list(reversed(chain[: chain.index(self.hierarchy)]))  # top-down, root excluded

        writes: list[Write] = []
        if self.version == 2:
            for parent in [self.hierarchy, *chain[:-1]]:
                control = parent / "cgroup.subtree_control"
                if "cpuset" not in _read(control).split():
                    writes.append(Write(control, "+cpuset"))

        # Final values F; phase 1 writes cur | F top-down, phase 2 narrows to F bottom-up.
        current: dict[Path, frozenset[int]] = {}
        final: dict[Path, frozenset[int]] = {}
        parent_final = available
        for path in chain:
            cur = self._read_optional(path / self._mems)
            current[path] = cur
            if path == target:
                final[path] = want
            elif not cur:
                # v1: a fresh cpuset has no nodes, copy the parent's; v2: empty inherits.
                final[path] = parent_final if self.version == 1 else cur
            else:
                final[path] = cur | want
            parent_final = final[path] or parent_final

        # What each descendant's parent will end up allowing (empty v2 cgroups inherit).
        bound: dict[Path, frozenset[int]] = {target: want}
        descendants = self._descendants(target)
        for path in descendants:  # top-down order
            cur = self._read_optional(path / self._mems)
            current[path] = cur
            parent_bound = bound[path.parent]
            if not cur:
                final[path] = cur  # an empty v1 child holds no tasks; v2 empty inherits
            else:
                final[path] = (cur & parent_bound) or parent_bound
            bound[path] = final[path] or parent_bound

        order = chain + descendants
        parent_cpus = self._read_optional(self.hierarchy / self._cpus)
        for path in order:
            if self.version == 1 and path in chain:
                cpus = self._read_optional(path / self._cpus)
                if not cpus:
                    writes.append(Write(path / self._cpus, format_list(sorted(parent_cpus))))
                    cpus = parent_cpus
                parent_cpus = cpus
            widened = current[path] | final[path]
            if widened != current[path] and final[path]:
                writes.append(Write(path / self._mems, format_list(sorted(widened))))
        for path in reversed(order):
            widened = current[path] | final[path]
            if final[path] != widened and final[path]:
                writes.append(Write(path / self._mems, format_list(sorted(final[path]))))
        return writes

    def _descendants(self, target: Path) -> list[Path]:
        found: list[Path] = []
        for dirpath, dirnames, _ in os.walk(target, followlinks=False):
            dirnames.sort()
            here = Path(dirpath)
            found.extend(here / d for d in dirnames)
        return sorted(found, key=lambda p: len(p.parts))

    # -- acting --------------------------------------------------------------------------

    def apply(
        self, cgroup: str | os.PathLike[str], mems: Mems, dry_run: bool = False
    ) -> list[Write]:
        """Write the plan for ``cgroup``/``mems`` and verify it; return the writes."""
        writes = self.plan(cgroup, mems)
        if dry_run:
            return writes
        for write in writes:
            _write(write)
        self.verify(cgroup, mems)
        return writes

    def relax(self, cgroup: str | os.PathLike[str], dry_run: bool = False) -> list[Write]:
        """Widen ``cgroup`` back to everything its parent allows."""
        target = self.resolve(cgroup)
        parent = target.parent
        if parent == self.hierarchy:
            allowed = self._available()
        else:
            allowed = self.effective_mems(parent) or self.mems(parent)
        return self.apply(target, allowed, dry_run=dry_run)

    def create(self, cgroup: str | os.PathLike[str]) -> Path:
        """Create ``cgroup`` (and missing parents) ready to hold tasks; return its path."""
        target = _inside(self.hierarchy, cgroup, must_exist=False)
        if target == self.hierarchy:
            raise CgroupError(f"{target}: refusing to create the root cgroup")
        missing = [p for p in [target, *target.parents] if not p.exists()]
        for path in reversed(missing):
            parent = path.parent
            if self.version == 2:
                control = parent / "cgroup.subtree_control"
                if "cpuset" not in _read(control).split():
                    _write(Write(control, "+cpuset"))
            try:
                path.mkdir()
            except OSError as exc:
                raise CgroupError(f"cannot create {path}: {exc.strerror or exc}") from None
            if self.version == 1:
                # Without clone_children the new cpuset is empty and rejects tasks.
                for name in (self._cpus, self._mems):
                    if not self._read_optional(path / name):
                        _write(Write(path / name, _read(parent / name).strip()))
        return target

    def attach(self, cgroup: str | os.PathLike[str], pid: int) -> None:
        """Move process ``pid`` (all its threads) into ``cgroup``."""
        _write(Write(self.resolve(cgroup) / "cgroup.procs", str(pid)))

    def remove(self, cgroup: str | os.PathLike[str]) -> None:
        """Remove an empty ``cgroup`` (rmdir)."""
        path = self.resolve(cgroup)
        try:
            path.rmdir()
        except OSError as exc:
            raise CgroupError(f"cannot remove {path}: {exc.strerror or exc}") from None

    # -- checking ------------------------------------------------------------------------

    def verify(self, cgroup: str | os.PathLike[str], mems: Mems, pid: int | None = None) -> None:
        """Raise :class:`CgroupError` unless ``cgroup`` (and ``pid``) is confined to ``mems``."""
        path = self.resolve(cgroup)
        want = parse_mems(mems)
        got = self.mems(path)
        if got != want:
            raise CgroupError(f"{path / self._mems}: is {_fmt(got)}, expected {_fmt(want)}")
        if (path / self._effective).exists():
            effective = _read_ids(path / self._effective)
            if effective != want:
                raise CgroupError(
                    f"{path / self._effective}: is {_fmt(effective)}, expected {_fmt(want)}"
                )
        if pid is None:
            return
        procs = _read(path / "cgroup.procs").split()
        if str(pid) not in procs:
            raise CgroupError(f"{path / 'cgroup.procs'}: pid {pid} is not in the cgroup")
        status = self.proc_root / str(pid) / "status"
        match = re.search(r"^Mems_allowed_list:\s*(\S*)\s*$", _read(status), re.MULTILINE)
        if match is None:
            raise CgroupError(f"{status}: no Mems_allowed_list line")
        allowed = parse_mems(match.group(1))
        if allowed != want:
            raise CgroupError(
                f"{status}: Mems_allowed_list is {_fmt(allowed)}, expected {_fmt(want)}"
            )
