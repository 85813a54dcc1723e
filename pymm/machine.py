"""Machines: NUMA nodes with memory, hugepage pools and distances.

A :class:`Machine` comes from the embedded catalog of real topologies
(:meth:`Machine.from_catalog`), from a JSON file, from sysfs (:meth:`Machine.from_sysfs`), or is
built synthetically for tests and benchmarks (:meth:`Machine.synthetic`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from pymm import _engine
from pymm._engine import parse_quantity
from pymm._text import json_loads
from pymm.errors import MachineError, WrongTypeError

__all__ = ["DEFAULT_MACHINE", "MAX_U64", "HugePages", "Machine", "NumaNode", "page_size_kib"]

#: The largest count or size a machine may hold: the engine keeps them in 64 bits.
MAX_U64 = 2**64 - 1

#: The machine ``pymm demo`` and the CLI use when none is named.
DEFAULT_MACHINE = "xeon-8480-2s-snc4"


@functools.cache
def _catalog() -> dict[str, str]:
    """The embedded machines' JSON by name. Package data, read once per process: a process
    that later drops privileges, or whose installation moves, still has its catalog."""
    return {
        f.name.removesuffix(".json"): f.read_text()
        for f in resources.files("pymm.catalog").iterdir()
        if f.name.endswith(".json")
    }


def page_size_kib(size: str | int) -> int:
    """A hugepage size as KiB: ``"2Mi"`` -> 2048, ``"hugepages-1Gi"`` -> 1048576, ``2048`` ->
    2048. Sizes are powers of two, as the kernel's are (the engine's rule)."""
    if isinstance(size, bool) or not isinstance(size, str | int):
        raise WrongTypeError.of("size", size, "a hugepage size such as '2Mi' or KiB as an int")
    if isinstance(size, int):
        return size
    try:
        return _engine.hugepage_size_kib(size)
    except MachineError as e:
        raise MachineError(f"hugepage size {size!r}: {e}") from e


@dataclass(frozen=True, slots=True)
class HugePages:
    page_size_kib: int
    num_pages: int


@dataclass(frozen=True, slots=True)
class NumaNode:
    id: int
    memory_bytes: int
    cpus: int = 0
    kind: str = "DRAM"
    hugepages: tuple[HugePages, ...] = ()

    @property
    def hugepage_bytes(self) -> int:
        return sum(p.page_size_kib * 1024 * p.num_pages for p in self.hugepages)


@dataclass(frozen=True, slots=True)
class Machine:
    """A machine description. ``distances`` rows follow the order of ``nodes``."""

    name: str
    nodes: tuple[NumaNode, ...]
    distances: tuple[tuple[int, ...], ...] | None = None
    description: str = ""
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        """From the catalog's JSON shape (``nodes[].memory_bytes``, ``distances``), checked
        by the engine's one machine decoder: values are not coerced, hugepages must fit in
        their node, distances follow the ACPI SLIT rules. Errors name the field and node.
        Keys the engine does not use (sysfs discovery's ``cpulist``, ``tier``...) are kept
        in ``extra``."""
        if not isinstance(data, Mapping):
            raise MachineError("a machine description must be a mapping")
        checked = _engine.decode_machine(data)
        nodes = tuple(
            NumaNode(
                id=n["id"],
                memory_bytes=n["memory_bytes"],
                cpus=n["cpus"],
                kind=n["kind"],
                hugepages=tuple(
                    HugePages(p["page_size_kib"], p["num_pages"]) for p in n["hugepages"]
                ),
            )
            for n in checked["nodes"]
        )
        dist = checked["distances"]
        known = {"name", "nodes", "distances", "description", "source"}
        return cls(
            name=str(data.get("name") or ""),
            nodes=nodes,
            distances=tuple(tuple(row) for row in dist) if dist else None,
            description=str(data.get("description") or ""),
            source=str(data.get("source") or ""),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def from_json(cls, text: str) -> Machine:
        """A machine description's JSON text (a key given twice is refused, naming its line)."""
        if not isinstance(text, str):
            raise WrongTypeError.of("text", text, "str (from_file reads a file)")
        try:
            data = json_loads(text)
        except json.JSONDecodeError as e:
            raise MachineError(f"machine description is not valid JSON: {e}") from e
        except RecursionError:
            raise MachineError("machine description is nested too deeply to be one") from None
        if not isinstance(data, dict):
            raise MachineError("a machine description must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Machine:
        if not isinstance(path, str | os.PathLike):
            raise WrongTypeError.of("path", path, "a file path (str or os.PathLike)")
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise MachineError(f"cannot read machine file {str(path)!r}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise MachineError(f"machine file {path}: not UTF-8 text") from e
        try:
            return cls.from_json(text)
        except MachineError as e:
            raise MachineError(f"machine file {path}: {e}") from e

    @staticmethod
    def catalog_names() -> list[str]:
        """Names of the embedded real machine topologies."""
        return sorted(_catalog())

    @classmethod
    def from_catalog(cls, name: str) -> Machine:
        if not isinstance(name, str):
            raise WrongTypeError.of("name", name, "a catalog name (str)")
        catalog = _catalog()
        if name not in catalog:
            known = ", ".join(sorted(catalog))
            raise MachineError(f"unknown machine {name!r}; known machines: {known}")
        return cls.from_json(catalog[name])

    @classmethod
    def load(cls, name_or_path: str | Path) -> Machine:
        """A catalog name, or a path to a machine JSON file."""
        if "\0" in str(name_or_path):
            # The OS refuses such a path with a bare ValueError; it is no name either.
            raise MachineError(f"unknown machine {str(name_or_path)!r}: it contains a NUL byte")
        p = Path(name_or_path)
        try:
            is_file = p.exists()
        except OSError:
            # A working directory the user may not search (EACCES): a catalog name is still
            # a catalog name, and an unknown one is reported as such.
            is_file = False
        if isinstance(name_or_path, Path) or p.suffix == ".json" or is_file:
            return cls.from_file(p)
        return cls.from_catalog(str(name_or_path))

    @classmethod
    def from_sysfs(cls, root: str | Path = "/") -> Machine:
        """Discovers the NUMA topology of the machine at ``root`` (see :mod:`pymm.sysfs`)."""
        from pymm.sysfs import discover

        return cls.from_dict(discover(root))

    @classmethod
    def synthetic(
        cls,
        n: int,
        *,
        memory: str | int = "64Gi",
        hugepages: Mapping[str, int] | None = None,
        local: int = 10,
        remote: int = 20,
        name: str | None = None,
    ) -> Machine:
        """``n`` identical nodes; ``hugepages`` maps a page size to pages per node."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise WrongTypeError.of("n", n, "a number of nodes (int)")
        if isinstance(memory, bool) or not isinstance(memory, str | int):
            raise WrongTypeError.of("memory", memory, "a quantity such as '64Gi', or bytes")
        if hugepages is not None and not isinstance(hugepages, Mapping):
            raise WrongTypeError.of("hugepages", hugepages, "a mapping of page size to pages")
        mem = int(parse_quantity(memory)) if isinstance(memory, str) else memory
        pools = tuple(
            HugePages(page_size_kib(size), count) for size, count in (hugepages or {}).items()
        )
        nodes = tuple(NumaNode(i, mem, cpus=1, kind="DRAM", hugepages=pools) for i in range(n))
        dist = tuple(tuple(local if i == j else remote for j in range(n)) for i in range(n))
        return cls(name or f"synthetic-{n}", nodes, dist, description=f"{n} identical nodes")

    @classmethod
    def gb200_like(cls, n_gpu: int = 32) -> Machine:
        """A GB200-like tray: 2 Grace CPU nodes (480Gi, 72 CPUs, 2Mi hugepages) and ``n_gpu``
        CPU-less GPU-memory nodes (186Gi of HBM each), 34 NUMA nodes by default.

        Modelled from the publicly reported NUMA node count only: capacities are round figures
        and the distances (local 10, CPU-CPU 40, CPU-GPU 80, GPU-GPU 120) are plausible, not
        measured.
        """
        if isinstance(n_gpu, bool) or not isinstance(n_gpu, int):
            raise WrongTypeError.of("n_gpu", n_gpu, "a number of GPU nodes (int)")
        if not 0 <= n_gpu <= 126:
            raise MachineError(f"gb200_like: 0..126 GPU nodes, got {n_gpu}")
        gib = 1 << 30
        cpu_pools = (HugePages(2048, 8192),)
        nodes = [NumaNode(i, 480 * gib, cpus=72, kind="DRAM", hugepages=cpu_pools) for i in (0, 1)]
        nodes += [NumaNode(2 + g, 186 * gib, cpus=0, kind="HBM") for g in range(n_gpu)]

        def distance(i: int, j: int) -> int:
            if i == j:
                return 10
            if i < 2 and j < 2:
                return 40
            return 80 if i < 2 or j < 2 else 120

        n = len(nodes)
        dist = tuple(tuple(distance(i, j) for j in range(n)) for i in range(n))
        return cls(
            f"gb200-like-{n}",
            tuple(nodes),
            dist,
            description=f"2 CPU nodes + {n_gpu} GPU-memory nodes (modelled, not measured)",
        )

    # -- derived machines ----------------------------------------------------------------

    def with_hugepages(
        self, pools: Mapping[str, int], nodes: Iterable[int] | None = None
    ) -> Machine:
        """A copy where the given nodes (default: all) have these hugepage pools (size ->
        pages); memory stays the same, so hugepages come out of it as on a real node."""
        if not isinstance(pools, Mapping):
            raise WrongTypeError.of("pools", pools, "a mapping of page size to pages")
        chosen = set(nodes) if nodes is not None else {n.id for n in self.nodes}
        hp = tuple(HugePages(page_size_kib(s), c) for s, c in pools.items())
        new = tuple(replace(n, hugepages=hp) if n.id in chosen else n for n in self.nodes)
        return replace(self, nodes=new)

    # -- views ---------------------------------------------------------------------------

    @property
    def node_ids(self) -> list[int]:
        return [n.id for n in self.nodes]

    def node(self, node_id: int) -> NumaNode:
        """The node with this id."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise MachineError(f"machine {self.name!r} has no NUMA node {node_id}", node=node_id)

    def to_dict(self) -> dict[str, Any]:
        """The plain data the engine takes (and the catalog's JSON shape). Every node reports
        every page size found on any node, with 0 pages where it has none, as the kernel's
        per-node ``hugepages-<size>kB`` directories (and cadvisor) do."""
        # A description without pools still has the kernel's default page sizes (x86_64: 2Mi
        # and 1Gi), each with 0 pages, as every real node reports them.
        sizes = sorted({p.page_size_kib for n in self.nodes for p in n.hugepages}) or [
            2048,
            1048576,
        ]

        def pools(n: NumaNode) -> list[dict[str, int]]:
            have = {p.page_size_kib: p.num_pages for p in n.hugepages}
            return [{"page_size_kib": s, "num_pages": have.get(s, 0)} for s in sizes]

        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "nodes": [
                {
                    "id": n.id,
                    "memory_bytes": n.memory_bytes,
                    "cpus": n.cpus,
                    "kind": n.kind,
                    "hugepages": pools(n),
                }
                for n in self.nodes
            ],
            "distances": [list(r) for r in self.distances] if self.distances else None,
        }

    def reserve_per_node(self, memory: str = "1Gi") -> list[dict[str, Any]]:
        """A ``reservedMemory`` list reserving ``memory`` on every node."""
        return [{"numaNode": n.id, "limits": {"memory": memory}} for n in self.nodes]

    def summary(self) -> str:
        total = sum(n.memory_bytes for n in self.nodes) / 2**30
        kinds = sorted({n.kind for n in self.nodes})
        return f"{len(self.nodes)} NUMA nodes, {total:.0f} GiB, {'/'.join(kinds)}"


def as_machine(value: Machine | str | Path | Mapping[str, Any]) -> Machine:
    if isinstance(value, Machine):
        return value
    if isinstance(value, Mapping):
        return Machine.from_dict(value)
    if isinstance(value, str | Path):
        return Machine.load(value)
    raise MachineError(
        "expected a Machine, a catalog name, a machine JSON file or a machine mapping, got "
        f"{type(value).__name__}"
    )
