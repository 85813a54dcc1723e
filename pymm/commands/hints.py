"""``pymm hints``: the memory manager's topology hints for the pods of a manifest."""

from __future__ import annotations

import argparse
import json

from pymm.commands._options import add_manager_options, build_manager, load_cli_pods

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("hints", help="print the memory manager's topology hints for pods")
    p.add_argument("pod", metavar="POD.yaml")
    add_manager_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pods = load_cli_pods(args.pod)
    with build_manager(args) as mm:
        out = {}
        for pod in pods:
            if args.scope == "pod":
                out[pod.uid] = {"": mm.hints(pod)}
            else:
                names = [c.name for c in (*pod.init_containers, *pod.containers)]
                out[pod.uid] = {c: mm.hints(pod, c) for c in names}
        print(json.dumps(out, indent=1))
    return 0
