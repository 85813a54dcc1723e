"""``pymm state``: check, explain, dry-run-restore and convert a kubelet ``memory_manager_state``
file.

The file has had three layouts (the engine's ``checkpoint`` module describes them): V1 (every
kubelet up to 1.35), V2 (1.36: ``podEntries`` added, under a checksum a kubelet up to 1.35
refuses) and V3 (1.37+: the V1 fields and checksum kept for older kubelets, the state again in
``data`` under its own ``dataChecksum``). Every action reports the layout and each checksum,
stored and computed.

* ``verify`` answers "is this file intact?" with the kubelet's own decoder and checksums: every
  checksum the file carries, or, with ``--kubelet-version``, what that kubelet checks.
* ``inspect`` shows what the file says and lists what does not add up. It keeps working when
  only a checksum is wrong, because a hand-edited or half-repaired file is exactly what an
  operator needs to look at.
* ``validate`` answers "would a kubelet with this machine and reservation start?" by running
  the engine's restore and startup validation, which reproduce the kubelet's error texts.
* ``convert`` rewrites the file in another layout, for an operator moving a node between
  kubelet versions: atomically and durably, with fresh checksums, refusing a damaged file.

Exit status: 0 yes/clean/done, 1 no (with the reason), 2 the command itself failed (missing
file, unknown machine, bad option).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pymm import _engine
from pymm.commands._options import KUBELET_VERSIONS, add_reserved_memory, parse_options, resolve
from pymm.commands._output import markup, printable, stdout_console
from pymm.commands._recorded import CHOICES, DEFAULTS, load_recorded
from pymm.errors import (
    CheckpointCorruptedError,
    ConfigError,
    PodError,
    PymmError,
    ReservedMemoryError,
    StateError,
    StateFileError,
    advice_for,
)
from pymm.machine import Machine
from pymm.manager import Fragmentation, MemoryManager
from pymm.pod import Pod, probe_pod

__all__ = ["inspect_text", "register", "run"]

#: The layouts ``convert`` writes (see the module docstring).
FORMATS = ("v1", "v2", "v3")

_TABLE_FIELDS = ("total", "systemReserved", "allocatable", "reserved", "free")

_GIB = 1 << 30


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``state`` subcommand (with ``verify``, ``inspect``, ``validate``, ``convert``)."""
    parser = subparsers.add_parser(
        "state",
        help="verify, inspect, validate or convert a memory_manager_state file",
        description="Work with the kubelet's memory_manager_state file (or pymm's copy of it): "
        "V1 (kubelet up to 1.35), V2 (1.36) or V3 (1.37+, with data and dataChecksum).",
    )
    sub = parser.add_subparsers(dest="state_command", required=True, metavar="ACTION")

    p = sub.add_parser(
        "verify",
        help="check the file's checksums and structure as the kubelet does",
        description="Exit 0 if the file is intact, 1 (with the reason) if not. Prints its "
        "layout (v1, v2, v3) and each checksum. Without --kubelet-version every checksum the "
        "file carries must match (a V3 file's checksum for kubelets up to 1.36, its "
        "dataChecksum for 1.37+) and a V3 file's V1 fields must agree with its data.",
    )
    p.add_argument("file", metavar="FILE|DIR")
    p.add_argument(
        "--kubelet-version",
        choices=KUBELET_VERSIONS,
        help="judge as that kubelet restores the file instead: 1.32/1.26 read the V1 "
        "fields of any layout and check their checksum; 1.38 (and latest) reads V3 (data, "
        "dataChecksum), else V2, else V1",
    )
    p.set_defaults(func=run, state_action="verify")

    p = sub.add_parser(
        "inspect",
        help="show per-node memory, groups, pods and inconsistencies",
        description="Show the file's layout and checksums, what it records (a V3 file: its "
        "data, what a 1.37+ kubelet restores) and list what does not add up. Works on files "
        "whose checksums are wrong (reported as inconsistencies). Exit 1 if any is found.",
    )
    p.add_argument(
        "file",
        metavar="FILE|DIR",
        help="a state file, or a state directory (whose recorded policies and options then "
        "apply to --probe)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--probe",
        default="8Gi",
        metavar="SHAPE",
        help="pod shape for the fragmentation section: how many more fit, and the free memory "
        "stranded for it: 8Gi (default) or memory=QTY,hugepages-SIZE=QTY",
    )
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
    add_reserved_memory(p)
    p.add_argument(
        "--kubelet-version",
        choices=KUBELET_VERSIONS,
        help="whose restore and startup validation to apply (default "
        f"{DEFAULTS['kubelet_version']}; 1.26 compares free/reserved per node; 1.38 reads the V3 "
        "layout, else V2, else V1)",
    )
    p.add_argument(
        "--policy",
        choices=CHOICES["memory_policy"],
        help=f"default {DEFAULTS['memory_policy']}",
    )
    p.add_argument(
        "--tolerate-drift",
        metavar="QTY",
        help="would pymm start with this drift tolerance (beyond the kubelet: node totals may "
        "differ by at most QTY when every reservation still fits)?",
    )
    p.set_defaults(func=run, state_action="validate")

    p = sub.add_parser(
        "convert",
        help="rewrite the file in another layout (v1, v2, v3) for another kubelet version",
        description="Rewrite the file in another layout, with fresh checksums, atomically and "
        "durably (stop the kubelet, or pymm, that owns it first; a pymm state directory is "
        "locked meanwhile). v3 is what a 1.37+ kubelet writes and what every kubelet reads "
        "(older ones its V1 fields); v2 is what a 1.36 kubelet writes, with pod entries, and a "
        "kubelet up to 1.35 refuses it; v1 is what every kubelet up to 1.35 writes and reads, "
        "and holds no pod entries. A file whose checksums fail is refused.",
    )
    p.add_argument("file", metavar="FILE|DIR")
    p.add_argument("--to", required=True, choices=FORMATS, help="the layout to write")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the result here instead of replacing the file",
    )
    p.add_argument(
        "--ignore-checksum",
        action="store_true",
        help="convert a file whose checksum (or V3 data) fails anyway: its content is kept as "
        "it is and given fresh, valid checksums",
    )
    p.add_argument(
        "--drop-pod-entries",
        action="store_true",
        help="with --to v1, drop the file's pod-level reservations (podEntries), which a V1 "
        "file cannot hold",
    )
    p.set_defaults(func=run, state_action="convert")


