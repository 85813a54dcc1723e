"""Batch placement with an exact solver: ``mm.plan(pods)`` places a set of pods at once to
admit as many as possible (then as much memory as possible) under the kubelet's own rules, with
an integer program solved by HiGHS (``highspy``, the ``pymm[plan]`` extra).

The model, for the units the engine describes (:func:`pymm._engine.plan_input`: a container, or a
whole pod in pod scope or with init containers, each of which must sit on one node or one
group of nodes):

- every node serves single-node allocations or exactly one multi-node group, and groups are
  disjoint: a new group is a *slot* named by its lowest node, which other unused nodes may join
  (the representative formulation, so that no two solutions differ only in slot names); nodes
  already serving single-node allocations or a group keep that role, and an existing group can
  only be taken whole;
- a slot holds what its nodes have free, per resource (memory and each hugepage size: the
  kubelet fills a group's nodes in any order it likes, only the group's sum matters);
- the topology policy: under ``single-numa-node`` a unit's set has one node, under
  ``restricted`` exactly the preferred size (the fewest nodes whose allocatable memory could hold
  it); under both, only sets that every other hint provider (a CPU manager's hints) prefers;
- a unit may use only its memory tier's nodes; a pod is admitted when all its units are placed.

The objective is lexicographic through its weights: pods first, then memory (a pod weighs
``1 + its MiB / (all MiB + 1)``, so the memory of every pod together is worth less than one
pod), then fewer nodes in groups. Every plan is then applied to a copy of the manager through
:meth:`pymm._engine.Engine.admit_on`, which refuses any set the kubelet would not reach; a plan
the engine refuses is a bug, raised as :class:`~pymm.errors.SolverError`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymm import _engine
from pymm.errors import PlacementError, SolverError, SolverTimeLimitError
from pymm.views import admit_result, compile_pod

if TYPE_CHECKING:
    from pymm.views import PodLike

__all__ = ["DEFAULT_TIME_LIMIT", "Plan", "plan"]

#: Seconds the solver may take before it answers with the best plan found and its gap.
DEFAULT_TIME_LIMIT = 10.0

_MIB = 1 << 20

Hints = Sequence[Mapping[str, Any]] | None


def _highs() -> Any:
    try:
        import highspy
    except ImportError as e:
        raise SolverError(
            "batch placement needs the HiGHS solver: pip install 'pymm[plan]' (highspy)"
        ) from e
    return highspy


_banner_lock = threading.Lock()
_banner_shown = False


def _new_highs(highspy: Any) -> Any:
    """A silent solver. HiGHS prints its banner on standard output when the first solver of a
    process is made, which would corrupt ``--json`` output: that one is made with the
    descriptor pointed at /dev/null."""
    global _banner_shown
    with _banner_lock:
        if _banner_shown:
            h = highspy.Highs()
        else:
            sys.stdout.flush()
            saved = os.dup(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 1)
                h = highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
                os.close(devnull)
            _banner_shown = True
    h.setOptionValue("output_flag", False)
    return h


class _Program:
    """A mixed-integer program built as arrays (columns, then rows in compressed form)."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.starts: list[int] = [0]
        self.index: list[int] = []
        self.value: list[float] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []

    def var(self, cost: float = 0.0, lb: float = 0.0, ub: float = 1.0) -> int:
        self.cost.append(cost)
        self.lb.append(lb)
        self.ub.append(ub)
        return len(self.cost) - 1

    def row(self, terms: Iterable[tuple[int, float]], lo: float, hi: float) -> None:
        merged: dict[int, float] = {}
        for i, v in terms:
            merged[i] = merged.get(i, 0.0) + v
        for i, v in merged.items():
            if v != 0.0:
                self.index.append(i)
                self.value.append(v)
        self.starts.append(len(self.index))
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def solve(self, time_limit: float, maximize: bool = True) -> _Solution:
        import numpy as np

        highspy = _highs()
        if not self.cost:
            # Nothing to decide (no pod the memory manager pins): the empty plan.
            return _Solution("Optimal", True, False, [], 0.0, 0.0, 0.0)
        h = _new_highs(highspy)
        h.setOptionValue("time_limit", float(time_limit))
        h.setOptionValue("mip_rel_gap", 1e-9)
        h.setOptionValue("mip_abs_gap", 1e-9)
        # Capacities are integers of demand units: a violation is at least one unit over.
        h.setOptionValue("mip_feasibility_tolerance", 1e-9)
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)
        # The model is small and the machine shared: one thread keeps runs repeatable.
        h.setOptionValue("threads", 1)
        n = len(self.cost)
        inf = highspy.kHighsInf
        h.addVars(n, np.array(self.lb, dtype=np.float64), np.array(self.ub, dtype=np.float64))
        cols = np.arange(n, dtype=np.int32)
        h.changeColsCost(n, cols, np.array(self.cost, dtype=np.float64))
        h.changeColsIntegrality(
            n, cols, np.full(n, int(highspy.HighsVarType.kInteger), dtype=np.uint8)
        )
        m = len(self.row_lo)
        if m:
            h.addRows(
                m,
                np.array([-inf if math.isinf(x) else x for x in self.row_lo], dtype=np.float64),
                np.array([inf if math.isinf(x) else x for x in self.row_hi], dtype=np.float64),
                len(self.index),
                np.array(self.starts[:-1], dtype=np.int32),
                np.array(self.index, dtype=np.int32),
                np.array(self.value, dtype=np.float64),
            )
        sense = highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize
        h.changeObjectiveSense(sense)
        began = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - began
        status = h.getModelStatus()
        info = h.getInfo()
        found = info.primal_solution_status == 2  # kSolutionStatusFeasible
        values = list(h.getSolution().col_value) if found else []
        return _Solution(
            status=h.modelStatusToString(status),
            optimal=status == highspy.HighsModelStatus.kOptimal,
            infeasible=status == highspy.HighsModelStatus.kInfeasible,
            values=values,
            objective=float(info.objective_function_value) if found else None,
            bound=float(info.mip_dual_bound),
            seconds=seconds,
        )


