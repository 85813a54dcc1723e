"""``pymm demo``: the main job, a mixed workload on the default machine with a usage table."""

from __future__ import annotations

import argparse
import json

from pymm import __version__
from pymm.commands._options import build_machine
from pymm.commands._output import admission_json, console, print_admission, usage_table
from pymm.explain import explain_rejection
from pymm.machine import DEFAULT_MACHINE
from pymm.manager import MemoryManager
from pymm.pod import Container, Pod

__all__ = ["demo_pods", "register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="admit a mixed workload on the default machine and show usage"
    )
    p.add_argument("--machine", default=DEFAULT_MACHINE)
    p.add_argument("--sysfs", metavar="ROOT", help=argparse.SUPPRESS)
    p.add_argument(
        "--topology-policy",
        default="best-effort",
        choices=["none", "best-effort", "restricted", "single-numa-node"],
    )
    p.add_argument(
        "--no-prefer-closest",
        dest="prefer_closest",
        action="store_false",
        help="merge without NUMA distances (the kubelet's default), "
        "instead of prefer-closest-numa-nodes",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def demo_pods() -> list[Pod]:
    """A mixed workload: databases, DPDK packet processing with hugepages, inference servers
    spanning two nodes, a pod with an init container, and a burstable pod that is not pinned."""
    g = Container.of
    return [
        Pod.of("postgres-0", g("postgres", cpu="8", memory="48Gi")),
        Pod.of("postgres-1", g("postgres", cpu="8", memory="48Gi")),
        Pod.of(
            "dpdk-router",
            g("vswitch", cpu="4", memory="4Gi", hugepages={"1Gi": "8Gi"}),
            g("stats", cpu="1", memory="1Gi"),
        ),
        Pod.of("llm-inference", g("server", cpu="16", memory="96Gi")),
        Pod.of(
            "feature-store",
            g("redis", cpu="4", memory="24Gi"),
            init=(g("warmup", cpu="2", memory="24Gi"),),
        ),
        Pod.of("batch-etl", g("etl", cpu="2", memory="8Gi", limits_only=False), name="batch"),
        Pod.of("web", Container.of("nginx", requests={"cpu": "500m", "memory": "1Gi"})),
        Pod.of("kafka-0", g("broker", cpu="4", memory="60Gi")),
        Pod.of("kafka-1", g("broker", cpu="4", memory="60Gi")),
        Pod.of("llm-large", g("server", cpu="32", memory="300Gi")),
        Pod.of("too-big", g("server", cpu="8", memory="2000Gi")),
    ]


def run(args: argparse.Namespace) -> int:
    machine = build_machine(args).with_hugepages({"1Gi": 16}, nodes=[0, 1])
    options = {"prefer-closest-numa-nodes": "true"} if args.prefer_closest else {}
    mm = MemoryManager(
        machine,
        reserved_memory=machine.reserve_per_node("1Gi"),
        topology_policy=args.topology_policy,
        scope="container",
        policy_options=options,
    )
    con = console()
    results = []
    if not args.json:
        con.print(
            f"[bold]pymm {__version__}[/] on [bold]{machine.name}[/]: {machine.summary()}; "
            f"16 x 1Gi hugepages on nodes 0-1; 1Gi reserved per node; "
            f"topology policy {args.topology_policy}"
            + (", prefer-closest-numa-nodes" if args.prefer_closest else "")
        )
    for pod in demo_pods():
        a = mm.admit(pod)
        results.append(admission_json(a))
        if not args.json:
            print_admission(con, a, explain_rejection(mm, pod, a))
    if args.json:
        print(json.dumps({"admissions": results, "state": mm.state}, indent=1))
    else:
        con.print(usage_table(mm, "NUMA memory after admission"))
    return 0