def run(args: argparse.Namespace) -> int:
    action: str = args.state_action
    if action == "verify":
        return _verify(Path(args.file), args.kubelet_version)
    if action == "inspect":
        return _inspect(Path(args.file), as_json=args.json, probe=args.probe)
    if action == "convert":
        return _convert(args)
    return _validate(args)


# -- reading --------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file's text; a missing or unreadable file raises (exit 2), bad bytes do not."""
    from pymm.statefile import STATE_FILE_NAME, read_file

    if path.is_dir():
        path = path / STATE_FILE_NAME
    # Following a symlink is harmless for a read-only command; read_file refuses them because
    # the manager writes where it reads.
    data = read_file(resolved(path))
    if data is None:
        raise StateFileError(f"cannot read state file {path}: No such file or directory")
    # Invalid UTF-8 is a property of the file, not a failure to read it: let the JSON decoder
    # report it like any other damage.
    return data.decode("utf-8", errors="replace")


def resolved(path: Path) -> Path:
    """``path`` with its symbolic links followed, for a command that only reads; a link that
    leads back to itself is a :class:`StateFileError` naming it (pathlib raises
    RuntimeError before Python 3.13, OSError since)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        err = StateFileError(
            f"cannot read state file {path}: a symbolic link loop (the link leads back to itself)"
        )
        err.errno = errno.ELOOP
        raise err from exc


def _fail(path: Path, reason: str) -> int:
    print(printable(f"FAIL {path}: {reason}"))
    return 1


# -- verify ---------------------------------------------------------------------------------


def _checksums(found: _engine.Inspection) -> str:
    """The layout and each checksum: ``v3, checksum 1 (valid), dataChecksum 2 (MISMATCH:
    content 3)``."""

    def one(name: str, stored: int, computed: int, valid: bool) -> str:
        return f"{name} {stored} ({'valid' if valid else f'MISMATCH: content {computed}'})"

    parts = [
        found.format,
        one("checksum", found.stored_checksum, found.computed_checksum, found.checksum_valid),
    ]
    if found.stored_data_checksum is not None and found.computed_data_checksum is not None:
        if found.data_error is not None:
            parts.append(f"dataChecksum {found.stored_data_checksum} (data does not decode)")
        else:
            parts.append(
                one(
                    "dataChecksum",
                    found.stored_data_checksum,
                    found.computed_data_checksum,
                    found.data_checksum_valid is True,
                )
            )
    return ", ".join(parts)


def _counts(found: _engine.Inspection) -> str:
    entries = f", {found.pod_entry_count} pod entries" if found.pod_entry_count else ""
    return f"{found.node_count} NUMA nodes, {found.pod_count} pods{entries}"


def _integrity_problems(found: _engine.Inspection) -> list[str]:
    """What makes the file fail some kubelet, each in the kubelet's words with both values."""
    problems = []
    if not found.checksum_valid:
        problems.append(
            "checkpoint is corrupted: the stored checksum "
            f"{found.stored_checksum} does not match the content ({found.computed_checksum})"
        )
    if found.data_error is not None:
        problems.append(f"could not load v3 checkpoint: {found.data_error}")
    elif found.data_checksum_valid is False:
        problems.append(
            "could not load v3 checkpoint: checkpoint is corrupted: the stored dataChecksum "
            f"{found.stored_data_checksum} does not match data ({found.computed_data_checksum})"
        )
    problems.extend(message for kind, message in found.findings if kind == "v1-fields-differ")
    return problems


