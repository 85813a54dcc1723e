"""pymm: a NUMA-aware memory manager engine.

pymm decides on which NUMA nodes a workload's memory and hugepages are reserved, exactly as the
kubelet's Memory Manager and Topology Manager do (same hints, allocations, errors and state
file), and fast enough to embed in a node agent. See :class:`MemoryManager`.
"""

from pymm import errors
from pymm._engine import __version__, canonical_quantity, merge_hints, parse_quantity
from pymm.machine import DEFAULT_MACHINE, HugePages, Machine, NumaNode
from pymm.manager import (
    Admission,
    Block,
    Enforcement,
    Fragmentation,
    MemoryManager,
    NodeUsage,
    Placement,
    Resize,
    compile_pod,
    reserved_memory_config,
)
from pymm.pod import Container, Pod, Resources, load_pods, load_pods_file

__all__ = [
    "DEFAULT_MACHINE",
    "Admission",
    "Block",
    "Container",
    "Enforcement",
    "Fragmentation",
    "HugePages",
    "Machine",
    "MemoryManager",
    "NodeUsage",
    "NumaNode",
    "Placement",
    "Pod",
    "Resize",
    "Resources",
    "__version__",
    "canonical_quantity",
    "compile_pod",
    "errors",
    "load_pods",
    "load_pods_file",
    "merge_hints",
    "parse_quantity",
    "reserved_memory_config",
]
