"""Defragmentation plans: ``mm.defrag_plan(pod)`` finds the fewest running pods to move (stop,
then admit again on other nodes of this machine) or, when no move makes room, to evict, after
which a pending pod fits; ``free_node=`` plans emptying a node instead.

The integer program is the batch planner's (:mod:`pymm.plan`): the machine without the pods
that can move, those pods and the pending one as units to place; each running pod is kept
where it is, moved, or evicted, and the objective takes the fewest evictions, then the fewest
moves (then the fewest units spanning several nodes).

Steps: evictions come first. Where possible the moves are ordered so that each one, done on its
own (stop the pod, admit it again on its new nodes), is valid under the kubelet's rules at that
point (``sequential``). Some plans cannot be done one pod at a time: two pods on two nodes
that must become one group can only join it once both have stopped. Then the steps are: stop
every pod of ``moves`` in order, then admit each again in order (``sequential`` is False);
every step is valid that way too. Every plan is checked by applying its steps to a copy of the
manager through the engine (:meth:`pymm._engine.Engine.admit_on`), the pending pod last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymm import _engine
from pymm.errors import NotFoundError, PlacementError, SolverError, SolverTimeLimitError
from pymm.plan import DEFAULT_TIME_LIMIT, Hints, build_model
from pymm.views import NodeUsage, compile_pod, usage_of

if TYPE_CHECKING:
    from pymm.views import PodLike

__all__ = ["DefragPlan", "Move", "apply_steps", "defrag_plan", "operations"]

#: Tries at ordering the moves of a solution before another solution is asked for.
_RETRIES = 8

Where = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Move:
    """One step: the pod stops (its memory released) and, unless ``target`` is None (evicted),
    is admitted again on ``target``'s nodes."""

    pod: str
    source: Where
    target: Where | None

    def to_json(self) -> dict[str, Any]:
        return {
            "pod": self.pod,
            "from": {c: list(n) for c, n in self.source.items()},
            "to": None if self.target is None else {c: list(n) for c, n in self.target.items()},
        }


@dataclass(frozen=True)
class DefragPlan:
    fits: bool
    moves: tuple[Move, ...]
    #: The pending pod's uid and where it goes after the moves (None with ``free_node``).
    pending: str | None = None
    placement: Where | None = None
    free_node: int | None = None
    #: Per node and resource, before and after the plan (``fits`` only).
    before: tuple[NodeUsage, ...] = ()
    after: tuple[NodeUsage, ...] = ()
    status: str = ""
    seconds: float = 0.0
    #: Each move can be done on its own, in order (else: stop them all, then admit them again).
    sequential: bool = True
    #: The pods to admit again, as the engine rebuilt them, and the pending pod.
    _pods: Mapping[str, _engine.Pod] = field(default_factory=dict, repr=False, compare=False)
    _hints: Any = field(default=None, repr=False, compare=False)

    @property
    def evictions(self) -> int:
        return sum(m.target is None for m in self.moves)

    def to_json(self) -> dict[str, Any]:
        """The ``pymm defrag --json`` document."""
        return {"fits": self.fits, "moves": [m.to_json() for m in self.moves]}


def operations(plan: DefragPlan) -> list[_engine.Op]:
    """The plan's steps as lifecycle operations, in order (what :func:`apply_steps` applies):
    each moved or evicted pod released, moved pods admitted again on their nodes, then the
    pending pod."""
    return _ops(plan)


