"""Starting safely after benign change, beyond the kubelet: bounded reboot drift of node
totals (the idea of KEP-6232), and rebuilding a lost state file from running assignments."""

from __future__ import annotations

import json
import logging
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
    with pytest.raises(errors.StateMismatchError, match="expected machine state is different"):
        manager(tmp_path, machine(extra_mib=-64))
    assert (tmp_path / "memory_manager_state").read_text() == before


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
