"""Test-only re-implementation of the kubelet's state-file checksum.

The engine refuses to hash a file whose checksum is wrong, so tests that plant inconsistencies
by editing a checkpoint's JSON need their own way to give the edited file a valid checksum:
that is how a file the kubelet accepts can still be inconsistent. This follows
../shared/reference/kubelet-memory-manager.md section 3.2 and is checked against the real
kubelet texts in tests/conformance/state-files/index.json.
"""

from __future__ import annotations

import json
from typing import Any


def _ints(values: list[int] | None) -> str:
    # go-spew prints a nil slice as <nil> but an empty one as [].
    if values is None:
        return "<nil>"
    return "[" + " ".join(str(v) for v in values) + "]"


def spew_text(checkpoint: dict[str, Any]) -> str:
    """go-spew's ``%#v`` of the checkpoint with its checksum field set to 0."""
    nodes = []
    machine = checkpoint.get("machineState") or {}
    for key in sorted(machine, key=int):
        node = machine[key]
        tables = " ".join(
            f"{name}:<*>{{TotalMemSize:(uint64){t['total']} "
            f"SystemReserved:(uint64){t['systemReserved']} "
            f"Allocatable:(uint64){t['allocatable']} Reserved:(uint64){t['reserved']} "
            f"Free:(uint64){t['free']}}}"
            for name, t in sorted((node.get("memoryMap") or {}).items())
        )
        nodes.append(
            f"{int(key)}:<*>{{NumberOfAssignments:(int){node.get('numberOfAssignments', 0)} "
            f"MemoryMap:(map[v1.ResourceName]*state.MemoryTable)map[{tables}] "
            f"Cells:([]int){_ints(node.get('cells'))}}}"
        )
    pods = []
    entries = checkpoint.get("entries") or {}
    for uid in sorted(entries):
        containers = " ".join(
            f"{name}:["
            + " ".join(
                f"{{NUMAAffinity:([]int){_ints(b.get('numaAffinity'))} "
                f"Type:(v1.ResourceName){b['type']} Size:(uint64){b['size']}}}"
                for b in blocks
            )
            + "]"
            for name, blocks in sorted(entries[uid].items())
        )
        pods.append(f"{uid}:map[{containers}]")
    return (
        f"(*state.MemoryManagerCheckpoint){{PolicyName:(string){checkpoint['policyName']} "
        f"MachineState:(state.NUMANodeMap)map[{' '.join(nodes)}] "
        f"Entries:(state.ContainerMemoryAssignments)map[{' '.join(pods)}] "
        f"Checksum:(checksum.Checksum)0}}"
    )


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def with_valid_checksum(checkpoint: dict[str, Any]) -> str:
    """The checkpoint as compact state-file JSON with a checksum the kubelet accepts."""
    body = {k: v for k, v in checkpoint.items() if k != "checksum"}
    body["checksum"] = fnv1a32(spew_text(body).encode())
    return json.dumps(body, separators=(",", ":"))
