"""``pymm nrt``: this node's NodeResourceTopology, printed or published to the API server.

The state comes from a pymm state directory or a kubelet's ``memory_manager_state``; both are
read without taking pymm's lock, so this runs beside ``pymm agent`` or a kubelet. A state
directory is read as it records itself (machine, policies, scope, options: the manager opens it
read-only); ``--machine``/``--sysfs`` and the policy flags may only confirm what it recorded,
and a machine the state was not written on is refused as ``pymm admit`` refuses it. A kubelet's
file needs the machine and the kubelet's Topology Manager flags. CPUs come from the machine,
the kubelet's ``cpu_manager_state`` (beside its memory state, or ``--cpu-state``) and
``--reserved-cpus``. ``--apply`` creates or replaces the cluster object, never one pymm did not
create unless ``--force``; ``--watch`` keeps doing so each time the state file changes (waiting
for it to appear), until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from pymm import _engine
from pymm._text import printable
from pymm.commands._options import seconds
from pymm.commands._recorded import CHOICES
from pymm.errors import ConfigError, PymmError, StateFileError
from pymm.machine import Machine
from pymm.nrt import (
    CpuState,
    PodRef,
    check_node_name,
    cpu_zones,
    default_node_name,
    node_resource_topology,
    pod_refs,
)

__all__ = ["register", "run"]

log = logging.getLogger("pymm.nrt")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``nrt`` subcommand."""
    p = subparsers.add_parser(
        "nrt",
        help="print or publish this node's NodeResourceTopology (for NUMA-aware scheduling)",
        description="Build the topology.node.k8s.io/v1alpha2 NodeResourceTopology object from "
        "memory-manager state: one zone per NUMA node with memory and hugepages capacity, "
        "allocatable and available, distances as costs. Print it (YAML, or --json), or "
        "--apply it through the kubernetes client (in-cluster config or kubeconfig).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--state-dir",
        metavar="DIR",
        help="a pymm state directory (its recorded machine and flags are used)",
    )
    src.add_argument(
        "--kubelet-state",
        metavar="FILE",
        help="a kubelet's memory_manager_state (e.g. /var/lib/kubelet/memory_manager_state)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--machine",
        metavar="NAME|FILE",
        help="catalog name or machine JSON file (with --state-dir: only to confirm the "
        "recorded one)",
    )
    where.add_argument(
        "--sysfs", metavar="ROOT", help="discover the machine from sysfs under ROOT (e.g. /)"
    )
    p.add_argument("--node-name", help="the Node's name (default: $NODE_NAME, else the host name)")
    p.add_argument(
        "--topology-policy",
        choices=CHOICES["topology_policy"],
        help="the kubelet's --topology-manager-policy (default: the state directory's, or "
        "none, as the kubelet's)",
    )
    p.add_argument(
        "--scope",
        choices=CHOICES["scope"],
        help="the kubelet's --topology-manager-scope (default: the state directory's, or "
        "container)",
    )
    p.add_argument(
        "--cpu-state",
        metavar="FILE",
        help="the kubelet's cpu_manager_state (default with --kubelet-state: the one beside "
        "it, when there is one)",
    )
    p.add_argument(
        "--reserved-cpus",
        metavar="LIST",
        default="",
        help="the kubelet's --reserved-cpus (e.g. 0-1,32-33): not allocatable",
    )
    p.add_argument(
        "--pods",
        metavar="FILE",
        help="the node's pods (kubectl get pods -A --field-selector spec.nodeName=NODE -o "
        "json), to set the pod set fingerprint; with --apply they are listed from the API "
        "server",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.add_argument(
        "--apply", action="store_true", help="create or update the object in the cluster"
    )
    p.add_argument("--kubeconfig", metavar="FILE", help="with --apply: use this kubeconfig")
    p.add_argument("--context", help="with --apply: the kubeconfig context")
    p.add_argument(
        "--force",
        action="store_true",
        help="with --apply: take over an object pymm did not create (it lacks the label "
        "app.kubernetes.io/managed-by=pymm)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep running: print or publish again each time the state file changes",
    )
    p.add_argument(
        "--debounce",
        type=seconds,
        default=0.2,
        metavar="SECONDS",
        help="with --watch: changes this close together count once (default 0.2)",
    )
    p.add_argument(
        "--resync",
        type=partial(seconds, positive=True),
        default=30.0,
        metavar="SECONDS",
        help="with --watch: also re-read the file this often, and retry a failed publish "
        "(default 30)",
    )
    p.add_argument(
        "--poll",
        type=partial(seconds, positive=True),
        metavar="SECONDS",
        help="with --watch: poll the file at this interval instead of using inotify",
    )
    p.set_defaults(func=run)


def _state_path(args: argparse.Namespace) -> Path:
    if args.kubelet_state:
        return Path(args.kubelet_state)
    return Path(args.state_dir) / _engine.STATE_FILE_NAME


def read_state(path: Path) -> tuple[str, dict[str, Any]]:
    """The policy name and checkpoint data of a state file (checksum verified)."""
    from pymm.commands.state import resolved
    from pymm.statefile import read_file

    # Following a symlink is harmless here: this command only reads.
    data = read_file(resolved(path))
    if data is None:
        raise StateFileError(f"cannot read state file {path}: No such file or directory")
    policy, _checksum, state = _engine.decode_checkpoint(data.decode("utf-8", errors="replace"))
    return policy, state


def _cpu_lists(args: argparse.Namespace) -> dict[int, frozenset[int]] | None:
    """Each node's CPU ids, where the machine source has them: sysfs, or a machine file whose
    nodes carry sysfs discovery's ``cpulist``. The catalog knows only counts."""
    from pymm.sysfs import discover, parse_list

    nodes: list[Any] = []
    if args.sysfs:
        nodes = discover(args.sysfs)["nodes"]
    elif args.machine and Path(args.machine).suffix == ".json":
        try:
            nodes = json.loads(Path(args.machine).read_text()).get("nodes") or []
        except (OSError, ValueError):
            return None  # Machine.load reports the file's problem with its own words
    if not nodes or not all(isinstance(n, dict) and "cpulist" in n for n in nodes):
        return None
    try:
        return {int(n["id"]): frozenset(parse_list(str(n["cpulist"]))) for n in nodes}
    except ValueError as e:
        raise ConfigError(f"machine CPU lists: {e}") from e


def read_cpu_state(path: Path) -> CpuState:
    """A kubelet's ``cpu_manager_state`` (checksum verified by the engine)."""
    from pymm.statefile import read_file

    data = read_file(path.resolve())
    if data is None:
        raise StateFileError(f"cannot read CPU manager state {path}: No such file or directory")
    policy, _checksum, default, entries = _engine.decode_cpu_checkpoint(
        data.decode("utf-8", errors="replace")
    )
    return CpuState(
        policy,
        frozenset(default),
        {
            uid: frozenset(cpu for cpus in containers.values() for cpu in cpus)
            for uid, containers in entries.items()
        },
    )


class _Builder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.path = _state_path(args)
        self.node_name = check_node_name(args.node_name or default_node_name())
        if args.kubelet_state and not (args.machine or args.sysfs):
            raise ConfigError("nrt --kubelet-state needs --machine NAME|FILE or --sysfs ROOT")
        self.machine = None
        if args.kubelet_state:
            self.machine = (
                Machine.from_sysfs(args.sysfs) if args.sysfs else Machine.load(args.machine)
            )
        self.cpu_state_path = Path(args.cpu_state) if args.cpu_state else None
        if self.cpu_state_path is None and args.kubelet_state:
            beside = self.path.parent / _engine.CPU_STATE_FILE_NAME
            self.cpu_state_path = beside if beside.exists() else None
        self.cpu_lists = _cpu_lists(args)
        try:
            from pymm.sysfs import parse_list

            self.reserved = frozenset(parse_list(args.reserved_cpus))
        except ValueError as e:
            raise ConfigError(f"--reserved-cpus {args.reserved_cpus!r}: {e}") from e
        if self.reserved and self.cpu_lists is None:
            raise ConfigError(
                "--reserved-cpus needs the machine's CPU lists: use --sysfs, or a machine file "
                "whose nodes have a cpulist"
            )
        self.pods: list[PodRef] | None = _pods_file(args.pods) if args.pods else None

    def build(self) -> dict[str, Any]:
        cpu_state = read_cpu_state(self.cpu_state_path) if self.cpu_state_path else None
        if self.args.state_dir:
            state, machine, memory_policy, policy, scope = self._from_state_dir()
        else:
            memory_policy, state = read_state(self.path)
            assert self.machine is not None
            machine = self.machine
            policy = self.args.topology_policy or "none"
            scope = self.args.scope or "container"
        cpus = cpu_zones(
            machine,
            cpu_lists=self.cpu_lists,
            reserved=self.reserved,
            state=cpu_state if cpu_state is not None and cpu_state.policy != "none" else None,
        )
        return node_resource_topology(
            state,
            machine,
            node_name=self.node_name,
            topology_policy=policy,
            scope=scope,
            memory_policy=memory_policy,
            cpus=cpus,
            cpu_state=cpu_state,
            pods=self.pods,
        )

    def _from_state_dir(self) -> tuple[dict[str, Any], Machine, str, str, str]:
        """The directory as its manager would open it, read-only: the recorded machine and
        flags, the flags given checked against them, the state validated on the machine."""
        from pymm.commands._options import build_manager
        from pymm.commands._recorded import DEFAULTS, load_recorded

        a = self.args
        if not self.path.is_file():
            # A read-only manager would start empty; there is nothing to report yet.
            raise StateFileError(f"cannot read state file {self.path}: No such file or directory")
        if load_recorded(a.state_dir) is None and not (a.machine or a.sysfs):
            raise ConfigError(
                f"{a.state_dir} records no configuration (pymm-config.json): pass --machine "
                "or --sysfs, and the policies it was written with"
            )
        ns = argparse.Namespace(**dict.fromkeys(DEFAULTS))
        ns.machine, ns.sysfs, ns.state_dir = a.machine, a.sysfs, a.state_dir
        ns.topology_policy, ns.scope = a.topology_policy, a.scope
        ns.node_allocatable = ns.tolerate_drift = None
        with build_manager(ns, read_only=True) as mm:
            config = mm.config
            return (
                mm.state,
                mm.machine,
                mm.policy_name,
                str(config["topology_policy"]),
                str(config["scope"]),
            )


def _pods_file(path: str) -> list[PodRef]:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"--pods {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"--pods {path}: not YAML or JSON: {' '.join(str(e).split())}") from e
    try:
        return pod_refs(doc)
    except ConfigError as e:
        raise ConfigError(f"--pods {path}: {e}") from e


def _print(obj: dict[str, Any], as_json: bool, document_marker: bool = False) -> None:
    if as_json:
        print(json.dumps(obj, indent=1), flush=True)
        return
    if document_marker:
        print("---")
    print(yaml.safe_dump(obj, sort_keys=False), end="", flush=True)


def run(args: argparse.Namespace) -> int:
    if (args.kubeconfig or args.context or args.force) and not args.apply:
        raise PymmError("--kubeconfig, --context and --force only make sense with --apply")
    builder = _Builder(args)
    publisher = None
    list_pods: Callable[[Any, str], list[PodRef]] | None = None
    if args.apply:
        from pymm.publish import NrtPublisher, custom_objects_api, node_pods

        publisher = NrtPublisher(
            custom_objects_api(args.kubeconfig, args.context), force=args.force
        )
        if builder.pods is None:
            list_pods = node_pods  # listed afresh for every object built

    def emit(obj: dict[str, Any]) -> None:
        if publisher is None:
            _print(obj, args.json, document_marker=args.watch)
            return
        stored = publisher.publish(obj)
        version = stored.get("metadata", {}).get("resourceVersion", "?")
        print(
            printable(
                f"published NodeResourceTopology {obj['metadata']['name']} "
                f"(resourceVersion {version})"
            ),
            file=sys.stderr,
            flush=True,
        )

    def build() -> dict[str, Any]:
        if publisher is not None and list_pods is not None:
            builder.pods = list_pods(publisher.api, builder.node_name)
        return builder.build()

    if not args.watch:
        emit(build())
        return 0
    _watch(args, builder, build, emit)
    return 0


def _watch(
    args: argparse.Namespace,
    builder: _Builder,
    build: Callable[[], dict[str, Any]],
    emit: Callable[[dict[str, Any]], None],
) -> None:
    from pymm.logs import setup_json_logging
    from pymm.publish import watch_state

    setup_json_logging()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poll_ms = int(args.poll * 1000) if args.poll is not None else None
    last: dict[str, Any] | None = None

    def refresh() -> None:
        nonlocal last
        if not builder.path.exists():
            # The kubelet writes its state file at its first start: wait for it, no crash loop.
            log.info("waiting for the state file", extra={"path": str(builder.path)})
            return
        try:
            obj = build()
            if obj != last:
                emit(obj)
                last = obj
        except (PymmError, OSError) as e:
            # A half-written or briefly missing file, or an API server hiccup: the next change
            # or resync tries again; the process keeps running.
            log.warning("not published", extra={"error": str(e)})

    while not builder.path.parent.is_dir() and not stop.is_set():
        log.info("waiting for the state directory", extra={"path": str(builder.path.parent)})
        stop.wait(args.resync)
    refresh()
    log.info("watching", extra={"path": str(builder.path), "polling": poll_ms is not None})
    wakeups = watch_state(
        builder.path,
        stop,
        debounce_ms=int(args.debounce * 1000),
        poll_ms=poll_ms,
        resync_ms=int(args.resync * 1000),
    )
    for _ in wakeups:
        refresh()
