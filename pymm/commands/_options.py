"""The options every manager command shares (machine, reservation, policies, state directory),
and building the machine and the :class:`MemoryManager` from them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from pymm.errors import ConfigError, PodError, PymmError
from pymm.machine import DEFAULT_MACHINE, MAX_U64, Machine, page_size_kib
from pymm.manager import Enforcement, MemoryManager
from pymm.pod import Pod, load_pods, load_pods_file

#: The kubelet behaviours pymm reproduces (``MemoryManager(kubelet_version=...)``).
KUBELET_VERSIONS = ("latest", "1.26")

__all__ = [
    "KUBELET_VERSIONS",
    "add_manager_options",
    "build_machine",
    "build_manager",
    "load_cli_pods",
]


def add_manager_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--machine",
        default=DEFAULT_MACHINE,
        help=f"catalog name or machine JSON file (default {DEFAULT_MACHINE}); see 'pymm machines'",
    )
    p.add_argument(
        "--sysfs",
        metavar="ROOT",
        help="discover the machine from sysfs under ROOT (e.g. /) instead of --machine",
    )
    p.add_argument(
        "--hugepages",
        action="append",
        default=[],
        metavar="SIZE=PAGES",
        help="give every node PAGES hugepages of SIZE (e.g. 2Mi=1024, repeatable)",
    )
    p.add_argument(
        "--reserved-memory",
        action="append",
        metavar="N:TYPE=QTY[,...][;...]",
        help="as the kubelet flag (repeatable); default: 1Gi of memory on every node",
    )
    p.add_argument(
        "--node-allocatable",
        metavar="QTY",
        help="memory reserved by Node Allocatable (kube+system-reserved+eviction-hard); "
        "default: the sum of --reserved-memory",
    )
    p.add_argument("--memory-policy", default="Static", choices=["Static", "None"])
    p.add_argument(
        "--topology-policy",
        default="best-effort",
        choices=["none", "best-effort", "restricted", "single-numa-node"],
    )
    p.add_argument("--scope", default="container", choices=["container", "pod"])
    p.add_argument(
        "--policy-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Topology Manager policy option, e.g. prefer-closest-numa-nodes=true",
    )
    p.add_argument(
        "--kubelet-version",
        default="latest",
        choices=KUBELET_VERSIONS,
        help="whose behaviour to follow: 'latest' (1.32+, default) or '1.26'",
    )
    p.add_argument(
        "--search",
        default="auto",
        choices=["auto", "exact", "bounded"],
        help="hint search: the kubelet's exhaustive one, bounded-time, or exact up to "
        "max-allowable-numa-nodes and bounded above (default)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the memory_manager_state file in DIR and reuse it across runs",
    )
    p.add_argument(
        "--tolerate-drift",
        metavar="QTY",
        help="beyond the kubelet: accept a state file whose node totals drifted by at most QTY "
        "(e.g. 256Mi after a reboot) when every reservation still fits, and rebase the totals",
    )


def build_machine(args: argparse.Namespace) -> Machine:
    if getattr(args, "sysfs", None):
        machine = Machine.from_sysfs(args.sysfs)
    else:
        machine = Machine.load(args.machine)
    pools = parse_hugepages(getattr(args, "hugepages", None) or ())
    return machine.with_hugepages(pools) if pools else machine


def parse_hugepages(items: Iterable[str]) -> dict[str, int]:
    """``--hugepages SIZE=PAGES`` values as size -> pages."""
    pools: dict[str, int] = {}
    for item in items:
        size, sep, count = item.partition("=")
        # isdigit() alone accepts superscripts and other digits int() refuses.
        if not sep or not size or not (count.isascii() and count.isdigit()):
            raise ConfigError(f"--hugepages {item!r}: expected SIZE=PAGES, e.g. 2Mi=1024")
        try:
            page_size_kib(size)
        except PymmError as e:
            raise ConfigError(f"--hugepages {item!r}: page size {size!r}: {e}") from e
        if int(count) > MAX_U64:
            raise ConfigError(f"--hugepages {item!r}: PAGES must be at most {MAX_U64}")
        pools[size] = int(count)
    return pools


def build_manager(
    args: argparse.Namespace, enforcement: Enforcement | None = None
) -> MemoryManager:
    machine = build_machine(args)
    options: dict[str, str] = {}
    for item in args.policy_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise PymmError(f"--policy-option {item!r}: expected KEY=VALUE")
        options[key] = value
    if args.node_allocatable is not None and not args.node_allocatable.strip():
        raise ConfigError("--node-allocatable '': expected a quantity such as 2Gi")
    node_alloc = {"memory": args.node_allocatable} if args.node_allocatable else None
    mm = MemoryManager(
        machine,
        reserved_memory=args.reserved_memory,
        node_allocatable=node_alloc,
        memory_policy=args.memory_policy,
        topology_policy=args.topology_policy,
        scope=args.scope,
        policy_options=options,
        kubelet_version=args.kubelet_version,
        search=args.search,
        state_dir=args.state_dir,
        tolerate_drift=args.tolerate_drift,
        enforcement=enforcement,
    )
    for note in mm.notes:
        print(f"pymm: note: {note}", file=sys.stderr)
    return mm


def load_cli_pods(path: str) -> list[Pod]:
    """Pods of a manifest, with the API server's defaulting (a missing request takes the
    limit), so a hand-written manifest is admitted as the cluster would see it."""
    pods = load_pods(sys.stdin.read()) if path == "-" else load_pods_file(Path(path))
    if not pods:
        where = "standard input" if path == "-" else path
        raise PodError(f"{where}: no pods in the manifest (expected a Pod, a List or a PodList)")
    return [p.with_defaults() for p in pods]
