"""``pymm replay``: replay admission scenarios in the kubelet-oracle format."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from pymm import _engine
from pymm.commands._options import KUBELET_VERSIONS
from pymm.replay import load_reference, load_scenarios, replay_each

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
        help="behaviour for scenarios that name none: '1.38' (the default), '1.32', '1.26' or "
        "'latest' (the newest); with --compare, the kubelet the reference's meta names",
    )
    p.add_argument(
        "--compare",
        metavar="REFERENCE.json",
        help="compare with reference results; exit 1 on any difference",
    )
    p.set_defaults(func=run)


def summary(counts: Sequence[int]) -> str:
    """Scenarios, operations, admitted and rejected pods of a replay, in one phrase."""
    runs, ops, admitted, rejected, setup = counts
    text = f"{runs} scenarios, {ops} ops, {admitted} admitted, {rejected} rejected"
    return text + (f", {setup} refused at setup" if setup else "")


def run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.scenarios)
    reference = load_reference(args.compare) if args.compare else None
    if args.kubelet_version is None and reference is not None:
        # Compared with a kubelet's results, the replay is that kubelet's.
        args.kubelet_version = reference.kubelet_version
    # A bar only where someone watches: with -o on a terminal (it would litter a log).
    show = args.output is not None and sys.stderr.isatty()
    counts = [0, 0, 0, 0, 0]
    diffs: list[str] = []
    names: list[str] = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(Path(args.output).open("w")) if args.output else sys.stdout
        bar = stack.enter_context(
            Progress(console=Console(stderr=True), transient=True, disable=not show)
        )
        task = bar.add_task("replaying", total=len(scenarios))
        meta = json.dumps(_engine.Scenarios.meta(args.kubelet_version), indent=1)
        out.write('{\n "meta": ' + meta.replace("\n", "\n ") + ',\n "results": [\n')

        # Each scenario's results are written and compared as soon as they are done, so the
        # replay holds one scenario's results at a time, whatever the file's size.
        def each(i: int, r: _engine.ReplayResults) -> None:
            out.write((",\n" if i else "") + r.to_json(indent=1))
            counts[:] = [a + b for a, b in zip(counts, r.counts, strict=True)]
            names.append(r.name or "")
            if reference is not None:
                diffs.extend(r.compare(reference))
            bar.update(task, completed=i + 1)

        replay_each(scenarios, each, args.kubelet_version)
        out.write("\n ]\n}\n")
    line = f"pymm: replayed {summary(counts)}"
    if args.output:
        line += f"; results in {args.output}"
    if reference is not None:
        diffs.extend(reference.missing(names))
        for d in diffs:
            print(f"DIFF {d}", file=sys.stderr)
        differing = len({d.split(":")[0].split(" op ")[0] for d in diffs})
        line += (
            f"; compared with {args.compare}: {len(diffs)} differences in {differing} of "
            f"{counts[0]} scenarios"
        )
    print(line, file=sys.stderr)
    return 1 if diffs else 0
