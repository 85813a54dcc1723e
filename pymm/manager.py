"""The :class:`MemoryManager` a user holds: one engine call per operation, plus durable state.

Example::

    >>> from pymm import MemoryManager, Machine, Pod, Container
    >>> m = Machine.synthetic(2, memory="16Gi")
    >>> mm = MemoryManager(m, reserved_memory="0:memory=1Gi;1:memory=1Gi",
    ...                    topology_policy="single-numa-node")
    >>> a = mm.admit(Pod.of("p1", Container.of("c1", cpu="1", memory="4Gi")))
    >>> a.admitted, a["c1"].numa_nodes, mm.cpuset_mems("p1", "c1")
    (True, (0,), '0')
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeAlias, TypeVar

from pymm import _engine
from pymm.errors import (
    AdmissionError,
    CheckpointCorruptedError,
    ConfigError,
    StateFileError,
    StateNotDurableError,
    WrongTypeError,
)
from pymm.machine import DEFAULT_MACHINE, Machine, as_machine
from pymm.pod import Pod, probe_pod
from pymm.views import NodeUsage, PodLike, admit_result, compile_pod, usage_of

if TYPE_CHECKING:
    from pymm.metrics import Metrics

__all__ = [
    "Admission",
    "Block",
    "Fragmentation",
    "MemoryManager",
    "NodeUsage",
    "Placement",
    "ReservedMemory",
    "Resize",
    "compile_pod",
    "reserved_memory_config",
]

#: Anything that names the reserved memory: ``--reserved-memory`` text (one string, or one per
#: flag occurrence), or the KubeletConfiguration ``reservedMemory`` list.
ReservedMemory: TypeAlias = str | Sequence[str] | Sequence[Mapping[str, Any]] | None

log = logging.getLogger("pymm")

_T = TypeVar("_T")
_P = ParamSpec("_P")


def reserved_memory_config(value: ReservedMemory) -> list[dict[str, Any]]:
    """Normalises reserved memory to the ``reservedMemory`` list, parsing flag syntax with
    the kubelet's rules and error texts."""
    if value is None:
        return []
    return list(_engine.parse_reserved_memory(value))


def _plain(value: Any) -> Any:
    """A mapping argument as the engine's plain dict; anything else goes to the engine as it
    is, whose decoder refuses it with a ConfigError naming the key."""
    return dict(value) if isinstance(value, Mapping) else value


def _providers(hints: Any) -> list[Any] | None:
    if hints is None:
        return None
    if isinstance(hints, str | bytes | Mapping) or not isinstance(hints, Sequence):
        raise ConfigError(
            f"hints: expected a list of hint providers, got {type(hints).__name__}", key="hints"
        )
    return list(hints) or None


def _uid(value: object, argument: str = "pod_uid") -> str:
    """A pod uid argument, or :class:`WrongTypeError` naming it (the engine's own TypeError
    would name neither pymm nor the argument)."""
    if type(value) is str:
        return value
    raise WrongTypeError.of(argument, value, "a pod uid (str)")


@dataclass(frozen=True, slots=True)
class Block:
    numa_nodes: tuple[int, ...]
    resource: str
    size: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one container's memory sits."""

    container: str
    numa_nodes: tuple[int, ...] | None
    blocks: tuple[Block, ...]

    @property
    def cpuset_mems(self) -> str | None:
        """The ``cpuset.mems`` value the kubelet would set (``"0,1"``), or None."""
        return ",".join(map(str, self.numa_nodes)) if self.numa_nodes else None


@dataclass
class Enforcement:
    """Pins containers with ``cpuset.mems`` after admission and widens them again on removal.

    ``locate(pod_uid, container)`` names the container's cgroup (relative to the cgroup
    hierarchy, or absolute inside it), or None to leave a container alone; see
    :func:`pymm.cgroups.find_container_cgroup` for the usual Kubernetes layouts.
    """

    enforcer: Any  # pymm.cgroups.CpusetEnforcer; imported lazily to keep startup light
    locate: Callable[[str, str], str | os.PathLike[str] | None]
    dry_run: bool = False
    #: Every write made (or, with ``dry_run``, planned), oldest first.
    log: list[Any] = field(default_factory=list)


