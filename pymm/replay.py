"""Replaying admission scenarios (the format of ``tests/conformance/SCENARIOS.md``).

Each scenario builds a :class:`~pymm.manager.MemoryManager` on a fresh state directory, so that
every checkpoint in the results is the file on disk and ``restart`` goes through the real
restore path. Results come out in the same format as the reference results of the real
kubelet, and :func:`compare_results` checks two result sets under that file's comparison rules.
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


def replay_scenario(
    sc: Mapping[str, Any], kubelet_version: str | None = None, workdir: Path | None = None
) -> dict[str, Any]:
    """Runs one scenario; ``kubelet_version`` applies when the scenario names none."""
    if not isinstance(sc, Mapping):
        raise ScenarioError(f"a scenario must be an object, got {type(sc).__name__}")
    name = str(sc.get("name", "?"))
    version = sc.get("kubeletVersion") or kubelet_version or "latest"
    with tempfile.TemporaryDirectory(prefix="pymm-replay-", dir=workdir) as tmp:
        state_dir = Path(tmp) / "state"
        try:
            if not isinstance(sc.get("ops") or [], list):
                raise ScenarioError("ops: expected a list of operations")
            mm = MemoryManager(
                scenario_machine(sc.get("machine", {})),
                reserved_memory=_reserved_memory(sc),
                node_allocatable=sc.get("nodeAllocatableReservation"),
                memory_policy=sc.get("memoryManagerPolicy", "Static"),
                topology_policy=sc.get("topologyManagerPolicy", "none"),
                scope=sc.get("topologyManagerScope", "container"),
                policy_options=sc.get("topologyManagerPolicyOptions"),
                kubelet_version=version,
                search="exact",
                state_dir=state_dir,
            )
        except ScenarioError as e:
            raise ScenarioError(f"scenario {name!r}: {e}") from e
        except PymmError as e:
            return {"name": name, "setupError": str(e), "results": []}
        with mm:
            return _run_ops(name, sc, mm)


def _checkpoint(mm: MemoryManager) -> Any:
    assert mm.state_path is not None
    return json.loads(Path(mm.state_path).read_text())


def _run_ops(name: str, sc: Mapping[str, Any], mm: MemoryManager) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "allocatableMemory": [
            {"numaAffinity": [n], "type": r, "size": s}
            for n, r, s in sorted(mm.allocatable_memory())
        ],
        "initialCheckpoint": _checkpoint(mm),
        "results": [],
    }
    fake = bool(sc.get("useFakeProvider"))
    defaults = sc.get("applyDefaults", True)
    for i, op in enumerate(sc.get("ops") or ()):
        kind = op.get("op") if isinstance(op, Mapping) else None
        r: dict[str, Any] = {"index": i, "op": kind}
        try:
            if kind == "admit":
                raw = op.get("pod")
                if not isinstance(raw, Mapping):
                    raise ScenarioError("admit needs a 'pod'")
                pod = Pod.from_dict(raw)
                if defaults:
                    pod = pod.with_defaults()
                r["podUID"] = pod.uid
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
                    elif (
                        a.hint_calls
                        and a.reason == "UnexpectedAdmissionError"
                        and not a.allocations
                    ):
                        # Hint generation itself failed (the kubelet crashes here).
                        r["error"] = a.message
            elif kind == "remove":
                r["podUID"], r["container"] = op["podUID"], op["container"]
                mm.remove(op["podUID"], op["container"])
            elif kind == "removePod":
                r["podUID"] = op["podUID"]
                mm.stop_pod(op["podUID"])
            elif kind == "restart":
                machine = op.get("machine")
                try:
                    mm.restart(
                        machine=scenario_machine(machine, f"ops[{i}].machine") if machine else None,
                        reserved_memory=op.get("reservedMemory"),
                        node_allocatable=op.get("nodeAllocatableReservation"),
                    )
                except ScenarioError:
                    raise
                except PymmError as e:
                    r["error"] = str(e)
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
        r["activePods"] = sorted(mm.active_pods)
        r["checkpoint"] = _checkpoint(mm)
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


def _checkpoint_diff(mine: Mapping[str, Any], ref: Mapping[str, Any]) -> str | None:
    for key in ("policyName", "machineState"):
        if mine.get(key) != ref.get(key):
            return f"{key} differs"
    if _entries_norm(mine.get("entries")) != _entries_norm(ref.get("entries")):
        return "entries differ"
    multi = any(
        len(bl or ()) > 1 for ctrs in (ref.get("entries") or {}).values() for bl in ctrs.values()
    )
    if not multi:
        if mine.get("checksum") != ref.get("checksum"):
            return f"checksum {mine.get('checksum')} != {ref.get('checksum')}"
    else:
        # The kubelet's block order (and so its checksum) varies run to run; the reference
        # checksum must match the reference file's own order, and ours our own.
        for who, cp in (("reference", ref), ("pymm", mine)):
            _, checksum, _ = _engine.decode_checkpoint(json.dumps(cp))
            if checksum != cp.get("checksum"):
                return f"{who} checksum does not match its own content"
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
