"""``pymm nrt``: this node's NodeResourceTopology, printed or published to the API server.

The state comes from a pymm state directory or a kubelet's ``memory_manager_state``; both are
read without taking pymm's lock, so this runs beside ``pymm agent`` or a kubelet. ``--apply``
creates or replaces the cluster object; ``--watch`` keeps doing so each time the state file
changes, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from pymm import _engine
from pymm._text import printable
from pymm.commands._options import seconds
from pymm.commands._recorded import CHOICES
from pymm.errors import PymmError, StateFileError
from pymm.machine import Machine
from pymm.nrt import default_node_name, node_resource_topology

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
    src.add_argument("--state-dir", metavar="DIR", help="a pymm state directory")
    src.add_argument(
        "--kubelet-state",
        metavar="FILE",
        help="a kubelet's memory_manager_state (e.g. /var/lib/kubelet/memory_manager_state)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--machine", metavar="NAME|FILE", help="catalog name or machine JSON file")
    where.add_argument(
        "--sysfs", metavar="ROOT", help="discover the machine from sysfs under ROOT (e.g. /)"
    )
    p.add_argument("--node-name", help="the Node's name (default: $NODE_NAME, else the host name)")
    p.add_argument(
        "--topology-policy",
        default="none",
        choices=CHOICES["topology_policy"],
        # The kubelet's own flag default, not pymm's: this describes a kubelet's state.
        help="the kubelet's --topology-manager-policy (default none, as the kubelet's)",
    )
    p.add_argument(
        "--scope",
        default="container",
        choices=CHOICES["scope"],
        help="the kubelet's --topology-manager-scope (default container, as the kubelet's)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.add_argument(
        "--apply", action="store_true", help="create or update the object in the cluster"
    )
    p.add_argument("--kubeconfig", metavar="FILE", help="with --apply: use this kubeconfig")
    p.add_argument("--context", help="with --apply: the kubeconfig context")
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


class _Builder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.path = _state_path(args)
        self.machine = Machine.from_sysfs(args.sysfs) if args.sysfs else Machine.load(args.machine)
        self.node_name = args.node_name or default_node_name()
        self.policy = args.topology_policy
        self.scope = args.scope

    def build(self) -> dict[str, Any]:
        memory_policy, state = read_state(self.path)
        return node_resource_topology(
            state,
            self.machine,
            node_name=self.node_name,
            topology_policy=self.policy,
            scope=self.scope,
            memory_policy=memory_policy,
        )


def _print(obj: dict[str, Any], as_json: bool, document_marker: bool = False) -> None:
    if as_json:
        print(json.dumps(obj, indent=1), flush=True)
        return
    if document_marker:
        print("---")
    print(yaml.safe_dump(obj, sort_keys=False), end="", flush=True)


def run(args: argparse.Namespace) -> int:
    if (args.kubeconfig or args.context) and not args.apply:
        raise PymmError("--kubeconfig and --context only make sense with --apply")
    builder = _Builder(args)
    publisher = None
    if args.apply:
        from pymm.publish import NrtPublisher, custom_objects_api

        publisher = NrtPublisher(custom_objects_api(args.kubeconfig, args.context))

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

    obj = builder.build()
    emit(obj)
    if args.watch:
        _watch(args, builder, emit, obj)
    return 0


def _watch(
    args: argparse.Namespace,
    builder: _Builder,
    emit: Any,
    last: dict[str, Any],
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
    log.info("watching", extra={"path": str(builder.path), "polling": poll_ms is not None})
    wakeups = watch_state(
        builder.path,
        stop,
        debounce_ms=int(args.debounce * 1000),
        poll_ms=poll_ms,
        resync_ms=int(args.resync * 1000),
    )
    for _ in wakeups:
        try:
            obj = builder.build()
            if obj != last:
                emit(obj)
                last = obj
        except (PymmError, OSError) as e:
            # A half-written or briefly missing file, or an API server hiccup: the next change
            # or resync tries again; the process keeps running.
            log.warning("not published", extra={"error": str(e)})
