"""The NodeResourceTopologyMatch filter of kubernetes-sigs/scheduler-plugins, transcribed line by
line into Python so tests can ask what a real scheduler decides on the objects pymm publishes.

Transcribed from (commits read):
  pkg/noderesourcetopology/filter.go                  7a836bcd4d8d72fc234d8fdf993022c012ec47f4
  pkg/noderesourcetopology/pluginhelpers.go            321447b493baa85b2c4d202eb085ae0231795d1f
  pkg/noderesourcetopology/numaresources.go            321447b493baa85b2c4d202eb085ae0231795d1f
  pkg/noderesourcetopology/nodeconfig/topologymanager.go 5e29a01c07b865d8dfc60b08e83b6ef92a7d787c
  pkg/noderesourcetopology/resourcerequests/exclusive.go (IncludeNonNative)
  pkg/util GetPodEffectiveRequest (max of the app containers' sum and each init container)
with the Kubernetes helpers they call (v1qos.GetPodQOS, v1helper.IsNativeResource,
IsHugePageResourceName, bitmask, resource.Quantity's exact comparison). The cache in front of
the filter is the pass-through one (no reserve cache): it hands the object as published.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

HIGHEST_NUMA_ID = 8  # filter.go: the initial (and failure) value of the chosen NUMA id
MAX_NUMA_ID = 64  # pluginhelpers.go
BITS = frozenset(range(64))  # bitmask.Fill() on a 64-bit mask

_SUFFIX: dict[str, int | Fraction] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)


def quantity(q: str | int) -> Fraction:
    """A resource.Quantity's exact value."""
    if isinstance(q, int):
        return Fraction(q)
    m = _QUANTITY.match(q)
    if m is None:
        raise ValueError(f"quantities must match the regular expression: {q!r}")
    number, exponent, suffix = m.groups()
    value = Fraction(number)
    if exponent:
        value *= Fraction(10) ** int(exponent[1:])
    return value * Fraction(_SUFFIX[suffix or ""])


@dataclass
class Container:
    name: str
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)


@dataclass
class Pod:
    name: str
    containers: list[Container]
    init_containers: list[Container] = field(default_factory=list)


@dataclass
class Status:
    code: str  # "Unschedulable" or "Error"
    reason: str


@dataclass
class NUMANode:
    numa_id: int
    resources: dict[str, Fraction]


def is_native(resource: str) -> bool:
    # v1helper.IsNativeResource: no domain prefix, or the kubernetes.io one.
    return "/" not in resource or resource.startswith("kubernetes.io/")


def is_hugepages(resource: str) -> bool:
    return resource.startswith("hugepages-")


def qos_class(pod: Pod) -> str:
    """v1qos.GetPodQOS (cpu and memory decide; requests default to limits beforehand)."""
    containers = [*pod.init_containers, *pod.containers]
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in containers:
        for r in ("cpu", "memory"):
            if r in c.requests and quantity(c.requests[r]) != 0:
                requests[r] = requests.get(r, Fraction(0)) + quantity(c.requests[r])
            if r in c.limits and quantity(c.limits[r]) != 0:
                limits[r] = limits.get(r, Fraction(0)) + quantity(c.limits[r])
        if not all(r in c.limits and quantity(c.limits[r]) != 0 for r in ("cpu", "memory")):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


def include_non_native(pod: Pod) -> bool:
    return any(
        not is_native(r) for c in [*pod.init_containers, *pod.containers] for r in c.requests
    )


def topology_manager(nrt: Mapping[str, Any]) -> tuple[str, str]:
    """nodeconfig.TopologyManagerFromNodeResourceTopology: (policy, scope)."""
    policy, scope = "none", "container"
    legacy = {
        "SingleNUMANodePodLevel": ("single-numa-node", "pod"),
        "SingleNUMANodeContainerLevel": ("single-numa-node", "container"),
        "BestEffortPodLevel": ("best-effort", "pod"),
        "BestEffort": ("best-effort", "container"),
        "RestrictedPodLevel": ("restricted", "pod"),
        "Restricted": ("restricted", "container"),
    }
    policies = nrt.get("topologyPolicies") or []
    if policies and policies[0] in legacy:
        policy, scope = legacy[policies[0]]
    for attr in nrt.get("attributes") or []:
        if attr["name"] == "topologyManagerScope" and attr["value"] in ("container", "pod"):
            scope = attr["value"]
        elif attr["name"] == "topologyManagerPolicy" and attr["value"] in (
            "none", "best-effort", "restricted", "single-numa-node",
        ):  # fmt: skip
            policy = attr["value"]
    return policy, scope


def numa_id_of(name: str) -> int | None:
    # numanode.NameToID: "node-%d"
    m = re.fullmatch(r"node-([0-9]+)", name)
    return int(m.group(1)) if m else None


def create_numa_node_list(zones: Sequence[Mapping[str, Any]]) -> list[NUMANode]:
    nodes = []
    for zone in zones:
        if zone.get("type") != "Node":
            continue
        numa_id = numa_id_of(zone["name"])
        if numa_id is None or numa_id > MAX_NUMA_ID:
            continue
        # extractResources: the *available* quantity of each resource.
        resources = {r["name"]: quantity(r["available"]) for r in zone.get("resources") or []}
        nodes.append(NUMANode(numa_id, resources))
    return nodes