@dataclass
class _Solution:
    status: str
    optimal: bool
    infeasible: bool
    values: list[float]
    objective: float | None
    bound: float
    seconds: float


@dataclass
class _Slot:
    """A set of nodes units may share: fixed (a node serving single-node allocations, an
    existing group) or a new slot named by its lowest free node."""

    members: tuple[int, ...]  # node positions; for a new slot, those that may join
    fixed: bool
    #: A new slot's membership variables, by node position (empty when fixed, or when
    #: no unit may take more than one node and the slot is that node alone).
    member_vars: dict[int, int] = field(default_factory=dict)


@dataclass
class _Model:
    """The program with what is needed to read its solution back."""

    program: _Program
    ids: list[int]
    slots: list[_Slot]
    #: (pod index, unit index) -> slot index -> variable
    x: dict[tuple[int, int], dict[int, int]]
    #: pod index -> its admission variable
    z: dict[int, int]
    #: pod index -> its "moved" variable (defragmentation)
    moved: dict[int, int] = field(default_factory=dict)

    def nodes_of(self, values: Sequence[float], slot: int) -> list[int]:
        s = self.slots[slot]
        if s.fixed or not s.member_vars:
            return [self.ids[p] for p in s.members]
        return [self.ids[p] for p, v in s.member_vars.items() if values[v] > 0.5]

    def placements(self, data: Mapping[str, Any], values: Sequence[float]) -> dict[str, Any]:
        out: dict[str, dict[str, list[int]]] = {}
        for pi, pod in enumerate(data["pods"]):
            zv = self.z.get(pi)
            if zv is None or values[zv] < 0.5:
                continue
            where: dict[str, list[int]] = {}
            for ui, unit in enumerate(pod["units"]):
                chosen = [s for s, v in self.x[(pi, ui)].items() if values[v] > 0.5]
                nodes = self.nodes_of(values, chosen[0])
                for c in unit["containers"]:
                    where[c] = nodes
            out[pod["uid"]] = where
        return out


