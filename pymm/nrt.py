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

CPUs
----
The plugin treats ``cpu`` as NUMA-affine: a zone list without it fails every pod that requests
CPU under ``single-numa-node``. Each zone therefore carries ``cpu`` as resource-topology-exporter
publishes it: ``capacity`` the node's CPUs, ``allocatable`` those minus the kubelet's reserved
CPUs (``--reserved-cpus``), ``available`` those minus the CPUs the CPU manager assigned
exclusively (``cpu_manager_state``'s ``entries``), as whole CPUs. Without a CPU manager state
every allocatable CPU is available (the ``none`` CPU policy pins nothing).

The ``None`` memory policy pins nothing either: its state has no per-node tables, so each zone
reports the machine's memory and hugepages, capacity, allocatable and available alike.

The pod set fingerprint
-----------------------
The plugin's reserve cache resyncs a node only when the object's
``nodeTopologyPodsFingerprint`` equals the fingerprint of the pods it sees on the node
(k8stopologyawareschedwg/podfingerprint). The pods an object reflects are those holding
exclusive memory or CPUs in the states it was built from, so the method is
``with-exclusive-resources``; the fingerprint is set only when every such pod's namespace and
name are known (a pod list, the API server, or the manifests the agent admitted): a fingerprint
that misses a pod would make the scheduler trust numbers it cannot vouch for.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymm._engine import canonical_quantity
from pymm.errors import ConfigError, MachineError
from pymm.machine import Machine

__all__ = [
    "API_VERSION",
    "FINGERPRINT_ATTRIBUTE",
    "FINGERPRINT_METHOD_ATTRIBUTE",
    "GROUP",
    "KIND",
    "MANAGED_BY",
    "PLURAL",
    "VERSION",
    "CpuState",
    "PodRef",
    "check_node_name",
    "cpu_zones",
    "default_node_name",
    "node_resource_topology",
    "pod_fingerprint",
    "pod_refs",
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

#: The label pymm sets on the objects it creates; ``--apply`` replaces no object without it.
MANAGED_BY = ("app.kubernetes.io/managed-by", "pymm")

#: podfingerprint's ``Attribute``, ``AttributeMethod`` and ``MethodWithExclusiveResources``.
FINGERPRINT_ATTRIBUTE = "nodeTopologyPodsFingerprint"
FINGERPRINT_METHOD_ATTRIBUTE = "nodeTopologyPodsFingerprintMethod"
FINGERPRINT_METHOD = "with-exclusive-resources"

# A Kubernetes object name that is a DNS subdomain (RFC 1123), as Node names are.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class PodRef:
    """A pod as the fingerprint knows it."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class CpuState:
    """What a kubelet's ``cpu_manager_state`` says: its policy, the shared pool, and every CPU
    assigned exclusively (all containers' sets together), by pod uid."""

    policy: str
    default: frozenset[int]
    exclusive_by_pod: Mapping[str, frozenset[int]]

    @property
    def exclusive(self) -> frozenset[int]:
        return frozenset().union(*self.exclusive_by_pod.values())


#: Pod phases whose pods hold nothing any more (the scheduler's cache skips them too).
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def pod_refs(doc: Any) -> list[PodRef]:
    """The non-terminal pods of a Pod, a ``List``/``PodList`` (``kubectl get pods -o json``
    or the API server's list) as plain data: their namespace, name and uid."""
    if not isinstance(doc, Mapping):
        raise ConfigError("a pod list must be a Pod, a List or a PodList object")
    items = doc.get("items") if "items" in doc else [doc]
    if not isinstance(items, list):
        raise ConfigError("a pod list's items must be a list")
    refs = []
    for item in items:
        meta = item.get("metadata") if isinstance(item, Mapping) else None
        if not isinstance(meta, Mapping) or not all(
            isinstance(meta.get(k), str) and meta.get(k) for k in ("name", "uid")
        ):
            raise ConfigError("every pod in a pod list needs metadata.name and metadata.uid")
        status = item.get("status") if isinstance(item.get("status"), Mapping) else {}
        if status.get("phase") in _TERMINAL_PHASES:
            continue
        namespace = meta.get("namespace")
        refs.append(
            PodRef(
                namespace if isinstance(namespace, str) else "default", meta["name"], meta["uid"]
            )
        )
    return refs


def check_node_name(name: str) -> str:
    """``name`` if it is a valid Node name (a DNS subdomain: lower-case letters, digits, ``-``
    and ``.``, at most 253 characters), else :class:`~pymm.errors.ConfigError`."""
    if not name or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        shown = name if len(name) <= 64 else name[:61] + "..."
        raise ConfigError(
            f"invalid node name {shown!r}: a node name is a DNS subdomain of at most 253 "
            "lower-case letters, digits, '-' and '.'"
        )
    return name


def pod_fingerprint(pods: Iterable[tuple[str, str]]) -> str:
    """podfingerprint's ``Sign()`` of a set of (namespace, name) pairs: ``pfp0v001`` and the
    hex of XXH64 over the sorted per-pod hashes ``XXH64(name, seed=XXH64(namespace))``, each
    written as 8 little-endian bytes."""
    import xxhash

    hashes = sorted(
        xxhash.xxh64_intdigest(name.encode(), seed=xxhash.xxh64_intdigest(ns.encode()))
        for ns, name in pods
    )
    total = xxhash.xxh64(b"".join(h.to_bytes(8, "little") for h in hashes))
    return "pfp0v001" + str(total.hexdigest())


def cpu_zones(
    machine: Machine,
    *,
    cpu_lists: Mapping[int, frozenset[int]] | None = None,
    reserved: frozenset[int] = frozenset(),
    state: CpuState | None = None,
) -> dict[int, tuple[int, int, int]]:
    """Per NUMA node the CPUs' (capacity, allocatable, available), see the module docstring.
    ``cpu_lists`` (node -> CPU ids, from sysfs) is needed to place reserved or exclusively
    assigned CPUs on their nodes; without them the machine's counts are all there is."""
    if cpu_lists is None and (reserved or (state is not None and state.exclusive)):
        raise ConfigError(
            "placing reserved or exclusively assigned CPUs on NUMA nodes needs the machine's "
            "CPU lists: use --sysfs, or a machine file whose nodes have a cpulist"
        )
    out: dict[int, tuple[int, int, int]] = {}
    exclusive = state.exclusive if state is not None else frozenset()
    if cpu_lists is not None:
        known = frozenset().union(*cpu_lists.values())
        stray = sorted((reserved | exclusive) - known)
        if stray:
            raise ConfigError(
                f"CPU(s) {', '.join(map(str, stray[:8]))} are on no NUMA node of machine "
                f"{machine.name!r}: is it the machine the kubelet runs on?"
            )
    for node in machine.node_ids:
        if cpu_lists is None:
            count = machine.node(node).cpus
            out[node] = (count, count, count)
            continue
        cpus = cpu_lists.get(node, frozenset())
        usable = cpus - reserved
        out[node] = (len(cpus), len(usable), len(usable - exclusive))
    return out


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


def _unpinned_tables(machine: Machine, node: int) -> dict[str, Any]:
    """The None policy's view of a node: everything it has, nothing reserved or pinned."""
    numa = machine.node(node)
    tables = {
        f"hugepages-{canonical_quantity(f'{p.page_size_kib}Ki')}": p.page_size_kib
        * 1024
        * p.num_pages
        for p in numa.hugepages
        if p.num_pages
    }
    tables["memory"] = numa.memory_bytes - numa.hugepage_bytes
    return {
        name: {"total": size, "allocatable": size, "free": size} for name, size in tables.items()
    }


def _zone(
    nodes: Mapping[int, Mapping[str, Any]],
    machine: Machine,
    node: int,
    cpus: tuple[int, int, int] | None,
) -> dict[str, Any]:
    numa = machine.node(node)
    pinned = node in nodes
    group = _group(node, nodes[node].get("cells")) if pinned else (node,)
    in_group = len(group) > 1
    tables = _resources_of(nodes, node) if pinned else _unpinned_tables(machine, node)
    resources = [
        {
            "name": resource,
            "capacity": quantity(int(table["total"])),
            "allocatable": quantity(int(table["allocatable"])),
            "available": quantity(0 if in_group else int(table["free"])),
        }
        for resource, table in sorted(tables.items())
    ]
    if cpus is not None and cpus[0] > 0:
        capacity, allocatable, available = cpus
        resources.append(
            {
                "name": "cpu",
                "capacity": str(capacity),
                "allocatable": str(allocatable),
                "available": str(0 if in_group else available),
            }
        )
        resources.sort(key=lambda r: str(r["name"]))
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
    cpus: Mapping[int, tuple[int, int, int]] | None = None,
    cpu_state: CpuState | None = None,
    pods: Iterable[PodRef] | None = None,
) -> dict[str, Any]:
    """The NodeResourceTopology object for one node, as plain data.

    ``state`` is a checkpoint as data (``machineState`` keyed by node id, as a string or int;
    ``MemoryManager.state`` or the third item of ``decode_checkpoint``). ``machine`` supplies
    what the state does not record: memory kind, CPUs and distances. ``topology_policy`` and
    ``scope`` are the kubelet's Topology Manager settings, in its spelling. ``cpus`` is
    :func:`cpu_zones`' answer (default: the machine's CPU counts, all available);
    ``cpu_state`` the CPU manager's state, whose pods the fingerprint reflects too; ``pods``
    the pods on the node, which names the pods the fingerprint covers.
    """
    if topology_policy not in _POLICIES:
        raise ConfigError(
            f"unknown topology policy {topology_policy!r}; expected one of {', '.join(_POLICIES)}"
        )
    if scope not in _SCOPES:
        raise ConfigError(f"unknown topology scope {scope!r}; expected container or pod")
    if not node_name:
        raise ConfigError("a NodeResourceTopology needs a node name")
    check_node_name(node_name)
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
    if pods is not None:
        fingerprint = _fingerprint(state, cpu_state, pods)
        if fingerprint is not None:
            attributes.append(_attr(FINGERPRINT_ATTRIBUTE, fingerprint))
            attributes.append(_attr(FINGERPRINT_METHOD_ATTRIBUTE, FINGERPRINT_METHOD))
    if cpus is None:
        cpus = cpu_zones(machine)
    # Nodes the state has no table for (the None policy) report the machine's own figures.
    zone_nodes = sorted(set(nodes) | (set(machine.node_ids) if not nodes else set()))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": node_name, "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
        "topologyPolicies": topology_policies(topology_policy, scope),
        "attributes": attributes,
        "zones": [_zone(nodes, machine, node, cpus.get(node)) for node in zone_nodes],
    }


def _fingerprint(
    state: Mapping[str, Any], cpu_state: CpuState | None, pods: Iterable[PodRef]
) -> str | None:
    reflected = set(state.get("entries") or {})
    if cpu_state is not None:
        reflected |= {uid for uid, cpus in cpu_state.exclusive_by_pod.items() if cpus}
    named = {p.uid: (p.namespace, p.name) for p in pods}
    if not reflected <= named.keys():
        return None  # a pod whose resources the numbers hold, but whose name nobody told us
    return pod_fingerprint(named[uid] for uid in reflected)
