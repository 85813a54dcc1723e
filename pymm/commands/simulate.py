"""``pymm simulate``: replay one workload under several configurations and compare them."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pymm._plotting import pyplot
from pymm.errors import ConfigError, PodError
from pymm.pod import probe_pod
from pymm.simulate import MIXES, Workload, generate, load_scenario, run
from pymm.simulate.configs import DEFAULT_CONFIGS, KEYS, PRESETS, parse_configs
from pymm.simulate.report import fmt_bytes, plot, rejections_table, table, tiers_table
from pymm.simulate.workloads import BATCH_OVERLOAD, machine_by_name, offered_load

__all__ = ["register", "run_command"]

DEFAULT_WORKLOAD = "db-batch"
DEFAULT_EVENTS = 5000
#: Seconds the solver may take for one configuration's optimum (as ``pymm plan``'s default).
DEFAULT_TIME_LIMIT = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand to ``subparsers``."""
    p = subparsers.add_parser(
        "simulate",
        help="replay a workload under several configurations and compare placement",
        description="Replay one workload (a named mix or a replay scenario) on one machine "
        "under several configurations side by side, in memory, and report admissions, "
        "rejections, defragmentation moves, reserved and stranded memory, cross-NUMA "
        "placements and whether the final state file restores; with --batch, a static batch "
        "and the best placement of it beside each configuration. Exit 1 if a final state "
        "does not restore.",
    )
    src = p.add_argument_group("workload")
    src.add_argument(
        "--workload",
        metavar="NAME",
        help=f"a named mix: {', '.join(MIXES)} (default {DEFAULT_WORKLOAD}; --list shows them)",
    )
    src.add_argument("--scenario", metavar="FILE", help="a scenario file in the replay format")
    src.add_argument("--scenario-name", metavar="NAME", help="which scenario of FILE")
    src.add_argument("--events", metavar="N", help=f"events to generate ({DEFAULT_EVENTS})")
    src.add_argument("--seed", metavar="S", help="random seed of the mix (0)")
    src.add_argument(
        "--machine",
        metavar="M",
        help="catalog name, machine JSON file or gb200-like (default: the mix's machine)",
    )
    src.add_argument(
        "--batch",
        action="store_true",
        help="a static batch: the mix's arrivals without departures (--events of them, or as "
        f"many as ask for {BATCH_OVERLOAD:g}x the machine's memory), or the scenario's "
        "admissions; reports the optimum (pymm plan) beside each configuration",
    )
    src.add_argument(
        "--time-limit",
        metavar="S",
        help="with --batch: seconds the solver may take per configuration (10)",
    )
    src.add_argument("--list", action="store_true", help="describe the named mixes and exit")
    p.add_argument(
        "--config",
        action="append",
        metavar="LABEL:KEY=VALUE,...",
        help=f"a configuration to compare (repeatable); keys: {', '.join(KEYS)}; or a bare "
        f"name: {', '.join(PRESETS)}. Default: {', '.join(c.label for c in DEFAULT_CONFIGS)}",
    )
    p.add_argument(
        "--probe",
        metavar="QTY",
        help="probe shape for stranded memory: 8Gi (default) or memory=QTY,hugepages-SIZE=QTY",
    )
    p.add_argument("--samples", metavar="K", help="stranded-memory samples (200)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON ('-': stdout)")
    p.add_argument("--plot", metavar="OUT.png", help="plot utilisation, stranded memory, nodes")
    p.set_defaults(func=run_command)


