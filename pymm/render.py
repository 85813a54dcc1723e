"""Plain-data renderings of pymm's results, shared by every front end (the CLI's ``--json``,
the agent's HTTP answers), so each says the same thing in the same shape."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymm.manager import Admission

__all__ = ["admission_json"]


def admission_json(a: Admission, held: Collection[str] | None = None) -> dict[str, Any]:
    """One admission as ``pymm admit --json`` prints it and ``POST /v1/admit`` answers it. With
    ``held`` (the containers that still hold memory in the state), a container that placed
    memory but holds none now (an init container that finished) is marked
    ``"released": true``."""

    def container(name: str, p: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "numaNodes": list(p.numa_nodes) if p.numa_nodes else None,
            "cpusetMems": p.cpuset_mems,
            "blocks": [
                {"numaAffinity": list(b.numa_nodes), "type": b.resource, "size": b.size}
                for b in p.blocks
            ],
        }
        if held is not None and p.numa_nodes is not None and name not in held:
            out["released"] = True
        return out

    return {
        "podUID": a.pod_uid,
        "admit": a.admitted,
        "reason": a.reason,
        "message": a.message,
        "containers": {name: container(name, p) for name, p in a.placements.items()},
    }
