"""The ``pymm`` command line. ``main(argv) -> int``; bad input gives one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pymm import __version__
from pymm.errors import PymmError, StateError, advice_for
from pymm.machine import DEFAULT_MACHINE, Machine
from pymm.manager import Admission, Enforcement, MemoryManager, reserved_memory_config
from pymm.pod import Container, Pod, load_pods_file

if TYPE_CHECKING:
    from pymm.metrics import Metrics

# Subcommands that live in their own modules; each has ``register(subparsers)``.
COMMAND_MODULES = (
    "pymm.commands.topology",
    "pymm.commands.state",
    "pymm.commands.bench",
    "pymm.commands.nrt",
    "pymm.commands.agent",
)

GiB = 2**30


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fmt_bytes(n: int) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / 2**20:.0f} MiB"


# -- shared options ---------------------------------------------------------------------


def _add_manager_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--kubelet-version", default="latest", help="'latest' (1.32+) or '1.26'")
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


def _machine(args: argparse.Namespace) -> Machine:
    if getattr(args, "sysfs", None):
        machine = Machine.from_sysfs(args.sysfs)
    else:
        machine = Machine.load(args.machine)
    pools: dict[str, int] = {}
    for item in getattr(args, "hugepages", None) or ():
        size, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise PymmError(f"--hugepages {item!r}: expected SIZE=PAGES, e.g. 2Mi=1024")
        pools[size] = int(count)
    return machine.with_hugepages(pools) if pools else machine


def _manager(
    args: argparse.Namespace,
    enforcement: Enforcement | None = None,
    metrics: Metrics | None = None,
) -> MemoryManager:
    machine = _machine(args)
    options: dict[str, str] = {}
    for item in args.policy_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise PymmError(f"--policy-option {item!r}: expected KEY=VALUE")
        options[key] = value
    reserved: Any = args.reserved_memory
    if reserved is None and args.memory_policy == "Static":
        reserved = machine.reserve_per_node("1Gi")
    node_alloc = {"memory": args.node_allocatable} if args.node_allocatable else None
    mm = MemoryManager(
        machine,
        reserved_memory=reserved_memory_config(reserved),
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
        metrics=metrics,
    )
    for note in mm.notes:
        print(f"pymm: note: {note}", file=sys.stderr)
    return mm


# -- output -----------------------------------------------------------------------------


def _admission_json(a: Admission) -> dict[str, Any]:
    return {
        "podUID": a.pod_uid,
        "admit": a.admitted,
        "reason": a.reason,
        "message": a.message,
        "containers": {
            name: {
                "numaNodes": list(p.numa_nodes) if p.numa_nodes else None,
                "cpusetMems": p.cpuset_mems,
                "blocks": [
                    {"numaAffinity": list(b.numa_nodes), "type": b.resource, "size": b.size}
                    for b in p.blocks
                ],
            }
            for name, p in a.placements.items()
        },
    }


def _print_admission(con: Console, a: Admission) -> None:
    if not a.admitted:
        con.print(f"[red]rejected[/] {escape(a.pod_uid)}: {a.reason}: {escape(a.message or '')}")
        return
    parts = []
    for name, p in a.placements.items():
        if p.numa_nodes is None:
            parts.append(f"{name} -> any node (not Guaranteed or nothing requested)")
            continue
        # An init container's block shrinks to 0 when later containers reuse its memory.
        sizes = ", ".join(
            f"{b.resource} {_fmt_bytes(b.size) if b.size else 'reused by later containers'}"
            for b in p.blocks
        )
        parts.append(f"{name} -> NUMA {p.cpuset_mems} ({sizes})")
    con.print(f"[green]admitted[/] {escape(a.pod_uid)}: " + escape("; ".join(parts)))


def _usage_table(mm: MemoryManager, title: str) -> Table:
    t = Table(title=title)
    for col in ("node", "group", "resource", "allocatable", "reserved", "free", "used"):
        t.add_column(col, justify="right" if col not in ("resource", "group") else "left")
    groups = mm.groups()
    for u in mm.usage():
        if u.total == 0:
            continue
        used = 100 * u.reserved / u.allocatable if u.allocatable else 0.0
        t.add_row(
            str(u.node),
            ",".join(map(str, groups.get(u.node, ()))),
            u.resource,
            _fmt_bytes(u.allocatable),
            _fmt_bytes(u.reserved),
            _fmt_bytes(u.free),
            f"{used:.0f}%",
        )
    return t


# -- commands ---------------------------------------------------------------------------


def _demo_pods() -> list[Pod]:
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


def cmd_demo(args: argparse.Namespace) -> int:
    machine = _machine(args).with_hugepages({"1Gi": 16}, nodes=[0, 1])
    options = {"prefer-closest-numa-nodes": "true"} if args.prefer_closest else {}
    mm = MemoryManager(
        machine,
        reserved_memory=machine.reserve_per_node("1Gi"),
        topology_policy=args.topology_policy,
        scope="container",
        policy_options=options,
    )
    con = _out()
    results = []
    if not args.json:
        con.print(
            f"[bold]pymm {__version__}[/] on [bold]{machine.name}[/]: {machine.summary()}; "
            f"16 x 1Gi hugepages on nodes 0-1; 1Gi reserved per node; "
            f"topology policy {args.topology_policy}"
            + (", prefer-closest-numa-nodes" if args.prefer_closest else "")
        )
    for pod in _demo_pods():
        a = mm.admit(pod)
        results.append(_admission_json(a))
        if not args.json:
            _print_admission(con, a)
    if args.json:
        print(json.dumps({"admissions": results, "state": mm.state}, indent=1))
    else:
        con.print(_usage_table(mm, "NUMA memory after admission"))
    return 0


def _load_pods(path: str) -> list[Pod]:
    """Pods of a manifest, with the API server's defaulting (a missing request takes the
    limit), so a hand-written manifest is admitted as the cluster would see it."""
    if path == "-":
        from pymm.pod import load_pods

        pods = load_pods(sys.stdin.read())
    else:
        pods = load_pods_file(Path(path))
    return [p.with_defaults() for p in pods]


def cmd_admit(args: argparse.Namespace) -> int:
    pods = _load_pods(args.pod)
    con = _out()
    enforcement = None
    if args.cgroup:
        from pymm.cgroups import CpusetEnforcer

        cgroup = args.cgroup
        enforcement = Enforcement(
            CpusetEnforcer(root=args.cgroup_root), lambda _uid, _c: cgroup, dry_run=args.dry_run
        )
    with _manager(args, enforcement) as mm:
        out = []
        for pod in pods:
            a = mm.admit(pod)
            out.append(_admission_json(a))
            if not args.json:
                _print_admission(con, a)
                verb = "would write" if args.dry_run else "wrote"
                for w in a.cgroup_writes:
                    con.print(escape(f"{verb} {w.value!r} to {w.path}"))
        if args.json:
            print(json.dumps(out, indent=1))
        elif not args.quiet:
            con.print(_usage_table(mm, "NUMA memory"))
        return 0 if all(r["admit"] for r in out) else 1


def cmd_hints(args: argparse.Namespace) -> int:
    pods = _load_pods(args.pod)
    with _manager(args) as mm:
        out = {}
        for pod in pods:
            if args.scope == "pod":
                out[pod.uid] = {"": mm.hints(pod)}
            else:
                names = [c.name for c in (*pod.init_containers, *pod.containers)]
                out[pod.uid] = {c: mm.hints(pod, c) for c in names}
        print(json.dumps(out, indent=1))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    if not args.state_dir:
        raise PymmError("remove needs --state-dir: without a state file there is nothing to remove")
    with _manager(args) as mm:
        if args.pod_uid not in mm.state.get("entries", {}):
            raise PymmError(f"pod {args.pod_uid!r} has no memory assignment in {mm.state_path}")
        mm.remove(args.pod_uid, args.container)
        _out().print(f"released {args.pod_uid}{'/' + args.container if args.container else ''}")
    return 0


def cmd_machines(args: argparse.Namespace) -> int:
    machines = [Machine.from_catalog(n) for n in Machine.catalog_names()]
    if args.json:
        print(json.dumps([m.to_dict() for m in machines], indent=1))
        return 0
    t = Table(title="Embedded machine catalog")
    for col in ("name", "nodes", "memory", "kinds", "description"):
        t.add_column(col)
    for m in machines:
        total = sum(n.memory_bytes for n in m.nodes)
        kinds = "/".join(sorted({n.kind for n in m.nodes}))
        t.add_row(m.name, str(len(m.nodes)), _fmt_bytes(total), kinds, m.description)
    _out().print(t)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from pymm.replay import compare_results, load_scenarios, replay

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymm",
        description="NUMA-aware memory manager with kubelet-exact Memory/Topology Manager "
        "semantics.",
    )
    parser.add_argument("--version", action="version", version=f"pymm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="admit a mixed workload on the default machine and show usage")
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
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("admit", help="admit the pods of a manifest (YAML/JSON, '-' for stdin)")
    p.add_argument("pod", metavar="POD.yaml")
    _add_manager_options(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no usage table")
    p.add_argument("--cgroup", metavar="PATH", help="write cpuset.mems of admitted containers here")
    p.add_argument("--cgroup-root", default="/sys/fs/cgroup", metavar="DIR")
    p.add_argument(
        "--dry-run", action="store_true", help="print cgroup writes instead of doing them"
    )
    p.set_defaults(func=cmd_admit)

    p = sub.add_parser("hints", help="print the memory manager's topology hints for pods")
    p.add_argument("pod", metavar="POD.yaml")
    _add_manager_options(p)
    p.set_defaults(func=cmd_hints)

    p = sub.add_parser("remove", help="release a pod's (or one container's) memory")
    p.add_argument("pod_uid", metavar="POD_UID")
    p.add_argument("--container")
    _add_manager_options(p)
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("machines", help="list the embedded machine catalog")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_machines)

    p = sub.add_parser("replay", help="replay admission scenarios (SCENARIOS.md format)")
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
    p.set_defaults(func=cmd_replay)

    for mod in COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (PymmError, OSError) as e:
        msg = str(e) or type(e).__name__
        print(f"pymm: error: {msg.splitlines()[0] if msg else msg}", file=sys.stderr)
        if isinstance(e, StateError):
            for line in getattr(e, "details", ()):
                print(f"  {line}", file=sys.stderr)
            print(f"pymm: advice: {advice_for(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
