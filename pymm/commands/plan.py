"""``pymm plan``: place a batch of pods at once with an exact solver, beside the kubelet's
sequential admission of the same pods (see :mod:`pymm.plan`). Nothing is written."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from pymm import _engine
from pymm.commands._options import (
    add_manager_options,
    build_manager,
    load_cli_pods,
    parse_options,
)
from pymm.commands._output import console, fmt_bytes, markup
from pymm.errors import ConfigError, ScenarioError
from pymm.machine import Machine
from pymm.manager import MemoryManager
from pymm.plan import DEFAULT_TIME_LIMIT, Plan, kubelet_admissions

__all__ = ["load_scenario_batch", "register", "run"]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "plan",
        help="place a batch of pods at once with an exact solver, beside the kubelet's result",
        description="Place the pods of a manifest (or a scenario's admits) at once, to admit "
        "as many as the kubelet's rules allow (then as much memory), on top of what a state "
        "directory runs; the kubelet's sequential admission of the same pods is shown beside "
        "it. Nothing is written. Needs the HiGHS solver (pip install 'pymm[plan]').",
    )
    p.add_argument("pod", metavar="PODS.yaml", nargs="?", help="the batch ('-' for stdin)")
    add_manager_options(p)
    p.add_argument("--scenario", metavar="FILE", help="the batch is this scenario's admits")
    p.add_argument("--scenario-name", metavar="NAME", help="which scenario of FILE")
    p.add_argument(
        "--time-limit",
        type=_seconds,
        default=DEFAULT_TIME_LIMIT,
        metavar="SECONDS",
        help=f"for the solver (default {DEFAULT_TIME_LIMIT:g}); past it, the best plan found "
        "and its proven bound",
    )
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(func=run)


def _pick(names: Sequence[str], path: str, name: str | None) -> int:
    if name is None:
        if len(names) != 1:
            raise ScenarioError(
                f"{path} holds {len(names)} scenarios; pick one with --scenario-name"
                + (f" (e.g. {names[0]!r})" if names else "")
            )
        return 0
    if name not in names:
        raise ScenarioError(f"{path}: no scenario {name!r} (it has {', '.join(names)})")
    return names.index(name)


def load_scenario_batch(
    args: argparse.Namespace,
) -> tuple[MemoryManager, list[_engine.Pod], dict[str, Any]]:
    """The manager a scenario describes (its machine, reservation and policies, as the engine
    decodes them; policy flags given on the command line override them) and its admits in
    order, with their fake hints."""
    from pymm.replay import load_scenarios

    scenarios = load_scenarios(args.scenario)
    index = _pick(scenarios.names, args.scenario, args.scenario_name)
    machine, config = scenarios.setup(index, args.kubelet_version)
    for key, value in (("topology_policy", args.topology_policy), ("scope", args.scope)):
        if value is not None:
            config[key] = value
    for key, flag, given in (
        ("policy_options", "--policy-option", args.policy_option),
        ("memory_policy_options", "--memory-policy-option", args.memory_policy_option),
    ):
        if given:
            config[key] = {**(config.get(key) or {}), **parse_options(given, flag)}
    name = scenarios.names[index]
    mm = MemoryManager(Machine.from_dict({**machine, "name": name}), **config)
    pods: list[_engine.Pod] = []
    hints: dict[str, Any] = {}
    for pod, fake in scenarios.admits(index):
        pods.append(pod)
        if fake is not None:
            hints[pod.uid] = fake
    if not pods:
        raise ScenarioError(f"scenario {name!r} admits no pod: nothing to plan")
    return mm, pods, hints


def _nodes(where: Mapping[str, Sequence[int]] | None) -> str:
    if where is None:
        return "rejected"
    sets = {",".join(map(str, n)) for n in where.values()}
    if not sets:
        return "admitted (no NUMA pinning)"
    return "NUMA " + " | ".join(sorted(sets))


def _table(pods: Sequence[Any], kubelet: Sequence[Any], best: Plan) -> Table:
    t = Table(title="Batch placement: the kubelet (in order) and the plan")
    for col in ("pod", "kubelet", "plan"):
        t.add_column(col, overflow="fold")
    for pod, k in zip(pods, kubelet, strict=True):
        theirs = {n: p for n, p, _ in k.placements if p is not None} if k.admit else None
        ours: Mapping[str, Sequence[int]] | None = None
        if pod.uid not in best.rejected:
            ours = best.placements.get(pod.uid, {})
        t.add_row(markup(pod.uid), markup(_nodes(theirs)), markup(_nodes(ours)))
    return t


def run(args: argparse.Namespace) -> int:
    if args.scenario is None and args.scenario_name is not None:
        raise ConfigError("--scenario-name applies only with --scenario FILE")
    pods: Sequence[Any]
    if args.scenario is not None:
        if args.pod is not None:
            raise ConfigError("give the batch as PODS.yaml or as --scenario FILE, not both")
        for flag, given in (
            ("--machine", args.machine),
            ("--sysfs", args.sysfs),
            ("--state-dir", args.state_dir),
            ("--reserved-memory", args.reserved_memory),
            ("--hugepages", args.hugepages),
        ):
            if given is not None:
                raise ConfigError(f"{flag} conflicts with --scenario: the scenario brings its own")
        mm, pods, hints = load_scenario_batch(args)
    else:
        if args.pod is None:
            raise ConfigError("expected the batch: PODS.yaml, or --scenario FILE")
        pods = load_cli_pods(args.pod)
        hints = {}
        mm = build_manager(args, read_only=True)
    with mm:
        best = mm.plan(pods, hints=hints, time_limit=args.time_limit, compare=False)
        kubelet = kubelet_admissions(mm.engine, pods, hints)
    best = best.with_kubelet(sum(k.admit for k in kubelet))
    if args.json:
        print(json.dumps(best.to_json(), indent=1))
        return 0
    con = console()
    con.print(_table(pods, kubelet, best))
    n = len(pods)
    proof = "optimal" if best.optimal else f"the optimum is at most {best.bound} (proven)"
    con.print(
        f"  plan:    {best.admitted}/{n} admitted, {fmt_bytes(best.memory)} placed; {proof}; "
        f"solver {best.status.lower()} in {best.seconds:.2f} s"
    )
    con.print(f"  kubelet: {best.kubelet_admitted}/{n} admitted (one after another, in order)")
    return 0
