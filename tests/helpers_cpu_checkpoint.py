"""Test-only writer of the kubelet's ``cpu_manager_state`` (format V2), from the Go rules in
kubernetes ``pkg/kubelet/cm/cpumanager/state/checkpoint.go``: the checksum is
``checksum.New(cp)`` with ``cp.Checksum = 0``, that is FNV-1a 32 over go-spew's ``%#v`` of
``&state.CPUManagerCheckpoint{PolicyName, DefaultCPUSet, Entries, Checksum}`` (keys sorted,
strings raw, a map value's type not repeated). It is an independent transcription of those rules
for building real-shaped files; tests check it against the kubelet's own test vectors before
trusting it, and the engine's decoder against it."""

from __future__ import annotations

import json
from collections.abc import Mapping

from helpers_checkpoint import fnv1a32

Entries = Mapping[str, Mapping[str, str]]


def cpu_spew_text(policy: str, default: str, entries: Entries | None) -> str:
    if entries is None:
        body = "<nil>"
    else:
        pods = " ".join(
            f"{pod}:map[" + " ".join(f"{c}:{s}" for c, s in sorted(cs.items())) + "]"
            for pod, cs in sorted(entries.items())
        )
        body = f"map[{pods}]"
    return (
        f"(*state.CPUManagerCheckpoint){{PolicyName:(string){policy} "
        f"DefaultCPUSet:(string){default} Entries:(map[string]map[string]string){body} "
        "Checksum:(checksum.Checksum)0}"
    )


def cpu_checksum(policy: str, default: str, entries: Entries | None) -> int:
    return fnv1a32(cpu_spew_text(policy, default, entries).encode())


def cpu_manager_state(policy: str, default: str, entries: Entries) -> str:
    """The file as the kubelet writes it (``json.Marshal`` of the struct: compact, fields in
    declaration order, ``entries`` omitted when empty)."""
    doc: dict[str, object] = {"policyName": policy, "defaultCpuSet": default}
    if entries:
        doc["entries"] = {pod: dict(sorted(cs.items())) for pod, cs in sorted(entries.items())}
    doc["checksum"] = cpu_checksum(policy, default, entries)
    return json.dumps(doc, separators=(",", ":"))
