"""What ``pymm simulate`` shows: a rich table per run, and a plot (matplotlib, lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from pymm._plotting import pyplot
from pymm.simulate.core import ConfigResult, SimulationResult
from pymm.simulate.workloads import HOUR

__all__ = ["fmt_bytes", "plot", "rejections_table", "short_message", "table", "tiers_table"]

_GIB = 1 << 30


def fmt_bytes(n: float) -> str:
    if n >= 1024 * _GIB:
        return f"{n / (1024 * _GIB):.2f} TiB"
    return f"{n / _GIB:.1f} GiB"


def short_message(message: str) -> str:
    """A rejection message without the kubelet's wrapping ("Allocate failed due to
    [memorymanager] ..., which is unexpected"), which is the same on every such line."""
    text = message.removeprefix("Allocate failed due to ").removeprefix("[memorymanager] ")
    return text.removesuffix(", which is unexpected") or "(no message)"


def _top_reason(c: ConfigResult) -> str:
    if not c.rejected_by_reason:
        return "-"
    # Both of the kubelet's reasons end in "Error"; the column is narrower without it.
    reason = max(c.rejected_by_reason.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return reason.removesuffix("Error")


def _optimum(c: ConfigResult) -> str:
    o = c.optimum
    if o is None:
        return "-"
    if o.optimal:
        return f"{o.bound:,}"
    return f"{o.admitted:,}-{o.bound:,}"


def table(result: SimulationResult) -> Table:
    """One row per configuration, in the order they were given."""
    samples = len(result.configs[0].series.event) if result.configs else 0
    probe = ", ".join(f"{k}={v}" for k, v in result.probe.items())
    defrag = any(c.options.get("defrag") is not None for c in result.configs)
    batch = any(c.optimum is not None for c in result.configs)
    notes = []
    if defrag:
        notes.append(
            "defrag: rejections a defragmentation plan admitted (in admitted), moving "
            "(moved) and evicting (evicted) running pods"
        )
    if batch:
        notes.append(
            "optimum: the most pods a placement of the whole batch admits under the same "
            "rules (pymm plan; a range when the solver stopped before proving it); of optimum: "
            "admitted / its upper end"
        )
    t = Table(
        title=f"{result.workload} on {result.machine}: {result.events:,} events",
        caption="top reason: the most frequent rejection reason (…Error); reserved: share of "
        f"allocatable memory + hugepages over all events; stranded: "
        f"free memory no further {probe} probe can use ({samples} samples); "
        "valid: the final state file restores" + "".join(f"; {n}" for n in notes),
    )
    t.add_column("config", no_wrap=True)
    for name in ("admitted", "rejected"):
        t.add_column(name, justify="right")
    if batch:
        t.add_column("optimum", justify="right")
        t.add_column("of\noptimum", justify="right")
    if defrag:
        for name in ("defrag", "moved", "evicted"):
            t.add_column(name, justify="right")
    t.add_column("top reason", no_wrap=True)
    headers = ("cross-\nNUMA", "mean\ndistance", "reserved\nmean", "reserved\npeak")
    for name in (*headers, "stranded\nmean"):
        t.add_column(name, justify="right")
    t.add_column("valid")
    for c in result.configs:
        distance = f"{c.mean_numa_distance:.1f}" if c.mean_numa_distance is not None else "-"
        extra = []
        if batch:
            bound = c.optimum.bound if c.optimum is not None else 0
            share = f"{100 * c.admitted / bound:.0f}%" if bound else "-"
            extra += [_optimum(c), share]
        if defrag:
            extra += [f"{c.defragmented:,}", f"{c.moves:,}", f"{c.evictions:,}"]
        t.add_row(
            c.label,
            f"{c.admitted:,}",
            f"{c.rejected:,}",
            *extra,
            _top_reason(c),
            f"{c.cross_numa:,}",
            distance,
            f"{100 * c.mean_reserved_fraction:.1f}%",
            f"{100 * c.peak_reserved_fraction:.1f}%",
            fmt_bytes(c.mean_stranded_bytes),
            "yes" if c.final_state_valid else "[red]NO[/]",
        )
    return t


def rejections_table(result: SimulationResult) -> Table | None:
    """Rejections by message (the kubelet's wrapping cut off), one column per
    configuration; None when nothing was rejected."""
    totals: dict[str, int] = {}
    for c in result.configs:
        for message, n in c.rejected_by_message.items():
            totals[message] = totals.get(message, 0) + n
    if not totals:
        return None
    t = Table(title="rejections by message")
    t.add_column("message", overflow="fold", max_width=56)
    for c in result.configs:
        t.add_column(c.label, justify="right")
    for message in sorted(totals, key=lambda m: -totals[m]):
        counts = [f"{c.rejected_by_message.get(message, 0):,}" for c in result.configs]
        t.add_row(short_message(message), *counts)
    return t


def tiers_table(result: SimulationResult) -> Table | None:
    """Mean reserved bytes per memory tier; None on a machine with one tier."""
    tiers = sorted({t for c in result.configs for t in c.reserved_by_tier})
    if len(tiers) < 2:
        return None
    t = Table(title="mean reserved memory by tier")
    t.add_column("config", no_wrap=True)
    for tier in tiers:
        t.add_column(tier, justify="right")
    for c in result.configs:
        t.add_row(c.label, *(fmt_bytes(c.reserved_by_tier.get(tier, 0.0)) for tier in tiers))
    return t


def plot(result: SimulationResult, path: str | Path) -> None:
    """Reserved share and stranded memory over time (one line per configuration), and below
    them a heat map per configuration of each node's reserved share over time."""
    plt = pyplot()
    k = len(result.configs)
    fig = plt.figure(figsize=(15, 4 + 1.8 * k), dpi=100, layout="constrained")
    grid = fig.add_gridspec(1 + k, 3, height_ratios=[2.2] + [1] * k)
    used, strand = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    pods = fig.add_subplot(grid[0, 2])
    for c in result.configs:
        hours = c.series.time / HOUR
        used.plot(hours, 100 * c.series.reserved_fraction, label=c.label)
        strand.plot(hours, c.series.stranded_bytes / _GIB, label=c.label)
        (line,) = pods.plot(hours, c.series.admitted, label=f"{c.label} admitted")
        if c.moves:
            pods.plot(
                hours, c.series.moves, linestyle="--", color=line.get_color(), label="  moved"
            )
    used.set(title="reserved memory", xlabel="hours", ylabel="% of allocatable", ylim=(0, 100))
    probe = ", ".join(f"{r}={q}" for r, q in result.probe.items())
    strand.set(title=f"stranded for a {probe} probe", xlabel="hours", ylabel="GiB")
    pods.set(title="pods admitted (and moved) so far", xlabel="hours", ylabel="pods")
    for ax in (used, strand, pods):
        ax.legend(fontsize=8)
    image: Any = None
    for i, c in enumerate(result.configs):
        ax = fig.add_subplot(grid[1 + i, :])
        s = c.series
        extent = (s.time[0] / HOUR, s.time[-1] / HOUR, len(result.node_ids) - 0.5, -0.5)
        image = ax.imshow(
            s.node_reserved_fraction.T,
            aspect="auto",
            interpolation="nearest",
            extent=extent,
            vmin=0.0,
            vmax=1.0,
            cmap="viridis",
        )
        step = max(1, len(result.node_ids) // 8)
        ax.set_yticks(range(0, len(result.node_ids), step))
        ax.set_yticklabels([str(n) for n in result.node_ids[::step]])
        ax.set(ylabel="node", title=f"{c.label}: reserved share per node")
        if i == k - 1:
            ax.set_xlabel("hours")
    if image is not None:
        fig.colorbar(image, ax=fig.axes[3:], label="reserved share", shrink=0.9)
    fig.suptitle(f"{result.workload} on {result.machine}, {result.events:,} events")
    fig.savefig(path)
    plt.close(fig)
