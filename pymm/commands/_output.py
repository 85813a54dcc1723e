"""What the manager commands print: admissions (JSON and text) and the per-node usage table."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pymm._text import printable
from pymm.manager import Admission, MemoryManager
from pymm.render import admission_json

__all__ = [
    "admission_json",
    "console",
    "fmt_bytes",
    "held_by",
    "markup",
    "print_admission",
    "printable",
    "stdout_console",
    "usage_table",
]


def markup(text: object) -> str:
    """A value for rich's markup: control and bidi characters escaped (a uid cannot forge an
    output line or reorder one), and rich's own ``[...]`` markup escaped too."""
    return escape(printable(str(text)))


_GIB = 2**30


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich would exit(1) on its own; pymm.cli.main ends every closed pipe the same way.
        raise BrokenPipeError


def stdout_console(**options: Any) -> Console:
    """A rich console on standard output that leaves a closed pipe to :func:`pymm.cli.main`."""
    return _Console(**options)


def console() -> Console:
    return stdout_console(highlight=False, soft_wrap=True)


def fmt_bytes(n: int) -> str:
    if n >= _GIB:
        return f"{n / _GIB:.2f} GiB"
    return f"{n / 2**20:.0f} MiB"


def held_by(mm: MemoryManager, a: Admission) -> set[str]:
    """The containers of an admitted pod that still hold memory in the state: an init
    container that ran before the app containers started has handed its memory back."""
    return set(mm.state.get("entries", {}).get(a.pod_uid, {}))


def print_admission(
    con: Console,
    a: Admission,
    why: str | None = None,
    held: Collection[str] | None = None,
    requested: Any = None,
) -> None:
    """One line per admission; a rejection keeps the kubelet's text intact on its line and
    adds ``why`` (pymm's explanation, :func:`pymm.explain.explain_rejection`) below it.

    With ``held`` (:func:`held_by`) and ``requested`` (the compiled pod), a finished init
    container is shown with what it asked for and as released: its block, shrunk by what
    later containers reuse, is no longer in the state."""
    if not a.admitted:
        con.print(
            f"[red]rejected[/] {markup(a.pod_uid)}: {markup(a.reason)}: {markup(a.message or '')}"
        )
        if why:
            con.print(f"    why: {markup(why)}")
        return
    parts = []
    for name, p in a.placements.items():
        if p.numa_nodes is None:
            parts.append(f"{name} -> any node (not Guaranteed or nothing requested)")
            continue
        if held is not None and requested is not None and name not in held:
            asked = ", ".join(f"{r} {fmt_bytes(n)}" for r, n in requested.requested(name).items())
            parts.append(f"{name} -> NUMA {p.cpuset_mems} ({asked}; released when it finished)")
            continue
        # An init container's block shrinks to 0 when later containers reuse its memory.
        sizes = ", ".join(
            f"{b.resource} {fmt_bytes(b.size) if b.size else 'reused by later containers'}"
            for b in p.blocks
        )
        parts.append(f"{name} -> NUMA {p.cpuset_mems} ({sizes})")
    con.print(f"[green]admitted[/] {markup(a.pod_uid)}: " + markup("; ".join(parts)))


def usage_table(mm: MemoryManager, title: str) -> Table:
    t = Table(title=title)
    for col in ("node", "group", "resource", "allocatable", "reserved", "free", "used"):
        t.add_column(col, justify="right" if col not in ("resource", "group") else "left")
    groups = mm.groups()
    for u in mm.usage():
        if u.total == 0:
            continue
        used = 100 * u.reserved / u.allocatable if u.allocatable else 0.0
        t.add_row(
            str(u.node),
            ",".join(map(str, groups.get(u.node, ()))),
            markup(u.resource),
            fmt_bytes(u.allocatable),
            fmt_bytes(u.reserved),
            fmt_bytes(u.free),
            f"{used:.0f}%",
        )
    return t
