"""``MemoryManager.durably_together``: many changes, one durable write; each change all or
nothing; a failed write undoes the whole group (memory, file and metrics agree)."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import pymm.statefile
from pymm import Container, Machine, MemoryManager, Pod
from pymm.errors import ConfigError, NotFoundError, StateFileError, StateNotDurableError
from pymm.manager import Enforcement
from pymm.metrics import Metrics

GI = 2**30


def manager(path: Path, registry: CollectorRegistry | None = None) -> MemoryManager:
    return MemoryManager(
        Machine.synthetic(2, memory="16Gi"),
        reserved_memory="0:memory=1Gi;1:memory=1Gi",
        topology_policy="single-numa-node",
        state_dir=path,
        metrics=Metrics(registry) if registry is not None else None,
    )


def pod(uid: str, memory: str = "2Gi") -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory=memory))


def on_disk(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "memory_manager_state").read_text())
    return data


def counted(registry: CollectorRegistry, name: str) -> float:
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    raise KeyError(name)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    made: list[bytes] = []
    real = pymm.statefile.atomic_write

    def spy(path: Path, data: bytes, **options: Any) -> None:
        made.append(data)
        real(path, data, **options)

    monkeypatch.setattr(pymm.statefile, "atomic_write", spy)
    return made


def test_a_group_is_one_write(tmp_path: Path, writes: list[bytes]) -> None:
    with manager(tmp_path) as mm:
        writes.clear()
        results = mm.durably_together(
            [lambda i=i: mm.admit(pod(f"p{i}")) for i in range(5)]  # type: ignore[misc]
        )
        assert len(writes) == 1
        assert [r.admitted for r in results] == [True] * 5  # type: ignore[union-attr]
        assert set(on_disk(tmp_path)["entries"]) == {f"p{i}" for i in range(5)}
        # Removals group the same way.
        mm.durably_together([lambda: mm.remove("p0"), lambda: mm.remove("p1")])
        assert len(writes) == 2
        assert set(on_disk(tmp_path)["entries"]) == {"p2", "p3", "p4"}


def test_a_failing_call_changes_nothing_and_the_others_stand(tmp_path: Path) -> None:
    with manager(tmp_path) as mm:
        results = mm.durably_together(
            [lambda: mm.admit(pod("a")), lambda: mm.remove("ghost"), lambda: mm.admit(pod("b"))]
        )
        assert isinstance(results[1], NotFoundError)
        assert set(mm.state["entries"]) == {"a", "b"} == set(on_disk(tmp_path)["entries"])


def test_a_failed_write_undoes_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CollectorRegistry()
    with manager(tmp_path, registry) as mm:
        mm.admit(pod("kept"))
        before = mm.checkpoint()

        def no_space(src: Any, dst: Any) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with monkeypatch.context() as m:
            m.setattr(os, "rename", no_space)
            with pytest.raises(StateFileError):
                mm.durably_together([lambda: mm.admit(pod("x")), lambda: mm.remove("kept")])
        assert mm.checkpoint() == before
        assert set(on_disk(tmp_path)["entries"]) == {"kept"}
        # Nothing of the undone group was counted.
        assert counted(registry, "kubelet_topology_manager_admission_requests_total") == 1
        assert counted(registry, "pymm_remove_requests_total") == 0
        # The manager goes on: the same group succeeds once the disk recovers.
        mm.durably_together([lambda: mm.admit(pod("x")), lambda: mm.remove("kept")])
        assert set(on_disk(tmp_path)["entries"]) == {"x"}
        assert counted(registry, "kubelet_topology_manager_admission_requests_total") == 2


def test_a_write_that_is_not_durable_keeps_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    with manager(tmp_path) as mm:
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", fsync)
            with pytest.raises(StateNotDurableError) as info:
                mm.durably_together([lambda: mm.admit(pod("a")), lambda: mm.admit(pod("b"))])
        assert [a.admitted for a in info.value.result] == [True, True]
        assert set(mm.state["entries"]) == {"a", "b"} == set(on_disk(tmp_path)["entries"])


def test_without_a_state_directory_the_calls_just_run() -> None:
    mm = MemoryManager(Machine.synthetic(2, memory="16Gi"), reserved_memory="0:memory=1Gi")
    assert mm.durably_together([lambda: mm.admit(pod("a"))])[0].admitted  # type: ignore[union-attr]


def test_refused_with_enforcement(tmp_path: Path) -> None:
    mm = manager(tmp_path)
    mm.enforcement = Enforcement(enforcer=None, locate=lambda uid, c: None)
    try:
        with pytest.raises(ConfigError, match="enforcement"):
            mm.durably_together([])
    finally:
        mm.close()


def test_a_read_only_manager_refuses(tmp_path: Path) -> None:
    manager(tmp_path).close()
    with (
        MemoryManager(
            Machine.synthetic(2, memory="16Gi"),
            reserved_memory="0:memory=1Gi;1:memory=1Gi",
            topology_policy="single-numa-node",
            state_dir=tmp_path,
            read_only=True,
        ) as mm,
        pytest.raises(StateFileError, match="read-only"),
    ):
        mm.durably_together([lambda: mm.admit(pod("a"))])
