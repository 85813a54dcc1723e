"""``pymm demo``: the main job, a mixed workload on the default machine with a usage table."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from pymm import __version__
from pymm.commands._options import build_machine
from pymm.commands._output import (
    admission_json,
    console,
    held_by,
    markup,
    print_admission,
    usage_table,
)
from pymm.commands._recorded import CHOICES, DEFAULTS
from pymm.explain import explain_rejection
from pymm.machine import DEFAULT_MACHINE, Machine
from pymm.manager import Admission, MemoryManager
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
        choices=CHOICES["topology_policy"],
        help=f"default {DEFAULTS['topology_policy']}",
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


#: pymm's best setting for the demo's workload: rescue what fits, pack pods onto busy
#: nodes so that large ones still find room, keep multi-node pods close together.
#: (least-allocated would spread the pods and leave no node free for the 60Gi brokers.)
BEST = {
    "policy_options": {
        "numa-allocation-strategy": "most-allocated",
        "prefer-closest-numa-nodes": "true",
    },
    "memory_policy_options": {"admit-when-fits": "true"},
}


def pinned_pods() -> list[tuple[Pod, int]]:
    """Pods whose CPUs a CPU manager pins to a node whose memory is short (the pattern of
    kubernetes/kubernetes#120733): the node each one's exclusive CPUs prefer."""
    g = Container.of
    return [
        (Pod.of("trading-0", g("engine", cpu="8", memory="20Gi")), 2),
        (Pod.of("trading-1", g("engine", cpu="8", memory="20Gi")), 3),
    ]


def _cpu_hint(pod: Pod, node: int) -> list[dict[str, object]]:
    c = pod.containers[0].name
    return [{"name": "cpu", "containers": {c: {"cpu": [{"affinity": [node], "preferred": True}]}}}]


def _where(a: Admission) -> str:
    if not a.admitted:
        return "rejected"
    pinned = {c: p.numa_nodes for c, p in a.placements.items() if p.numa_nodes}
    if not pinned:
        return "any node"
    if len(set(pinned.values())) == 1:
        return "NUMA " + ",".join(map(str, next(iter(pinned.values()))))
    # Containers on different nodes: say which is where, or "NUMA 0,2" reads as one
    # container spanning two nodes.
    return ", ".join(f"{c} NUMA {','.join(map(str, n))}" for c, n in pinned.items())


def _compare(con: Console, machine: Machine, topology_policy: str, options: dict[str, str]) -> None:
    """The kubelet and pymm's best setting side by side on the same pods."""
    runs = {}
    for label, extra in (("kubelet", {"policy_options": options}), ("pymm", BEST)):
        mm = MemoryManager(
            machine,
            reserved_memory=machine.reserve_per_node("1Gi"),
            topology_policy=topology_policy,
            **extra,  # type: ignore[arg-type]
        )
        placed = {p.uid: mm.admit(p) for p in demo_pods()}
        placed |= {p.uid: mm.admit(p, hints=_cpu_hint(p, n)) for p, n in pinned_pods()}
        runs[label] = (mm, placed)
    (kubelet, k), (best, b) = runs["kubelet"], runs["pymm"]
    con.print(
        "\n[bold]Beyond the kubelet[/]: the same pods plus two whose exclusive CPUs a CPU "
        "manager pins to a node short of memory, under the kubelet's rules and under pymm's "
        "admit-when-fits + most-allocated + prefer-closest-numa-nodes:"
    )
    t = Table(show_edge=False)
    for col in ("pod", "kubelet", "pymm", ""):
        t.add_column(col)
    for uid in k:
        if _where(k[uid]) == _where(b[uid]):
            continue
        if b[uid].admitted and not k[uid].admitted:
            note = "rescued"
        elif k[uid].admitted and not b[uid].admitted:
            note = "rejected"
        else:
            note = "packed"
        t.add_row(uid, _where(k[uid]), _where(b[uid]), note)
    con.print(t)
    con.print(
        "  rescued: the kubelet rejects it though a node its hints allow has room; "
        "packed: put on a busier node so that emptier nodes stay whole for large pods"
    )

    def summary(mm: MemoryManager, placed: dict[str, Admission]) -> str:
        used = [u.reserved / u.allocatable for u in mm.usage() if u.resource == "memory"]
        idle = sum(1 for x in used if x == 0)
        f = mm.fragmentation()
        admitted = sum(1 for a in placed.values() if a.admitted)
        return (
            f"{admitted}/{len(placed)} admitted, busiest node {max(used):.0%}, {idle} idle, "
            f"{f.fits} more 8Gi pods fit"
        )

    con.print(f"  kubelet: {summary(kubelet, k)}")
    con.print(f"  pymm:    {summary(best, b)}")


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
            f"[bold]pymm {__version__}[/] on [bold]{markup(machine.name)}[/]: "
            f"{markup(machine.summary())}; "
            f"16 x 1Gi hugepages on nodes 0-1; 1Gi reserved per node; "
            f"topology policy {mm.config['topology_policy']}"
            + (", prefer-closest-numa-nodes" if args.prefer_closest else "")
        )
    for pod in demo_pods():
        a = mm.admit(pod)
        held = held_by(mm, a) if a.admitted else None
        results.append(admission_json(a, held))
        if not args.json:
            print_admission(con, a, explain_rejection(mm, pod, a), held, pod.compiled)
    if args.json:
        print(json.dumps({"admissions": results, "state": mm.state}, indent=1))
    else:
        con.print(usage_table(mm, "NUMA memory after admission"))
        _compare(con, machine, mm.config["topology_policy"], options)
    return 0
