"""Exceptions raised by pymm.

Every error derives from :class:`PymmError` and also from the builtin a Python user would
naturally catch: bad input is a :class:`ValueError`, an argument of the wrong type a
:class:`TypeError`, an unknown pod or container a :class:`LookupError`, running out of NUMA
memory is a :class:`MemoryError`, file-system and cgroup trouble is an :class:`OSError`.

The compiled engine raises these classes directly (one mapping, in ``engine/src/py/``); where
the kubelet has an error text, the message keeps it verbatim so operators can search for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "AdmissionError",
    "AllocationError",
    "ApiServerError",
    "CgroupError",
    "CheckpointCorruptedError",
    "ConfigError",
    "InputFileError",
    "MachineError",
    "NotFoundError",
    "PlacementError",
    "PodError",
    "PolicyMismatchError",
    "PymmError",
    "QuantityError",
    "ReservedMemoryError",
    "ScenarioError",
    "SolverError",
    "SolverTimeLimitError",
    "StateError",
    "StateFileError",
    "StateLockedError",
    "StateMismatchError",
    "StateNotDurableError",
    "SysfsError",
    "WrongTypeError",
    "advice_for",
]


class PymmError(Exception):
    """Base class of every pymm error.

    Errors raised by the engine carry data as attributes (which key, which node, both
    checksums, what differs); ``str()`` is the message, keeping the kubelet's text where it
    has one.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword attributes survive pickling (multiprocessing, logging handlers).
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


def _rebuild(cls: type[PymmError], message: str, data: dict[str, Any]) -> PymmError:
    try:
        e = cls.__new__(cls)
    except TypeError:
        # MemoryError's __new__ refuses its subclasses that also derive from PymmError.
        e = BaseException.__new__(cls)
    Exception.__init__(e, message)
    e.__dict__.update(data)
    return e