def _verify(path: Path, kubelet_version: str | None) -> int:
    text = _read_text(path)
    try:
        found = _engine.Inspection(text)
    except CheckpointCorruptedError as e:
        return _fail(path, str(e))
    if kubelet_version is not None:
        try:
            layout = found.accepted_as(kubelet_version)
        except CheckpointCorruptedError as e:
            computed = ""
            if e.stored_checksum is not None:
                computed = (
                    f": the stored {e.checksum_field} {e.stored_checksum} is not the one it "
                    f"computes ({e.computed_checksum})"
                )
            return _fail(
                path, f"kubelet {kubelet_version}: {e}{computed}; the file: {_checksums(found)}"
            )
        print(
            f"OK {path}: kubelet {kubelet_version} restores it as {layout}; "
            f"{_checksums(found)}, policy {found.policy_name}, {_counts(found)}"
        )
        return 0
    problems = _integrity_problems(found)
    if problems:
        return _fail(path, "; ".join(problems))
    print(
        printable(f"OK {path}: {_checksums(found)}, policy {found.policy_name}, {_counts(found)}")
    )
    return 0


# -- inspect --------------------------------------------------------------------------------


def inspect_text(text: str) -> _engine.Inspection:
    """Read a state file's text and check it (in the engine). Raises
    :class:`CheckpointCorruptedError` only when the text is not a checkpoint at all; a wrong
    checksum is one of the findings."""
    return _engine.Inspection(text)


#: Pods listed in the text view; the JSON lists them all.
_PODS_SHOWN = 50


def _size(n: int) -> str:
    # Exact units where possible: a reader compares these with kubelet flags like 1Gi.
    for unit, scale in (("Gi", _GIB), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n / _GIB:.2f}Gi" if n >= _GIB else str(n)


def _probe_config(path: Path) -> tuple[dict[str, Any], str]:
    """The policies and options the probe runs under: a state directory's recorded ones, else
    the defaults (a file alone does not say which the kubelet ran with)."""
    recorded = None
    source = "the defaults"
    if path.is_dir():
        try:
            recorded = load_recorded(path)
        except StateFileError as e:
            # Inspecting must keep working in a damaged directory; say why the defaults apply.
            source = f"the defaults ({e})"
    flags = recorded.flags if recorded is not None else {}

    def given(dest: str) -> Any:
        value = flags.get(dest)
        return DEFAULTS[dest] if value is None else value

    config = {
        "topology_policy": given("topology_policy"),
        "scope": given("scope"),
        "policy_options": parse_options(given("policy_option")),
        "memory_policy_options": parse_options(given("memory_policy_option")),
        "kubelet_version": given("kubelet_version"),
        "search": given("search"),
    }
    if recorded is not None:
        source = f"recorded in {recorded.path}"
    return config, source


def _fragmentation(
    found: _engine.Inspection, path: Path, probe: Pod, probe_text: str
) -> dict[str, Any]:
    """The fragmentation section as data; ``error`` instead of numbers when the file does not
    restore."""
    config, source = _probe_config(path)
    out: dict[str, Any] = {
        "probe": {r: q for c in probe.containers for r, q in c.requests.items() if r != "cpu"},
        "topologyPolicy": config["topology_policy"],
        "scope": config["scope"],
        "policyOptions": config["policy_options"],
        "memoryPolicyOptions": config["memory_policy_options"],
        "configuration": source,
    }
    try:
        f = Fragmentation.of_inspection(found, probe, config=config)
    except PodError as e:
        raise ConfigError(f"--probe {probe_text!r}: {e}") from e
    except PymmError as e:
        return {**out, "error": f"the file does not restore: {' '.join(str(e).split())}"}
    nodes = sorted(f.free_by_node)
    by_node = [
        {"node": n, "free": f.free_by_node[n], "stranded": f.stranded_by_node.get(n, 0)}
        for n in nodes
    ]
    return {
        **out,
        "fits": f.fits,
        "capped": f.capped,
        "free": f.free,
        "stranded": f.stranded,
        "byNode": by_node,
    }


