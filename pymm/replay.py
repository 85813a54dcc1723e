"""Replaying admission scenarios (the format of ``tests/conformance/SCENARIOS.md``).

Each scenario runs a :class:`~pymm.manager.MemoryManager` that keeps its state in memory; every
checkpoint in the results is ``mm.checkpoint()``, the exact text a state directory would hold.
Only a ``restart`` goes through a file: the state is written to a temporary state directory with
the durable write protocol and the manager restores from it, so restarts take the real restore
path. ``durable=True`` keeps the whole scenario in a state directory instead (every operation
written and read back), the slower path with the same results. Results come out in the same
format as the reference results of the real kubelet, and :func:`compare_results` checks two
result sets under that file's comparison rules.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pymm import _engine
from pymm.errors import PymmError, ScenarioError
from pymm.machine import MAX_U64, page_size_kib
from pymm.manager import MemoryManager
from pymm.pod import Pod
from pymm.statefile import STATE_FILE_NAME, atomic_write

__all__ = ["compare_results", "load_scenarios", "replay", "replay_scenario", "scenario_machine"]

DEFAULT_HUGEPAGE_SIZES = ("2Mi", "1Gi")


def _bytes(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected bytes or a quantity, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(_engine.parse_quantity(value))
        except PymmError as e:
            raise ScenarioError(f"{where}: {e}") from e
    else:
        raise ScenarioError(f"{where}: expected bytes or a quantity, got {value!r}")
    if not 0 <= number <= MAX_U64:
        raise ScenarioError(f"{where}: {number} is out of range (0 to {MAX_U64} bytes)")
    return number


def _page_kib(size: object, where: str) -> int:
    if isinstance(size, bool) or not isinstance(size, str | int):
        raise ScenarioError(f"{where}: expected a page size such as '2Mi', got {size!r}")
    try:
        return page_size_kib(size)
    except PymmError as e:
        raise ScenarioError(f"{where}: {e}") from e


def scenario_machine(spec: Mapping[str, Any], where: str = "machine") -> dict[str, Any]:
    """The engine's machine dict for a scenario's ``machine``: every node reports every page
    size of ``hugepageSizes`` (0 pages where it has none), as cadvisor does on x86_64."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("numaNodes"), list):
        raise ScenarioError(f"{where}: needs a list 'numaNodes'")
    sizes = spec.get("hugepageSizes", DEFAULT_HUGEPAGE_SIZES)
    if not isinstance(sizes, list | tuple):
        raise ScenarioError(f"{where}.hugepageSizes: expected a list of page sizes")
    kibs = [_page_kib(size, f"{where}.hugepageSizes[{i}]") for i, size in enumerate(sizes)]
    nodes = []
    rows = []
    for i, n in enumerate(spec["numaNodes"]):
        at = f"{where}.numaNodes[{i}]"
        if not isinstance(n, Mapping) or not isinstance(n.get("id"), int):
            raise ScenarioError(f"{at}: needs an integer 'id'")
        have = n.get("hugepages") or {}
        if not isinstance(have, Mapping):
            raise ScenarioError(f"{at}.hugepages: expected a mapping of page size to bytes")
        pools = []
        for size, kib in zip(sizes, kibs, strict=True):
            total = _bytes(have.get(size, 0), f"{at}.hugepages.{size}")
            pools.append({"page_size_kib": kib, "num_pages": total // (kib * 1024)})
        for size in have:
            if size not in sizes:
                raise ScenarioError(f"{at}.hugepages: page size {size!r} is not in hugepageSizes")
        nodes.append(
            {
                "id": n["id"],
                "memory_bytes": _bytes(n.get("memory", 0), f"{at}.memory"),
                "hugepages": pools,
            }
        )
        rows.append(n.get("distances"))
    distances = rows if all(isinstance(r, list) for r in rows) else None
    return {"name": "scenario", "nodes": nodes, "distances": distances}


def load_scenarios(path: str | Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ScenarioError(f"cannot read {str(path)!r}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{path}: not valid JSON: {e}") from e
    except RecursionError:
        raise ScenarioError(f"{path}: not valid JSON: nested too deeply") from None
    scenarios = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(scenarios, list):
        raise ScenarioError(f"{path}: expected an object with a list 'scenarios'")
    for i, sc in enumerate(scenarios):
        if not isinstance(sc, dict):
            raise ScenarioError(f"{path}: scenarios[{i}]: expected an object")
    return scenarios


def _reserved_memory(sc: Mapping[str, Any]) -> list[Any]:
    """The scenario's ``reservedMemory`` list, its shape checked here so that a malformed
    scenario is the scenario's error rather than a kubelet setup error to compare."""
    value = sc.get("reservedMemory") or []
    if not isinstance(value, list):
        raise ScenarioError("reservedMemory: expected a list")
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping) or not {"numaNode", "limits"} <= entry.keys():
            raise ScenarioError(
                f"reservedMemory[{i}]: expected {{'numaNode': N, 'limits': {{...}}}}, got {entry!r}"
            )
    return value


def _fake_provider(raw_pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    containers = {
        c["name"]: c.get("fakeHints")
        for key in ("initContainers", "containers")
        for c in raw_pod.get(key) or ()
    }
    return [{"name": "fake", "containers": containers, "pod": raw_pod.get("fakePodHints")}]


def _options(sc: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = sc.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{key}: expected a map of option names to values, got {value!r}")
    return dict(value)


def _manager(
    sc: Mapping[str, Any], kubelet_version: str | None, state_dir: Path | None
) -> MemoryManager:
    if not isinstance(sc.get("ops") or [], list):
        raise ScenarioError("ops: expected a list of operations")
    return MemoryManager(
        scenario_machine(sc.get("machine", {})),
        reserved_memory=_reserved_memory(sc),
        node_allocatable=sc.get("nodeAllocatableReservation"),
        memory_policy=sc.get("memoryManagerPolicy", "Static"),
        topology_policy=sc.get("topologyManagerPolicy", "none"),
        scope=sc.get("topologyManagerScope", "container"),
        policy_options=_options(sc, "topologyManagerPolicyOptions"),
        memory_policy_options=_options(sc, "memoryManagerPolicyOptions"),
        kubelet_version=sc.get("kubeletVersion") or kubelet_version or "latest",
        search="exact",
        state_dir=state_dir,
    )


def replay_scenario(
    sc: Mapping[str, Any],
    kubelet_version: str | None = None,
    workdir: Path | None = None,
    *,
    durable: bool = False,
) -> dict[str, Any]:
    """Runs one scenario; ``kubelet_version`` applies when the scenario names none.

    Temporary state directories go under ``workdir`` (default: the system's). ``durable``
    keeps the state in one for the whole scenario, written and read back after every
    operation (the results are the same; it is slower by the cost of a durable write).
    """
    if not isinstance(sc, Mapping):
        raise ScenarioError(f"a scenario must be an object, got {type(sc).__name__}")
    name = str(sc.get("name", "?"))
    if not durable:
        return _replay_on(name, sc, kubelet_version, None, workdir)
    with tempfile.TemporaryDirectory(prefix="pymm-replay-", dir=workdir) as tmp:
        return _replay_on(name, sc, kubelet_version, Path(tmp) / "state", workdir)


def _replay_on(
    name: str,
    sc: Mapping[str, Any],
    kubelet_version: str | None,
    state_dir: Path | None,
    workdir: Path | None,
) -> dict[str, Any]:
    try:
        mm = _manager(sc, kubelet_version, state_dir)
    except ScenarioError as e:
        raise ScenarioError(f"scenario {name!r}: {e}") from e
    except PymmError as e:
        return {"name": name, "setupError": str(e), "results": []}
    with mm:
        return _run_ops(name, sc, mm, workdir)


class _Snapshots:
    """What the results record after each operation: the state file as data (the file itself
    with a state directory, else ``mm.checkpoint()``, the same text) and the active pods.

    A long replay keeps both for every operation, and consecutive ones differ in a node or two
    and one pod. Each part equal to the previous one is that same object, and each pod uid one
    string, so the results' memory, and the garbage collector's full passes over them, grow
    with what changed (20,000 operations with 30-40 pods placed: 140 MB instead of 800 MB, and
    about half the time). Treat the results as read-only: a change to one checkpoint can show
    in others.
    """

    def __init__(self, mm: MemoryManager) -> None:
        self._mm = mm
        self._text: str | None = None
        self._data: dict[str, Any] = {}
        self._active: list[str] = []
        self._names: dict[str, str] = {}

    def checkpoint(self) -> dict[str, Any]:
        path = self._mm.state_path
        text = Path(path).read_text() if path is not None else self._mm.checkpoint()
        if text == self._text:
            return self._data
        data: dict[str, Any] = json.loads(text)
        for key in ("machineState", "entries"):
            mine, before = data.get(key), self._data.get(key)
            if isinstance(mine, dict) and isinstance(before, dict):
                data[key] = before if mine == before else self._reuse(mine, before)
        self._text, self._data = text, data
        return data

    def _reuse(self, mine: dict[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in mine.items():
            old = before.get(k)
            out[self._names.setdefault(k, k)] = old if old == v else v
        return out

    def active_pods(self) -> list[str]:
        active = sorted(self._mm.active_pods)
        if active != self._active:
            self._active = [self._names.setdefault(uid, uid) for uid in active]
        return self._active


def _admit(
    op: Mapping[str, Any], r: dict[str, Any], mm: MemoryManager, sc: Mapping[str, Any]
) -> None:
    raw = op.get("pod")
    if not isinstance(raw, Mapping):
        raise ScenarioError("admit needs a 'pod'")
    pod = Pod.from_dict(raw)
    if sc.get("applyDefaults", True):
        pod = pod.with_defaults()
    r["podUID"] = pod.uid
    fake = bool(sc.get("useFakeProvider"))
    a = mm.admit(
        pod,
        hints=_fake_provider(raw) if fake else None,
        start=op.get("start", True),
        trace=True,
    )
    if a.hint_calls:
        r["hintCalls"] = a.hint_calls
    if a.allocations:
        r["allocations"] = a.allocations
    r["admit"] = a.admitted
    if not a.admitted:
        r["reason"], r["message"] = a.reason, a.message
        if not a.allocations and not a.hint_calls:
            r["error"] = a.message
        elif a.hint_calls and a.reason == "UnexpectedAdmissionError" and not a.allocations:
            # Hint generation itself failed (the kubelet crashes here).
            r["error"] = a.message


def _restart(
    op: Mapping[str, Any], r: dict[str, Any], mm: MemoryManager, i: int, workdir: Path | None
) -> None:
    machine = op.get("machine")
    changes: dict[str, Any] = {
        "machine": scenario_machine(machine, f"ops[{i}].machine") if machine else None,
        "reserved_memory": op.get("reservedMemory"),
        "node_allocatable": op.get("nodeAllocatableReservation"),
    }
    try:
        if mm.state_path is not None:
            mm.restart(**changes)
            return
        # A kubelet restarts from the file on disk: write the state as a state directory
        # holds it and restore from there, so the restore path is the real one.
        with tempfile.TemporaryDirectory(prefix="pymm-replay-", dir=workdir) as tmp:
            atomic_write(Path(tmp) / STATE_FILE_NAME, mm.checkpoint().encode())
            mm.restart(**changes, from_state_dir=tmp)
    except PymmError as e:
        r["error"] = str(e)


def _run_ops(
    name: str, sc: Mapping[str, Any], mm: MemoryManager, workdir: Path | None
) -> dict[str, Any]:
    seen = _Snapshots(mm)
    out: dict[str, Any] = {
        "name": name,
        "allocatableMemory": [
            {"numaAffinity": [n], "type": r, "size": s}
            for n, r, s in sorted(mm.allocatable_memory())
        ],
        "initialCheckpoint": seen.checkpoint(),
        "results": [],
    }
    for i, op in enumerate(sc.get("ops") or ()):
        kind = op.get("op") if isinstance(op, Mapping) else None
        r: dict[str, Any] = {"index": i, "op": kind}
        try:
            if kind == "admit":
                _admit(op, r, mm, sc)
            elif kind == "remove":
                r["podUID"], r["container"] = op["podUID"], op["container"]
                mm.remove(op["podUID"], op["container"])
            elif kind == "removePod":
                r["podUID"] = op["podUID"]
                mm.stop_pod(op["podUID"])
            elif kind == "restart":
                _restart(op, r, mm, i, workdir)
            else:
                raise ScenarioError(f"unknown op {kind!r}")
        except (KeyError, TypeError) as e:
            raise ScenarioError(f"scenario {name!r} ops[{i}]: malformed operation: {e!r}") from e
        except ScenarioError as e:
            raise ScenarioError(f"scenario {name!r} ops[{i}]: {e}") from e
        except PymmError as e:
            if kind != "admit":
                raise
            r["admit"] = False
            r["error"] = str(e)
        r["activePods"] = seen.active_pods()
        r["checkpoint"] = seen.checkpoint()
        out["results"].append(r)
        if "error" in r and kind == "restart":
            break
    return out


def replay(
    scenarios: Iterable[Mapping[str, Any]],
    kubelet_version: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    results = []
    for i, sc in enumerate(scenarios):
        results.append(replay_scenario(sc, kubelet_version))
        if progress:
            progress(i + 1)
    meta = {"engine": f"pymm {_engine.__version__}", "kubeletVersion": kubelet_version or "latest"}
    return {"meta": meta, "results": results}


# -- comparison ------------------------------------------------------------------------


def _block_set(blocks: Sequence[Mapping[str, Any]] | None) -> list[tuple[Any, ...]] | None:
    if blocks is None:
        return None
    return sorted((tuple(b["numaAffinity"] or ()), b["type"], b["size"]) for b in blocks)


def _entries_norm(entries: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        pod: {c: _block_set(bl) for c, bl in ctrs.items()} for pod, ctrs in (entries or {}).items()
    }


def _pod_entries_norm(pod_entries: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        pod: _block_set((e or {}).get("memoryBlocks") or [])
        for pod, e in (pod_entries or {}).items()
    }


def _has_block_order(state: Mapping[str, Any]) -> bool:
    """Whether some container or pod holds several blocks: the kubelet's order among them, and
    so the checksum over them, varies from run to run."""
    containers = (bl for ctrs in (state.get("entries") or {}).values() for bl in ctrs.values())
    pods = ((e or {}).get("memoryBlocks") for e in (state.get("podEntries") or {}).values())
    return any(len(bl or ()) > 1 for bl in (*containers, *pods))


def _checkpoint_diff(mine: Mapping[str, Any], ref: Mapping[str, Any]) -> str | None:
    """The first difference between two state files, as data, or None.

    V1 (kubelets before 1.36): policyName, machineState, entries (each container's
    blocks as a set), and the checksum: equal when no container has several blocks, else
    each file's checksum must match its own content. V3 (kubelet 1.37+) adds ``data``, the
    JSON of policyName, machineState, entries and podEntries: the V1 fields are compared as
    above, ``data`` decoded and compared the same way (podEntries' blocks as sets too), and
    ``dataChecksum`` checked against its own ``data`` (and equal when no block order
    varies). The engine computes every checksum.
    """
    for key in ("policyName", "machineState"):
        if mine.get(key) != ref.get(key):
            return f"{key} differs"
    if _entries_norm(mine.get("entries")) != _entries_norm(ref.get("entries")):
        return "entries differ"
    v3 = "data" in ref
    if ("data" in mine) != v3:
        want, got = ("V3", "V1") if v3 else ("V1", "V3")
        return f"format: {got} != {want}"
    files = (("pymm", mine), ("reference", ref))
    if not _has_block_order(ref):
        if mine.get("checksum") != ref.get("checksum"):
            return f"checksum {mine.get('checksum')} != {ref.get('checksum')}"
    else:
        for who, cp in files:
            if not _engine.Inspection(json.dumps(cp)).checksum_valid:
                return f"{who} checksum does not match its own content"
    if not v3:
        return None
    datas = {}
    for who, cp in files:
        if not _engine.Inspection(json.dumps(cp)).data_checksum_valid:
            return f"{who} data does not decode or match its dataChecksum"
        datas[who] = json.loads(cp["data"])
    got, want = datas["pymm"], datas["reference"]
    for key in ("policyName", "machineState"):
        if got.get(key) != want.get(key):
            return f"data: {key} differs"
    if _entries_norm(got.get("entries")) != _entries_norm(want.get("entries")):
        return "data: entries differ"
    if _pod_entries_norm(got.get("podEntries")) != _pod_entries_norm(want.get("podEntries")):
        return "data: podEntries differ"
    if not _has_block_order(want) and mine.get("dataChecksum") != ref.get("dataChecksum"):
        return f"dataChecksum {mine.get('dataChecksum')} != {ref.get('dataChecksum')}"
    return None


def compare_results(mine: Mapping[str, Any], ref: Mapping[str, Any]) -> list[str]:
    """Differences between two result sets under SCENARIOS.md's comparison rules."""
    diffs: list[str] = []
    refs = {r["name"]: r for r in ref.get("results", ())}
    for got in mine.get("results", ()):
        name = got["name"]
        want = refs.get(name)
        if want is None:
            continue
        if want.get("setupError") is not None or got.get("setupError") is not None:
            if want.get("setupError") != got.get("setupError"):
                diffs.append(
                    f"{name}: setupError {got.get('setupError')!r} != {want.get('setupError')!r}"
                )
            continue
        if got.get("allocatableMemory") != want.get("allocatableMemory"):
            diffs.append(f"{name}: allocatableMemory differs")
        d = _checkpoint_diff(got["initialCheckpoint"], want["initialCheckpoint"])
        if d:
            diffs.append(f"{name}: initialCheckpoint: {d}")
        if len(got["results"]) != len(want["results"]):
            diffs.append(f"{name}: {len(got['results'])} op results != {len(want['results'])}")
        for g, w in zip(got["results"], want["results"], strict=False):
            at = f"{name} op {w['index']} ({w['op']})"
            if w.get("panic"):
                # The kubelet crashed here; pymm must reject with a clear error instead.
                if g.get("admit") is not False or not g.get("error"):
                    diffs.append(f"{at}: expected a clear error where the kubelet panicked")
                continue
            for key in ("admit", "reason", "message", "error", "hintCalls"):
                if g.get(key) != w.get(key):
                    diffs.append(f"{at}: {key}: {g.get(key)!r} != {w.get(key)!r}")
            ga, wa = g.get("allocations") or [], w.get("allocations") or []
            if len(ga) != len(wa):
                diffs.append(f"{at}: {len(ga)} allocations != {len(wa)}")
            for x, y in zip(ga, wa, strict=False):
                for key in ("container", "affinityFromStore", "error"):
                    if x.get(key) != y.get(key):
                        diffs.append(f"{at}: allocation {key}: {x.get(key)!r} != {y.get(key)!r}")
                if _block_set(x.get("blocks")) != _block_set(y.get("blocks")):
                    diffs.append(f"{at}: allocation blocks of {y.get('container')} differ")
            d = _checkpoint_diff(g["checkpoint"], w["checkpoint"])
            if d:
                diffs.append(f"{at}: checkpoint: {d}")
    missing = set(refs) - {r["name"] for r in mine.get("results", ())}
    diffs.extend(f"{n}: missing from results" for n in sorted(missing))
    return diffs
