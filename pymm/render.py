"""Plain-data renderings of pymm's results, shared by every front end (the CLI's ``--json``,
the agent's HTTP answers), so each says the same thing in the same shape."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymm.manager import Admission

__all__ = ["admission_json"]


def admission_json(a: Admission) -> dict[str, Any]:
    """One admission as ``pymm admit --json`` prints it and ``POST /v1/admit`` answers it."""
    return {
        "podUID": a.pod_uid,
        "admit": a.admitted,
        "reason": a.reason,
        "message": a.message,
        "containers": {
            name: {
                "numaNodes": list(p.numa_nodes) if p.numa_nodes else None,
                "cpusetMems": p.cpuset_mems,
                "blocks": [
                    {"numaAffinity": list(b.numa_nodes), "type": b.resource, "size": b.size}
                    for b in p.blocks
                ],
            }
            for name, p in a.placements.items()
        },
    }