def _ops(plan: DefragPlan) -> list[_engine.Op]:
    """The plan's steps as lifecycle operations: each moved or evicted pod released (stopped,
    its memory given back), moved pods admitted again on their nodes (right away when the plan
    is sequential, else after every release), then the pending pod."""
    ops: list[_engine.Op] = []
    later: list[_engine.Op] = []
    for m in plan.moves:
        ops.append(_engine.Op.release(m.pod))
        if m.target is not None:
            targets = {c: list(n) for c, n in m.target.items()}
            (ops if plan.sequential else later).append(
                _engine.Op.admit_on(plan._pods[m.pod], targets)
            )
    ops += later
    if plan.pending is not None and plan.placement is not None:
        pod = plan._pods[plan.pending]
        targets = {c: list(n) for c, n in plan.placement.items()}
        if targets:
            ops.append(_engine.Op.admit_on(pod, targets, plan._hints))
        else:
            ops.append(_engine.Op.admit(pod, plan._hints))
    return ops


def _steps(engine: _engine.Engine, plan: DefragPlan) -> None:
    """Applies the plan's steps to ``engine``, all or nothing; raises PlacementError where
    one is refused, or where the pending pod is not admitted at the end."""
    snapshot = engine.snapshot()
    results = engine.apply_all(_ops(plan))
    last = results[-1] if results else None
    if plan.pending is not None and not (isinstance(last, _engine.AdmitResult) and last.admit):
        engine.rollback(snapshot)
        raise PlacementError(f"[pymm] pod {plan.pending!r} is not admitted after the moves")


def _order(
    engine: _engine.Engine, moves: list[Move], pods: Mapping[str, _engine.Pod]
) -> list[Move] | None:
    """Evictions first, then moves each valid on its own at its turn; None if the moves
    wait on each other (a cycle)."""
    done = [m for m in moves if m.target is None]
    cur = engine.copy()
    if done:
        cur.apply_all([_engine.Op.release(m.pod) for m in done])
    left = [m for m in moves if m.target is not None]
    while left:
        for m in left:
            trial = cur.copy()
            targets = {c: list(n) for c, n in (m.target or {}).items()}
            try:
                trial.apply_all(
                    [_engine.Op.release(m.pod), _engine.Op.admit_on(pods[m.pod], targets)]
                )
            except PlacementError:
                continue
            cur = trial
            done.append(m)
            left.remove(m)
            break
        else:
            return None
    return done


