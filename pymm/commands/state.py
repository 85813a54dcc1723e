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
import errno
import json
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

_TABLE_FIELDS = ("total", "systemReserved", "allocatable", "reserved", "free")

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
        help=f"whose startup validation to apply (default {DEFAULTS['kubelet_version']}; 1.26 "
        "compares free/reserved per node)",
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


def run(args: argparse.Namespace) -> int:
    action: str = args.state_action
    if action == "verify":
        return _verify(Path(args.file))
    if action == "inspect":
        return _inspect(Path(args.file), as_json=args.json, probe=args.probe)
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


def _verify(path: Path) -> int:
    text = _read_text(path)
    try:
        found = _engine.Inspection(text)
    except CheckpointCorruptedError as e:
        return _fail(path, str(e))
    if not found.checksum_valid:
        return _fail(
            path,
            "checkpoint is corrupted: the stored checksum "
            f"{found.stored_checksum} does not match the content ({found.computed_checksum})",
        )
    print(
        printable(
            f"OK {path}: policy {found.policy_name}, checksum {found.stored_checksum}, "
            f"{found.node_count} NUMA nodes, {found.pod_count} pods"
        )
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
    status = (
        "valid"
        if found.checksum_valid
        else f"[red]MISMATCH[/] (content: {found.computed_checksum})"
    )
    con.print(
        f"[bold]{markup(path)}[/]: policy {markup(found.policy_name)}, "
        f"checksum {found.stored_checksum} ({status}), {found.pod_count} pods, "
        f"{found.container_count} containers",
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
                blocks = ", ".join(
                    f"{b['type']} {_size(b['size'])} on "
                    f"{','.join(map(str, b['numaAffinity'] or ())) or '-'}"
                    for b in c["blocks"]
                )
                table.add_row(
                    markup(pod["podUID"]),
                    markup(c["name"]),
                    ",".join(map(str, c["numaNodes"])) or "-",
                    markup(blocks),
                )
        con.print(table)
    else:
        con.print("no pods have memory assigned")

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
        return 1
    if args.sysfs:
        where = f"this machine (sysfs under {args.sysfs})"
    elif args.machine is None and recorded is not None:
        where = f"the recorded machine {machine.name or recorded.machine_source}"
    else:
        where = f"machine {machine.name or args.machine}"
    print(
        printable(
            f"would start: {path} restores on {where} with policy {ns.memory_policy} "
            f"(kubelet {ns.kubelet_version})"
        )
    )
    for note in notes:
        print(f"  beyond the kubelet, which would not start: {printable(note)}")
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


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m`
    from pymm.cli import main

    sys.exit(main(["state", *sys.argv[1:]]))
