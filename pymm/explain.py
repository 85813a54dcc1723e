"""Why a pod was rejected, in pymm's words, next to the kubelet's text.

The kubelet's messages say what step failed ("failed to find NUMA nodes to extend the current
topology hint, which is unexpected"), not what about the pod or the machine made it fail. The
common causes are visible from the pod's requests and the manager's usage alone, so
:func:`explain_rejection` looks for them there and never re-runs the admission.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pymm.manager import Admission, MemoryManager
from pymm.views import PodLike, compile_pod

__all__ = ["explain_rejection", "human_size"]

_UNITS = (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))


def human_size(n: int) -> str:
    """Bytes as a reader compares them with requests: exact in a unit where that takes fewer
    than five digits (``2000Gi``, ``512Mi``), else one decimal in the largest unit (``991.9Gi``)."""
    for unit, scale in _UNITS:
        if n % scale == 0 and 0 < n // scale < 10_000:
            return f"{n // scale}{unit}"
    for unit, scale in _UNITS:
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


@dataclass(frozen=True, slots=True)
class _Capacity:
    """One resource over the whole machine."""

    allocatable: int
    free: int
    largest_free: int
    nodes_with_any: int


def _capacity(mm: MemoryManager) -> dict[str, _Capacity]:
    allocatable: dict[str, int] = defaultdict(int)
    free: dict[str, int] = defaultdict(int)
    largest: dict[str, int] = defaultdict(int)
    nodes: dict[str, int] = defaultdict(int)
    for u in mm.usage():
        allocatable[u.resource] += u.allocatable
        free[u.resource] += u.free
        largest[u.resource] = max(largest[u.resource], u.free)
        nodes[u.resource] += u.allocatable > 0
    return {r: _Capacity(allocatable[r], free[r], largest[r], nodes[r]) for r in allocatable}


def _page_size(resource: str) -> str:
    return resource.removeprefix("hugepages-")


def _missing_resource(resource: str, need: int) -> str:
    if resource.startswith("hugepages-"):
        size = _page_size(resource)
        return (
            f"the pod asks for {resource} ({human_size(need)}) but no NUMA node of this machine "
            f"has {size} hugepages; give the nodes some (pymm CLI: --hugepages {size}=PAGES)"
        )
    return f"the pod asks for {resource} ({human_size(need)}) but this machine has none"


def _shortfall(resource: str, need: int, cap: _Capacity, single_node: bool) -> str | None:
    what = f"needs {human_size(need)} of {resource}"
    largest = f"the largest node {human_size(cap.largest_free)} free"
    if need > cap.allocatable:
        return f"{what}; the whole machine has {human_size(cap.allocatable)} allocatable, {largest}"
    if need > cap.free:
        return (
            f"{what}; the whole machine has {human_size(cap.free)} free of "
            f"{human_size(cap.allocatable)} allocatable (other pods hold the rest), {largest}"
        )
    if single_node and need > cap.largest_free:
        return f"{what}; the topology policy single-numa-node needs it on one node, and {largest}"
    return None


def _container_requests(pod: PodLike) -> dict[str, dict[str, int]]:
    compiled = compile_pod(pod)
    return {name: compiled.requested(name) for name in compiled.container_names}


def explain_rejection(mm: MemoryManager, pod: PodLike, admission: Admission) -> str | None:
    """One sentence on why ``admission`` (of ``pod`` by ``mm``) was rejected, or None when
    nothing in the requests and the machine's usage explains it (the kubelet's text must do).

    Looks for, in order: a resource no node has, a container or the pod's total that exceeds
    what the machine has allocatable or free, and (with ``single-numa-node``) a container
    larger than any one node's free memory.
    """
    if admission.admitted:
        return None
    capacity = _capacity(mm)
    per_container = _container_requests(pod)
    for requests in per_container.values():
        for resource, need in requests.items():
            cap = capacity.get(resource)
            if need > 0 and (cap is None or cap.nodes_with_any == 0):
                return _missing_resource(resource, need)
    single_node = mm.config["topology_policy"] == "single-numa-node"
    for name, requests in per_container.items():
        for resource, need in sorted(requests.items()):
            if resource not in capacity:
                continue  # nothing requested of it (checked above)
            why = _shortfall(resource, need, capacity[resource], single_node)
            if why is not None:
                who = f"container {name}" if len(per_container) > 1 else "the pod"
                return f"{who} {why}"
    total = compile_pod(pod).requested()
    for resource, need in sorted(total.items()):
        if resource not in capacity:
            continue
        why = _shortfall(resource, need, capacity[resource], single_node=False)
        if why is not None:
            return f"the pod's containers together {why}"
    return None
