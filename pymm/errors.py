"""Exceptions raised by pymm.

Every error derives from :class:`PymmError` and also from the builtin a Python user would
naturally catch: bad input is a :class:`ValueError`, running out of NUMA memory is a
:class:`MemoryError`, file-system and cgroup trouble is an :class:`OSError`.

The compiled engine raises these classes directly (one mapping, in ``engine/src/py/``); where
the kubelet has an error text, the message keeps it verbatim so operators can search for it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AdmissionError",
    "AllocationError",
    "ApiServerError",
    "CgroupError",
    "CheckpointCorruptedError",
    "ConfigError",
    "MachineError",
    "PodError",
    "PymmError",
    "QuantityError",
    "ReservedMemoryError",
    "ScenarioError",
    "StateError",
    "StateFileError",
    "StateLockedError",
    "StateMismatchError",
    "SysfsError",
    "advice_for",
]


class PymmError(Exception):
    """Base class of every pymm error."""


class QuantityError(PymmError, ValueError):
    """A Kubernetes quantity is malformed, negative or out of range."""


class ConfigError(PymmError, ValueError):
    """The manager configuration is invalid (policy, scope, options, node count)."""


class ReservedMemoryError(ConfigError):
    """``--reserved-memory`` could not be parsed, or fails the kubelet's validation."""


class MachineError(PymmError, ValueError):
    """A machine description is invalid or unknown."""


class PodError(PymmError, ValueError):
    """A pod or Pod manifest is invalid."""


class ScenarioError(PymmError, ValueError):
    """A replay scenario file is invalid."""


class AllocationError(PymmError, MemoryError):
    """The memory manager could not place a container's memory."""


class AdmissionError(AllocationError):
    """A pod was rejected at admission (raised only when the caller asks for exceptions)."""


class StateError(PymmError, ValueError):
    """A restored memory-manager state is unusable."""


class CheckpointCorruptedError(StateError):
    """The state file's checksum or structure is wrong (kubelet: ``checkpoint is corrupted``)."""


class StateMismatchError(StateError):
    """A restored state does not fit the machine (kubelet's startup validation failed).

    ``str()`` is the kubelet's text. ``details`` adds what the kubelet does not say: each field
    that differs between the file and what its assignments imply on this machine ("node 0
    memory total: file 16Gi, expected 15Gi"), and whether pymm's drift tolerance would keep the
    reservations.
    """

    def __init__(self, message: str, details: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.details: list[str] = list(details)

    def __reduce__(self) -> tuple[type[StateMismatchError], tuple[str, list[str]]]:
        return type(self), (str(self), self.details)


class StateFileError(PymmError, OSError):
    """The state file or its directory cannot be read or written safely."""


class StateLockedError(StateFileError):
    """Another process holds the lock on the state directory."""


class CgroupError(PymmError, OSError):
    """A cgroup cannot be found, read or written."""


class SysfsError(PymmError, OSError):
    """The sysfs NUMA topology cannot be read."""


class ApiServerError(PymmError, OSError):
    """The Kubernetes API server refused a request or could not be reached."""


# Matched against the kubelet's error text, most specific first.
_ADVICE = (
    (
        "differs from state checkpoint policy",
        "start the kubelet with the policy the file was written with, or drain the node and "
        "delete the file",
    ),
    (
        "checkpoint is corrupted",
        "the file is damaged or was edited: restore a good copy, or drain the node and delete "
        "the file so the kubelet writes a fresh one",
    ),
    (
        "the expected machine state is different from the real one",
        "the node's memory, hugepages or --reserved-memory differ from when the file was "
        "written: restore them, or drain the node and delete the file (where pymm owns the "
        "file and only node totals drifted, tolerate_drift= or --tolerate-drift keeps the "
        "reservations)",
    ),
    (
        "NUMA that does not exist",
        "the file assigns memory on a NUMA node this machine lacks: check --machine, or drain "
        "the node and delete the file",
    ),
    (
        "memory resource that does not exist",
        "the file assigns a memory type (hugepage size) this machine lacks: configure those "
        "hugepages, or drain the node and delete the file",
    ),
    (
        "machine state can not be empty",
        "the file lists assignments without a machine state: drain the node and delete the file",
    ),
)

_DEFAULT_ADVICE = "drain the node and delete the file so the kubelet writes a fresh one"
_RESERVED_ADVICE = (
    "fix --reserved-memory: it must name existing NUMA nodes and sum to the node's "
    "kube-reserved + system-reserved + eviction-hard"
)


def advice_for(error: PymmError) -> str:
    """One line telling an operator what to do about an error at start-up (a state file that
    does not restore, or a reserved-memory configuration the kubelet would refuse)."""
    if isinstance(error, ReservedMemoryError):
        return _RESERVED_ADVICE
    text = str(error)
    for needle, advice in _ADVICE:
        if needle in text:
            return advice
    return _DEFAULT_ADVICE
