"""NodeResourceTopology (``topology.node.k8s.io/v1alpha2``) objects from memory-manager state.

One pure function, :func:`node_resource_topology`, turns the state file's data (pymm's own or a
kubelet's ``memory_manager_state``) plus the machine and the Topology Manager configuration into
the object the scheduler-plugins ``NodeResourceTopologyMatch`` plugin (and koordinator, Volcano)
read. The shape and attribute names follow the CRD in ``deploy/crd.yaml`` and what
resource-topology-exporter writes.

How ``available`` treats multi-node groups
-------------------------------------------
A node whose ``cells`` name more than one node belongs to a multi-NUMA group. The kubelet
(1.32+, rule (B) of its hint generation) never places a single-NUMA container on such a node,
and a new multi-node container may use it only when its affinity is exactly that group. So the
free memory of a group node is usable *only* by a container spanning exactly that group.

The scheduler plugin fits a pod zone by zone: under ``single-numa-node`` a pod passes only if
one zone's ``available`` holds it. Reporting a group node's free memory there would let the
scheduler send single-NUMA pods that the kubelet then rejects with ``TopologyAffinityError``:
the very failure NRT exists to prevent. Each zone of a group therefore reports ``available: 0``
for every resource, and carries what the group can still take in attributes:
``pymm.io/numa-group`` (``node-0,node-1``) and ``pymm.io/group-available-<resource>`` (the
group's summed free quantity). Under-reporting only costs pods that would span exactly that
group, which the plugin's per-zone fit cannot express anyway.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from pymm._engine import canonical_quantity
from pymm.errors import ConfigError, MachineError
from pymm.machine import Machine

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "default_node_name",
    "node_resource_topology",
    "quantity",
    "topology_policies",
    "zone_name",
]

GROUP = "topology.node.k8s.io"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "NodeResourceTopology"
PLURAL = "noderesourcetopologies"

#: Attribute names outside the kubelet's vocabulary live under this prefix.
ATTRIBUTE_PREFIX = "pymm.io/"

_POLICIES = ("none", "best-effort", "restricted", "single-numa-node")
_SCOPES = ("container", "pod")

# The deprecated ``topologyPolicies`` value that older scheduler plugins read, as
# node-feature-discovery and resource-topology-exporter derive it from policy and scope.
_LEGACY_POLICY = {
    ("single-numa-node", "container"): "SingleNUMANodeContainerLevel",
    ("single-numa-node", "pod"): "SingleNUMANodePodLevel",
    ("restricted", "container"): "Restricted",
    ("restricted", "pod"): "RestrictedPodLevel",
    ("best-effort", "container"): "BestEffort",
    ("best-effort", "pod"): "BestEffortPodLevel",
}


def default_node_name() -> str:
    """``$NODE_NAME`` (what a DaemonSet sets from ``spec.nodeName``), else the host name,
    lower-cased as Kubernetes registers it."""
    return os.environ.get("NODE_NAME") or socket.gethostname().lower()


def zone_name(node: int) -> str:
    return f"node-{node}"


def quantity(n: int) -> str:
    """Bytes as a Kubernetes quantity in binary-SI canonical form (``16Gi``, ``1536Mi``), as
    the kubelet reports memory; plain bytes when not a whole number of KiB."""
    if n % 1024:
        return str(n)
    return canonical_quantity(f"{n // 1024}Ki")


def topology_policies(policy: str, scope: str) -> list[str]:
    """The deprecated ``topologyPolicies`` list for a kubelet policy and scope."""
    return [_LEGACY_POLICY.get((policy, scope), "None")]


def _attr(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _nodes(state: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    machine_state = state.get("machineState")
    if not isinstance(machine_state, Mapping):
        raise ConfigError("state has no machineState: is it a memory_manager_state checkpoint?")
    return {int(k): v for k, v in machine_state.items()}


def _group(node: int, cells: Sequence[int] | None) -> tuple[int, ...]:
    # A missing or one-node cells list means the node serves single-NUMA allocations.
    return tuple(sorted(set(cells))) if cells else (node,)


def _resources_of(nodes: Mapping[int, Mapping[str, Any]], node: int) -> dict[str, Any]:
    memory_map = nodes[node].get("memoryMap") or {}
    # Page sizes the node has no pages of are noise for a scheduler: leave them out, as a
    # zone that lacks a resource and one that has none of it fit the same pods.
    return {r: t for r, t in sorted(memory_map.items()) if r == "memory" or t.get("total")}


def _group_free(nodes: Mapping[int, Mapping[str, Any]], group: tuple[int, ...]) -> dict[str, int]:
    free: dict[str, int] = {}
    for member in group:
        for resource, table in (nodes.get(member, {}).get("memoryMap") or {}).items():
            free[resource] = free.get(resource, 0) + int(table.get("free", 0))
    return free


def _costs(machine: Machine, node: int) -> list[dict[str, Any]]:
    if not machine.distances:
        return []
    row = machine.distances[machine.node_ids.index(node)]
    return [{"name": zone_name(n), "value": d} for n, d in zip(machine.node_ids, row, strict=True)]


def _zone(nodes: Mapping[int, Mapping[str, Any]], machine: Machine, node: int) -> dict[str, Any]:
    numa = machine.node(node)
    group = _group(node, nodes[node].get("cells"))
    in_group = len(group) > 1
    resources = [
        {
            "name": resource,
            "capacity": quantity(int(table["total"])),
            "allocatable": quantity(int(table["allocatable"])),
            "available": quantity(0 if in_group else int(table["free"])),
        }
        for resource, table in _resources_of(nodes, node).items()
    ]
    attributes = [
        _attr(ATTRIBUTE_PREFIX + "memory-kind", numa.kind),
        _attr(ATTRIBUTE_PREFIX + "has-cpus", "true" if numa.cpus > 0 else "false"),
        _attr(ATTRIBUTE_PREFIX + "cpus", str(numa.cpus)),
    ]
    if in_group:
        attributes.append(_attr(ATTRIBUTE_PREFIX + "numa-group", ",".join(map(zone_name, group))))
        shown = {r["name"] for r in resources}
        for resource, free in sorted(_group_free(nodes, group).items()):
            if resource in shown:
                attributes.append(
                    _attr(f"{ATTRIBUTE_PREFIX}group-available-{resource}", quantity(free))
                )
    zone: dict[str, Any] = {"name": zone_name(node), "type": "Node"}
    costs = _costs(machine, node)
    if costs:
        zone["costs"] = costs
    zone["attributes"] = attributes
    zone["resources"] = resources
    return zone


def node_resource_topology(
    state: Mapping[str, Any],
    machine: Machine,
    *,
    node_name: str,
    topology_policy: str = "none",
    scope: str = "container",
    memory_policy: str | None = None,
) -> dict[str, Any]:
    """The NodeResourceTopology object for one node, as plain data.

    ``state`` is a checkpoint as data (``machineState`` keyed by node id, as a string or int;
    ``MemoryManager.state`` or the third item of ``decode_checkpoint``). ``machine`` supplies
    what the state does not record: memory kind, CPUs and distances. ``topology_policy`` and
    ``scope`` are the kubelet's Topology Manager settings, in its spelling.
    """
    if topology_policy not in _POLICIES:
        raise ConfigError(
            f"unknown topology policy {topology_policy!r}; expected one of {', '.join(_POLICIES)}"
        )
    if scope not in _SCOPES:
        raise ConfigError(f"unknown topology scope {scope!r}; expected container or pod")
    if not node_name:
        raise ConfigError("a NodeResourceTopology needs a node name")
    nodes = _nodes(state)
    missing = sorted(set(nodes) - set(machine.node_ids))
    if missing:
        raise MachineError(
            f"the state has NUMA node(s) {', '.join(map(str, missing))} that machine "
            f"{machine.name!r} lacks (it has {', '.join(map(str, machine.node_ids))}): "
            "pass the machine the state was written on"
        )
    attributes = [
        _attr("topologyManagerPolicy", topology_policy),
        _attr("topologyManagerScope", scope),
    ]
    policy = memory_policy or state.get("policyName")
    if policy:
        attributes.append(_attr(ATTRIBUTE_PREFIX + "memory-manager-policy", str(policy)))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": node_name},
        "topologyPolicies": topology_policies(topology_policy, scope),
        "attributes": attributes,
        "zones": [_zone(nodes, machine, node) for node in sorted(nodes)],
    }
