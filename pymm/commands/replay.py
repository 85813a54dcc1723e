"""``pymm replay``: replay admission scenarios in the kubelet-oracle format."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from pymm.commands._options import KUBELET_VERSIONS
from pymm.errors import ScenarioError
from pymm.replay import compare_results, load_scenarios, replay

__all__ = ["register", "run", "summary"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("replay", help="replay admission scenarios (SCENARIOS.md format)")
    p.add_argument("scenarios", metavar="SCENARIOS.json")
    p.add_argument("-o", "--output", metavar="RESULTS.json")
    p.add_argument(
        "--kubelet-version",
        default=None,
        choices=KUBELET_VERSIONS,
        help="behaviour for scenarios that name none: 'latest' (= '1.32', default), '1.38' or "
        "'1.26'",
    )
    p.add_argument(
        "--compare",
        metavar="REFERENCE.json",
        help="compare with reference results; exit 1 on any difference",
    )
    p.set_defaults(func=run)


def _reference(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, RecursionError) as e:
        raise ScenarioError(f"--compare {path}: not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ScenarioError(f"--compare {path}: expected an object with a list 'results'")
    return data


def summary(results: Mapping[str, Any]) -> str:
    """Scenarios, operations, admitted and rejected pods of a replay, in one phrase."""
    runs = results["results"]
    ops = [r for run in runs for r in run["results"]]
    admitted = sum(1 for r in ops if r.get("admit") is True)
    rejected = sum(1 for r in ops if r.get("admit") is False)
    setup = sum(1 for run in runs if run.get("setupError") is not None)
    text = f"{len(runs)} scenarios, {len(ops)} ops, {admitted} admitted, {rejected} rejected"
    return text + (f", {setup} refused at setup" if setup else "")


def run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.scenarios)
    # A bar only where someone watches: with -o on a terminal (it would litter a log).
    show = args.output is not None and sys.stderr.isatty()
    with Progress(console=Console(stderr=True), transient=True, disable=not show) as bar:
        task = bar.add_task("replaying", total=len(scenarios))
        results = replay(scenarios, args.kubelet_version, lambda i: bar.update(task, completed=i))
    text = json.dumps(results, indent=1)
    line = f"pymm: replayed {summary(results)}"
    if args.output:
        Path(args.output).write_text(text + "\n")
        line += f"; results in {args.output}"
    else:
        print(text)
    diffs: list[str] = []
    if args.compare:
        ref = _reference(args.compare)
        diffs = compare_results(results, ref)
        for d in diffs:
            print(f"DIFF {d}", file=sys.stderr)
        differing = len({d.split(":")[0] for d in diffs})
        line += (
            f"; compared with {args.compare}: {len(diffs)} differences in {differing} of "
            f"{len(results['results'])} scenarios"
        )
    print(line, file=sys.stderr)
    return 1 if diffs else 0
