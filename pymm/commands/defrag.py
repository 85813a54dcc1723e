"""``pymm defrag``: the fewest running pods to move (or evict) so that a pending pod fits, or
so that a node empties (see :mod:`pymm.defrag`); ``--apply`` carries the plan out durably."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from pymm.commands._options import add_manager_options, build_manager, load_cli_pods
from pymm.commands._output import console, fmt_bytes, markup
from pymm.commands.plan import _seconds
from pymm.defrag import DefragPlan
from pymm.errors import ConfigError, PodError
from pymm.manager import NodeUsage
from pymm.plan import DEFAULT_TIME_LIMIT

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "defrag",
        help="plan the fewest pod moves after which a pod fits (or a node empties)",
        description="Plan the fewest running pods of a state directory to move (stop, then "
        "admit again on other nodes) or, when no move makes room, to evict, in an order where "
        "each step is valid under the kubelet's rules, after which the pending pod fits "
        "(--for) or a node holds nothing (--free-node). Prints per-node usage before and after "
        "and the moves; --apply carries them out (and admits the pod) in one durable write. "
        "Exit 1 when no plan exists. Needs the HiGHS solver (pip install 'pymm[plan]').",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--for", dest="pod", metavar="POD.yaml", help="the pending pod")
    what.add_argument("--free-node", type=int, metavar="N", help="empty NUMA node N instead")
    add_manager_options(p, writes=True)
    p.add_argument("--apply", action="store_true", help="carry the plan out (needs --state-dir)")
    p.add_argument(
        "--time-limit",
        type=_seconds,
        default=DEFAULT_TIME_LIMIT,
        metavar="SECONDS",
        help=f"for the solver (default {DEFAULT_TIME_LIMIT:g})",
    )
    p.add_argument("--json", action="store_true", help='{"fits": ..., "moves": [...]}')
    p.set_defaults(func=run)


def _nodes(where: object) -> str:
    if not isinstance(where, dict) or not where:
        return "-"
    sets = {",".join(map(str, n)) for n in where.values()}
    return "NUMA " + " | ".join(sorted(sets))


def _usage_table(before: Sequence[NodeUsage], after: Sequence[NodeUsage]) -> Table:
    t = Table(title="NUMA memory reserved, before and after")
    for col in ("node", "resource", "allocatable", "before", "after"):
        t.add_column(col, justify="left" if col == "resource" else "right")
    now = {(u.node, u.resource): u for u in after}
    for u in before:
        if u.allocatable == 0:
            continue
        a = now.get((u.node, u.resource))
        t.add_row(
            str(u.node),
            u.resource,
            fmt_bytes(u.allocatable),
            f"{fmt_bytes(u.reserved)} ({100 * u.reserved / u.allocatable:.0f}%)",
            "-"
            if a is None
            else f"{fmt_bytes(a.reserved)} ({100 * a.reserved / a.allocatable:.0f}%)",
        )
    return t


def _print(plan: DefragPlan, target: str) -> None:
    con = console()
    if not plan.fits:
        con.print(f"[red]no plan[/]: {markup(target)} cannot be reached by moving or evicting pods")
        return
    con.print(_usage_table(plan.before, plan.after))
    if not plan.moves:
        con.print(f"{markup(target)}: nothing to move")
    if plan.moves and not plan.sequential:
        con.print("these pods must stop together: stop each in turn, then admit each again")
    for i, m in enumerate(plan.moves, 1):
        if m.target is None:
            con.print(f"{i}. evict {markup(m.pod)} (from {_nodes(m.source)})")
        else:
            con.print(f"{i}. move {markup(m.pod)}: {_nodes(m.source)} -> {_nodes(m.target)}")
    if plan.pending is not None:
        where = _nodes(plan.placement) if plan.placement else "where the kubelet puts it"
        con.print(f"then {markup(plan.pending)} fits: {where}")
    con.print(
        f"  {len(plan.moves) - plan.evictions} moves, {plan.evictions} evictions "
        f"({plan.status.lower() or 'no solver needed'})"
    )


def run(args: argparse.Namespace) -> int:
    if args.pod is None and args.free_node is None:
        raise ConfigError("expected --for POD.yaml (a pending pod) or --free-node N")
    if args.state_dir is None or not Path(args.state_dir).is_dir():
        where = "" if args.state_dir is None else f" ({args.state_dir} is not a directory)"
        raise ConfigError(
            f"--state-dir DIR is needed: the pods to move are the ones it runs{where}"
        )
    pending = None
    if args.pod is not None:
        pods = load_cli_pods(args.pod)
        if len(pods) != 1:
            raise PodError(f"{args.pod}: expected one pod, got {len(pods)}")
        pending = pods[0]
    with build_manager(args, read_only=not args.apply) as mm:
        plan = mm.defrag_plan(pending, free_node=args.free_node, time_limit=args.time_limit)
        if args.apply and plan.fits:
            mm.apply_defrag(plan)
    target = f"pod {pending.uid}" if pending is not None else f"emptying node {args.free_node}"
    if args.json:
        print(json.dumps(plan.to_json(), indent=1))
    else:
        _print(plan, target)
        if args.apply and plan.fits:
            console().print(f"applied to {markup(mm.state_path)}")
    return 0 if plan.fits else 1