def _fits(demand: Mapping[str, float], free: Mapping[str, float]) -> bool:
    return all(free.get(r, 0) >= d for r, d in demand.items())


def build_model(data: Mapping[str, Any], *, free_node: int | None = None) -> _Model:
    """The program for the engine's plan input ``data`` (see the module docstring). Each pod
    gets an admission variable (no objective yet: the caller sets it); with ``free_node`` that
    node may hold nothing."""
    prog = _Program()
    nodes = data["nodes"]
    ids = [int(n["id"]) for n in nodes]
    pos = {nid: p for p, nid in enumerate(ids)}
    units = [(pi, ui, u) for pi, p in enumerate(data["pods"]) for ui, u in enumerate(p["units"])]
    resources = sorted({r for _, _, u in units for r in u["demand"]})
    # Each resource counted in the largest unit that divides every demand: the demands
    # become small integers, so capacity rows stay exact within the solver's tolerances.
    unit = {
        r: math.gcd(*(int(u["demand"][r]) for *_, u in units if u["demand"].get(r))) or 1
        for r in resources
    }
    free = [{r: int(n["free"].get(r, 0)) / unit[r] for r in resources} for n in nodes]
    banned = pos.get(free_node) if free_node is not None else None

    slots: list[_Slot] = []
    groups: set[tuple[int, ...]] = set()
    for p, n in enumerate(nodes):
        if n["servesSingle"]:
            slots.append(_Slot((p,), fixed=True))
        elif n["group"] is not None:
            group = tuple(sorted(pos[i] for i in n["group"] if i in pos))
            if group not in groups:
                groups.add(group)
                slots.append(_Slot(group, fixed=True))
    unused = [
        p
        for p, n in enumerate(nodes)
        if not n["servesSingle"] and n["group"] is None and p != banned
    ]
    multi = len(unused) > 1 and any(u.get("size") is None or u["size"] > 1 for *_, u in units)
    group_only = {p for p, n in enumerate(nodes) if n["groupOnly"]}
    first_new = len(slots)
    member_of: dict[int, list[tuple[int, int]]] = {p: [] for p in unused}
    for g in unused:
        if not multi and g in group_only:
            continue  # alone it may not serve anything
        members = tuple(p for p in unused if p >= g) if multi else (g,)
        slot = _Slot(members, fixed=False)
        if multi:
            for p in members:
                v = prog.var(cost=0.0)
                slot.member_vars[p] = v
                member_of[p].append((len(slots), v))
        slots.append(slot)
    if multi:
        for where in member_of.values():
            # A node joins at most one slot.
            prog.row(((v, 1.0) for _, v in where), -math.inf, 1.0)
        for slot in slots[first_new:]:
            g = slot.members[0]
            opened = slot.member_vars[g]
            for p, v in slot.member_vars.items():
                if p != g:
                    prog.row([(v, 1.0), (opened, -1.0)], -math.inf, 0.0)
            if g in group_only:
                # Never alone: a node still marked as part of a group serves only groups.
                prog.row(
                    [(opened, -2.0)] + [(v, 1.0) for v in slot.member_vars.values()],
                    0.0,
                    math.inf,
                )

    z: dict[int, int] = {}
    x: dict[tuple[int, int], dict[int, int]] = {}
    load: dict[int, list[tuple[int, Mapping[str, float]]]] = {}
    for pi, pod in enumerate(data["pods"]):
        if pod["pinned"]:
            z[pi] = prog.var()
    for pi, ui, u in units:
        demand = {r: int(v) / unit[r] for r, v in u["demand"].items() if int(v)}
        allowed = None if u.get("allowed") is None else {pos[i] for i in u["allowed"] if i in pos}
        size = u.get("size")
        sets = None
        if u.get("sets") is not None:
            sets = {tuple(sorted(pos[i] for i in s)) for s in u["sets"] if all(i in pos for i in s)}
        choices: dict[int, int] = {}
        for si, slot in enumerate(slots):
            g = slot.members[0]
            if slot.fixed:
                fixed = set(slot.members)
                ok = (
                    (allowed is None or fixed <= allowed)
                    and (size is None or size == len(fixed))
                    and (sets is None or slot.members in sets)
                    and banned not in fixed
                    and _fits(demand, {r: sum(free[p][r] for p in fixed) for r in resources})
                )
                if ok:
                    choices[si] = prog.var()
                continue
            if allowed is not None and g not in allowed:
                continue
            reach = [p for p in slot.members if allowed is None or p in allowed]
            if size is not None and len(reach) < size:
                continue
            if not _fits(demand, {r: sum(free[p][r] for p in reach) for r in resources}):
                continue
            candidates = None
            if sets is not None:
                candidates = [s for s in sets if s[0] == g and set(s) <= set(reach)]
                if not candidates:
                    continue
            if not multi:
                if size not in (None, 1) or (candidates is not None and (g,) not in candidates):
                    continue
                choices[si] = prog.var()
                continue
            v = prog.var()
            choices[si] = v
            mv = slot.member_vars
            prog.row([(v, 1.0), (mv[g], -1.0)], -math.inf, 0.0)
            for p in slot.members:
                if allowed is not None and p not in allowed:
                    prog.row([(v, 1.0), (mv[p], 1.0)], -math.inf, 1.0)
            big = len(slot.members)
            if size is not None:
                sigma = [(mv[p], 1.0) for p in slot.members]
                prog.row([*sigma, (v, -float(size))], 0.0, math.inf)
                prog.row([*sigma, (v, float(big))], -math.inf, float(size + big))
            if candidates is not None:
                pick = []
                for s in candidates:
                    w = prog.var()
                    pick.append((w, 1.0))
                    for p in slot.members:
                        if p in s:
                            prog.row([(w, 1.0), (mv[p], -1.0)], -math.inf, 0.0)
                        else:
                            prog.row([(w, 1.0), (mv[p], 1.0)], -math.inf, 1.0)
                prog.row([(v, 1.0)] + [(w, -1.0) for w, _ in pick], -math.inf, 0.0)
        x[(pi, ui)] = choices
        for si, v in choices.items():
            load.setdefault(si, []).append((v, demand))
        # Placed exactly once when the pod is admitted.
        prog.row([(v, 1.0) for v in choices.values()] + [(z[pi], -1.0)], 0.0, 0.0)
    for si, items in load.items():
        slot = slots[si]
        for r in resources:
            terms = [(v, float(d.get(r, 0))) for v, d in items if d.get(r, 0)]
            if not terms:
                continue
            if slot.fixed or not slot.member_vars:
                cap = float(sum(free[p][r] for p in slot.members))
                prog.row(terms, -math.inf, cap)
            else:
                room = [(mv, -float(free[p][r])) for p, mv in slot.member_vars.items()]
                prog.row(terms + room, -math.inf, 0.0)
    return _Model(prog, ids, slots, x, z)


