"""``pymm resize``: resize admitted pods in place, as the kubelet answers or (with
``--memory-policy-option resize-in-place=true``) beyond it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pymm.commands._options import add_manager_options, build_manager, load_cli_pods
from pymm.commands._output import console, fmt_bytes, markup, usage_table
from pymm.errors import PymmError
from pymm.manager import Resize

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "resize",
        help="resize admitted pods in place: each manifest is a pod as desired (same uid and "
        "containers, new cpu or memory)",
        description="Resize admitted pods in place. By default the answer is the 1.38 "
        "kubelet's: a memory resize of a Guaranteed pod under the Static policy is "
        "Infeasible unless --feature-gates InPlacePodVerticalScalingExclusiveMemory=true, and "
        "then the memory manager re-pins nothing. With --memory-policy-option "
        "resize-in-place=true pymm grows or shrinks the reservation on its nodes, or extends "
        "its group to unused nodes; it refuses (Deferred or Infeasible) with the reason "
        "otherwise. Exit 0 when every resize was admitted, 1 otherwise.",
    )
    p.add_argument(
        "pod", metavar="POD.yaml", nargs="+", help="manifests of the pods as desired ('-': stdin)"
    )
    add_manager_options(p, writes=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no usage table")
    p.set_defaults(func=run)


def _as_json(r: Resize) -> dict[str, Any]:
    return {
        "podUID": r.pod_uid,
        "admit": r.admitted,
        "reason": r.reason,
        "message": r.message,
        "changed": [
            {
                "podUID": uid,
                "container": name,
                "numaNodes": list(p.numa_nodes or ()),
                "blocks": [
                    {"numaAffinity": list(b.numa_nodes), "type": b.resource, "size": b.size}
                    for b in p.blocks
                ],
            }
            for (uid, name), p in r.changed.items()
        ],
    }


def run(args: argparse.Namespace) -> int:
    if not args.state_dir:
        raise PymmError(
            "resize needs --state-dir: only a pod admitted into a state directory can be resized"
        )
    pods = load_cli_pods(args.pod)
    con = console()
    with build_manager(args) as mm:
        out = [mm.resize(pod) for pod in pods]
        if args.json:
            print(json.dumps([_as_json(r) for r in out], indent=1))
        else:
            for r in out:
                if not r.admitted:
                    con.print(markup(f"{r.pod_uid}: not resized: {r.reason}: {r.message}"))
                    continue
                con.print(markup(f"{r.pod_uid}: resized"))
                for (uid, name), p in r.changed.items():
                    nodes = ",".join(map(str, p.numa_nodes or ())) or "-"
                    sizes = ", ".join(f"{b.resource} {fmt_bytes(b.size)}" for b in p.blocks)
                    con.print(markup(f"  {uid}/{name}: NUMA {nodes}: {sizes}"))
            if not args.quiet:
                con.print(usage_table(mm, "NUMA memory"))
    return 0 if all(r.admitted for r in out) else 1
