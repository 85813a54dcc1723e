"""Starting safely after benign change, beyond the kubelet: bounded reboot drift of node
totals (the idea of KEP-6232), and rebuilding a lost state file from running assignments."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest

from pymm import Container, Machine, MemoryManager, Pod, errors

MI = 2**20


def machine(extra_mib: int = 0) -> Machine:
    return Machine.synthetic(2, memory=16 * 1024 * MI + extra_mib * MI)


def manager(state_dir: Path, m: Machine, **kw: object) -> MemoryManager:
    return MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi"), state_dir=state_dir, **kw)  # type: ignore[arg-type]


def seed(state_dir: Path) -> str:
    with manager(state_dir, machine()) as mm:
        # A 2-node group; the small pod joins it (its nodes serve only that group).
        assert mm.admit(Pod.of("big", Container.of("c", cpu="1", memory="20Gi")))
        assert mm.admit(Pod.of("db", Container.of("c", cpu="1", memory="5Gi")))
        return mm.checkpoint()


def test_reboot_drift_fails_like_the_kubelet_without_tolerance(tmp_path: Path) -> None:
    before = seed(tmp_path)
    with pytest.raises(errors.StateMismatchError) as info:
        manager(tmp_path, machine(extra_mib=-64))
    # The message is the kubelet's, word for word, so operators can search for it.
    assert str(info.value) == (
        "[memorymanager] the expected machine state is different from the real one"
    )
    assert (tmp_path / "memory_manager_state").read_text() == before


def test_a_mismatch_says_what_differs_and_which_tolerance_would_keep_it(tmp_path: Path) -> None:
    seed(tmp_path)
    with pytest.raises(errors.StateMismatchError) as info:
        manager(tmp_path, machine(extra_mib=-64), tolerate_drift="32Mi")
    # 16Gi per node less 1Gi reserved; "big" (20Gi) and "db" (5Gi) fill the (0, 1) group
    # from node 0 on, so the group's free memory is 30Gi - 25Gi = 5Gi, and 128Mi less after
    # the 64Mi drift of each node.
    details = info.value.details
    assert details[:3] == [
        "node 0 memory total: file 16Gi, expected 16320Mi",
        "node 0 memory allocatable: file 15Gi, expected 15296Mi",
        f"node 0 memory free (sum over group [0, 1]): file 5Gi, expected {5 * 1024 - 128}Mi",
    ]
    assert details[3:6] == [line.replace("node 0", "node 1") for line in details[:3]]
    assert details[6:] == [
        "beyond the kubelet: node totals drifted by at most 64Mi and every assignment still "
        "fits; a drift tolerance of at least 64Mi keeps the reservations and rebases the "
        "totals (the configured tolerance is 32Mi)"
    ]
    # The details survive pickling (multiprocessing, logging to another process).
    again = pickle.loads(pickle.dumps(info.value))
    assert (type(again), str(again), again.details) == (
        errors.StateMismatchError,
        str(info.value),
        details,
    )
    # The suggested tolerance is enough.
    with manager(tmp_path, machine(extra_mib=-64), tolerate_drift="64Mi") as mm:
        assert sorted(mm.state["entries"]) == ["big", "db"]


def test_no_tolerance_is_suggested_when_the_reservations_no_longer_fit(tmp_path: Path) -> None:
    with manager(tmp_path, machine()) as mm:
        assert mm.admit(Pod.of("full", Container.of("c", cpu="1", memory="30Gi")))
    with pytest.raises(errors.StateMismatchError) as info:
        manager(tmp_path, machine(extra_mib=-2048))
    assert "node 0 memory total: file 16Gi, expected 14Gi" in info.value.details
    assert not any("beyond the kubelet" in line for line in info.value.details)


def test_drift_within_tolerance_is_rebased_and_keeps_every_reservation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pymm"):
        mm = manager(tmp_path, machine(extra_mib=-64), tolerate_drift="256Mi")
    with mm:
        assert mm.notes and "rebased" in mm.notes[0]
        assert "rebased" in caplog.text
        assert mm.numa_nodes("db", "c") is not None and mm.numa_nodes("big", "c") == (0, 1)
        on_disk = json.loads((tmp_path / "memory_manager_state").read_text())
        assert on_disk["machineState"]["0"]["memoryMap"]["memory"]["total"] == (16 * 1024 - 64) * MI
        # The new totals are the file's now: the next start needs no tolerance.
    with manager(tmp_path, machine(extra_mib=-64)) as again:
        assert sorted(again.state["entries"]) == ["big", "db"]


def test_drift_beyond_tolerance_is_refused(tmp_path: Path) -> None:
    seed(tmp_path)
    with pytest.raises(errors.StateMismatchError):
        manager(tmp_path, machine(extra_mib=-512), tolerate_drift="256Mi")


def test_drift_that_no_longer_fits_is_refused(tmp_path: Path) -> None:
    m = machine()
    with manager(tmp_path, m) as mm:
        assert mm.admit(Pod.of("full", Container.of("c", cpu="1", memory="30Gi")))
    # Losing 2Gi per node leaves 26Gi for 30Gi of reservations: no tolerance makes that fit.
    with pytest.raises(errors.StateMismatchError):
        manager(tmp_path, machine(extra_mib=-2048), tolerate_drift="4Gi")


def test_rebuild_a_lost_file_from_running_assignments(tmp_path: Path) -> None:
    before = json.loads(seed(tmp_path))
    (tmp_path / "memory_manager_state").unlink()
    with manager(tmp_path, machine(), rebuild_from=before["entries"]) as mm:
        assert mm.notes == ["the state was rebuilt from the assignments of 2 pods"]
        assert mm.state["machineState"] == before["machineState"]
        assert mm.state["entries"] == before["entries"]
        mm.remove("db")
    assert "db" not in json.loads((tmp_path / "memory_manager_state").read_text())["entries"]


def test_rebuild_refuses_assignments_that_do_not_fit_or_do_not_exist(tmp_path: Path) -> None:
    too_big = {"p": {"c": [{"numaAffinity": [0], "type": "memory", "size": 40 * 1024 * MI}]}}
    with pytest.raises(errors.StateMismatchError, match="do not fit"):
        manager(tmp_path, machine(), rebuild_from=too_big)
    ghost = {"p": {"c": [{"numaAffinity": [7], "type": "memory", "size": MI}]}}
    with pytest.raises(errors.StateMismatchError, match="NUMA that does not exist"):
        manager(tmp_path / "2", machine(), rebuild_from=ghost)


def test_rebuild_is_refused_when_a_file_exists(tmp_path: Path) -> None:
    seed(tmp_path)
    with pytest.raises(errors.ConfigError, match="state file exists"):
        manager(tmp_path, machine(), rebuild_from={})
