"""``pymm replay``: replay admission scenarios in the kubelet-oracle format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from pymm import _engine
from pymm.commands._options import KUBELET_VERSIONS
from pymm.replay import load_results, load_scenarios, replay_results

__all__ = ["register", "run", "summary"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("replay", help="replay admission scenarios (SCENARIOS.md format)")
    p.add_argument(
        "scenarios",
        metavar="SCENARIOS.json",
        help="scenarios ({'scenarios': [...]}, or results that embed them); .json or .json.gz",
    )
    p.add_argument("-o", "--output", metavar="RESULTS.json")
    p.add_argument(
        "--kubelet-version",
        default=None,
        choices=KUBELET_VERSIONS,
        help="behaviour for scenarios that name none: 'latest' (default) or '1.26'",
    )
    p.add_argument(
        "--compare",
        metavar="REFERENCE.json",
        help="compare with reference results; exit 1 on any difference",
    )
    p.set_defaults(func=run)


def summary(results: _engine.ReplayResults) -> str:
    """Scenarios, operations, admitted and rejected pods of a replay, in one phrase."""
    runs, ops, admitted, rejected, setup = results.counts
    text = f"{runs} scenarios, {ops} ops, {admitted} admitted, {rejected} rejected"
    return text + (f", {setup} refused at setup" if setup else "")


def run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.scenarios)
    reference = load_results(args.compare) if args.compare else None
    # A bar only where someone watches: with -o on a terminal (it would litter a log).
    show = args.output is not None and sys.stderr.isatty()
    with Progress(console=Console(stderr=True), transient=True, disable=not show) as bar:
        task = bar.add_task("replaying", total=len(scenarios))
        results = replay_results(
            scenarios, args.kubelet_version, lambda i: bar.update(task, completed=i)
        )
    text = results.to_json(indent=1)
    line = f"pymm: replayed {summary(results)}"
    if args.output:
        Path(args.output).write_text(text + "\n")
        line += f"; results in {args.output}"
    else:
        print(text)
    diffs: list[str] = []
    if reference is not None:
        diffs = results.compare(reference)
        for d in diffs:
            print(f"DIFF {d}", file=sys.stderr)
        differing = len({d.split(":")[0].split(" op ")[0] for d in diffs})
        line += (
            f"; compared with {args.compare}: {len(diffs)} differences in {differing} of "
            f"{results.counts[0]} scenarios"
        )
    print(line, file=sys.stderr)
    return 1 if diffs else 0
