"""The options every manager command shares (machine, reservation, policies, state directory),
and building the machine and the :class:`MemoryManager` from them."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pymm._text import printable
from pymm.commands._recorded import (
    CHOICES,
    DEFAULTS,
    Recorded,
    apply_recorded,
    check_flag,
    check_reserved,
    flags_of,
    load_recorded,
    parse_hugepages,
    parse_options,
    write_recorded,
)
from pymm.errors import ConfigError
from pymm.machine import DEFAULT_MACHINE, Machine
from pymm.manager import Enforcement, MemoryManager
from pymm.pod import Pod, check_unique_uids, read_pods_bytes, read_pods_file
from pymm.statefile import CONFIG_FILE_NAME

if TYPE_CHECKING:
    from pymm.metrics import Metrics

#: The kubelet behaviours pymm reproduces (``MemoryManager(kubelet_version=...)``): ``1.38``
#: (1.37+, the default), ``1.32`` (1.32 to 1.36), ``1.26``, and ``latest`` naming the newest.
KUBELET_VERSIONS = tuple(CHOICES["kubelet_version"])

__all__ = [
    "KUBELET_VERSIONS",
    "add_manager_options",
    "add_reserved_memory",
    "build_machine",
    "build_manager",
    "load_cli_pods",
    "parse_hugepages",
    "parse_options",
    "port",
    "resolve",
    "seconds",
]


def add_reserved_memory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reserved-memory",
        action="append",
        metavar="N:TYPE=QTY[,...][;...]",
        help="as the kubelet flag (repeatable); default: 1Gi of memory on every node",
    )


def add_manager_options(p: argparse.ArgumentParser, *, writes: bool = False) -> None:
    """The manager flags. Their defaults are None so that a flag the user gave can be told
    from one a state directory's recorded configuration (or the default) supplies."""
    p.add_argument(
        "--machine",
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
        metavar="SIZE=PAGES",
        help="give every node PAGES hugepages of SIZE (e.g. 2Mi=1024, repeatable)",
    )
    add_reserved_memory(p)
    p.add_argument(
        "--node-allocatable",
        metavar="QTY",
        help="memory reserved by Node Allocatable (kube+system-reserved+eviction-hard); "
        "default: the sum of --reserved-memory",
    )
    p.add_argument(
        "--memory-policy",
        choices=CHOICES["memory_policy"],
        help=f"default {DEFAULTS['memory_policy']}",
    )
    p.add_argument(
        "--topology-policy",
        choices=CHOICES["topology_policy"],
        help=f"default {DEFAULTS['topology_policy']}",
    )
    p.add_argument("--scope", choices=CHOICES["scope"], help=f"default {DEFAULTS['scope']}")
    p.add_argument(
        "--policy-option",
        action="append",
        metavar="KEY=VALUE",
        help="Topology Manager policy option, e.g. prefer-closest-numa-nodes=true or "
        "numa-allocation-strategy=least-allocated (repeatable)",
    )
    p.add_argument(
        "--memory-policy-option",
        action="append",
        metavar="KEY=VALUE",
        help="pymm's memory-manager policy option (beyond the kubelet, off by default): "
        "admit-when-fits, spread-hugepages, memory-tiers, strict-numa-groups or "
        "resize-in-place =true (repeatable)",
    )
    p.add_argument(
        "--kubelet-version",
        choices=KUBELET_VERSIONS,
        help=f"whose behaviour to follow: '1.38' (1.37 and later: the V3 state file, pod-level "
        f"resources, in-place resize; default {DEFAULTS['kubelet_version']}), '1.32' (1.32 to "
        "1.36), '1.26', or 'latest' (the newest pymm knows)",
    )
    p.add_argument(
        "--feature-gates",
        action="append",
        metavar="NAME=BOOL[,...]",
        help="the kubelet's feature gates, as its flag takes them (repeatable), e.g. "
        "PodLevelResourceManagers=true or InPlacePodVerticalScalingExclusiveMemory=true "
        "(kubelet 1.38; off by default)",
    )
    p.add_argument(
        "--search",
        choices=CHOICES["search"],
        help="hint search: the kubelet's exhaustive one, bounded-time, or exact up to "
        f"max-allowable-numa-nodes and bounded above (default {DEFAULTS['search']})",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the memory_manager_state file in DIR and reuse it across runs; DIR "
        f"remembers the machine and these flags ({CONFIG_FILE_NAME})",
    )
    p.add_argument(
        "--tolerate-drift",
        metavar="QTY",
        help="beyond the kubelet: accept a state file whose node totals drifted by at most QTY "
        "(e.g. 256Mi after a reboot) when every reservation still fits, and rebase the totals",
    )
    if writes:
        p.add_argument(
            "--lock-wait",
            type=_seconds,
            metavar="SECONDS",
            help="wait up to SECONDS for another pymm holding the state directory (default: "
            "fail at once)",
        )


def _seconds(text: str) -> float:
    return seconds(text)


def seconds(text: str, *, positive: bool = False) -> float:
    """An ``argparse`` type: a finite number of seconds, ``>= 0`` (``> 0`` if ``positive``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise argparse.ArgumentTypeError(f"expected a number of seconds {bound}, got {text!r}")
    return value


def port(text: str) -> int:
    """An ``argparse`` type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def _base_machine(args: argparse.Namespace) -> Machine:
    if getattr(args, "sysfs", None):
        return Machine.from_sysfs(args.sysfs)
    return Machine.load(getattr(args, "machine", None) or DEFAULT_MACHINE)


def build_machine(args: argparse.Namespace, base: Machine | None = None) -> Machine:
    """``base`` (default: the ``--machine``/``--sysfs`` one) with ``--hugepages`` applied."""
    machine = base if base is not None else _base_machine(args)
    pools = parse_hugepages(getattr(args, "hugepages", None) or ())
    return machine.with_hugepages(pools) if pools else machine