class WrongTypeError(PymmError, TypeError):
    """An argument of the Python API has the wrong type (``remove(1)``, ``state_dir=1``,
    ``fragmentation(8)``); ``argument`` names it."""

    def __init__(self, message: str = "", *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument

    @classmethod
    def of(cls, argument: str, value: object, expected: str) -> WrongTypeError:
        """``argument: expected <expected>, got <type>``."""
        return cls(
            f"{argument}: expected {expected}, got {type(value).__name__}", argument=argument
        )


class QuantityError(PymmError, ValueError):
    """A Kubernetes quantity is malformed, negative or out of range."""


class ConfigError(PymmError, ValueError):
    """The manager configuration is invalid (policy, scope, options, an unknown key).

    ``key`` names the offending key or option where there is one; ``suggestion`` the closest
    known one for a misspelt key.
    """

    def __init__(
        self, message: str = "", *, key: str | None = None, suggestion: str | None = None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.suggestion = suggestion


class ReservedMemoryError(ConfigError):
    """``--reserved-memory`` could not be parsed, fails the kubelet's validation, or reserves
    more than a node has (``node`` names it)."""

    def __init__(self, message: str = "", *, node: int | None = None) -> None:
        super().__init__(message)
        self.node = node


class MachineError(PymmError, ValueError):
    """A machine description is invalid or unknown; ``node`` names the node where it applies."""

    def __init__(self, message: str = "", *, node: int | None = None) -> None:
        super().__init__(message)
        self.node = node


class PodError(PymmError, ValueError):
    """A pod or Pod manifest is invalid; ``field`` is the path of the offending field
    (``spec.containers[0].resources.limits.memory``)."""

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ScenarioError(PymmError, ValueError):
    """A replay scenario file is invalid; ``path`` is the offending field
    (``ops[3].pod.containers[0].name``), where there is one."""

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class NotFoundError(PymmError, LookupError):
    """A pod or container the manager does not know (removing it, starting it)."""

    def __init__(
        self, message: str = "", *, pod_uid: str | None = None, container: str | None = None
    ) -> None:
        super().__init__(message)
        self.pod_uid = pod_uid
        self.container = container


class AllocationError(PymmError, MemoryError):
    """The memory manager could not place a container's memory."""


class PlacementError(AllocationError):
    """A placement given to the engine (a plan's, a defragmentation move's) that the memory
    manager's rules refuse: ``pod_uid``, ``container`` (None for a whole pod in pod scope) and
    the ``nodes`` asked for."""

    def __init__(
        self,
        message: str = "",
        *,
        pod_uid: str | None = None,
        container: str | None = None,
        nodes: list[int] | None = None,
    ) -> None:
        super().__init__(message)
        self.pod_uid = pod_uid
        self.container = container
        self.nodes = nodes or []


class SolverError(PymmError, RuntimeError):
    """The MILP solver behind ``plan`` and ``defrag`` is missing or failed."""


class SolverTimeLimitError(SolverError):
    """The solver's time limit passed before it found any plan (more time may find one)."""


class AdmissionError(AllocationError):
    """A pod was rejected at admission (raised only when the caller asks for exceptions)."""


class StateError(PymmError, ValueError):
    """A restored memory-manager state is unusable."""


class CheckpointCorruptedError(StateError):
    """The state file's checksum or structure is wrong (kubelet: ``checkpoint is corrupted``).

    For a checksum mismatch, ``stored_checksum`` and ``computed_checksum`` hold both values
    (as the kubelet's ``CorruptCheckpointError`` does) and ``checksum_field`` names the field
    that failed: ``"checksum"``, or ``"dataChecksum"`` for a V3 file's ``data`` (kubelet
    1.37+: ``could not load v3 checkpoint: checkpoint is corrupted``). All three are None
    when the file is not a checkpoint at all (bad JSON, wrong shape, undecodable ``data``).
    """

    def __init__(
        self,
        message: str = "",
        *,
        stored_checksum: int | None = None,
        computed_checksum: int | None = None,
        checksum_field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stored_checksum = stored_checksum
        self.computed_checksum = computed_checksum
        self.checksum_field = checksum_field


class StateMismatchError(StateError):
    """A restored state does not fit the machine (kubelet's startup validation failed).

    ``str()`` is the kubelet's text. ``kind`` says which check failed (``machine-state``,
    ``unknown-node``, ``unknown-resource``, ``empty-machine-state``, ``unfit``, ``policy``);
    ``details`` adds what the kubelet does not say: each field that differs between the file
    and what its assignments imply on this machine ("node 0 memory total: file 16Gi,
    expected 15Gi"); ``least_drift_tolerance`` is the smallest drift tolerance (bytes) with
    which pymm would keep the reservations, when one would.
    """

    def __init__(
        self,
        message: str = "",
        details: Iterable[str] = (),
        *,
        kind: str = "machine-state",
        least_drift_tolerance: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.details: list[str] = list(details)
        self.least_drift_tolerance = least_drift_tolerance


class PolicyMismatchError(StateMismatchError):
    """The state file was written by another memory-manager policy."""

    def __init__(
        self,
        message: str = "",
        *,
        configured_policy: str | None = None,
        stored_policy: str | None = None,
    ) -> None:
        super().__init__(message, kind="policy")
        self.configured_policy = configured_policy
        self.stored_policy = stored_policy


class StateFileError(PymmError, OSError):
    """The state file or its directory cannot be read or written safely."""


class StateNotDurableError(StateFileError):
    """The new state replaced the state file, but the directory could not be fsynced, so the
    change may not survive a power loss.

    Unlike every other write failure, the change was made: the rename is the commit point,
    and once the file holds the new state, memory keeps it too, so both agree. ``result`` is
    what the call would have returned (an ``admit``'s :class:`~pymm.manager.Admission`). The
    next successful write of the directory makes the change durable.
    """

    def __init__(self, message: str = "", *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class InputFileError(PymmError, OSError):
    """A file given as input (a Pod manifest) cannot be read: missing, a directory, not
    readable. ``path`` names it and ``errno`` says why, as on any :class:`OSError`."""

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    @classmethod
    def of(cls, path: object, exc: OSError, what: str = "file") -> InputFileError:
        """``cannot read <what> <path>: <reason>``, keeping ``exc``'s errno (only errno:
        OSError would print ``[Errno n] ...`` instead of the message if strerror were set)."""
        reason = exc.strerror or type(exc).__name__
        err = cls(f"cannot read {what} {path}: {reason}", path=str(path))
        err.errno = exc.errno
        return err


class StateLockedError(StateFileError):
    """Another process holds the lock on the state directory."""


class CgroupError(PymmError, OSError):
    """A cgroup cannot be found, read or written."""


class SysfsError(PymmError, OSError):
    """The sysfs NUMA topology cannot be read."""


class ApiServerError(PymmError, OSError):
    """The Kubernetes API server refused a request or could not be reached."""


_MISMATCH_ADVICE = {
    "machine-state": "the node's memory, hugepages or --reserved-memory differ from when the "
    "file was written: restore them, or drain the node and delete the file",
    "unknown-node": "the file assigns memory on a NUMA node this machine lacks: check "
    "--machine, or drain the node and delete the file",
    "unknown-resource": "the file assigns a memory type (hugepage size) this machine lacks: "
    "configure those hugepages, or drain the node and delete the file",
    "empty-machine-state": "the file lists assignments without a machine state: drain the node "
    "and delete the file",
    "unfit": "the assignments do not fit this machine: check --machine and --reserved-memory",
}
_DEFAULT_ADVICE = "drain the node and delete the file so the kubelet writes a fresh one"


def advice_for(error: PymmError) -> str:
    """One line telling an operator what to do about an error at start-up (a state file that
    does not restore, or a reserved-memory configuration the kubelet would refuse). Dispatches
    on the error's type and fields."""
    if isinstance(error, ReservedMemoryError):
        if error.node is not None:
            return (
                f"lower the reservation on NUMA node {error.node} (--reserved-memory) or check "
                "the machine description: a node cannot reserve more than it has"
            )
        return (
            "fix --reserved-memory: it must name existing NUMA nodes and sum to the node's "
            "kube-reserved + system-reserved + eviction-hard"
        )
    if isinstance(error, PolicyMismatchError):
        return (
            f"start with the policy the file was written with ({error.stored_policy!r}), or "
            "drain the node and delete the file"
        )
    if isinstance(error, CheckpointCorruptedError):
        return (
            "the file is damaged or was edited: restore a good copy, or drain the node and "
            "delete the file so the kubelet writes a fresh one"
        )
    if isinstance(error, StateMismatchError):
        advice = _MISMATCH_ADVICE.get(error.kind, _DEFAULT_ADVICE)
        if error.kind == "machine-state" and error.least_drift_tolerance is not None:
            advice += (
                " (where pymm owns the file and only node totals drifted, tolerate_drift= or "
                "--tolerate-drift keeps the reservations)"
            )
        return advice
    return _DEFAULT_ADVICE
