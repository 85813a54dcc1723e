"""No arithmetic wrap (issue 9): extreme sizes in machines, reservations and pods.

Sizes around the 64-bit edges (0, 1, 2^63, 2^64 - 1 and their neighbours) go through the
public API (``Machine.from_dict``, ``Machine.with_hugepages``, ``MemoryManager``,
``mm.admit``). Every outcome must be a typed ``pymm.errors`` error or a state that Python's
unbounded integers confirm: for every node and resource ``reserved + free == allocatable``,
``allocatable <= total``, allocatable exactly what the machine and reservation leave, and no
pod admitted beyond the memory that was free (the 1000Ti pod once fitted on a machine whose
hugepages exceeded its memory, because the node's memory wrapped to about 2^64 bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pymm import Container, Machine, MemoryManager, NumaNode, Pod
from pymm.errors import MachineError, PymmError, ReservedMemoryError

U64 = 2**64
EXTREMES = [
    0,
    1,
    2,
    2**31,
    2**32,
    2**53,
    2**62,
    2**63 - 1,
    2**63,
    2**63 + 1,
    U64 - 2,
    U64 - 1,
    U64,
    U64 + 1,
]
GI = 2**30


edges = st.one_of(st.sampled_from(EXTREMES), st.integers(0, 2**66))


def _sometimes_edges(ordinary: st.SearchStrategy[int], wild: bool) -> st.SearchStrategy[int]:
    """In a wild example one value in four is a 64-bit edge or an arbitrary huge number; the
    others (and every value of a tame example) are ordinary, so that many machines open and
    pods get admitted."""
    if not wild:
        return ordinary
    return st.integers(0, 3).flatmap(lambda k: edges if k == 0 else ordinary)


ORDINARY_MEMORY = st.integers(4, 64).map(lambda g: g * GI)
ORDINARY_RESERVED = st.integers(1, 4).map(lambda g: g * GI)
ORDINARY_PAGE_KIB = st.sampled_from([2048, 1048576])
ODD_PAGE_KIB = st.sampled_from([0, 1, 4, 2**53, 2**54, 2**63, U64 - 1, U64])
request_sizes = _sometimes_edges(st.integers(0, 48).map(lambda g: g * GI), wild=True)


def _binary_si(nbytes: int) -> str:
    """A page size as the kubelet names it (``2Mi``): the largest binary suffix dividing it."""
    for power, suffix in ((6, "Ei"), (5, "Pi"), (4, "Ti"), (3, "Gi"), (2, "Mi"), (1, "Ki")):
        if nbytes % 1024**power == 0:
            return f"{nbytes // 1024**power}{suffix}"
    return str(nbytes)


def _resource(kib: int) -> str:
    return f"hugepages-{_binary_si(kib * 1024)}"


@st.composite
def machines(draw: st.DrawFn) -> dict[str, Any]:
    wild = draw(st.booleans())
    page_kib = (
        st.one_of(ORDINARY_PAGE_KIB, ODD_PAGE_KIB, st.integers(0, U64 + 1))
        if wild
        else ORDINARY_PAGE_KIB
    )
    pages = _sometimes_edges(st.integers(0, 8), wild)
    nodes = []
    for i in range(draw(st.integers(1, 3))):
        pools = draw(st.lists(st.tuples(page_kib, pages), max_size=2, unique_by=lambda p: p[0]))
        nodes.append(
            {
                "id": i,
                "memory_bytes": draw(_sometimes_edges(ORDINARY_MEMORY, wild)),
                "cpus": 1,
                "kind": "DRAM",
                "hugepages": [{"page_size_kib": k, "num_pages": n} for k, n in pools],
            }
        )
    return {"name": "extreme", "nodes": nodes, "distances": None}


@st.composite
def reservations(draw: st.DrawFn, machine: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    if draw(st.integers(0, 3)) == 0:
        return None  # the default: 1Gi of memory on every node
    wild = draw(st.booleans())
    out = []
    for node in machine["nodes"]:
        limits = {"memory": str(draw(_sometimes_edges(ORDINARY_RESERVED, wild)))}
        for pool in node["hugepages"]:
            if draw(st.booleans()):
                pool_bytes = pool["page_size_kib"] * 1024 * pool["num_pages"]
                amount = _sometimes_edges(st.integers(0, pool_bytes), wild)
                limits[_resource(pool["page_size_kib"])] = str(draw(amount))
        out.append({"numaNode": node["id"], "limits": limits})
    return out


def _reserved(reserved: list[dict[str, Any]] | None, node: int, resource: str) -> int:
    if reserved is None:
        return GI if resource == "memory" else 0
    for entry in reserved:
        if entry["numaNode"] == node:
            return int(entry["limits"].get(resource, 0))
    return 0


def _expected_allocatable(
    machine: Mapping[str, Any], reserved: list[dict[str, Any]] | None
) -> dict[tuple[int, str], int]:
    """(node, resource) -> allocatable in exact arithmetic; negative where it does not fit."""
    out: dict[tuple[int, str], int] = {}
    for node in machine["nodes"]:
        hugepage_bytes = 0
        for pool in node["hugepages"]:
            resource = _resource(pool["page_size_kib"])
            total = pool["page_size_kib"] * 1024 * pool["num_pages"]
            hugepage_bytes += total
            out[node["id"], resource] = total - _reserved(reserved, node["id"], resource)
        memory_reserved = _reserved(reserved, node["id"], "memory")
        out[node["id"], "memory"] = node["memory_bytes"] - hugepage_bytes - memory_reserved
    return out


def _assert_consistent(mm: MemoryManager) -> None:
    for u in mm.usage():
        row = f"node {u.node} {u.resource}: {u}"
        assert 0 <= u.reserved <= u.allocatable <= u.total < U64, row
        assert u.reserved + u.free == u.allocatable, row


def _reserved_by_resource(mm: MemoryManager) -> dict[str, int]:
    out: dict[str, int] = {}
    for u in mm.usage():
        out[u.resource] = out.get(u.resource, 0) + u.reserved
    return out


def _free_by_resource(mm: MemoryManager) -> dict[str, int]:
    out: dict[str, int] = {}
    for u in mm.usage():
        out[u.resource] = out.get(u.resource, 0) + u.free
    return out


def _fits_one_node(mm: MemoryManager, memory: int) -> bool:
    """Whether a node outside any multi-node group has ``memory`` free (requests are int64
    in the kubelet, so larger ones are refused whatever is free)."""
    groups = mm.groups()
    return memory < 2**63 and any(
        u.resource == "memory" and u.free >= memory and groups.get(u.node, (u.node,)) == (u.node,)
        for u in mm.usage()
    )


BUILDS = ["from_dict", "mapping", "with_hugepages"]


def _build(machine: Mapping[str, Any], how: str) -> Machine | Mapping[str, Any]:
    """The machine as a user hands it over: decoded by ``Machine.from_dict``, as the plain
    mapping, or assembled in Python (no checks) with ``with_hugepages`` adding each pool."""
    if how == "from_dict":
        return Machine.from_dict(machine)
    if how == "mapping":
        return machine
    plain = tuple(NumaNode(n["id"], n["memory_bytes"], n["cpus"]) for n in machine["nodes"])
    built = Machine(machine["name"], plain)
    for n in machine["nodes"]:
        pools = {f"{p['page_size_kib']}Ki": p["num_pages"] for p in n["hugepages"]}
        built = built.with_hugepages(pools, nodes=[n["id"]])
    return built


def _open(
    machine: Mapping[str, Any], reserved: list[dict[str, Any]] | None, how: str
) -> MemoryManager | None:
    """The manager, or None when the public API refused the input with a typed error; a
    refusal is required where exact arithmetic finds something that does not fit."""
    expected = _expected_allocatable(machine, reserved)
    impossible = any(v < 0 for v in expected.values()) or any(
        n["memory_bytes"] >= U64 for n in machine["nodes"]
    )
    try:
        mm = MemoryManager(_build(machine, how), reserved_memory=reserved)
    except PymmError as e:
        event(f"refused: {type(e).__name__}")
        return None
    assert not impossible, f"accepted a machine/reservation that does not fit: {expected}"
    _assert_consistent(mm)
    rows = {(u.node, u.resource): u.allocatable for u in mm.usage()}
    for key, value in expected.items():
        assert rows[key] == value, key
    return mm


# Each pod: its memory, and an amount of the first node's first hugepage size (or none).
pod_requests = st.lists(
    st.tuples(request_sizes, st.one_of(st.none(), request_sizes)), min_size=1, max_size=4
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), machine=machines(), requests=pod_requests)
def test_extreme_sizes_never_wrap(
    data: st.DataObject, machine: dict[str, Any], requests: list[tuple[int, int | None]]
) -> None:
    reserved = data.draw(reservations(machine))
    mm = _open(machine, reserved, data.draw(st.sampled_from(BUILDS)))
    if mm is None:
        return
    pools = machine["nodes"][0]["hugepages"]
    for i, (memory, hugepages) in enumerate(requests):
        resources = {"memory": memory}
        if hugepages is not None and pools:
            resources[_resource(pools[0]["page_size_kib"])] = hugepages
        try:
            pod = Pod.of(f"p{i}", Container.of("c", cpu="1", requests=resources, limits=resources))
        except PymmError:
            continue
        free_before = _free_by_resource(mm)
        reserved_before = _reserved_by_resource(mm)
        # Only Guaranteed pods get memory pinned (a zero limit does not count as set).
        pinned = pod.compiled.qos_class == "Guaranteed"
        fits_one_node = pinned and len(resources) == 1 and _fits_one_node(mm, memory)
        admission = mm.admit(pod)
        event(f"{pod.compiled.qos_class} {'admitted' if admission.admitted else 'rejected'}")
        _assert_consistent(mm)
        if fits_one_node:
            # Wrapped sums would also refuse pods that fit: best-effort places such a pod.
            assert admission.admitted, (memory, admission.message)
        if admission.admitted and pinned:
            for resource, amount in resources.items():
                assert amount <= free_before.get(resource, 0), (resource, amount)
                assert _reserved_by_resource(mm)[resource] == reserved_before[resource] + amount
        else:
            assert _reserved_by_resource(mm) == reserved_before


@given(
    memory=st.sampled_from(EXTREMES[:12]),
    pages=st.sampled_from(EXTREMES),
    kib=st.sampled_from([1, 2048, 1048576, 2**40]),
)
def test_hugepages_beyond_memory_are_refused_naming_the_node(
    memory: int, pages: int, kib: int
) -> None:
    node = {"id": 7, "memory_bytes": memory, "cpus": 1, "kind": "DRAM"}
    pool = [{"page_size_kib": kib, "num_pages": pages}]
    machine = {"name": "m", "nodes": [{**node, "hugepages": pool}]}
    if kib * 1024 * pages <= memory:
        assert Machine.from_dict(machine).nodes[0].hugepage_bytes == kib * 1024 * pages
        return
    with pytest.raises(MachineError) as info:
        Machine.from_dict(machine)
    if pages < U64:  # a count beyond 64 bits is refused as a number before any node check
        assert info.value.node == 7
        assert "node 7" in str(info.value)


def test_the_1000ti_pod_does_not_fit_a_machine_whose_hugepages_exceed_its_memory() -> None:
    # The reported machine: 64 x 1Gi pages on a 64Gi node, plus one page too many.
    wrapped = Machine.synthetic(2, memory="64Gi").with_hugepages({"1Gi": 65}, nodes=[1])
    with pytest.raises(MachineError) as info:
        MemoryManager(wrapped)
    assert info.value.node == 1
    assert "node 1" in str(info.value)
    full = Machine.synthetic(2, memory="64Gi").with_hugepages({"1Gi": 63})
    mm = MemoryManager(full, reserved_memory="0:memory=1Gi;1:memory=1Gi")
    assert [u.allocatable for u in mm.usage() if u.resource == "memory"] == [0, 0]
    pod = Pod.of("huge", Container.of("c", cpu="1", memory="1000Ti"))
    assert not mm.admit(pod).admitted
    _assert_consistent(mm)


@pytest.mark.parametrize("extra", [1, GI, 2**63])
def test_a_reservation_larger_than_its_node_is_refused_naming_the_node(extra: int) -> None:
    machine = Machine.synthetic(3, memory="4Gi")
    reserved = [
        {"numaNode": n, "limits": {"memory": str(4 * GI + extra if n == 2 else GI)}}
        for n in range(3)
    ]
    with pytest.raises(ReservedMemoryError) as info:
        MemoryManager(machine, reserved_memory=reserved)
    if 4 * GI + extra < 2**63:  # beyond int64 the kubelet's own text applies, with no node
        assert info.value.node == 2
        assert "node 2" in str(info.value)


def test_reservations_summing_beyond_64_bits_stay_exact() -> None:
    # Each node's reservation fits its node; their sum (Node Allocatable's default) is beyond
    # 64 bits and must neither wrap nor spill into a node.
    machine = Machine.synthetic(3, memory=U64 - 1)
    each = 2**63 - 1
    reserved = [{"numaNode": n, "limits": {"memory": str(each)}} for n in range(3)]
    mm = MemoryManager(machine, reserved_memory=reserved)
    memory = [u for u in mm.usage() if u.resource == "memory"]
    assert [u.allocatable for u in memory] == [U64 - 1 - each] * 3
    for uid in "abc":
        assert mm.admit(Pod.of(uid, Container.of("c", cpu="1", memory=str(each)))).admitted
    # One byte is left on each node: three bytes in all, not enough for another such pod.
    assert [u.free for u in mm.usage() if u.resource == "memory"] == [1, 1, 1]
    assert not mm.admit(Pod.of("d", Container.of("c", cpu="1", memory=str(each)))).admitted
    _assert_consistent(mm)