class Admission:
    """The verdict of one admission. Truthy when the pod was admitted."""

    __slots__ = ("_placements", "_pod", "_raw", "_writes")

    def __init__(self, pod: _engine.Pod, raw: _engine.AdmitResult) -> None:
        # Everything is read from the engine's result on demand: an admission nobody looks
        # at (a benchmark, an agent's retry) costs one small object.
        self._pod = pod
        self._raw = raw
        self._placements: dict[str, Placement] | None = None
        self._writes: list[Any] | None = None

    @property
    def pod_uid(self) -> str:
        return self._pod.uid

    @property
    def cgroup_writes(self) -> list[Any]:
        """The cgroup writes that pinned this pod (with an :class:`Enforcement`)."""
        if self._writes is None:
            self._writes = []
        return self._writes

    @property
    def admitted(self) -> bool:
        return self._raw.admit

    @property
    def reason(self) -> str | None:
        """``TopologyAffinityError`` or ``UnexpectedAdmissionError`` when rejected."""
        return self._raw.reason

    @property
    def message(self) -> str | None:
        return self._raw.message

    @property
    def placements(self) -> dict[str, Placement]:
        """Container name -> where its memory sits (built once, on first use)."""
        if self._placements is None:
            self._placements = {
                name: Placement(
                    name,
                    tuple(nodes) if nodes is not None else None,
                    tuple(Block(tuple(a), r, s) for a, r, s in blocks),
                )
                for name, nodes, blocks in self._raw.placements
            }
        return self._placements

    def __getitem__(self, container: str) -> Placement:
        placements = self._placements
        if placements is None:
            placements = self.placements
        return placements[container]

    def __bool__(self) -> bool:
        return self.admitted

    @property
    def hint_calls(self) -> list[dict[str, Any]]:
        """Each topology-manager consultation (provider lists only with ``trace=True``)."""
        return list(self._raw.hint_calls)

    @property
    def allocations(self) -> list[dict[str, Any]]:
        """Each memory-manager Allocate call with its error and resulting blocks (recorded
        with ``trace=True``)."""
        return list(self._raw.allocations)

    def raise_for_rejection(self) -> Admission:
        if not self.admitted:
            raise AdmissionError(f"pod {self.pod_uid!r} rejected: {self.reason}: {self.message}")
        return self

    def __repr__(self) -> str:
        if not self.admitted:
            return f"<Admission {self.pod_uid!r} rejected {self.reason}: {self.message}>"
        where = {c: p.numa_nodes for c, p in self.placements.items()}
        return f"<Admission {self.pod_uid!r} admitted {where}>"


@dataclass(frozen=True, slots=True)
class Resize:
    """The verdict of one in-place resize (:meth:`MemoryManager.resize`). Truthy when the
    resize was admitted: the pod as desired is the pod as allocated now.

    ``reason`` is the kubelet's when it is not: ``Infeasible`` (never as asked; the kubelet's
    own refusal of a Guaranteed pod's memory resize under the Static policy, or pymm's
    ``resize-in-place`` where the group cannot be grown) or ``Deferred`` (not now: the nodes
    lack the memory). ``changed`` holds, with ``resize-in-place``, every container whose
    reservation changed: the resized ones, and those whose group grew with them."""

    pod_uid: str
    admitted: bool
    reason: str | None
    message: str | None
    changed: dict[tuple[str, str], Placement]
    #: The cgroup writes that re-pinned changed containers (with an :class:`Enforcement`).
    cgroup_writes: list[Any] = field(default_factory=list)

    @classmethod
    def _from_engine(cls, pod_uid: str, raw: Mapping[str, Any]) -> Resize:
        changed = {}
        for c in raw["changed"]:
            blocks = tuple(
                Block(tuple(b["numaAffinity"]), b["type"], b["size"]) for b in c["blocks"]
            )
            nodes = tuple(sorted({n for b in blocks for n in b.numa_nodes}))
            changed[(c["podUID"], c["container"])] = Placement(
                c["container"], nodes or None, blocks
            )
        return cls(pod_uid, raw["admit"], raw["reason"], raw["message"], changed)

    def __bool__(self) -> bool:
        return self.admitted

    def __repr__(self) -> str:
        if not self.admitted:
            return f"<Resize {self.pod_uid!r} {self.reason}: {self.message}>"
        where = {f"{p}/{c}": pl.numa_nodes for (p, c), pl in self.changed.items()}
        return f"<Resize {self.pod_uid!r} admitted {where}>"


@dataclass(frozen=True, slots=True)
class Fragmentation:
    """How fragmented the free memory is for one pod shape (the probe).

    Copies of the probe are admitted one after another on a copy of the state, under the
    manager's own configuration, until one is rejected: ``fits`` is how many were admitted,
    ``stranded_by_node`` the free bytes of the probe's resources left on each node (free, but
    usable by no further pod of this shape, because of its size, the group rules or the
    policy), ``free_by_node`` what was free before. The copy is restored as a restart would
    restore it, so every pod in the state counts.
    """

    probe: Mapping[str, str]
    fits: int
    capped: bool
    stranded_by_node: Mapping[int, int]
    free_by_node: Mapping[int, int]

    @property
    def stranded(self) -> int:
        return sum(self.stranded_by_node.values())

    @property
    def free(self) -> int:
        return sum(self.free_by_node.values())

    @classmethod
    def of_inspection(
        cls,
        inspection: _engine.Inspection,
        probe: Pod | str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        cap: int = 100_000,
    ) -> Fragmentation:
        """The same for a state file alone (``_engine.Inspection(text)``): its machine and
        reservation are reconstructed from the file, the policies and options are ``config``'s
        (the engine's configuration keys; default best-effort, container scope). Raises the
        kubelet's start-up errors when the file does not restore."""
        shape = probe_pod(probe)
        return cls._from_engine(shape, inspection.fragmentation(shape.compiled, config, cap))

    @classmethod
    def _from_engine(cls, probe: Pod, raw: Mapping[str, Any]) -> Fragmentation:
        requests = {r: q for c in probe.containers for r, q in c.requests.items() if r != "cpu"}
        return cls(
            requests,
            raw["fits"],
            raw["capped"],
            {int(k): v for k, v in raw["byNode"].items()},
            {int(k): v for k, v in raw["freeBefore"].items()},
        )


