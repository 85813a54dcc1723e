"""``pymm machines``: the embedded catalog of real machine topologies."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from pymm.commands._output import console, fmt_bytes, markup
from pymm.machine import Machine

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("machines", help="list the embedded machine catalog")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    machines = [Machine.from_catalog(n) for n in Machine.catalog_names()]
    if args.json:
        print(json.dumps([m.to_dict() for m in machines], indent=1))
        return 0
    t = Table(title="Embedded machine catalog")
    # The name is what a user types after --machine: never cut or wrapped, whatever the
    # terminal's width; the description folds instead.
    widest = max(len(m.name) for m in machines)
    t.add_column("name", no_wrap=True, min_width=widest)
    t.add_column("nodes", no_wrap=True)
    t.add_column("memory", no_wrap=True)
    t.add_column("kinds", overflow="fold", min_width=len("DRAM"))
    t.add_column("description", overflow="fold", min_width=12)
    for m in machines:
        total = sum(n.memory_bytes for n in m.nodes)
        kinds = "/".join(sorted({n.kind for n in m.nodes}))
        t.add_row(markup(m.name), str(len(m.nodes)), fmt_bytes(total), kinds, markup(m.description))
    console().print(t)
    return 0
