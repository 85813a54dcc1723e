"""Every engine error variant arrives as its `pymm.errors` class with its data as attributes
(one mapping, in engine/src/py/errors.rs), survives pickling, and gets its advice by type and
fields, never by message text."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pymm
from pymm import Container, Machine, MemoryManager, Pod, _engine, errors

GI = 1 << 30


def raised(call: Callable[[], object]) -> errors.PymmError:
    with pytest.raises(errors.PymmError) as info:
        call()
    return info.value


def state_file(tmp_path: Path) -> Path:
    m = Machine.synthetic(2, memory="17Gi")
    with MemoryManager(m, state_dir=tmp_path) as mm:
        mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="4Gi")))
    return tmp_path / "memory_manager_state"


def test_config_error_names_the_key_and_the_closest_one() -> None:
    e = raised(lambda: _engine.Engine(Machine.synthetic(2).to_dict(), {"topology_polcy": "x"}))
    assert isinstance(e, errors.ConfigError) and isinstance(e, ValueError)
    assert (e.key, e.suggestion) == ("topology_polcy", "topology_policy")
    assert 'unknown configuration key "topology_polcy"' in str(e)


def test_reserved_memory_error_names_the_node() -> None:
    m = Machine.synthetic(2, memory="4Gi")
    e = raised(lambda: MemoryManager(m, reserved_memory="0:memory=1Gi;1:memory=8Gi"))
    assert isinstance(e, errors.ReservedMemoryError) and e.node == 1
    assert "NUMA node 1" in errors.advice_for(e)


def test_machine_error_names_the_node() -> None:
    data = {
        "nodes": [
            {"id": 4, "memory_bytes": GI, "hugepages": [{"page_size_kib": 1 << 20, "num_pages": 2}]}
        ]
    }
    e = raised(lambda: Machine.from_dict(data))
    assert isinstance(e, errors.MachineError) and e.node == 4
    assert "exceed its memory" in str(e)


def test_pod_error_names_the_field() -> None:
    e = raised(lambda: Pod.of("p", Container("c", {"memory": "2Gi"}, {"memory": "1Gi"})))
    assert isinstance(e, errors.PodError)
    assert e.field == "containers[0].requests.memory"


def test_not_found_error_names_pod_and_container() -> None:
    mm = MemoryManager(Machine.synthetic(2))
    e = raised(lambda: mm.remove("ghost", "c"))
    assert isinstance(e, errors.NotFoundError) and isinstance(e, LookupError)
    assert (e.pod_uid, e.container) == ("ghost", "c")
    mm.remove("ghost", "c", missing_ok=True)


def test_corrupted_checkpoint_carries_both_checksums(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    doc = json.loads(path.read_text())
    stored = doc["checksum"]
    doc["checksum"] = stored + 1
    # The V1 checksum, as a kubelet up to 1.36 checks it (1.37+ check dataChecksum instead).
    e = raised(lambda: _engine.decode_checkpoint(json.dumps(doc, separators=(",", ":")), "1.32"))
    assert isinstance(e, errors.CheckpointCorruptedError)
    assert (e.stored_checksum, e.computed_checksum) == (stored + 1, stored)
    bad_json = raised(lambda: _engine.decode_checkpoint("{"))
    assert isinstance(bad_json, errors.CheckpointCorruptedError)
    assert (bad_json.stored_checksum, bad_json.computed_checksum) == (None, None)
    assert "damaged or was edited" in errors.advice_for(e)


def test_policy_mismatch_names_both_policies(tmp_path: Path) -> None:
    state_file(tmp_path)
    e = raised(
        lambda: MemoryManager(Machine.synthetic(2), memory_policy="None", state_dir=tmp_path)
    )
    assert isinstance(e, errors.PolicyMismatchError) and isinstance(e, errors.StateMismatchError)
    assert (e.configured_policy, e.stored_policy, e.kind) == ("None", "Static", "policy")
    assert "'Static'" in errors.advice_for(e)


def test_state_mismatch_carries_kind_details_and_drift(tmp_path: Path) -> None:
    state_file(tmp_path)
    drifted = Machine.synthetic(2, memory="17Gi").to_dict()
    drifted["nodes"][0]["memory_bytes"] -= 64 << 20
    e = raised(lambda: MemoryManager(drifted, state_dir=tmp_path))
    assert isinstance(e, errors.StateMismatchError) and e.kind == "machine-state"
    assert any("node 0 memory total" in d for d in e.details)
    assert e.least_drift_tolerance == 64 << 20
    assert "tolerate_drift" in errors.advice_for(e)


def test_unknown_node_in_the_file_has_its_kind(tmp_path: Path) -> None:
    m = Machine.synthetic(2, memory="17Gi")
    with MemoryManager(m, state_dir=tmp_path) as mm:
        for uid in ("a", "b"):  # 12Gi each: one per node
            mm.admit(Pod.of(uid, Container.of("c", cpu="1", memory="12Gi")))
        assert mm.numa_nodes("b", "c") == (1,)
    e = raised(lambda: MemoryManager(Machine.synthetic(1, memory="17Gi"), state_dir=tmp_path))
    assert isinstance(e, errors.StateMismatchError) and e.kind == "unknown-node"
    assert "the NUMA that does not exist" in str(e)
    assert "NUMA node this machine lacks" in errors.advice_for(e)


def test_quantity_and_allocation_errors() -> None:
    assert isinstance(raised(lambda: pymm.parse_quantity("1Q")), errors.QuantityError)
    assert issubclass(errors.AllocationError, MemoryError)


@pytest.mark.parametrize(
    "error",
    [
        errors.ConfigError("m", key="k", suggestion="s"),
        errors.ReservedMemoryError("m", node=3),
        errors.MachineError("m", node=2),
        errors.PodError("m", field="spec"),
        errors.NotFoundError("m", pod_uid="p", container="c"),
        errors.PlacementError("m", pod_uid="p", container="c", nodes=[0, 1]),
        errors.SolverError("m"),
        errors.SolverTimeLimitError("m"),
        errors.CheckpointCorruptedError("m", stored_checksum=1, computed_checksum=2),
        errors.PolicyMismatchError("m", configured_policy="None", stored_policy="Static"),
        errors.StateMismatchError("m", ["a"], kind="unfit", least_drift_tolerance=5),
    ],
)
def test_errors_survive_pickling_with_their_data(error: errors.PymmError) -> None:
    again: Any = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert again.__dict__ == error.__dict__
