"""``pymm bench``: time admissions from 2 to 128 NUMA nodes, print a table, optionally write
JSON and a plot against the kubelet's published numbers (scenarios in :mod:`pymm._bench.suite`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pymm._plotting import pyplot
from pymm.commands._output import stdout_console
from pymm.errors import PymmError

if TYPE_CHECKING:
    from pymm._bench.suite import Row

__all__ = ["plot", "register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "bench",
        help="time admissions on 2 to 128 NUMA nodes (about a minute; --quick: seconds)",
        description="Time one admission on machines of 2 to 128 NUMA nodes with pods already "
        "placed (released after each timing), hint generation, and an admit+remove replay. "
        "Every result is checked before it is timed.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a few seconds")
    parser.add_argument("--output", metavar="RESULTS.json", help="write the rows as JSON")
    parser.add_argument(
        "--plot",
        metavar="IMAGE.png",
        help="plot the median admission time against the node count (needs matplotlib)",
    )
    parser.set_defaults(func=run)


def _table(rows: list[Row], quick: bool) -> Table:
    table = Table(title=f"pymm bench{' --quick' if quick else ''}: one admission, from Python")
    table.add_column("case", overflow="fold")
    for column in ("nodes", "shape", "mode", "median µs", "p90 µs", "rounds"):
        table.add_column(column, justify="left" if column in ("shape", "mode") else "right")
    for row in rows:
        table.add_row(
            row["case"],
            str(row["nodes"]),
            row["shape"],
            row["mode"],
            f"{row['median_us']:,.1f}",
            f"{row['p90_us']:,.1f}",
            str(row["rounds"]),
        )
    return table


def plot(rows: list[Row], path: Path) -> None:
    """Median admission time against NUMA node count, one line per shape, log scales, with
    the kubelet's published reference points as markers."""
    from pymm._bench.suite import KUBELET_PUBLISHED_US, SHAPES

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colours = {"memory": "tab:blue", "memory+hugepages": "tab:orange"}
    for shape in SHAPES:
        points = sorted(
            (r["nodes"], r["median_us"])
            for r in rows
            if r["shape"] == shape and r["case"].startswith("admit")
        )
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", color=colours[shape], label=f"pymm, {shape}")
        for x, y in points:
            if x == 34 and shape == "memory":
                # The 34-node point is a different machine; say so where it is drawn.
                ax.annotate(
                    "GB200-like",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, -16),
                    ha="center",
                    fontsize=8,
                )
            if x in KUBELET_PUBLISHED_US[shape]:
                # Our time next to the kubelet's, so the gap reads without the y axis.
                ax.annotate(
                    _duration(y),
                    (x, y),
                    textcoords="offset points",
                    xytext=(8, 6 if shape == "memory+hugepages" else -12),
                    fontsize=8,
                    color=colours[shape],
                )
        ref = sorted(KUBELET_PUBLISHED_US[shape].items())
        ax.plot(
            [x for x, _ in ref],
            [y for _, y in ref],
            linestyle="none",
            marker="X",
            markersize=10,
            color=colours[shape],
            label=f"kubelet (published), {shape}",
        )
        for x, y in ref:
            ax.annotate(
                _duration(y),
                (x, y),
                textcoords="offset points",
                xytext=(8, -3),
                fontsize=8,
                color=colours[shape],
            )
    ax.set_xscale("log", base=2)
    ticks = sorted({r["nodes"] for r in rows if r["case"].startswith("admit")})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_ylim(bottom=1)
    ax.set_xlabel("NUMA nodes")
    ax.set_ylabel("median admission time (µs, log scale)")
    ax.set_title("One Guaranteed-pod admission with pods already placed")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    # The two sets of numbers come from different hardware; the reader should know.
    fig.text(
        0.01,
        0.01,
        "pymm: this machine, from Python. kubelet: its reference benchmark's published "
        "results (Go, other hardware). 34 nodes: GB200-like tray, modelled.",
        fontsize=7,
        color="dimgray",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def _duration(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:g} s"
    if us >= 1e3:
        return f"{us / 1e3:g} ms"
    return f"{us:.3g} µs"


def run(args: argparse.Namespace) -> int:
    """Run the suite; print the table; write JSON and the plot if asked. Exit status 0."""
    # Imported here so that no other command (nor ``import pymm``) loads the benchmark suite.
    from pymm._bench.suite import KUBELET_PUBLISHED_US, run_suite

    if args.plot:
        # Fail before a minute of timing, not after it.
        pyplot()
    err = Console(file=sys.stderr)
    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def progress(done: int, total: int, case: str) -> None:
            bar.update(task, completed=done, total=total, description=case)

        try:
            rows = run_suite(quick=args.quick, progress=progress)
        except AssertionError as exc:
            # A wrong answer is not a timing: report it (one line) instead of a table.
            raise PymmError(f"benchmark check failed: {exc}") from exc
    # Rich wraps at 80 columns when not on a terminal; the table reads best unwrapped.
    out = stdout_console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    out.print(_table(rows, args.quick))
    if args.output:
        doc = {"quick": args.quick, "rows": rows, "kubelet_published_us": KUBELET_PUBLISHED_US}
        Path(args.output).write_text(json.dumps(doc, indent=1) + "\n")
        err.print(f"results written to {args.output}")
    if args.plot:
        plot(rows, Path(args.plot))
        err.print(f"plot written to {args.plot}")
    return 0
