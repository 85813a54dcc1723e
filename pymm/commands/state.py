"""``pymm state``: check, explain and dry-run-restore a kubelet ``memory_manager_state`` file.

* ``verify`` answers "is this file intact?" with the kubelet's own decoder and checksum.
* ``inspect`` shows what the file says and lists what does not add up. It keeps working when
  only the checksum is wrong, because a hand-edited or half-repaired file is exactly what an
  operator needs to look at.
* ``validate`` answers "would a kubelet with this machine and reservation start?" by running
  the engine's restore and startup validation, which reproduce the kubelet's error texts.

Exit status: 0 yes/clean, 1 no (with the reason), 2 the command itself failed (missing file,
unknown machine, bad option).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from pymm import _engine
from pymm.commands._options import KUBELET_VERSIONS, resolve
from pymm.commands._output import stdout_console
from pymm.commands._recorded import DEFAULTS, load_recorded
from pymm.errors import (
    CheckpointCorruptedError,
    ConfigError,
    ReservedMemoryError,
    StateError,
    StateFileError,
    advice_for,
)
from pymm.machine import Machine
from pymm.manager import MemoryManager, reserved_memory_config

__all__ = ["Inspection", "inspect_text", "register", "run"]

# The kubelet's text for a checksum mismatch (ErrCorruptCheckpoint); any other decode error
# means the JSON itself does not have the checkpoint's shape.
_CORRUPTED = "checkpoint is corrupted"

_TABLE_FIELDS = ("total", "systemReserved", "allocatable", "reserved", "free")
# The kubelet (>= 1.32) compares free and reserved per group, not per node.
_GROUP_FIELDS = ("allocatable", "reserved", "free")

_GIB = 1 << 30


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``state`` subcommand (with ``verify``, ``inspect``, ``validate``)."""
    parser = subparsers.add_parser(
        "state",
        help="verify, inspect or validate a memory_manager_state file",
        description="Work with the kubelet's memory_manager_state file (or pymm's copy of it).",
    )
    sub = parser.add_subparsers(dest="state_command", required=True, metavar="ACTION")

    p = sub.add_parser(
        "verify",
        help="check the file's checksum and structure as the kubelet does",
        description="Exit 0 if the kubelet would decode the file, 1 (with the reason) if not.",
    )
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=run, state_action="verify")

    p = sub.add_parser(
        "inspect",
        help="show per-node memory, groups, pods and inconsistencies",
        description="Show what the file records and list what does not add up. Works on files "
        "whose checksum is wrong (reported as an inconsistency). Exit 1 if any is found.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run, state_action="inspect")

    p = sub.add_parser(
        "validate",
        help="would a kubelet with this machine and reservation start with this file?",
        description="Restore the file and run the kubelet's startup validation against a "
        "machine. Exit 0 if it would start, 1 with the kubelet's error and advice if not.",
    )
    p.add_argument(
        "file",
        metavar="FILE|DIR",
        help="a state file, or a state directory (whose recorded configuration then supplies "
        "the machine and the flags not given)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--machine", metavar="NAME|FILE", help="catalog name or machine JSON file")
    where.add_argument(
        "--sysfs", metavar="ROOT", help="discover the machine from sysfs under ROOT (e.g. /)"
    )
    p.add_argument(
        "--reserved-memory",
        action="append",
        metavar="N:TYPE=QTY[,...][;...]",
        help="as the kubelet flag (repeatable); default: 1Gi of memory on every node",
    )
    p.add_argument(
        "--kubelet-version",
        choices=KUBELET_VERSIONS,
        help="whose startup validation to apply (default latest; 1.26 compares free/reserved "
        "per node)",
    )
    p.add_argument("--policy", choices=["Static", "None"], help="default Static")
    p.add_argument(
        "--tolerate-drift",
        metavar="QTY",
        help="would pymm start with this drift tolerance (beyond the kubelet: node totals may "
        "differ by at most QTY when every reservation still fits)?",
    )
    p.set_defaults(func=run, state_action="validate")


def run(args: argparse.Namespace) -> int:
    action: str = args.state_action
    if action == "verify":
        return _verify(Path(args.file))
    if action == "inspect":
        return _inspect(Path(args.file), as_json=args.json)
    return _validate(args)


# -- reading --------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file's text; a missing or unreadable file raises (exit 2), bad bytes do not."""
    from pymm.statefile import STATE_FILE_NAME, read_file

    if path.is_dir():
        path = path / STATE_FILE_NAME
    # Following a symlink is harmless for a read-only command; read_file refuses them because
    # the manager writes where it reads.
    data = read_file(path.resolve())
    if data is None:
        raise StateFileError(f"cannot read state file {path}: No such file or directory")
    # Invalid UTF-8 is a property of the file, not a failure to read it: let the JSON decoder
    # report it like any other damage.
    return data.decode("utf-8", errors="replace")


def _fail(path: Path, reason: str) -> int:
    print(f"FAIL {path}: {reason}")
    return 1


# -- verify ---------------------------------------------------------------------------------


def _verify(path: Path) -> int:
    text = _read_text(path)
    try:
        policy, checksum, data = _engine.decode_checkpoint(text)
    except CheckpointCorruptedError as e:
        return _fail(path, str(e))
    nodes = len(data["machineState"])
    pods = len(data["entries"])
    print(f"OK {path}: policy {policy}, checksum {checksum}, {nodes} NUMA nodes, {pods} pods")
    return 0


# -- inspect --------------------------------------------------------------------------------


@dataclass
class Inspection:
    """What a state file says, normalised, plus everything found inconsistent in it."""

    policy_name: str
    checksum: int
    checksum_valid: bool
    machine_state: dict[int, dict[str, Any]]
    entries: dict[str, dict[str, list[dict[str, Any]]]]
    inconsistencies: list[dict[str, str]] = field(default_factory=list)

    def problem(self, kind: str, message: str) -> None:
        self.inconsistencies.append({"kind": kind, "message": message})

    # -- derived views ----------------------------------------------------------------

    def node_rows(self) -> list[dict[str, Any]]:
        rows = []
        for node in sorted(self.machine_state):
            state = self.machine_state[node]
            for resource in sorted(state["memoryMap"]):
                table = state["memoryMap"][resource]
                rows.append(
                    {
                        "node": node,
                        "resource": resource,
                        **{k: table[k] for k in _TABLE_FIELDS},
                        "numberOfAssignments": state["numberOfAssignments"],
                        "cells": state["cells"],
                    }
                )
        return rows

    def groups(self) -> list[tuple[int, ...]]:
        """The distinct node sets of ``cells``, in order of their smallest node."""
        seen: dict[tuple[int, ...], None] = {}
        for node in sorted(self.machine_state):
            cells = self.machine_state[node]["cells"]
            group = tuple(sorted(set(cells))) if cells else (node,)
            seen.setdefault(group, None)
        return sorted(seen, key=lambda g: (min(g), g))

    def group_rows(self) -> list[dict[str, Any]]:
        rows = []
        for group in self.groups():
            sums: dict[str, dict[str, int]] = {}
            for node in group:
                state = self.machine_state.get(node)
                if state is None:
                    continue
                for resource, table in state["memoryMap"].items():
                    acc = sums.setdefault(resource, dict.fromkeys(_GROUP_FIELDS, 0))
                    for k in _GROUP_FIELDS:
                        acc[k] += table[k]
            rows.append(
                {
                    "nodes": list(group),
                    "used": any(
                        self.machine_state[n]["numberOfAssignments"] > 0
                        for n in group
                        if n in self.machine_state
                    ),
                    "resources": {r: sums[r] for r in sorted(sums)},
                }
            )
        return rows

    def pod_rows(self) -> list[dict[str, Any]]:
        pods = []
        for uid in sorted(self.entries):
            containers = []
            for name in sorted(self.entries[uid]):
                blocks = self.entries[uid][name]
                nodes = sorted({n for b in blocks for n in b["numaAffinity"] or ()})
                containers.append({"name": name, "numaNodes": nodes, "blocks": blocks})
            pods.append({"podUID": uid, "containers": containers})
        return pods

    def to_json(self) -> dict[str, Any]:
        return {
            "policyName": self.policy_name,
            "checksum": {"stored": self.checksum, "valid": self.checksum_valid},
            "nodes": self.node_rows(),
            "groups": self.group_rows(),
            "pods": self.pod_rows(),
            "inconsistencies": self.inconsistencies,
        }


class _ShapeError(ValueError):
    """The JSON parses but is not a checkpoint (what the kubelet's json.Unmarshal rejects)."""


def _uint(value: Any, where: str) -> int:
    # bool is an int subclass in Python but not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _ShapeError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _ints(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _ShapeError(f"{where}: expected a list of integers, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _ShapeError(f"{where}[{i}]: expected an integer, got {v!r}")
        out.append(v)
    return out


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    # Go decodes null into a map as an empty (nil) map.
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _ShapeError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _normalise(doc: Any) -> tuple[str, int, dict[int, dict[str, Any]], dict[str, Any]]:
    """Python's reading of a checkpoint whose checksum the engine refused.

    Missing fields take Go's zero values and unknown ones are ignored, as with json.Unmarshal;
    only the shape is checked, so every inconsistency can still be reported.
    """
    top = _obj(doc, "checkpoint")
    policy = top.get("policyName", "")
    if not isinstance(policy, str):
        raise _ShapeError(f"policyName: expected a string, got {policy!r}")
    checksum = _uint(top.get("checksum", 0), "checksum")
    machine: dict[int, dict[str, Any]] = {}
    for key, raw in _obj(top.get("machineState"), "machineState").items():
        try:
            node = int(key)
        except ValueError:
            raise _ShapeError(f"machineState: NUMA node key {key!r} is not an integer") from None
        at = f"machineState.{key}"
        state = _obj(raw, at)
        tables = {}
        for resource, rawtable in _obj(state.get("memoryMap"), f"{at}.memoryMap").items():
            table = _obj(rawtable, f"{at}.memoryMap.{resource}")
            tables[resource] = {
                k: _uint(table.get(k, 0), f"{at}.memoryMap.{resource}.{k}") for k in _TABLE_FIELDS
            }
        assignments = state.get("numberOfAssignments", 0)
        if isinstance(assignments, bool) or not isinstance(assignments, int):
            raise _ShapeError(f"{at}.numberOfAssignments: expected an integer")
        machine[node] = {
            "numberOfAssignments": assignments,
            "memoryMap": tables,
            "cells": _ints(state.get("cells"), f"{at}.cells"),
        }
    entries: dict[str, Any] = {}
    for uid, rawpod in _obj(top.get("entries"), "entries").items():
        pod = {}
        for name, rawblocks in _obj(rawpod, f"entries.{uid}").items():
            at = f"entries.{uid}.{name}"
            if rawblocks is None:
                rawblocks = []
            if not isinstance(rawblocks, list):
                raise _ShapeError(f"{at}: expected a list of blocks")
            blocks = []
            for i, rawblock in enumerate(rawblocks):
                block = _obj(rawblock, f"{at}[{i}]")
                kind = block.get("type", "")
                if not isinstance(kind, str):
                    raise _ShapeError(f"{at}[{i}].type: expected a string")
                blocks.append(
                    {
                        "numaAffinity": _ints(block.get("numaAffinity"), f"{at}[{i}].numaAffinity"),
                        "type": kind,
                        "size": _uint(block.get("size", 0), f"{at}[{i}].size"),
                    }
                )
            pod[name] = blocks
        entries[uid] = pod
    return policy, checksum, machine, entries


def inspect_text(text: str) -> Inspection:
    """Read a state file's text and check it. Raises :class:`CheckpointCorruptedError` only
    when the text is not a checkpoint at all; a wrong checksum is one of the findings."""
    try:
        policy, checksum, data = _engine.decode_checkpoint(text)
        machine = {int(k): v for k, v in data["machineState"].items()}
        entries = data["entries"]
        valid = True
    except CheckpointCorruptedError as e:
        if str(e) != _CORRUPTED:
            raise
        try:
            policy, checksum, machine, entries = _normalise(json.loads(text))
        except (ValueError, _ShapeError) as shape:
            # The engine accepted the structure, so this only happens if the two disagree;
            # report the engine's verdict rather than a second opinion.
            raise CheckpointCorruptedError(f"{_CORRUPTED} ({shape})") from e
        valid = False
    for state in machine.values():
        # Not every writer emits cells; the kubelet treats a missing group as the node alone.
        state.setdefault("cells", None)
    found = Inspection(policy, checksum, valid, machine, entries)
    if not valid:
        found.problem(
            "checksum",
            f"checksum mismatch: the stored checksum {checksum} does not match the content "
            f"(kubelet: {_CORRUPTED}); the kubelet will refuse this file",
        )
    _check(found)
    return found


def _check(found: Inspection) -> None:
    machine, entries = found.machine_state, found.entries
    if not machine and entries:
        found.problem(
            "empty-machine-state",
            "entries exist but machineState is empty (kubelet: machine state can not be empty "
            "when it has memory assignments)",
        )
    for node in sorted(machine):
        state = machine[node]
        cells = state["cells"]
        if cells is not None and node not in cells:
            found.problem(
                "node-not-in-group", f"node {node} is not in its own group (cells {cells})"
            )
        for resource in sorted(state["memoryMap"]):
            t = state["memoryMap"][resource]
            if t["reserved"] + t["free"] != t["allocatable"]:
                found.problem(
                    "reserved-free-allocatable",
                    f"node {node} {resource}: reserved {t['reserved']} + free {t['free']} != "
                    f"allocatable {t['allocatable']}",
                )

    used = [n for n in sorted(machine) if machine[n]["numberOfAssignments"] > 0]
    for i, a in enumerate(used):
        cells_a = set(machine[a]["cells"] or (a,))
        for b in used[i + 1 :]:
            cells_b = set(machine[b]["cells"] or (b,))
            if cells_a != cells_b and cells_a & cells_b:
                found.problem(
                    "overlapping-groups",
                    f"used nodes {a} and {b} are in overlapping groups {sorted(cells_a)} and "
                    f"{sorted(cells_b)}",
                )

    counted = dict.fromkeys(machine, 0)
    for uid in sorted(entries):
        for name in sorted(entries[uid]):
            for block in entries[uid][name]:
                where = f"pod {uid} container {name}"
                affinity = block["numaAffinity"] or []
                if not affinity:
                    found.problem("block-without-nodes", f"{where}: a block has no NUMA nodes")
                for node in affinity:
                    if node not in machine:
                        found.problem(
                            "unknown-node",
                            f"{where}: a block uses NUMA node {node}, not in the file",
                        )
                        continue
                    counted[node] += 1
                    if block["type"] not in machine[node]["memoryMap"]:
                        found.problem(
                            "unknown-resource",
                            f"{where}: a block uses resource {block['type']!r}, unknown on "
                            f"node {node}",
                        )
    for node in sorted(machine):
        stored = machine[node]["numberOfAssignments"]
        if stored != counted[node]:
            found.problem(
                "number-of-assignments",
                f"node {node}: numberOfAssignments is {stored} but {counted[node]} blocks use it",
            )


def _size(n: int) -> str:
    # Exact units where possible: a reader compares these with kubelet flags like 1Gi.
    for unit, scale in (("Gi", _GIB), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n / _GIB:.2f}Gi" if n >= _GIB else str(n)


def _inspect(path: Path, *, as_json: bool) -> int:
    text = _read_text(path)
    try:
        found = inspect_text(text)
    except CheckpointCorruptedError as e:
        if as_json:
            print(json.dumps({"file": str(path), "error": str(e)}))
            return 1
        return _fail(path, str(e))
    if as_json:
        print(json.dumps({"file": str(path), **found.to_json()}, indent=1))
        return 1 if found.inconsistencies else 0

    # Rich assumes 80 columns when piped, which would cut numbers short; a log or pager
    # copes better with a wider table.
    con = stdout_console(highlight=False, width=None if sys.stdout.isatty() else 120)
    status = "valid" if found.checksum_valid else "[red]MISMATCH[/]"
    con.print(
        f"[bold]{escape(str(path))}[/]: policy {escape(found.policy_name)}, "
        f"checksum {found.checksum} ({status})",
        soft_wrap=True,
    )
    nodes = Table(title="NUMA nodes")
    # Short headings keep the table readable at 80 columns (pipes, CI logs).
    headings = ("node", "resource", "total", "sysReserved", "allocatable", "reserved", "free")
    for col in (*headings, "assignments", "cells"):
        nodes.add_column(
            col,
            justify="left" if col in ("resource", "cells") else "right",
            overflow="fold",
        )
    for row in found.node_rows():
        if row["total"] == 0 and row["reserved"] == 0 and row["free"] == 0:
            continue  # page sizes the node has no pages of: noise in the table
        cells = row["cells"]
        nodes.add_row(
            str(row["node"]),
            row["resource"],
            *(_size(row[k]) for k in _TABLE_FIELDS),
            str(row["numberOfAssignments"]),
            "-" if cells is None else ",".join(map(str, cells)),
        )
    con.print(nodes)

    groups = Table(title="Groups (nodes pinned together) and their free memory")
    for col in ("nodes", "used", "resource", "allocatable", "reserved", "free"):
        groups.add_column(
            col, justify="right" if col in ("allocatable", "reserved", "free") else "left"
        )
    for g in found.group_rows():
        for resource, sums in g["resources"].items():
            if sums["allocatable"] == 0 and sums["reserved"] == 0 and sums["free"] == 0:
                continue
            groups.add_row(
                ",".join(map(str, g["nodes"])),
                "yes" if g["used"] else "no",
                resource,
                _size(sums["allocatable"]),
                _size(sums["reserved"]),
                _size(sums["free"]),
            )
    con.print(groups)

    pods = found.pod_rows()
    if pods:
        table = Table(title="Pods")
        for col in ("pod", "container", "NUMA nodes", "blocks"):
            table.add_column(col)
        for pod in pods:
            for c in pod["containers"]:
                blocks = ", ".join(
                    f"{b['type']} {_size(b['size'])} on "
                    f"{','.join(map(str, b['numaAffinity'] or ())) or '-'}"
                    for b in c["blocks"]
                )
                table.add_row(
                    escape(pod["podUID"]),
                    escape(c["name"]),
                    ",".join(map(str, c["numaNodes"])) or "-",
                    escape(blocks),
                )
        con.print(table)
    else:
        con.print("no pods have memory assigned")

    if found.inconsistencies:
        con.print(f"[red]{len(found.inconsistencies)} inconsistencies:[/]")
        for item in found.inconsistencies:
            con.print(f"  - {escape(item['message'])}", soft_wrap=True)
        return 1
    con.print("[green]no inconsistencies found[/]")
    return 0


# -- validate -------------------------------------------------------------------------------


def _manager_args(args: argparse.Namespace) -> argparse.Namespace:
    """``validate``'s flags under the names the manager commands use, the rest not given."""
    ns = argparse.Namespace(**dict.fromkeys(DEFAULTS), machine=args.machine, sysfs=args.sysfs)
    ns.reserved_memory = args.reserved_memory
    ns.memory_policy = args.policy
    ns.kubelet_version = args.kubelet_version
    return ns


def _validate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    directory = path if path.is_dir() else None
    recorded = load_recorded(directory) if directory is not None else None
    if recorded is None and args.machine is None and args.sysfs is None:
        lacking = f" ({directory} records no configuration)" if directory is not None else ""
        raise ConfigError(f"state validate needs --machine NAME|FILE or --sysfs ROOT{lacking}")
    ns = _manager_args(args)
    _, machine = resolve(ns, recorded, {"memory_policy": "--policy"})
    text = _read_text(path)
    try:
        notes = _restore(ns, machine, path, text, directory, args.tolerate_drift)
    except (StateError, ReservedMemoryError) as e:
        message = " ".join(str(e).split())
        print(f"would not start: {message}")
        details = getattr(e, "details", [])
        if details:
            print("differences (file vs. expected: this machine and reservation with the file's")
            print("assignments placed):")
        for line in details:
            print(f"  - {line}")
        print(f"advice: {advice_for(e)}")
        return 1
    if args.sysfs:
        where = f"this machine (sysfs under {args.sysfs})"
    elif args.machine is None and recorded is not None:
        where = f"the recorded machine {machine.name or recorded.machine_source}"
    else:
        where = f"machine {machine.name or args.machine}"
    print(
        f"would start: {path} restores on {where} with policy {ns.memory_policy} "
        f"(kubelet {ns.kubelet_version})"
    )
    for note in notes:
        print(f"  beyond the kubelet, which would not start: {note}")
    return 0


def _restore(
    ns: argparse.Namespace,
    machine: Machine,
    path: Path,
    text: str,
    directory: Path | None,
    tolerate_drift: str | None,
) -> list[str]:
    """Restore as a starting kubelet would; a directory read-only, as pymm opens it."""
    if directory is not None:
        with MemoryManager(
            machine,
            reserved_memory=ns.reserved_memory,
            node_allocatable={"memory": ns.node_allocatable} if ns.node_allocatable else None,
            memory_policy=ns.memory_policy,
            topology_policy=ns.topology_policy,
            scope=ns.scope,
            kubelet_version=ns.kubelet_version,
            search=ns.search,
            state_dir=directory,
            read_only=True,
            tolerate_drift=tolerate_drift,
        ) as mm:
            return mm.notes
    reserved: Any = ns.reserved_memory
    if reserved is None and ns.memory_policy == "Static":
        reserved = machine.reserve_per_node("1Gi")
    config = {
        "memory_policy": ns.memory_policy,
        "topology_policy": "none",
        "scope": "container",
        "kubelet_version": ns.kubelet_version,
        "reserved_memory": reserved_memory_config(reserved),
        "node_allocatable": None,
        "options": {},
        "drift_tolerance": tolerate_drift,
    }
    return list(_engine.Engine(machine.to_dict(), config, text, str(path)).notes)


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m`
    from pymm.cli import main

    sys.exit(main(["state", *sys.argv[1:]]))