def _finishes_then_reports_doubt(
    method: Callable[Concatenate[MemoryManager, _P], _T],
) -> Callable[Concatenate[MemoryManager, _P], _T]:
    """For a mutating call whose write committed but could not be made durable (see
    :meth:`MemoryManager._durably`): the call finishes as if the write had succeeded (pins,
    metrics), then raises the :class:`StateNotDurableError` carrying the call's result."""

    @functools.wraps(method)
    def call(self: MemoryManager, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        self._not_durable = None
        try:
            result = method(self, *args, **kwargs)
        except BaseException:
            doubt, self._not_durable = self._not_durable, None
            if doubt is not None:
                # The call's own error is what the caller sees; the doubt must not vanish.
                log.warning("%s", doubt)
            raise
        doubt, self._not_durable = self._not_durable, None
        if doubt is not None:
            doubt.result = result
            raise doubt
        return result

    return call


class MemoryManager:
    """A NUMA memory manager with the kubelet's Static policy and Topology Manager.

    Every argument is optional; the engine holds the one set of defaults (``mm.config`` shows
    the effective configuration).

    Args:
        machine: a :class:`Machine`, a catalog name, a JSON file path, or a machine dict.
        reserved_memory: ``--reserved-memory`` text such as ``"0:memory=1Gi;1:memory=1Gi"``
            (or a list with one string per flag occurrence), or a ``reservedMemory`` list.
            Default: 1Gi of memory on every node (what the CLI uses). The kubelet itself has
            no default; ``reserved_memory=[]`` reproduces its refusal to start without one.
        node_allocatable: Node Allocatable's reservation per resource (kube-reserved +
            system-reserved + eviction-hard). Defaults to the sum of ``reserved_memory``, the
            only value a kubelet accepts together with it.
        memory_policy: ``"Static"`` (default) or ``"None"``.
        topology_policy: ``"none"``, ``"best-effort"`` (default), ``"restricted"``,
            ``"single-numa-node"``.
        scope: ``"container"`` (default) or ``"pod"``.
        policy_options: Topology Manager options: the kubelet's
            (``prefer-closest-numa-nodes``, ``max-allowable-numa-nodes``) and pymm's own
            (``numa-allocation-strategy``, ``restrict-to-cpu-numa-nodes``).
        memory_policy_options: pymm's memory-manager options (``admit-when-fits``,
            ``spread-hugepages``); see the README's "Placement beyond the kubelet".
        kubelet_version: ``"1.38"`` (1.37 and later, the default; ``"latest"`` names the
            newest), ``"1.32"`` (1.32 to 1.36) or ``"1.26"``; the README's "Kubelet versions"
            says what sets them apart.
        feature_gates: the 1.38 kubelet's gates, as its ``--feature-gates`` sets them
            (``{"PodLevelResourceManagers": True}``, or the flag's ``"Name=true,..."`` text):
            ``PodLevelResources`` (on), ``PodLevelResourceManagers`` and
            ``InPlacePodVerticalScalingExclusiveMemory`` (off), and the Topology Manager's
            option gates. A gate the selected kubelet lacks is refused.
        search: ``"exact"`` (the kubelet's enumeration; machines above
            ``max-allowable-numa-nodes`` are refused as the kubelet refuses them),
            ``"bounded"`` (bounded-time search for large machines), or ``"auto"`` (default:
            exact up to ``max-allowable-numa-nodes``, bounded above).
        state_dir: keep the kubelet-format state file ``memory_manager_state`` here: restored
            on start, written durably before every mutating call returns, and locked against
            a second writer. A write that fails raises and changes nothing in memory either,
            except when only the directory fsync after the rename failed: the file holds the
            change then, so memory keeps it too and the call raises
            :class:`~pymm.errors.StateNotDurableError` (with ``result``) once it is done.
            The directory must belong to the user running pymm and not be writable by its
            group or others (a symlink is resolved and the real directory checked).
        lock_wait: with ``state_dir``, wait for the lock (True, or seconds) instead of failing.
        read_only: with ``state_dir``, only read the state: no lock is taken and nothing is
            written (the directory may be read-only), and every call that would change the
            state (``admit``, ``start``, ``remove``, ``stop_pod``) raises
            :class:`~pymm.errors.StateFileError` naming the state file.
        tolerate_drift: beyond the kubelet (the idea of KEP-6232): accept a state file whose
            node totals drifted by at most this much (e.g. ``"256Mi"`` after a reboot) when
            every reservation still fits; the totals are rebased and the file rewritten.
        enforcement: write each admitted container's ``cpuset.mems`` into its cgroup (after
            the state is on disk) and widen it again when the container is removed.
        rebuild_from: beyond the kubelet: when the state file is lost, rebuild the state from
            the running containers' assignments (``{pod_uid: {container: [{"numaAffinity":
            [...], "type": "memory", "size": bytes}]}}``, the state file's ``entries``).
        metrics: a :class:`pymm.metrics.Metrics`: every admit and remove records its outcome
            and duration under the kubelet's metric names, and the registry reports this
            manager's per-node usage. None (the default) costs nothing.
    """

    def __init__(
        self,
        machine: Machine | str | Path | Mapping[str, Any] = DEFAULT_MACHINE,
        *,
        reserved_memory: ReservedMemory = None,
        node_allocatable: Mapping[str, str] | None = None,
        memory_policy: str | None = None,
        topology_policy: str | None = None,
        scope: str | None = None,
        policy_options: Mapping[str, str | bool | int] | None = None,
        memory_policy_options: Mapping[str, str | bool] | None = None,
        kubelet_version: str | None = None,
        feature_gates: Mapping[str, bool | str] | str | Sequence[str] | None = None,
        search: str | None = None,
        state_dir: str | Path | None = None,
        lock_wait: bool | float = False,
        read_only: bool = False,
        tolerate_drift: str | int | None = None,
        rebuild_from: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
        enforcement: Enforcement | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.enforcement = enforcement
        self.metrics = metrics
        self._not_durable: StateNotDurableError | None = None
        self.machine = as_machine(machine)
        given: dict[str, Any] = {
            "memory_policy": memory_policy,
            "topology_policy": topology_policy,
            "scope": scope,
            "policy_options": _plain(policy_options),
            "memory_policy_options": _plain(memory_policy_options),
            "kubelet_version": kubelet_version,
            "feature_gates": _plain(feature_gates),
            "reserved_memory": reserved_memory,
            "node_allocatable": _plain(node_allocatable),
            "search": search,
            "tolerate_drift": tolerate_drift,
        }
        config = {k: v for k, v in given.items() if v is not None}
        if read_only and state_dir is None:
            raise ConfigError("read_only=True needs a state_dir to read")
        if state_dir is not None and not isinstance(state_dir, str | os.PathLike):
            raise WrongTypeError.of("state_dir", state_dir, "a directory path (str or PathLike)")
        self._store = (
            _DurableStore(Path(state_dir), lock_wait, read_only) if state_dir is not None else None
        )
        try:
            text = self._store.read() if self._store else None
            if rebuild_from is not None and text is not None:
                raise ConfigError(
                    f"a state file exists at {self.state_path}; rebuild_from is for a lost one "
                    "(move the file away to rebuild from assignments)"
                )
            self._engine = _engine.Engine(
                self.machine.to_dict(),
                config,
                text,
                self.state_path or "memory_manager_state",
                _plain(rebuild_from),
            )
            for note in self._engine.notes:
                log.warning("%s: %s", self.state_path or "state", note)
            self._restored = text is not None
            if self._store and not read_only and (text is None or self._engine.notes):
                # The kubelet writes the initial state when it finds no file; a rebased or
                # rebuilt state is written at once so the next start needs no tolerance.
                self._persist(force=True)
        except BaseException:
            # A manager that failed to open must not keep the directory locked.
            if self._store:
                self._store.close()
            raise
        if metrics is not None:
            metrics.attach(self)

    # -- properties ---------------------------------------------------------------------

    @property
    def state_path(self) -> str | None:
        return str(self._store.path) if self._store else None

    @property
    def restored(self) -> bool:
        """True when the state came from an existing state file (else it starts empty)."""
        return self._restored

    @property
    def read_only(self) -> bool:
        return self._store is not None and self._store.read_only

    @property
    def engine(self) -> _engine.Engine:
        """The engine this manager drives (for the planners and what-if tools: changing it
        directly bypasses durability, enforcement and metrics)."""
        return self._engine

    @property
    def policy_name(self) -> str:
        return self._engine.policy_name

    @property
    def notes(self) -> list[str]:
        """What start-up accepted beyond the kubelet's rules (drift rebased, state rebuilt)."""
        return list(self._engine.notes)

    @property
    def config(self) -> dict[str, Any]:
        """The effective configuration (every default filled in), in the engine's keys."""
        return self._engine.config

    # -- operations ---------------------------------------------------------------------

    def _durably(self, operation: str, change: Callable[[], _T]) -> _T:
        """Runs ``change`` on the engine and persists the result; if the write fails, the
        engine is rolled back, so memory never holds what the caller is told did not happen.
        (A batch, ``admit_many`` or ``remove_many``, is one engine call, all or nothing.)

        The rename of the new file is the commit point. A failure after it (the directory
        fsync) leaves the new state in the file, visible to every later reader and restored by
        the next start; rolling memory back then would make memory and file disagree, and the
        next successful write would silently persist the "failed" change or undo it
        unannounced. So memory keeps the change, and the caller learns it is in effect but may
        not survive a power loss: :func:`_finishes_then_reports_doubt` raises the
        :class:`StateNotDurableError` kept here once the call is done.
        """
        if self._store is None:
            return change()  # one engine call changes nothing when it fails
        self._check_writable(operation)
        snapshot = self._engine.snapshot()
        try:
            result = change()
            self._persist()
        except StateNotDurableError as e:
            self._not_durable = e
        except BaseException:
            self._engine.rollback(snapshot)
            raise
        return result

    def durably_together(
        self,
        calls: Sequence[Callable[[], _T]],
        *,
        count: Callable[[Callable[[], None]], None] | None = None,
        syncing: Callable[[], None] | None = None,
    ) -> list[_T | Exception]:
        """Group commit: runs ``calls`` (each ONE mutating operation of this manager, such as
        ``lambda: mm.admit(pod)``) in order, then makes all their changes durable with one
        state-file write. A server with many concurrent clients (``pymm agent``) applies what
        arrived during the previous write this way, paying one fsync for the group.

        Each call is all or nothing on its own: one that raises changed nothing, and its
        exception takes its place in the returned list; the others keep their effect. If the
        write fails, every call is undone and the write's error raised (nothing changed). If
        only the directory fsync after the rename failed, the changes stay (the file holds them)
        and :class:`StateNotDurableError` is raised with ``result`` set to the list. Metrics
        count the calls only once the write succeeded; with ``count``, a successful write hands
        it the call that counts them instead of making it (a server counts them after its
        answers, off their way); ``syncing`` is called as the write starts its fsync (see
        :func:`~pymm.statefile.atomic_write`). Not for a manager with enforcement (a pin must
        follow its own durable write).
        """
        if self.enforcement is not None:
            raise ConfigError("durably_together: not available with enforcement")
        self._check_writable("apply a group of changes")
        store, metrics = self._store, self.metrics
        recorder = metrics.deferred() if metrics is not None else None
        snapshot = self._engine.snapshot() if store is not None else None
        results: list[_T | Exception] = []
        # Detached, the store is not written by each call, only once below.
        self._store = None
        self.metrics = recorder  # type: ignore[assignment]  # records like Metrics, later
        try:
            for call in calls:
                try:
                    results.append(call())
                except Exception as e:  # one engine call: it changed nothing
                    results.append(e)
        finally:
            self._store, self.metrics = store, metrics
        try:
            self._persist(syncing=syncing)
        except StateNotDurableError as e:
            if recorder is not None:
                recorder.commit()
            e.result = results
            raise
        except BaseException:
            if snapshot is not None:
                self._engine.rollback(snapshot)
            if recorder is not None:
                recorder.discard()
            raise
        if recorder is not None:
            if count is None:
                recorder.commit()
            else:
                count(recorder.commit)
        return results

    def admit(
        self,
        pod: PodLike,
        *,
        hints: Sequence[Mapping[str, Any]] | None = None,
        start: bool = True,
        trace: bool = False,
    ) -> Admission:
        """Topology-manager admission of a pod, then (by default) starting its containers.

        ``pod`` is a :class:`pymm.Pod`, a Kubernetes Pod manifest (a mapping with ``spec``),
        or a compiled pod (:func:`compile_pod`). ``hints`` adds hint providers of the
        caller's own (CPU, devices): each is ``{"name": str, "containers": {name: {resource:
        [hint...] | None}}, "pod": {...}}`` where a hint is ``{"affinity": [node ids] | None,
        "preferred": bool}``.
        """
        if self._store is None and self.metrics is None and self.enforcement is None:
            # Nothing to persist, time or pin: one engine call, and no wrapper around it
            # (this path is a few µs, of which every Python call is a measurable part).
            compiled = pod.compiled if type(pod) is Pod else compile_pod(pod)
            extra = None if hints is None else _providers(hints)
            op = _engine.Op.admit(compiled, extra, start, trace)
            return Admission(compiled, admit_result(self._engine.apply(op)))
        return self._admit_recorded(pod, hints, start, trace)

    @_finishes_then_reports_doubt
    def _admit_recorded(
        self, pod: PodLike, hints: Sequence[Mapping[str, Any]] | None, start: bool, trace: bool
    ) -> Admission:
        compiled = pod.compiled if type(pod) is Pod else compile_pod(pod)
        extra = _providers(hints)
        began = time.perf_counter() if self.metrics is not None else 0.0
        op = _engine.Op.admit(compiled, extra, start, trace)
        raw = admit_result(self._durably("admit", lambda: self._engine.apply(op)))
        if self.metrics is not None:
            # Timed as the kubelet times its scope's Admit: the state file write included.
            self.metrics.record_admission(
                raw,
                compiled.qos_class,
                self.policy_name == "Static",
                (time.perf_counter() - began) * 1e3,
            )
        admission = Admission(compiled, raw)
        if self.enforcement and raw.admit and start:
            self._pin_admission(admission)
        return admission

    @_finishes_then_reports_doubt
    def admit_many(
        self,
        pods: Iterable[PodLike],
        *,
        start: bool = True,
        optimize: bool = False,
        time_limit: float | None = None,
    ) -> list[Admission]:
        """Admits pods in order with one durable write for the whole batch (an agent
        admitting its pods at start-up). If the write fails, none of them is admitted.

        With ``optimize``, the batch is placed as :meth:`plan` places it (the most pods, then
        the most memory, under the kubelet's rules; ``time_limit`` seconds for the solver),
        each pod on the nodes the plan chose; pods the plan leaves out go through the kubelet's
        own admission, which gives their reason."""
        compiled = [compile_pod(p) for p in pods]
        # In one batch the second copy of a uid would be reported admitted beside the first.
        _engine.check_unique_uids(compiled)
        if optimize:
            return self._admit_planned(compiled, start, time_limit)
        ops = [_engine.Op.admit(c, None, start) for c in compiled]
        results = [
            admit_result(r) for r in self._durably("admit", lambda: self._engine.apply_all(ops))
        ]
        admissions = [Admission(c, r) for c, r in zip(compiled, results, strict=True)]
        if self.enforcement and start:
            for a in admissions:
                if a.admitted:
                    self._pin_admission(a)
        return admissions

    def _admit_planned(
        self, compiled: list[_engine.Pod], start: bool, time_limit: float | None
    ) -> list[Admission]:
        from pymm.plan import DEFAULT_TIME_LIMIT, apply_placements, plan

        best = plan(
            self._engine, compiled, time_limit=time_limit or DEFAULT_TIME_LIMIT, compare=False
        )
        pinned = {uid: True for uid in best.pinned}
        results = self._durably(
            "admit",
            lambda: apply_placements(self._engine, compiled, best.placements, pinned, start=start),
        )
        admissions = [Admission(c, r) for c, r in zip(compiled, results, strict=True)]
        if self.enforcement and start:
            for a in admissions:
                if a.admitted:
                    self._pin_admission(a)
        return admissions

    def plan(
        self,
        pods: Iterable[PodLike],
        *,
        hints: Mapping[str, Sequence[Mapping[str, Any]] | None] | None = None,
        time_limit: float | None = None,
        compare: bool = True,
    ) -> Any:
        """The best placement of a batch of pods on top of what runs, and (``compare``) the
        kubelet's result beside it, as a :class:`pymm.plan.Plan` (see :mod:`pymm.plan`);
        nothing changes here."""
        from pymm.plan import DEFAULT_TIME_LIMIT, plan

        return plan(
            self._engine,
            pods,
            hints=hints,
            time_limit=time_limit or DEFAULT_TIME_LIMIT,
            compare=compare,
        )

    def defrag_plan(
        self,
        pod: PodLike | None = None,
        *,
        free_node: int | None = None,
        hints: Sequence[Mapping[str, Any]] | None = None,
        time_limit: float | None = None,
    ) -> Any:
        """The fewest running pods to move (or evict) so that ``pod`` fits, or so that
        ``free_node`` holds nothing, as a :class:`pymm.defrag.DefragPlan`, checked step by step
        on a copy; nothing changes here (:meth:`apply_defrag` applies it)."""
        from pymm.defrag import defrag_plan
        from pymm.plan import DEFAULT_TIME_LIMIT

        return defrag_plan(
            self._engine,
            self.machine.node_ids,
            pod,
            hints=hints,
            free_node=free_node,
            time_limit=time_limit or DEFAULT_TIME_LIMIT,
        )

    @_finishes_then_reports_doubt
    def apply_defrag(self, plan: Any) -> None:
        """Applies a :meth:`defrag_plan`: the moves in order, then the pending pod on its
        nodes; with a state directory in one durable write, all or nothing."""
        from pymm.defrag import apply_steps

        apply_steps(self._engine, plan, durably=lambda steps: self._durably("defrag", steps))

    @_finishes_then_reports_doubt
    def resize(self, pod: PodLike) -> Resize:
        """An in-place resize: ``pod`` is the pod as desired (same uid and containers, new cpu
        or memory requests and limits). Without pymm's ``resize-in-place`` option the answer
        is the 1.38 kubelet's: a memory resize of a Guaranteed pod under the Static policy is
        ``Infeasible`` unless the ``InPlacePodVerticalScalingExclusiveMemory`` gate is on, and
        then the memory stays where and as big as it was. With ``resize-in-place`` each
        changed container's reservation grows or shrinks on its nodes, or its group extends
        to unused nodes, durably and all or nothing (with an :class:`Enforcement`, changed
        containers are re-pinned). A pod that is not admitted raises
        :class:`~pymm.errors.NotFoundError`; a change the API server refuses raises
        :class:`~pymm.errors.PodError`. See the README's table of operations."""
        compiled = pod.compiled if type(pod) is Pod else compile_pod(pod)
        op = _engine.Op.resize(compiled)
        raw = self._durably("resize", lambda: self._engine.apply(op))
        assert isinstance(raw, dict)
        result = Resize._from_engine(compiled.uid, raw)
        if self.enforcement is not None:
            for (uid, name), placement in result.changed.items():
                result.cgroup_writes.extend(self._pin(uid, name, placement.cpuset_mems))
        return result

    def _pin_admission(self, admission: Admission) -> None:
        # The reservation is durable first: a failed pin raises CgroupError with the
        # reservation kept, so the caller can retry the pin or remove the pod.
        for name, placement in admission.placements.items():
            if placement.cpuset_mems is not None:
                admission.cgroup_writes.extend(
                    self._pin(admission.pod_uid, name, placement.cpuset_mems)
                )

    def _pin(self, pod_uid: str, container: str, mems: str | None) -> list[Any]:
        e = self.enforcement
        assert e is not None
        cgroup = e.locate(pod_uid, container)
        if cgroup is None:
            return []
        if mems is None:
            if not (e.enforcer.hierarchy / cgroup).exists():
                return []  # the runtime already removed the stopped container's cgroup
            writes = e.enforcer.relax(cgroup, dry_run=e.dry_run)
        else:
            writes = e.enforcer.apply(cgroup, mems, dry_run=e.dry_run)
        e.log.extend(writes)
        return list(writes)

    def hints(self, pod: PodLike, container: str | None = None) -> dict[str, Any] | None:
        """The memory manager's topology hints for a container (or the pod, pod scope). A
        container the pod lacks raises :class:`~pymm.errors.NotFoundError`."""
        if container is not None and not isinstance(container, str):
            raise WrongTypeError.of("container", container, "a container name (str) or None")
        return self._engine.hints(compile_pod(pod), container)

    @_finishes_then_reports_doubt
    def start(self, pod_uid: str) -> None:
        """Starts an admitted pod's containers (``admit(..., start=False)`` defers this): the
        kubelet's AddContainer for each, in order. Raises :class:`~pymm.errors.NotFoundError`
        for a pod that is not admitted."""
        op = _engine.Op.start(_uid(pod_uid))
        self._durably("start", lambda: self._engine.apply(op))

    def stop(self, pod_uid: str, container: str) -> bool:
        """The kubelet's RemoveContainer: a started container stopped, and its memory is
        released. A container that never started, or is unknown, releases nothing and is no
        error (returns False). See the README's table of operations."""
        op = _engine.Op.stop(_uid(pod_uid), _uid(container, "container"))
        return self._removing("stop", op, pod_uid, container)

    def stop_pod(self, pod_uid: str) -> bool:
        """The kubelet's view of a pod going away: each started container stops and
        releases its memory, and the pod is no longer active. Containers that never started
        keep their reservation until the next admission removes it as stale. An unknown pod
        is no error (returns False)."""
        return self._removing("stop_pod", _engine.Op.stop_pod(_uid(pod_uid)), pod_uid, None)

    def release(
        self, pod_uid: str, container: str | None = None, *, missing_ok: bool = False
    ) -> bool:
        """An operator gives memory back now: one container's, or (without ``container``)
        the whole pod's, whether its containers started or not; the pod is then no longer
        active. An unknown pod or container raises :class:`~pymm.errors.NotFoundError` (a
        ``LookupError``) unless ``missing_ok`` (then False is returned)."""
        if type(pod_uid) is not str:
            _uid(pod_uid)
        if container is not None and type(container) is not str:
            _uid(container, "container")
        op = _engine.Op.release(pod_uid, container, missing_ok)
        if self._store is None and self.metrics is None and self.enforcement is None:
            return bool(self._engine.apply(op))
        return self._removing("release", op, pod_uid, container)

    #: ``remove`` is :meth:`release` (the operator's removal; the kubelet's is :meth:`stop`).
    remove = release

    @_finishes_then_reports_doubt
    def _removing(
        self, operation: str, op: _engine.Op, pod_uid: str, container: str | None
    ) -> bool:
        pinned = self._pinned(pod_uid, container)
        began = time.perf_counter() if self.metrics is not None else 0.0
        released = bool(self._durably(operation, lambda: self._engine.apply(op)))
        if self.metrics is not None:
            self.metrics.record_removal((time.perf_counter() - began) * 1e3)
        for name in pinned:
            # Only what lost its memory loses its pin (a container that never started keeps
            # its reservation, and its cgroup its cpuset.mems).
            if self.cpuset_mems(pod_uid, name) is None:
                self._pin(pod_uid, name, None)
        return released

    @_finishes_then_reports_doubt
    def remove_many(self, pod_uids: Iterable[str], *, missing_ok: bool = False) -> None:
        """Releases whole pods with one durable write. All or nothing: if the write fails, or
        a pod is unknown (:class:`~pymm.errors.NotFoundError` unless ``missing_ok``), none is
        released."""
        if isinstance(pod_uids, str):
            raise WrongTypeError.of("pod_uids", pod_uids, "an iterable of pod uids, not one uid")
        uids = [_uid(u, "pod_uids[]") for u in pod_uids]
        pinned = {uid: self._pinned(uid, None) for uid in uids}
        ops = [_engine.Op.release(uid, None, missing_ok) for uid in uids]
        self._durably("remove", lambda: self._engine.apply_all(ops))
        for uid, names in pinned.items():
            for name in names:
                self._pin(uid, name, None)

    def _pinned(self, pod_uid: str, container: str | None) -> list[str]:
        if not self.enforcement:
            return []
        entries = self.state.get("entries", {}).get(pod_uid, {})
        return [c for c in entries if container is None or c == container]

    @_finishes_then_reports_doubt
    def restart(
        self,
        *,
        machine: Machine | str | Path | Mapping[str, Any] | None = None,
        reserved_memory: ReservedMemory = None,
        node_allocatable: Mapping[str, str] | None = None,
        from_state_dir: str | Path | None = None,
    ) -> None:
        """Rebuilds the manager from its state file (or current state without one), as a
        kubelet restart does, possibly with a changed machine or reservation. Running
        containers stay known. Raises the kubelet's startup errors, and changes nothing then.

        ``from_state_dir`` restores from the state file in another directory instead (read
        as ``read_only=True`` reads it: no lock, nothing written there), e.g. a copy of this
        manager's state taken earlier; a manager with a ``state_dir`` then writes the result
        to its own."""
        config = self.config
        if reserved_memory is not None:
            config["reserved_memory"] = reserved_memory
        if node_allocatable is not None:
            config["node_allocatable"] = dict(node_allocatable)
        new_machine = as_machine(machine) if machine is not None else self.machine
        source = (
            _DurableStore(Path(from_state_dir), False, read_only=True)
            if from_state_dir is not None
            else self._store
        )
        text = source.read() if source else None
        if text is None and source is not None and source is not self._store:
            raise StateFileError(f"cannot restart from {source.path}: no such state file")
        if text is None:
            text = self._engine.checkpoint()
        path = str(source.path) if source else "memory_manager_state"

        op = _engine.Op.restart(text, path, new_machine.to_dict(), config)

        def run() -> None:
            self._engine.apply(op)

        if self.read_only:
            run()  # a read-only manager re-reads; there is nothing of its own to write
        else:
            self._durably("restart", run)
        self.machine = new_machine

    def copy(self) -> MemoryManager:
        """An independent in-memory copy of this manager (no state directory, no
        enforcement): for what-if questions without touching the real state."""
        other = MemoryManager.__new__(MemoryManager)
        other.enforcement = None
        other.metrics = None
        other.machine = self.machine
        other._store = None
        other._not_durable = None
        other._restored = False
        other._engine = self._engine.copy()
        return other

    # -- views --------------------------------------------------------------------------

    def checkpoint(self) -> str:
        """The state file text, byte for byte what the kubelet writes."""
        return self._engine.checkpoint()

    @property
    def state(self) -> dict[str, Any]:
        """The state file as plain data: ``policyName``, ``machineState``, ``entries``,
        ``checksum`` (and, with ``kubelet_version="1.38"``, ``data`` and ``dataChecksum``)."""
        return json.loads(self._engine.checkpoint())  # type: ignore[no-any-return]

    def cpuset_mems(self, pod_uid: str, container: str) -> str | None:
        """The container's NUMA nodes as ``cpuset.mems`` text (``"0,1"``), or None."""
        return self._engine.cpuset_mems(_uid(pod_uid), _uid(container, "container"))

    def numa_nodes(self, pod_uid: str, container: str) -> tuple[int, ...] | None:
        nodes = self._engine.container_nodes(_uid(pod_uid), _uid(container, "container"))
        return tuple(nodes) if nodes is not None else None

    def usage(self) -> list[NodeUsage]:
        return usage_of(self._engine)

    def groups(self) -> dict[int, tuple[int, ...]]:
        """Node id -> the group (nodes pinned together) it belongs to."""
        return {node: tuple(cells) for node, _, cells in self._engine.groups()}

    def nrt(self, node_name: str | None = None) -> dict[str, Any]:
        """This node's NodeResourceTopology object (``topology.node.k8s.io/v1alpha2``) as a
        dict; ``node_name`` defaults to ``$NODE_NAME`` or the host name. See :mod:`pymm.nrt`
        for how multi-node groups count in ``available``."""
        from pymm.nrt import default_node_name, node_resource_topology

        config = self.config
        return node_resource_topology(
            self.state,
            self.machine,
            node_name=node_name or default_node_name(),
            topology_policy=config["topology_policy"],
            scope=config["scope"],
        )

    def fragmentation(self, probe: Pod | str | None = None, *, cap: int = 100_000) -> Fragmentation:
        """How many more pods of the ``probe`` shape fit, and how much free memory is stranded
        for that shape (see :class:`Fragmentation`). ``probe``: a Pod, or ``"8Gi"`` (one
        container, memory only: the default), or ``"memory=4Gi,hugepages-1Gi=2Gi"``."""
        shape = probe_pod(probe)
        return Fragmentation._from_engine(shape, self._engine.fragmentation(shape.compiled, cap))

    def allocatable_memory(self) -> list[tuple[int, str, int]]:
        return list(self._engine.allocatable_memory())

    @property
    def active_pods(self) -> list[str]:
        return list(self._engine.active_pods())

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Releases the state-directory lock."""
        if self._store:
            self._store.close()

    def __enter__(self) -> MemoryManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_writable(self, operation: str) -> None:
        if self._store is not None and self._store.read_only:
            err = StateFileError(
                f"cannot {operation}: the state in {self._store.path} was opened read-only "
                "(read_only=True)"
            )
            err.errno = errno.EROFS
            raise err

    def _persist(self, force: bool = False, syncing: Callable[[], None] | None = None) -> None:
        if self._store:
            self._store.write(self._engine.checkpoint(), force=force, syncing=syncing)

    def __iter__(self) -> Iterator[NodeUsage]:
        return iter(self.usage())

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<MemoryManager {self.machine.name!r} {c['memory_policy']}/"
            f"{c['topology_policy']}/{c['scope']}"
            f"{' state=' + str(self.state_path) if self._store else ''}>"
        )


class _DurableStore:
    """The state file in a locked directory, replaced atomically on every write; or, read-only,
    the state file read without the lock and never written."""

    def __init__(self, directory: Path, wait: bool | float, read_only: bool = False) -> None:
        from pymm.statefile import (
            STATE_FILE_NAME,
            StateDirLock,
            check_state_directory,
            clean_stale_temporaries,
        )

        self.read_only = read_only
        self._lock: StateDirLock | None = None
        if directory.exists() or directory.is_symlink():
            directory = check_state_directory(directory)
        self.directory = directory
        self.path = directory / STATE_FILE_NAME
        self._last: str | None = None
        # False after a write whose directory fsync failed: the next write must redo it even
        # when the state has not changed since.
        self._durable = True
        if read_only:
            return
        self._lock = StateDirLock(directory, wait=wait)
        self._lock.acquire()
        try:
            # The lock created a missing directory (0700); an existing one was checked above.
            clean_stale_temporaries(directory)
        except BaseException:
            self._lock.release()
            raise

    def read(self) -> str | None:
        from pymm.statefile import read_file

        data = read_file(self.path)
        if data is None:
            return None
        try:
            text = data.decode()
        except UnicodeDecodeError as e:
            raise CheckpointCorruptedError(
                "could not restore state from checkpoint: checkpoint is corrupted (not UTF-8 "
                f"text), please drain this node and delete the memory manager checkpoint file "
                f'"{self.path}" before restarting Kubelet'
            ) from e
        self._last = text
        return text

    def write(
        self, text: str, force: bool = False, syncing: Callable[[], None] | None = None
    ) -> None:
        from pymm.statefile import atomic_write

        if text == self._last and self._durable and not force:
            return
        try:
            atomic_write(self.path, text.encode(), syncing=syncing)
        except StateNotDurableError:
            self._last, self._durable = text, False  # the file holds it, durable or not
            raise
        self._last, self._durable = text, True

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