def _pod_mib(pod: Mapping[str, Any]) -> float:
    return sum(sum(u["demand"].values()) for u in pod["units"]) / _MIB


def solve_plan(data: Mapping[str, Any], time_limit: float) -> tuple[_Model, _Solution]:
    """Places the pods of ``data`` to admit the most, then the most memory."""
    model = build_model(data)
    prog = model.program
    total = sum(_pod_mib(p) for p in data["pods"]) + 1.0
    for pi, v in model.z.items():
        prog.cost[v] = 1.0 + _pod_mib(data["pods"][pi]) / total
    # Fewer nodes in groups breaks what ties remain (worth less than one MiB in all).
    tiny = 1.0 / (total * (len(model.ids) ** 2 + 1))
    for slot in model.slots:
        for p, v in slot.member_vars.items():
            if p != slot.members[0]:
                prog.cost[v] = -tiny
    return model, prog.solve(time_limit)


@dataclass(frozen=True)
class Plan:
    """A batch placement and how it compares with the kubelet's sequential admission."""

    #: Pods admitted by the plan (pods the memory manager does not pin count when the kubelet
    #: admits them).
    admitted: int
    #: Pods the kubelet admits, one after another in the batch's order (None if not asked).
    kubelet_admitted: int | None
    #: Whether ``admitted`` is proven maximal (``admitted == bound``).
    optimal: bool
    #: The solver's proven upper bound on the pods admitted.
    bound: int
    rejected: tuple[str, ...]
    #: Pod uid -> container -> NUMA node ids, for every pod the memory manager pins.
    placements: Mapping[str, Mapping[str, tuple[int, ...]]]
    #: Bytes of memory and hugepages the plan reserves.
    memory: int
    #: The solver's status and time.
    status: str
    seconds: float
    #: The pods of the batch the memory manager pins (the others hold no NUMA memory).
    pinned: frozenset[str] = frozenset()
    #: Pods admitted as the solver placed them (and pods not pinned); ``admitted`` also counts
    #: pods the plan left out that the kubelet's own admission then took.
    planned: int = 0

    @property
    def gap(self) -> float:
        """How far the plan may be from the optimum, as a fraction of the bound."""
        return (self.bound - self.admitted) / self.bound if self.bound else 0.0

    def with_kubelet(self, admitted: int) -> Plan:
        return dataclasses.replace(self, kubelet_admitted=admitted)

    def to_json(self) -> dict[str, Any]:
        """The ``pymm plan --json`` document."""
        return {
            "admitted": self.admitted,
            "kubeletAdmitted": self.kubelet_admitted,
            "optimal": self.optimal,
            "bound": self.bound,
            "rejected": list(self.rejected),
            "placements": {
                uid: {c: list(n) for c, n in where.items()}
                for uid, where in self.placements.items()
            },
        }