def is_host_level(resource: str) -> bool:
    return resource in ("ephemeral-storage", "storage") or not is_native(resource)


def is_numa_affine(resource: str) -> bool:
    return resource in ("cpu", "memory") or is_hugepages(resource)


def is_resource_set_suitable(qos: str, resource: str, q: Fraction, numa_q: Fraction) -> bool:
    if qos != "Guaranteed" and is_numa_affine(resource):
        return True
    return numa_q >= q


def resources_available_in_any_numa_nodes(
    nodes: Sequence[NUMANode],
    resources: Mapping[str, str],
    qos: str,
    node_allocatable: Mapping[str, str],
) -> tuple[int, bool]:
    numa_id = HIGHEST_NUMA_ID
    bitmask = set(BITS)
    for resource, text in resources.items():
        q = quantity(text)
        if q == 0:
            continue
        if resource not in node_allocatable:
            return numa_id, False
        has_numa_affinity = False
        resource_bitmask: set[int] = set()
        for node in nodes:
            if resource not in node.resources:
                continue
            has_numa_affinity = True
            if not is_resource_set_suitable(qos, resource, q, node.resources[resource]):
                continue
            resource_bitmask.add(node.numa_id)
        if not has_numa_affinity and is_host_level(resource):
            continue
        bitmask &= resource_bitmask
        if not bitmask:
            return numa_id, False
    numa_id = min(bitmask)  # GetBits()[0]: the lowest NUMA id left
    return numa_id, bool(bitmask)


def subtract_resources(
    nodes: Sequence[NUMANode], numa_id: int, qos: str, requests: Mapping[str, str]
) -> None:
    for node in nodes:
        if node.numa_id != numa_id:
            continue
        for resource, text in requests.items():
            q = quantity(text)
            if qos != "Guaranteed" and is_numa_affine(resource):
                continue
            if q == 0 or resource not in node.resources:
                continue
            left = node.resources[resource] - q
            if left < 0:
                raise AssertionError(f"resource {resource!r} request exceeds NUMA {numa_id}")
            node.resources[resource] = left


def pod_effective_request(pod: Pod) -> dict[str, str]:
    effective: dict[str, Fraction] = {}
    init: dict[str, Fraction] = {}
    for c in pod.init_containers:
        for r, t in c.requests.items():
            if r not in init or quantity(t) > init[r]:
                init[r] = quantity(t)
    for c in pod.containers:
        for r, t in c.requests.items():
            effective[r] = effective.get(r, Fraction(0)) + quantity(t)
    for r, q in init.items():
        if r not in effective or q > effective[r]:
            effective[r] = q
    return {r: str(q) if q.denominator == 1 else f"{float(q)}" for r, q in effective.items()}


@dataclass
class Decision:
    """The filter's verdict: None status means the node passes; ``numa`` is the NUMA id the
    plugin expects the kubelet to pick for each aligned container (or the pod)."""

    status: Status | None
    numa: list[int] = field(default_factory=list)

    @property
    def schedulable(self) -> bool:
        return self.status is None


def single_numa_container_level(
    pod: Pod, zones: Sequence[Mapping[str, Any]], allocatable: Mapping[str, str]
) -> Decision:
    nodes = create_numa_node_list(zones)
    qos = qos_class(pod)
    for init in pod.init_containers:
        _, match = resources_available_in_any_numa_nodes(nodes, init.requests, qos, allocatable)
        if not match:
            return Decision(Status("Unschedulable", "cannot align init container"))
    chosen = []
    for c in pod.containers:
        numa_id, match = resources_available_in_any_numa_nodes(nodes, c.requests, qos, allocatable)
        if not match:
            return Decision(Status("Unschedulable", "cannot align container"))
        subtract_resources(nodes, numa_id, qos, c.requests)
        chosen.append(numa_id)
    return Decision(None, chosen)


def single_numa_pod_level(
    pod: Pod, zones: Sequence[Mapping[str, Any]], allocatable: Mapping[str, str]
) -> Decision:
    resources = pod_effective_request(pod)
    numa_id, match = resources_available_in_any_numa_nodes(
        create_numa_node_list(zones), resources, qos_class(pod), allocatable
    )
    if not match:
        return Decision(Status("Unschedulable", "cannot align pod"))
    return Decision(None, [numa_id])


def filter_pod(pod: Pod, nrt: Mapping[str, Any] | None, allocatable: Mapping[str, str]) -> Decision:
    """TopologyMatch.Filter for one node: ``nrt`` its object (None: no object, the node
    passes), ``allocatable`` the Node's status.allocatable."""
    if qos_class(pod) == "BestEffort" and not include_non_native(pod):
        return Decision(None)
    if nrt is None:
        return Decision(None)
    policy, scope = topology_manager(nrt)
    if policy != "single-numa-node":
        return Decision(None)  # filterHandlerFromTopologyManager: no handler, nothing filtered
    if scope == "pod":
        return single_numa_pod_level(pod, nrt["zones"], allocatable)
    return single_numa_container_level(pod, nrt["zones"], allocatable)