def defrag_plan(
    engine: _engine.Engine,
    node_ids: Sequence[int],
    pod: PodLike | None = None,
    *,
    hints: Hints = None,
    free_node: int | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
    max_moves: int | None = None,
    evict: bool = True,
) -> DefragPlan:
    """The fewest moves after which ``pod`` fits (or ``free_node`` holds nothing) on what
    ``engine`` runs (a machine of ``node_ids``); see the module docstring. ``engine`` is left
    untouched: :func:`apply_steps` applies a plan (``mm.defrag_plan`` and
    ``mm.apply_defrag`` are these on the manager's engine).

    ``max_moves`` limits the pods a plan may move or evict (a simulation's policy: a plan
    that needs more does not fit), and without ``evict`` no running pod may be evicted."""
    if (pod is None) == (free_node is None):
        raise SolverError("defrag_plan: give a pending pod or free_node=, one of them")
    if not (isinstance(time_limit, int | float) and math.isfinite(time_limit) and time_limit > 0):
        raise SolverError(f"time_limit: expected a number of seconds > 0, got {time_limit!r}")
    if max_moves is not None and not (isinstance(max_moves, int) and max_moves >= 0):
        raise SolverError(f"max_moves: expected a whole number >= 0, got {max_moves!r}")
    if free_node is not None and free_node not in node_ids:
        raise NotFoundError(
            f"free_node: this machine has no NUMA node {free_node} (it has "
            f"{', '.join(map(str, node_ids))})"
        )
    pending = compile_pod(pod) if pod is not None else None
    extra = None if hints is None else list(hints)
    before = tuple(usage_of(engine))
    if pending is not None:
        copy = engine.copy()
        fits = copy.apply(_engine.Op.admit(pending, extra))
        if isinstance(fits, _engine.AdmitResult) and fits.admit:
            # It fits as it is: the kubelet's own admission, no move.
            return DefragPlan(
                True,
                (),
                pending.uid,
                {},
                None,
                before,
                tuple(usage_of(copy)),
                _pods={pending.uid: pending},
                _hints=extra,
            )
    data, movable = _engine.defrag_input(engine, pending, extra)
    pods: dict[str, _engine.Pod] = {p.uid: p for p in movable}
    if pending is not None:
        pods[pending.uid] = pending
    now = _engine.placements(engine)
    model = build_model(data, free_node=free_node)
    prog = model.program
    running = [i for i, p in enumerate(data["pods"]) if p["uid"] != getattr(pending, "uid", None)]
    weight = len(running) + 1.0
    pos = {nid: i for i, nid in enumerate(model.ids)}
    for pi in running:
        z = model.z[pi]
        prog.cost[z] = weight  # each pod kept outweighs every move
        if not evict:
            prog.lb[z] = 1.0
        moved = prog.var(cost=-1.0)
        model.moved[pi] = moved
        for ui, unit in enumerate(data["pods"][pi]["units"]):
            keep = prog.var()
            prog.row([(z, 1.0), (keep, -1.0), (moved, -1.0)], -math.inf, 0.0)
            _stays(model, pi, ui, keep, [pos[i] for i in unit["current"]])
    if max_moves is not None and running:
        # Moves plus evictions (pods not kept) at most max_moves.
        terms = [(model.moved[pi], 1.0) for pi in running]
        terms += [(model.z[pi], -1.0) for pi in running]
        prog.row(terms, -math.inf, float(max_moves - len(running)))
    if pending is not None:
        pi = len(data["pods"]) - 1
        if pi in model.z:
            prog.lb[model.z[pi]] = 1.0
    _discourage_spanning(model, 1.0 / (len(running) + 2) / max(1, len(model.x)))
    pending_uid = pending.uid if pending is not None else None
    first: DefragPlan | None = None
    best_objective = 0.0
    for _ in range(_RETRIES):
        sol = prog.solve(time_limit, maximize=True)
        if not prog.cost:
            sol.values = []  # nothing runs that could move, and no pending pod to place
        elif first is not None and (
            not sol.values or sol.objective is None or sol.objective < best_objective - 1e-6
        ):
            break  # no other plan as good can be done one pod at a time
        if sol.infeasible or (prog.cost and not sol.values):
            if not sol.infeasible:
                raise SolverTimeLimitError(
                    f"the solver found no plan within {time_limit:g} s ({sol.status}); "
                    "give it more time (time_limit=, --time-limit)"
                )
            return DefragPlan(
                False, (), pending_uid, None, free_node, before, (), sol.status, sol.seconds
            )
        placed = model.placements(data, sol.values)
        moves = []
        for pi in running:
            uid = data["pods"][pi]["uid"]
            if sol.values[model.z[pi]] < 0.5:
                moves.append(Move(uid, _where(now[uid]), None))
            elif sol.values[model.moved[pi]] > 0.5:
                moves.append(Move(uid, _where(now[uid]), _where(placed[uid])))
        placement = _where(placed.get(pending_uid, {})) if pending_uid is not None else None
        ordered = _order(engine, moves, pods)
        if ordered is None:
            if first is None:
                evicted = [m for m in moves if m.target is None]
                first = DefragPlan(
                    True,
                    tuple(evicted + [m for m in moves if m.target is not None]),
                    pending_uid,
                    placement,
                    free_node,
                    before,
                    (),
                    sol.status,
                    sol.seconds,
                    sequential=False,
                    _pods=pods,
                    _hints=extra,
                )
                best_objective = sol.objective or 0.0
            # Look for an equally good plan that can be done one pod at a time.
            ids = [model.moved[pi] for pi in running if sol.values[model.moved[pi]] > 0.5]
            prog.row(((v, 1.0) for v in ids), -math.inf, len(ids) - 1.0)
            continue
        plan = DefragPlan(
            True,
            tuple(ordered),
            pending_uid,
            placement,
            free_node,
            before,
            (),
            sol.status,
            sol.seconds,
            _pods=pods,
            _hints=extra,
        )
        return _checked(engine, plan)
    if first is not None:
        return _checked(engine, first)
    return DefragPlan(False, (), pending_uid, None, free_node, before, (), "no plan", 0.0)