def _print_fragmentation(con: Console, frag: Mapping[str, Any]) -> None:
    probe = ",".join(f"{r}={q}" for r, q in frag["probe"].items())
    options = {**frag["policyOptions"], **frag["memoryPolicyOptions"]}
    under = f"{frag['topologyPolicy']}, {frag['scope']} scope" + "".join(
        f", {k}={v}" for k, v in sorted(options.items())
    )
    heading = (
        f"[bold]Fragmentation[/] for probe {markup(probe)} under {markup(under)} "
        f"({markup(frag['configuration'])})"
    )
    if "error" in frag:
        con.print(f"{heading}: not computed, {markup(frag['error'])}", soft_wrap=True)
        return
    con.print(f"{heading}:", soft_wrap=True)
    fits = f"at least {frag['fits']}" if frag["capped"] else str(frag["fits"])
    con.print(
        f"  {fits} more such pods fit; then {_gib(frag['stranded'])} of the {_gib(frag['free'])} "
        "free is stranded (free, but no further pod of this shape can use it)",
        soft_wrap=True,
    )
    table = Table()
    for col in ("node", "free", "stranded"):
        table.add_column(col, justify="right")
    for row in frag["byNode"]:
        table.add_row(str(row["node"]), _gib(row["free"]), _gib(row["stranded"]))
    con.print(table)


def _gib(n: int) -> str:
    # Free memory left after many probes is rarely a round number: one decimal reads better
    # than 180429Mi.
    if n >= _GIB and n % _GIB:
        return f"{n / _GIB:.1f}Gi"
    return _size(n)


def _blocks_text(blocks: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{b['type']} {_size(b['size'])} on {','.join(map(str, b['numaAffinity'] or ())) or '-'}"
        for b in blocks
    )


def _inspect(path: Path, *, as_json: bool, probe: str) -> int:
    try:
        shape = probe_pod(probe)
    except PodError as e:
        raise ConfigError(f"--{e}") from e
    text = _read_text(path)
    try:
        found = inspect_text(text)
    except CheckpointCorruptedError as e:
        if as_json:
            print(json.dumps({"file": str(path), "error": str(e)}))
            return 1
        return _fail(path, str(e))
    frag = _fragmentation(found, path, shape, probe)
    if as_json:
        # The engine writes the JSON: a file with a million entries never becomes Python objects.
        print(found.to_json(indent=False, extra={"file": str(path), "fragmentation": frag}))
        return 1 if found.findings else 0

    # Rich assumes 80 columns when piped, which would cut numbers short; a log or pager
    # copes better with a wider table.
    con = stdout_console(highlight=False, width=None if sys.stdout.isatty() else 120)
    entries = f", {found.pod_entry_count} pod entries" if found.pod_entry_count else ""
    con.print(
        f"[bold]{markup(path)}[/]: {markup(_checksums(found))}, policy "
        f"{markup(found.policy_name)}, {found.pod_count} pods, "
        f"{found.container_count} containers{entries}",
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
            markup(row["resource"]),
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
                markup(resource),
                _size(sums["allocatable"]),
                _size(sums["reserved"]),
                _size(sums["free"]),
            )
    con.print(groups)
    _print_fragmentation(con, frag)

    pods = found.pod_rows(_PODS_SHOWN)
    if pods:
        more = found.pod_count - len(pods)
        title = "Pods" + (f" (the first {len(pods)}; --json lists all)" if more else "")
        table = Table(title=title)
        for col in ("pod", "container", "NUMA nodes", "blocks"):
            table.add_column(col)
        for pod in pods:
            for c in pod["containers"]:
                table.add_row(
                    markup(pod["podUID"]),
                    markup(c["name"]),
                    ",".join(map(str, c["numaNodes"])) or "-",
                    markup(_blocks_text(c["blocks"])),
                )
        con.print(table)
    else:
        con.print("no pods have memory assigned")
    pod_entries = found.pod_entry_rows(_PODS_SHOWN)
    if pod_entries:
        more = found.pod_entry_count - len(pod_entries)
        title = "Pod-level reservations (podEntries; their containers' blocks are slices)" + (
            f" (the first {len(pod_entries)}; --json lists all)" if more else ""
        )
        table = Table(title=title)
        for col in ("pod", "NUMA nodes", "blocks"):
            table.add_column(col)
        for row in pod_entries:
            table.add_row(
                markup(row["podUID"]),
                ",".join(map(str, row["numaNodes"])) or "-",
                markup(_blocks_text(row["blocks"])),
            )
        con.print(table)

    findings = found.findings
    if findings:
        con.print(f"[red]{len(findings)} inconsistencies:[/]")
        for _kind, message in findings[:_PODS_SHOWN]:
            con.print(f"  - {markup(message)}", soft_wrap=True)
        if len(findings) > _PODS_SHOWN:
            con.print(f"  ... and {len(findings) - _PODS_SHOWN} more (--json lists all)")
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
    ns.tolerate_drift = args.tolerate_drift
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
    found = None
    with contextlib.suppress(CheckpointCorruptedError):
        # Not a checkpoint at all: the restore below says so in the kubelet's words.
        found = _engine.Inspection(text)
    layout = f"state file: {_checksums(found)}" if found is not None else None
    try:
        notes = _restore(ns, machine, path, text, directory, args.tolerate_drift)
    except (StateError, ReservedMemoryError) as e:
        message = " ".join(str(e).split())
        print(f"would not start: {printable(message)}")
        details = getattr(e, "details", [])
        if details:
            print("differences (file vs. expected: this machine and reservation with the file's")
            print("assignments placed):")
        for line in details:
            print(f"  - {printable(line)}")
        print(f"advice: {printable(advice_for(e))}")
        if layout:
            print(printable(layout))
        return 1
    if args.sysfs:
        where = f"this machine (sysfs under {args.sysfs})"
    elif args.machine is None and recorded is not None:
        where = f"the recorded machine {machine.name or recorded.machine_source}"
    else:
        where = f"machine {machine.name or args.machine}"
    read_as = f", read as {found.accepted_as(ns.kubelet_version)}" if found is not None else ""
    print(
        printable(
            f"would start: {path} restores on {where} with policy {ns.memory_policy} "
            f"(kubelet {ns.kubelet_version}{read_as})"
        )
    )
    for note in notes:
        print(f"  beyond the kubelet, which would not start: {printable(note)}")
    if layout:
        print(printable(layout))
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
    given = {
        "memory_policy": ns.memory_policy,
        "topology_policy": "none",
        "kubelet_version": ns.kubelet_version,
        "reserved_memory": ns.reserved_memory,
        "tolerate_drift": tolerate_drift,
    }
    config = {k: v for k, v in given.items() if v is not None}
    return list(_engine.Engine(machine.to_dict(), config, text, str(path)).notes)