def _extras(pods: Sequence[Any], hints: Mapping[str, Hints] | None) -> list[Any]:
    return [None if hints is None else hints.get(p.uid) for p in pods]


def kubelet_admissions(
    engine: _engine.Engine, pods: Sequence[PodLike], hints: Mapping[str, Hints] | None = None
) -> list[_engine.AdmitResult]:
    """The kubelet's admission of ``pods`` one after another, on a copy of ``engine``."""
    copy = engine.copy()
    compiled = [compile_pod(p) for p in pods]
    extras = _extras(compiled, hints)
    ops = [
        _engine.Op.admit(p, None if e is None else list(e))
        for p, e in zip(compiled, extras, strict=True)
    ]
    return [admit_result(r) for r in copy.apply_all(ops)]


def kubelet_admitted(
    engine: _engine.Engine, pods: Sequence[PodLike], hints: Mapping[str, Hints] | None = None
) -> int:
    """How many of ``pods`` the kubelet admits one after another, on a copy of ``engine``."""
    return sum(r.admit for r in kubelet_admissions(engine, pods, hints))


def apply_placements(
    engine: _engine.Engine,
    pods: Sequence[_engine.Pod],
    placements: Mapping[str, Mapping[str, Sequence[int]]],
    pinned: Mapping[str, bool],
    hints: Mapping[str, Hints] | None = None,
    *,
    start: bool = True,
) -> list[_engine.AdmitResult]:
    """Applies a plan to ``engine``, all or nothing (one engine call): each placed pod on its
    nodes, refused (:class:`~pymm.errors.PlacementError`) where the kubelet's rules would not
    reach them; pods it does not pin, and after all of those the pods the plan leaves out,
    through the kubelet's own admission (which gives the reason). Results in the batch's order."""
    extras = [None if e is None else list(e) for e in _extras(pods, hints)]
    order: list[int] = []
    ops: list[_engine.Op] = []
    left_out = []
    for i, pod in enumerate(pods):
        where = placements.get(pod.uid)
        if where is not None and pinned.get(pod.uid, False):
            targets = {c: list(n) for c, n in where.items()}
            ops.append(_engine.Op.admit_on(pod, targets, extras[i], start))
            order.append(i)
        elif pinned.get(pod.uid, False):
            left_out.append(i)  # after every planned pod, whose room it must not take
        else:
            ops.append(_engine.Op.admit(pod, extras[i], start))
            order.append(i)
    for i in left_out:
        ops.append(_engine.Op.admit(pods[i], extras[i], start))
        order.append(i)
    results = engine.apply_all(ops)
    out: list[_engine.AdmitResult | None] = [None] * len(pods)
    for i, r in zip(order, results, strict=True):
        out[i] = admit_result(r)
    return [r for r in out if r is not None]


