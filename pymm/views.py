"""What the manager and the placement planners share, below both of them: a pod as the engine
compiles it, an admission's verdict among the outcomes of the engine's one entry point, and a
node's usage. (The planners work on engines, never on a :class:`~pymm.manager.MemoryManager`,
so the manager can offer them as methods without the two importing each other.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from pymm import _engine
from pymm.errors import WrongTypeError
from pymm.pod import Pod

__all__ = ["NodeUsage", "PodLike", "admit_result", "compile_pod", "usage_of"]

PodLike: TypeAlias = Pod | Mapping[str, Any] | _engine.Pod


def compile_pod(pod: PodLike) -> _engine.Pod:
    """The engine's pod: decoded and checked once, then shared by every admission.

    Takes a :class:`pymm.Pod` (already compiled when it was built), a Kubernetes Pod manifest
    (``kind: Pod``; the API server's defaulting applies), or a mapping in the engine's shape
    (``{"uid": ..., "containers": [...]}``).
    """
    if isinstance(pod, Pod):
        return pod.compiled
    if isinstance(pod, _engine.Pod):
        return pod
    if isinstance(pod, Mapping) and "spec" in pod:
        return _engine.Pod.from_manifest(pod)
    if not isinstance(pod, Mapping):
        raise WrongTypeError.of("pod", pod, "a Pod, a Pod manifest or a pod mapping")
    return _engine.Pod(pod)


def admit_result(outcome: object) -> _engine.AdmitResult:
    """What ``Engine.apply`` returns for an admission (its result type depends on the op)."""
    if not isinstance(outcome, _engine.AdmitResult):
        raise TypeError(f"an admission returned {type(outcome).__name__}")
    return outcome


@dataclass(frozen=True, slots=True)
class NodeUsage:
    node: int
    resource: str
    total: int
    system_reserved: int
    allocatable: int
    reserved: int
    free: int


def usage_of(engine: _engine.Engine) -> list[NodeUsage]:
    """Per node and resource, what the engine's state holds."""
    return [NodeUsage(*row) for row in engine.usage()]