# -- convert --------------------------------------------------------------------------------


def _mode_of(path: Path, default: int) -> int:
    """The permission bits of an existing file (a converted file keeps them), else ``default``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return default


def _convert(args: argparse.Namespace) -> int:
    from pymm.statefile import LOCK_FILE_NAME, STATE_FILE_NAME, StateDirLock, atomic_write

    path = Path(args.file)
    source = path / STATE_FILE_NAME if path.is_dir() else path
    target = Path(args.output) if args.output else source
    lock = None
    if (target.parent / LOCK_FILE_NAME).exists():
        # A pymm state directory: a manager writing it meanwhile would undo the conversion.
        lock = StateDirLock(target.parent)
        lock.acquire()
    try:
        text = _read_text(source)
        try:
            found = _engine.Inspection(text)
        except CheckpointCorruptedError as e:
            return _fail(source, f"{e}; not a state file, nothing to convert")
        try:
            new, notes, checksum, data_checksum = found.convert(
                args.to,
                ignore_checksum=args.ignore_checksum,
                drop_pod_entries=args.drop_pod_entries,
            )
        except CheckpointCorruptedError as e:
            return _fail(
                source,
                f"{e} ({_checksums(found)}); refusing to convert it (--ignore-checksum converts "
                "it anyway, with fresh checksums)",
            )
        except ConfigError as e:
            if e.key != "drop-pod-entries":
                raise
            return _fail(source, f"{e}; refusing to convert it (--drop-pod-entries drops them)")
        if target == source and new == text.encode():
            print(f"unchanged {source}: already {args.to} ({_checksums(found)})")
            return 0
        atomic_write(target, new, mode=_mode_of(target, _mode_of(source, 0o600)))
    finally:
        if lock is not None:
            lock.release()
    where = str(source) if target == source else f"{source} to {target}"
    sums = f"checksum {checksum}" + (
        f", dataChecksum {data_checksum}" if data_checksum is not None else ""
    )
    kept = found.pod_entry_count if args.to != "v1" else 0
    entries = f", {kept} pod entries" if kept else ""
    print(
        f"converted {where}: {found.format} -> {args.to}; {sums}, policy {found.policy_name}, "
        f"{found.node_count} NUMA nodes, {found.pod_count} pods{entries}"
    )
    for note in notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m`
    from pymm.cli import main

    sys.exit(main(["state", *sys.argv[1:]]))