def resolve(
    args: argparse.Namespace, recorded: Recorded | None, flags: Mapping[str, str] | None = None
) -> tuple[Machine, Machine]:
    """Complete ``args`` from ``recorded`` and the defaults (refusing flags that disagree with
    it); returns the base machine (as recorded or as the flags name it) and the machine with
    ``--hugepages`` applied."""
    if args.node_allocatable is not None and not args.node_allocatable.strip():
        raise ConfigError("--node-allocatable '': expected a quantity such as 2Gi")
    check_given_flags(args, recorded, flags)
    given_reserved = args.reserved_memory
    recorded_machine = apply_recorded(args, recorded, flags)
    base = recorded_machine if recorded_machine is not None else _base_machine(args)
    machine = build_machine(args, base)
    check_reserved(given_reserved, recorded, machine, args.memory_policy)
    return base, machine


#: The manager flags checked one by one before the manager is built, with ``tolerate_drift``
#: (not recorded); ``--hugepages`` names itself in its own errors (:func:`parse_hugepages`).
_CHECKED = (*(d for d in DEFAULTS if d != "hugepages"), "tolerate_drift")


def check_given_flags(
    args: argparse.Namespace, recorded: Recorded | None, flags: Mapping[str, str] | None = None
) -> None:
    """Each manager flag given on the command line, checked by the engine's rules, so that its
    error names the flag and the value (a recorded value was checked when its file was read,
    and names the file)."""
    version = args.kubelet_version or (
        recorded.flags.get("kubelet_version") if recorded is not None else None
    )
    for dest in _CHECKED:
        value = getattr(args, dest, None)
        if value is None:
            continue
        flag = (flags or {}).get(dest) or "--" + dest.replace("_", "-")
        shown = " ".join(map(repr, value)) if isinstance(value, list) else repr(value)
        check_flag(dest, value, f"{flag} {shown}", version)


def build_manager(
    args: argparse.Namespace,
    enforcement: Enforcement | None = None,
    *,
    read_only: bool = False,
    metrics: Metrics | None = None,
) -> MemoryManager:
    """The manager the flags describe, completed from the state directory's recorded
    configuration; a command that writes records it when it creates the directory."""
    recorded = load_recorded(args.state_dir) if args.state_dir else None
    base, machine = resolve(args, recorded)
    node_alloc = {"memory": args.node_allocatable} if args.node_allocatable else None
    with _notes_printed_below():
        mm = _open_manager(args, machine, node_alloc, enforcement, read_only, metrics)
    try:
        if not read_only and mm.state_path is not None:
            _record(mm, args, recorded, base)
    except BaseException:
        mm.close()
        raise
    for note in mm.notes:
        print(f"pymm: note: {printable(note)}", file=sys.stderr)
    return mm


@contextmanager
def _notes_printed_below() -> Iterator[None]:
    """The manager also logs its start-up notes; the command prints them itself, once."""
    logger = logging.getLogger("pymm")

    def drop(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _open_manager(
    args: argparse.Namespace,
    machine: Machine,
    node_alloc: dict[str, str] | None,
    enforcement: Enforcement | None,
    read_only: bool,
    metrics: Metrics | None,
) -> MemoryManager:
    return MemoryManager(
        machine,
        reserved_memory=args.reserved_memory,
        node_allocatable=node_alloc,
        memory_policy=args.memory_policy,
        topology_policy=args.topology_policy,
        scope=args.scope,
        policy_options=parse_options(args.policy_option),
        memory_policy_options=parse_options(args.memory_policy_option, "--memory-policy-option"),
        kubelet_version=args.kubelet_version,
        feature_gates=args.feature_gates or None,
        search=args.search,
        state_dir=args.state_dir,
        lock_wait=getattr(args, "lock_wait", None) or False,
        read_only=read_only and args.state_dir is not None,
        tolerate_drift=args.tolerate_drift,
        enforcement=enforcement,
        metrics=metrics,
    )


def _record(
    mm: MemoryManager,
    args: argparse.Namespace,
    recorded: Recorded | None,
    base: Machine,
) -> None:
    """Runs under the directory's lock, so the check and the write are one step."""
    assert mm.state_path is not None
    directory = Path(mm.state_path).parent
    if recorded is None:
        if not mm.restored:
            write_recorded(directory, args, base)  # this run created the state
            return
        # Another pymm may have created the directory between our read and our lock.
        now = load_recorded(directory)
        if now is not None and (
            dict(flags_of(args)) != now.flags or base.to_dict() != now.machine.to_dict()
        ):
            raise ConfigError(
                f"state directory {directory} was set up meanwhile by another pymm with a "
                f"different configuration (recorded in {now.path}); run the command again"
            )
    elif base.to_dict() != recorded.machine.to_dict():
        # The state file validated against this machine: it is the one to remember now.
        write_recorded(directory, args, base)


def load_cli_pods(paths: str | Sequence[str]) -> list[Pod]:
    """Pods of the manifests (``-`` is standard input), with the API server's defaulting (a
    missing request takes the limit), so a hand-written manifest is admitted as the cluster
    would see it. A pod uid may appear once across all of them."""
    pods: list[Pod] = []
    labels: list[str] = []
    for path in [paths] if isinstance(paths, str) else paths:
        if path == "-":
            stdin = sys.stdin
            data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
            read = read_pods_bytes(data, "standard input", defaults=True)
        else:
            read = read_pods_file(path, defaults=True)
        pods.extend(read[0])
        labels.extend(read[1])
    check_unique_uids(pods, labels)
    return pods
