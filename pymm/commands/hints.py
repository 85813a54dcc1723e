"""``pymm hints``: the memory manager's topology hints for the pods of a manifest.

By default a compact table: per pod and container, resources whose hint lists are identical
share a row, preferred node sets first, long lists cut with a count (an empty 16-node machine
has 65,535 hints per resource). ``--json`` prints every hint.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from pymm.commands._options import add_manager_options, build_manager, load_cli_pods
from pymm.commands._output import console, markup

__all__ = ["format_hints", "register", "run"]

#: Node sets shown per cell before the rest is counted.
SHOWN = 8

Hints = dict[str, list[dict[str, Any]] | None] | None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("hints", help="print the memory manager's topology hints for pods")
    p.add_argument("pod", metavar="POD.yaml", nargs="+", help="manifests ('-' for stdin)")
    add_manager_options(p)
    p.add_argument("--json", action="store_true", help="every hint, as JSON")
    p.set_defaults(func=run)


def _node_sets(hints: list[dict[str, Any]], preferred: bool) -> str:
    sets = [h["affinity"] for h in hints if h["preferred"] is preferred]
    if not sets:
        return "-"
    shown = " ".join("{" + ",".join(map(str, s)) + "}" for s in sets[:SHOWN])
    rest = len(sets) - SHOWN
    return f"{shown} … +{rest} more" if rest > 0 else shown


def format_hints(hints: Hints) -> list[tuple[str, str, str]]:
    """(resources, preferred node sets, other node sets) rows for one container's hints."""
    if hints is None:
        return [("-", "any node (no memory requested, or not Guaranteed)", "")]
    rows: list[tuple[str, str, str]] = []
    # Resources with the same list (memory and its hugepages usually) read as one row.
    groups: dict[str, list[str]] = {}
    for resource, hint_list in sorted(hints.items()):
        groups.setdefault(json.dumps(hint_list), []).append(resource)
    for key, resources in groups.items():
        hint_list = json.loads(key)
        names = ", ".join(resources)
        if hint_list is None:
            rows.append((names, "any node (no preference)", ""))
        elif not hint_list:
            rows.append((names, "none: no node set can hold the request", ""))
        else:
            rows.append((names, _node_sets(hint_list, True), _node_sets(hint_list, False)))
    return rows


def _table(result: dict[str, dict[str, Hints]]) -> Table:
    table = Table(title="Memory manager topology hints (node sets)")
    table.add_column("pod", overflow="fold")
    table.add_column("container", overflow="fold")
    table.add_column("resources", overflow="fold")
    table.add_column("preferred", overflow="fold")
    table.add_column("not preferred", overflow="fold")
    for uid, containers in result.items():
        for name, hints in containers.items():
            for resources, preferred, other in format_hints(hints):
                table.add_row(
                    markup(uid),
                    markup(name or "(pod scope)"),
                    markup(resources),
                    preferred,
                    other,
                )
    return table


def run(args: argparse.Namespace) -> int:
    pods = load_cli_pods(args.pod)
    # Hints change nothing: read the state without the lock (the directory may be read-only).
    with build_manager(args, read_only=True) as mm:
        out: dict[str, dict[str, Hints]] = {}
        for pod in pods:
            if args.scope == "pod":
                out[pod.uid] = {"": mm.hints(pod)}
            else:
                names = [c.name for c in (*pod.init_containers, *pod.containers)]
                out[pod.uid] = {c: mm.hints(pod, c) for c in names}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        console().print(_table(out))
    return 0
