"""``pymm replay``: replay admission scenarios in the kubelet-oracle format."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from pymm.replay import compare_results, load_scenarios, replay

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("replay", help="replay admission scenarios (SCENARIOS.md format)")
    p.add_argument("scenarios", metavar="SCENARIOS.json")
    p.add_argument("-o", "--output", metavar="RESULTS.json")
    p.add_argument(
        "--kubelet-version",
        default=None,
        help="behaviour for scenarios that name none: 'latest' (default) or '1.26'",
    )
    p.add_argument(
        "--compare",
        metavar="REFERENCE.json",
        help="compare with reference results; exit 1 on any difference",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.scenarios)
    with Progress(console=Console(stderr=True), transient=True, disable=args.output is None) as bar:
        task = bar.add_task("replaying", total=len(scenarios))
        results = replay(scenarios, args.kubelet_version, lambda i: bar.update(task, completed=i))
    text = json.dumps(results, indent=1)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"{len(scenarios)} scenarios replayed; results in {args.output}", file=sys.stderr)
    else:
        print(text)
    if args.compare:
        ref = json.loads(Path(args.compare).read_text())
        diffs = compare_results(results, ref)
        for d in diffs:
            print(f"DIFF {d}", file=sys.stderr)
        n = len(results["results"])
        print(
            f"compared with {args.compare}: {n - len({d.split(':')[0] for d in diffs})}/{n} "
            f"scenarios identical",
            file=sys.stderr,
        )
        return 1 if diffs else 0
    return 0
