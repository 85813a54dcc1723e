"""The Python boundary (issue 10's targets): admit + remove on 8 NUMA nodes with memory and
hugepages-2Mi, from each form a caller may hold a pod in, and reading a placement back.

Targets (medians): from a compiled pod <= 2.5 µs, from a ``pymm.Pod`` <= 4 µs, from a
Kubernetes manifest dict <= 8 µs, ``admission["c"].numa_nodes`` <= 0.3 µs. The machine and
the pods already placed are the reference benchmark's (``test_admission.reference_manager``).
Each round times ``ITERATIONS`` cycles, so the timer's own cost does not swamp a few µs.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_admission import reference_manager

from pymm import Container, Pod, compile_pod

ITERATIONS = 200

POD = Pod.of("bench", Container.of("c", cpu="1", memory="1Gi", hugepages={"2Mi": "64Mi"}))
MANIFEST: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "bench", "uid": "bench"},
    "spec": {
        "containers": [
            {
                "name": "c",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "64Mi"}},
            }
        ]
    },
}
FORMS: dict[str, Any] = {"compiled": compile_pod(POD), "pymm.Pod": POD, "manifest dict": MANIFEST}


@pytest.mark.parametrize("form", list(FORMS))
def test_admit_and_remove(benchmark: Any, form: str) -> None:
    mm = reference_manager(8)
    pod = FORMS[form]
    # Every form is the same pod: the same placement, and the release restores the state.
    before = mm.state
    group = set(before["entries"]["placed-0"]["c"][0]["numaAffinity"])
    a = mm.admit(pod)
    # One node, outside the group the 100Gi pod spans, holding exactly what was asked.
    assert a.admitted and a["c"].numa_nodes is not None and len(a["c"].numa_nodes) == 1
    assert not group & set(a["c"].numa_nodes)
    sizes = {b["type"]: b["size"] for b in mm.state["entries"]["bench"]["c"]}
    assert sizes == {"memory": 1 << 30, "hugepages-2Mi": 64 << 20}
    mm.remove("bench")
    assert mm.state == before

    def cycle() -> None:
        mm.admit(pod)
        mm.remove("bench")

    benchmark.group = "admit + remove, 8 nodes, memory + hugepages-2Mi"
    benchmark.pedantic(cycle, rounds=200, iterations=ITERATIONS, warmup_rounds=5)
    assert mm.state == before


def test_read_a_placement(benchmark: Any) -> None:
    mm = reference_manager(8)
    a = mm.admit(FORMS["compiled"])
    expected = mm.numa_nodes("bench", "c")
    assert expected is not None and a["c"].numa_nodes == expected

    def read() -> tuple[int, ...] | None:
        return a["c"].numa_nodes

    benchmark.group = 'admission["c"].numa_nodes'
    assert benchmark.pedantic(read, rounds=200, iterations=1000, warmup_rounds=5) == expected
