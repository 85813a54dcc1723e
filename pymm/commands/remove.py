"""``pymm remove``: release a pod's (or one container's) memory kept in a state directory."""

from __future__ import annotations

import argparse

from pymm.commands._options import add_manager_options, build_manager
from pymm.commands._output import console, markup
from pymm.errors import PymmError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("remove", help="release a pod's (or one container's) memory")
    p.add_argument("pod_uid", metavar="POD_UID")
    p.add_argument("--container")
    add_manager_options(p, writes=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.state_dir:
        raise PymmError("remove needs --state-dir: without a state file there is nothing to remove")
    with build_manager(args) as mm:
        if args.pod_uid not in mm.state.get("entries", {}):
            raise PymmError(f"pod {args.pod_uid!r} has no memory assignment in {mm.state_path}")
        mm.remove(args.pod_uid, args.container)
        released = f"{args.pod_uid}{'/' + args.container if args.container else ''}"
        console().print(f"released {markup(released)}")
    return 0