def _count(value: str | None, flag: str, default: int, minimum: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected a whole number") from None
    if n < minimum:
        raise ConfigError(f"{flag} must be at least {minimum}, got {n}")
    return n


def _workload(args: argparse.Namespace) -> Workload:
    if args.time_limit is not None and not args.batch:
        raise ConfigError("--time-limit needs --batch (it limits the solver's optimum)")
    if args.scenario is None:
        if args.scenario_name is not None:
            raise ConfigError("--scenario-name needs --scenario FILE")
        events = (
            (None if args.events is None else _count(args.events, "--events", 0, 1))
            if args.batch
            else _count(args.events, "--events", DEFAULT_EVENTS, 1)
        )
        return generate(
            args.workload or DEFAULT_WORKLOAD,
            events,
            _count(args.seed, "--seed", 0, 0),
            args.machine,
            batch=args.batch,
        )
    given = [f for f in ("workload", "events", "seed", "machine") if getattr(args, f) is not None]
    if given:
        flag = "--" + given[0]
        raise ConfigError(f"{flag} does not apply to --scenario (the scenario holds its own)")
    return load_scenario(args.scenario, args.scenario_name, batch=args.batch)


def _seconds(value: str | None, flag: str, default: float) -> float:
    if value is None:
        return default
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected a number of seconds") from None
    if not (math.isfinite(x) and x > 0):
        raise ConfigError(f"{flag} must be more than 0 seconds, got {value}")
    return x


def _print_mixes(out: Console) -> None:
    for mix in MIXES.values():
        machine = mix.prepare(machine_by_name(mix.machine))
        capacity = sum(n.memory_bytes for n in machine.nodes)
        load = offered_load(mix)
        out.print(f"[bold]{mix.name}[/]: {mix.description}")
        out.print(
            f"  machine {machine.name} ({machine.summary()}); Poisson arrivals "
            f"{mix.rate_per_hour:g}/h; offered {fmt_bytes(load)} ({load / capacity:.0%} of memory)"
        )
        if mix.hugepages:
            pools = ", ".join(f"{n} x {size}" for size, n in mix.hugepages.items())
            out.print(f"  hugepages on every node with CPUs: {pools}")
        for k in mix.kinds:
            hp = "".join(f" + {min(g)}-{max(g)}Gi hugepages-{s}" for s, g in k.hugepages.items())
            out.print(
                f"  {k.name} {k.weight:.0%}: {k.cpu} CPUs, {min(k.memory_gi)}-{max(k.memory_gi)}Gi"
                f"{hp}; lifetime {k.lifetime}"
            )


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[int], None]]:
    columns = (
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not show) as bar:
        task = bar.add_task("simulate", total=total)
        yield lambda done: bar.update(task, completed=done)


def run_command(args: argparse.Namespace) -> int:
    # The main table needs about 120 columns, and 10 more for each column that a batch or a
    # defragmentation policy adds; a pipe or a file gets them too.
    extra = 2 * args.batch + 3 * any("defrag" in (c or "") for c in args.config or ())
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 120 + 10 * extra)
    if args.list:
        _print_mixes(out)
        return 0
    if args.plot:
        # Fail before the simulation, not after it.
        pyplot()
    workload = _workload(args)
    configs = parse_configs(args.config)
    try:
        probe = probe_pod(args.probe)
    except PodError as e:
        raise ConfigError(f"--{e}") from e
    samples = _count(args.samples, "--samples", 200, 1)
    time_limit = _seconds(args.time_limit, "--time-limit", DEFAULT_TIME_LIMIT)
    to_stdout = args.json == "-"
    show = sys.stderr.isatty() and not to_stdout
    with _progress(len(workload) * len(configs), show) as progress:
        result = run(
            workload,
            configs,
            probe=probe,
            samples=samples,
            progress=progress,
            time_limit=time_limit,
        )
    if to_stdout:
        print(result.to_json())
    else:
        out.print(f"[bold]{workload.name}[/]: {workload.description}")
        out.print(f"machine {workload.machine.name}: {workload.machine.summary()}")
        for c in result.configs:
            if c.restart_error is not None:
                out.print(
                    f"[bold]{c.label}[/]: stopped after {c.events_applied} of "
                    f"{len(workload)} events: the restart failed: {c.restart_error}"
                )
        for t in (table(result), rejections_table(result), tiers_table(result)):
            if t is not None:
                out.print(t)
    sys.stdout.flush()
    if args.json and not to_stdout:
        Path(args.json).write_text(result.to_json() + "\n")
        print(f"results in {args.json}", file=sys.stderr)
    if args.plot:
        plot(result, args.plot)
        print(f"plot in {args.plot}", file=sys.stderr)
    ok = all(c.final_state_valid and c.restart_error is None for c in result.configs)
    return 0 if ok else 1
