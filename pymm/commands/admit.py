"""``pymm admit``: admit the pods of a manifest, optionally durably and pinned by cgroup."""

from __future__ import annotations

import argparse
import json

from pymm.commands._options import add_manager_options, build_manager, load_cli_pods
from pymm.commands._output import (
    admission_json,
    console,
    held_by,
    markup,
    print_admission,
    usage_table,
)
from pymm.errors import ConfigError
from pymm.explain import explain_rejection
from pymm.manager import Enforcement

__all__ = ["register", "run"]

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "admit", help="admit the pods of manifests (YAML/JSON, '-' for stdin)"
    )
    p.add_argument(
        "pod", metavar="POD.yaml", nargs="+", help="manifests; a pod uid may appear once in all"
    )
    add_manager_options(p, writes=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no usage table")
    p.add_argument("--cgroup", metavar="PATH", help="write cpuset.mems of admitted containers here")
    p.add_argument(
        "--cgroup-root",
        metavar="DIR",
        help=f"the cgroup hierarchy (default {DEFAULT_CGROUP_ROOT}); only with --cgroup",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print cgroup writes instead of doing them; only with --cgroup",
    )
    p.set_defaults(func=run)


def _enforcement(args: argparse.Namespace) -> Enforcement | None:
    if args.cgroup is None:
        # Silently ignoring these would let an operator believe a pin was planned or made.
        for flag, given in (
            ("--cgroup-root", args.cgroup_root is not None),
            ("--dry-run", args.dry_run),
        ):
            if given:
                raise ConfigError(f"{flag} applies only with --cgroup PATH")
        return None
    if not args.cgroup.strip():
        raise ConfigError("--cgroup '': expected the path of the containers' cgroup")
    # Imported here: only admissions that pin need the cgroup code.
    from pymm.cgroups import CpusetEnforcer

    cgroup = args.cgroup
    root = DEFAULT_CGROUP_ROOT if args.cgroup_root is None else args.cgroup_root
    if not root.strip():
        raise ConfigError("--cgroup-root '': expected the cgroup hierarchy's directory")
    return Enforcement(CpusetEnforcer(root=root), lambda _uid, _c: cgroup, dry_run=args.dry_run)


def run(args: argparse.Namespace) -> int:
    enforcement = _enforcement(args)
    pods = load_cli_pods(args.pod)
    con = console()
    with build_manager(args, enforcement) as mm:
        out = []
        for pod in pods:
            a = mm.admit(pod)
            held = held_by(mm, a) if a.admitted else None
            out.append(admission_json(a, held))
            if not args.json:
                print_admission(con, a, explain_rejection(mm, pod, a), held, pod.compiled)
                verb = "would write" if args.dry_run else "wrote"
                for w in a.cgroup_writes:
                    con.print(markup(f"{verb} {w.value!r} to {w.path}"))
        if args.json:
            print(json.dumps(out, indent=1))
        elif not args.quiet:
            con.print(usage_table(mm, "NUMA memory"))
        return 0 if all(r["admit"] for r in out) else 1
