"""``pymm topology``: show the NUMA topology discovered from sysfs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.table import Table

from pymm._text import printable
from pymm.commands._output import markup, stdout_console
from pymm.errors import PymmError
from pymm.sysfs import MEMORY_KIND_RULE, discover

__all__ = ["register", "run"]

_GIB = 1 << 30


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``topology`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "topology",
        help="show the NUMA topology of this machine (or of a sysfs tree)",
        description="Discover NUMA nodes, memory kinds, hugepages, tiers and distances from sysfs.",
    )
    parser.add_argument(
        "--sysfs",
        metavar="ROOT",
        default="/",
        help="directory containing sys/devices/system/node (default: /)",
    )
    parser.add_argument("--json", action="store_true", help="print the machine dict as JSON")
    parser.set_defaults(func=run)


def _hugepages_cell(pools: list[dict[str, int]]) -> str:
    if not pools:
        return "-"
    parts = []
    for pool in pools:
        kib = pool["page_size_kib"]
        size = f"{kib // (1 << 20)}G" if kib >= 1 << 20 else f"{kib // 1024}M"
        parts.append(f"{pool['num_pages']}x{size}")
    return " ".join(parts)


def _table(machine: dict[str, Any]) -> Table:
    table = Table(title=markup(f"{machine['name']}: {machine['description']}"))
    for column in ("node", "kind", "cpus", "memory GiB", "hugepages", "tier", "distances"):
        # Fold rather than truncate: a cut-off cpulist or distance row would be misleading.
        table.add_column(
            column,
            justify="right" if column in ("node", "memory GiB") else "left",
            overflow="fold",
        )
    distances = machine["distances"]
    for index, node in enumerate(machine["nodes"]):
        cpus = f"{node['cpus']} ({node['cpulist']})" if node["cpus"] else "0"
        table.add_row(
            str(node["id"]),
            markup(f"{node['kind']}: {node['kind_reason']}"),
            markup(cpus),
            f"{node['memory_bytes'] / _GIB:.1f}",
            _hugepages_cell(node["hugepages"]),
            "-" if node["tier"] is None else str(node["tier"]),
            "?" if distances is None else " ".join(str(d) for d in distances[index]),
        )
    return table


def run(args: argparse.Namespace) -> int:
    """Print the topology under ``args.sysfs``; return the process exit status."""
    try:
        machine = discover(args.sysfs)
    except (PymmError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"pymm: error: {printable(message)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(machine, indent=2))
        return 0
    console = stdout_console(file=sys.stdout)
    console.print(_table(machine))
    console.print(MEMORY_KIND_RULE, soft_wrap=True, markup=False, highlight=False)
    return 0
