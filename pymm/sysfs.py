"""Discover the NUMA topology of a real machine from sysfs.

:func:`discover` reads ``ROOT/sys/devices/system/node`` (and, when the kernel exposes it,
``ROOT/sys/devices/virtual/memory_tiering``) and returns a machine description of the same
shape as the files in ``pymm/catalog/``, so the engine can consume either. ``ROOT`` is a
parameter so that tests can point it at a fixture tree.

Each node's memory kind (``DRAM``, ``HBM``, ``CXL`` or ``unknown``) is the engine's verdict
(``engine/src/memkind.rs``, where the rule is written; :data:`MEMORY_KIND_RULE` is its one-line
summary) over what this module reads: CPUs, memory, memory tiers, HMAT and SLIT distances.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pymm import _engine
from pymm.errors import SysfsError

__all__ = [
    "MEMORY_KIND_RULE",
    "discover",
    "format_list",
    "memory_kind",
    "parse_list",
]

#: The engine's memory-kind rule in one line (``pymm topology`` prints it).
MEMORY_KIND_RULE = _engine.memory_kind_rule()

_NODE_DIR = Path("sys/devices/system/node")
_TIER_DIR = Path("sys/devices/virtual/memory_tiering")
_MEMTOTAL = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB\s*$", re.MULTILINE)
_HUGEPAGE_DIR = re.compile(r"^hugepages-(\d+)kB$")
_TIER_NAME = re.compile(r"^memory_tier(\d+)$")
_ACCESS_FILES = {
    "read_latency_ns": "read_latency",
    "write_latency_ns": "write_latency",
    "read_bandwidth_mbps": "read_bandwidth",
    "write_bandwidth_mbps": "write_bandwidth",
}


#: The largest CPU or node id a kernel list may name: far above any kernel's NR_CPUS (8192
#: with x86's MAXSMP) and MAX_NUMNODES (1024), and low enough that a damaged or hostile
#: ``0-99999999999`` cannot make pymm allocate every id in between.
MAX_LIST_ID = 65535


def parse_list(text: str) -> list[int]:
    """Parse a kernel list such as ``"0-3,8,10-11"`` (or kubelet's ``"0,1"``) into sorted ids.

    Raises :class:`ValueError` on malformed input and on ids above :data:`MAX_LIST_ID`.
    """
    ids: set[int] = set()
    text = text.strip()
    if not text:
        return []
    for part in text.split(","):
        part = part.strip()
        lo_s, sep, hi_s = part.partition("-")
        # isdigit() alone accepts other scripts' digits ("١٢") and superscripts.
        if not _is_number(lo_s) or (sep and not _is_number(hi_s)):
            raise ValueError(f"malformed list element {part!r} in {text!r}")
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
        if hi < lo:
            raise ValueError(f"descending range {part!r} in {text!r}")
        if hi > MAX_LIST_ID:
            raise ValueError(f"id {hi} in {text!r} is above {MAX_LIST_ID}, beyond any kernel's")
        ids.update(range(lo, hi + 1))
    return sorted(ids)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def format_list(ids: Sequence[int] | set[int] | frozenset[int]) -> str:
    """Format ids the way the kernel prints them: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    out: list[str] = []
    ordered = sorted(set(ids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise SysfsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SysfsError(f"{path}: not text (byte {exc.start} is not UTF-8)") from exc


def _read_list(path: Path) -> list[int]:
    text = _read(path)
    try:
        return parse_list(text)
    except ValueError as exc:
        raise SysfsError(f"{path}: {exc}") from exc


def _read_int(path: Path) -> int:
    text = _read(path).strip()
    try:
        return int(text)
    except ValueError:
        raise SysfsError(f"{path}: expected an integer, got {text[:40]!r}") from None


def _optional_list(path: Path) -> list[int] | None:
    return _read_list(path) if path.exists() else None


def _memtotal_bytes(path: Path) -> int:
    match = _MEMTOTAL.search(_read(path))
    if match is None:
        raise SysfsError(f"{path}: no 'Node N MemTotal: <n> kB' line")
    return int(match.group(1)) * 1024


def _hugepages(node_dir: Path) -> list[dict[str, int]]:
    hp_dir = node_dir / "hugepages"
    if not hp_dir.is_dir():
        return []
    pools: list[dict[str, int]] = []
    for entry in hp_dir.iterdir():
        match = _HUGEPAGE_DIR.match(entry.name)
        if match is None:
            continue
        pools.append(
            {
                "page_size_kib": int(match.group(1)),
                "num_pages": _read_int(entry / "nr_hugepages"),
            }
        )
    return sorted(pools, key=lambda p: p["page_size_kib"])


def _access(node_dir: Path) -> dict[str, int | None] | None:
    initiators = node_dir / "access0" / "initiators"
    if not initiators.is_dir():
        return None
    return {
        key: _read_int(initiators / name) if (initiators / name).exists() else None
        for key, name in _ACCESS_FILES.items()
    }


def _tiers(root: Path) -> dict[int, int]:
    tier_dir = root / _TIER_DIR
    if not tier_dir.is_dir():
        return {}
    tier_of: dict[int, int] = {}
    for entry in tier_dir.iterdir():
        match = _TIER_NAME.match(entry.name)
        if match is None or not (entry / "nodelist").exists():
            continue
        for node in _read_list(entry / "nodelist"):
            tier_of[node] = int(match.group(1))
    return tier_of


def _distances(node_dir: Path, ids: list[int]) -> list[list[int]] | None:
    rows: list[list[int]] = []
    for node_id in ids:
        path = node_dir / f"node{node_id}" / "distance"
        if not path.exists():
            return None
        fields = _read(path).split()
        try:
            row = [int(f) for f in fields]
        except ValueError:
            raise SysfsError(f"{path}: non-numeric distance row {fields!r}") from None
        # The kernel prints one column per online node; a mismatch means the tree changed
        # under us (hotplug) or is not a node directory at all.
        if len(row) != len(ids):
            raise SysfsError(f"{path}: {len(row)} distances for {len(ids)} online nodes")
        rows.append(row)
    return rows


def discover(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Read the NUMA topology under ``root`` (``"/"`` for this machine).

    Returns a machine dict shaped like the catalog files (see the module docstring for the
    memory-kind rule). Raises :class:`~pymm.errors.SysfsError` naming the offending file.
    """
    root_path = Path(root)
    node_dir = root_path / _NODE_DIR
    if not node_dir.is_dir():
        raise SysfsError(f"{node_dir}: no such directory (missing root or kernel without NUMA)")
    ids = _read_list(node_dir / "online")
    if not ids:
        raise SysfsError(f"{node_dir / 'online'}: no online nodes")
    has_cpu = _optional_list(node_dir / "has_cpu")
    has_memory = _optional_list(node_dir / "has_memory")
    has_normal = _optional_list(node_dir / "has_normal_memory")
    tier_of = _tiers(root_path)

    nodes: list[dict[str, Any]] = []
    for node_id in ids:
        ndir = node_dir / f"node{node_id}"
        if not ndir.is_dir():
            raise SysfsError(f"{ndir}: listed in {node_dir / 'online'} but missing")
        cpulist_path = ndir / "cpulist"
        cpus = _read_list(cpulist_path)
        memory = _memtotal_bytes(ndir / "meminfo")
        node_has_memory = node_id in has_memory if has_memory is not None else memory > 0
        nodes.append(
            {
                "id": node_id,
                "memory_bytes": memory,
                "cpus": len(cpus),
                "cpulist": format_list(cpus),
                "kind": "unknown",
                "kind_reason": "",
                "hugepages": _hugepages(ndir),
                "has_cpu": node_id in has_cpu if has_cpu is not None else bool(cpus),
                "has_memory": node_has_memory,
                "has_normal_memory": (
                    node_id in has_normal if has_normal is not None else node_has_memory
                ),
                "tier": tier_of.get(node_id),
                "access": _access(ndir),
            }
        )
    distances = _distances(node_dir, ids)
    for node, (kind, reason) in zip(nodes, _engine.classify_memory(nodes, distances), strict=True):
        node["kind"], node["kind_reason"] = kind, reason

    kinds = sorted({n["kind"] for n in nodes})
    label = "/" if os.fspath(root) == "/" else os.fspath(root)
    name = socket.gethostname() if label == "/" else (root_path.resolve().name or "sysfs")
    return {
        "name": name,
        "description": (f"{len(nodes)} NUMA node(s) discovered from sysfs ({', '.join(kinds)})"),
        "source": f"sysfs:{label}",
        "nodes": nodes,
        "distances": distances,
    }


def memory_kind(
    index: int,
    nodes: Sequence[Mapping[str, Any]],
    distances: Sequence[Sequence[int]] | None,
) -> tuple[str, str]:
    """The engine's classification of ``nodes[index]``: ``(kind, reason)``.

    ``nodes`` need ``cpus`` and ``memory_bytes`` (catalog entries qualify); ``tier`` and
    ``access`` (HMAT, as :func:`discover` reads them) are used when present. ``distances``
    rows follow the order of ``nodes``.
    """
    return _engine.classify_memory(list(nodes), distances)[index]