def _checked(engine: _engine.Engine, plan: DefragPlan) -> DefragPlan:
    """``plan`` with the usage after it, once its steps have been applied to a copy."""
    check = engine.copy()
    try:
        _steps(check, plan)
    except PlacementError as e:
        raise SolverError(f"the engine refused the defragmentation plan (a bug): {e}") from e
    node = plan.free_node
    after = usage_of(check)
    if node is not None and any(u.node == node and u.reserved for u in after):
        raise SolverError(f"node {node} still holds memory after the plan (a bug)")
    return _with_after(plan, tuple(after))


def _with_after(plan: DefragPlan, after: tuple[NodeUsage, ...]) -> DefragPlan:
    import dataclasses

    return dataclasses.replace(plan, after=after)


def _where(w: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    return {c: tuple(n) for c, n in w.items()}


def _discourage_spanning(model: Any, cost: float) -> None:
    """Among plans with as few moves, those whose units span fewer sets of several nodes
    (cross-NUMA memory): each unit on a multi-node set costs ``cost``, all of them together
    less than one move."""
    prog = model.program
    # A new slot is multi-node when any node beyond its first joins it.
    multi: dict[int, int] = {}
    for si, slot in enumerate(model.slots):
        if slot.fixed or len(slot.member_vars) < 2:
            continue
        m = prog.var()
        multi[si] = m
        for p, mv in slot.member_vars.items():
            if p != slot.members[0]:
                prog.row([(mv, 1.0), (m, -1.0)], -math.inf, 0.0)
    for choices in model.x.values():
        spans = prog.var(cost=-cost)
        for si, v in choices.items():
            slot = model.slots[si]
            if slot.fixed and len(slot.members) > 1:
                prog.row([(v, 1.0), (spans, -1.0)], -math.inf, 0.0)
            elif si in multi:
                prog.row([(v, 1.0), (multi[si], 1.0), (spans, -1.0)], -math.inf, 1.0)


def _stays(model: Any, pi: int, ui: int, keep: int, current: list[int]) -> None:
    """``keep`` may be 1 only if the unit sits exactly where it is now."""
    prog = model.program
    choices = model.x[(pi, ui)]
    members = tuple(sorted(current))
    for si, slot in enumerate(model.slots):
        if slot.fixed and slot.members == members and si in choices:
            prog.row([(keep, 1.0), (choices[si], -1.0)], -math.inf, 0.0)
            return
        if not slot.fixed and slot.members[0] == members[0] and si in choices:
            if not slot.member_vars:
                if len(members) != 1:
                    break
            else:
                if not set(members) <= set(slot.members):
                    break
                for p in slot.members:
                    v = slot.member_vars[p]
                    if p in members:
                        prog.row([(keep, 1.0), (v, -1.0)], -math.inf, 0.0)
                    else:
                        prog.row([(keep, 1.0), (v, 1.0)], -math.inf, 1.0)
            prog.row([(keep, 1.0), (choices[si], -1.0)], -math.inf, 0.0)
            return
    prog.ub[keep] = 0.0  # where it sits cannot be kept (another pod's rules changed)


def apply_steps(
    engine: _engine.Engine,
    plan: DefragPlan,
    durably: Callable[[Callable[[], None]], None] | None = None,
) -> None:
    """Applies ``plan`` to ``engine``, all or nothing; ``durably`` runs the change so that it is
    written (the manager's durable write)."""
    if not plan.fits:
        raise SolverError("this defragmentation plan does not make the pod fit: nothing to apply")

    def change() -> None:
        _steps(engine, plan)

    if durably is None:
        change()
    else:
        durably(change)
