"""Exceptions raised by pymm.

Every error derives from :class:`PymmError` and also from the builtin a Python user would
naturally catch: bad input is a :class:`ValueError`, running out of NUMA memory is a
:class:`MemoryError`, file-system and cgroup trouble is an :class:`OSError`.

The compiled engine raises these classes directly (one mapping, in ``engine/src/py/``); where
the kubelet has an error text, the message keeps it verbatim so operators can search for it.
"""

from __future__ import annotations

__all__ = [
    "AdmissionError",
    "AllocationError",
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
    """A restored state does not fit the machine (kubelet's startup validation failed)."""


class StateFileError(PymmError, OSError):
    """The state file or its directory cannot be read or written safely."""


class StateLockedError(StateFileError):
    """Another process holds the lock on the state directory."""


class CgroupError(PymmError, OSError):
    """A cgroup cannot be found, read or written."""


class SysfsError(PymmError, OSError):
    """The sysfs NUMA topology cannot be read."""