def plan(
    engine: _engine.Engine,
    pods: Iterable[PodLike],
    *,
    hints: Mapping[str, Hints] | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
    compare: bool = True,
) -> Plan:
    """The best placement of ``pods`` on top of what ``engine`` runs (see the module
    docstring; ``mm.plan(pods)`` is this on the manager's engine).

    ``hints`` gives pods other hint providers (pod uid -> the ``hints=`` of
    :meth:`MemoryManager.admit`). The plan is checked by applying it to a copy of ``engine``,
    which is left untouched (``mm.admit_many(pods, optimize=True)`` applies one). With
    ``compare`` the kubelet's own result (sequential admission in order) is computed too.
    """
    if not (isinstance(time_limit, int | float) and math.isfinite(time_limit) and time_limit > 0):
        raise SolverError(f"time_limit: expected a number of seconds > 0, got {time_limit!r}")
    compiled = [compile_pod(p) for p in pods]
    extras = _extras(compiled, hints)
    data = _engine.plan_input(engine, compiled, [None if e is None else list(e) for e in extras])
    model, sol = solve_plan(data, time_limit)
    if model.program.cost and not sol.values:
        raise SolverTimeLimitError(
            f"the solver found no plan within {time_limit:g} s ({sol.status}); "
            "give it more time (time_limit=, --time-limit)"
        )
    placements = model.placements(data, sol.values) if model.z else {}
    pinned = {p["uid"]: bool(p["pinned"]) for p in data["pods"]}
    copy = engine.copy()
    try:
        results = apply_placements(copy, compiled, placements, pinned, hints)
    except PlacementError as e:
        raise SolverError(f"the engine refused the solver's plan (a bug in pymm): {e}") from e
    for p, r in zip(compiled, results, strict=True):
        if p.uid in placements and not r.admit:
            raise SolverError(f"the plan's pod {p.uid!r} was not admitted: {r.message}")
    admitted = {p.uid: r for p, r in zip(compiled, results, strict=True) if r.admit}
    unpinned = sum(1 for uid in admitted if not pinned[uid])
    # Pinned pods admitted are at most the bound on the program's objective (each weighs
    # less than 2 and at least 1, all the memory together less than one pod).
    bound = (math.floor(sol.bound + 1e-6) if model.z else 0) + unpinned
    bound = max(bound, len(admitted))
    memory = sum(
        sum(u["demand"].values()) for p in data["pods"] if p["uid"] in admitted for u in p["units"]
    )
    # Where each admitted pinned pod sits, as applied (the plan's sets; a pod the plan left
    # out that the kubelet admitted after it, where the kubelet put it).
    where = {
        uid: {name: tuple(nodes) for name, nodes, _ in r.placements if nodes is not None}
        for uid, r in admitted.items()
        if pinned[uid]
    }
    return Plan(
        admitted=len(admitted),
        kubelet_admitted=kubelet_admitted(engine, compiled, hints) if compare else None,
        optimal=len(admitted) >= bound,
        bound=bound,
        rejected=tuple(p.uid for p in compiled if p.uid not in admitted),
        placements=where,
        memory=memory,
        status=sol.status,
        seconds=sol.seconds,
        pinned=frozenset(uid for uid, yes in pinned.items() if yes),
        planned=len(placements) + unpinned,
    )
