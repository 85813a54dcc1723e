"""What durability costs: an admit + remove cycle on a MemoryManager with ``state_dir`` against
the floor of one in-place write + fsync of a file of the state file's size
(:func:`pymm.statefile.fsync_baseline`).

A cycle writes the state file twice (after the admission and after the removal), each time
through a temporary file, its fsync, a rename and a directory fsync. ``extra_info`` records
both medians and ``ratio_per_write`` = (cycle / 2) / baseline. The two are timed interleaved,
round by round, so that drift in the disk's speed hits both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymm import Container, Machine, MemoryManager, Pod, _engine, compile_pod
from pymm.statefile import STATE_FILE_NAME, fsync_baseline

ROUNDS = 30
# With --benchmark-disable (CI) the point is correctness; keep the interleaved timing short.
SMOKE_ROUNDS = 3


def _durable_manager(state_dir: Path) -> MemoryManager:
    machine = Machine.synthetic(4, memory="64Gi", hugepages={"2Mi": 2048})
    mm = MemoryManager(
        machine, reserved_memory=machine.reserve_per_node("1Gi"), state_dir=state_dir
    )
    # A realistic file: a few pods already placed, so the state file is not trivially small.
    for i, size in enumerate(("8Gi", "2Gi", "2Gi", "4Gi")):
        assert mm.admit(Pod.of(f"placed-{i}", Container.of("c", cpu="1", memory=size))).admitted
    return mm


def _entries_on_disk(path: Path) -> set[str]:
    _, _, data = _engine.decode_checkpoint(path.read_text())
    return set(data["entries"])


def _seconds(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_durable_admission_vs_fsync_baseline(benchmark: Any, tmp_path: Path) -> None:
    # tmp_path is on the disk the state directory and the baseline file share.
    state_dir = tmp_path / "state"
    path = state_dir / STATE_FILE_NAME
    mm = _durable_manager(state_dir)
    pod = compile_pod(Pod.of("bench", Container.of("c", cpu="1", memory="1Gi")))

    # Correctness first: each step is on disk, with a valid checksum, before the call returns.
    before = path.read_bytes()
    assert mm.admit(pod).admitted
    assert "bench" in _entries_on_disk(path)
    mm.remove("bench")
    assert "bench" not in _entries_on_disk(path)
    assert path.read_bytes() == before
    assert not list(state_dir.glob(f".{STATE_FILE_NAME}.tmp-*"))

    def cycle() -> None:
        mm.admit(pod)
        mm.remove("bench")

    baseline_path = tmp_path / "baseline"
    size = len(before)

    def baseline() -> None:
        fsync_baseline(baseline_path, size)

    baseline()
    assert baseline_path.stat().st_size == size

    rounds = SMOKE_ROUNDS if benchmark.disabled else ROUNDS
    cycles, floors = [], []
    for _ in range(rounds):
        cycles.append(_seconds(cycle))
        floors.append(_seconds(baseline))
    cycle_median = statistics.median(cycles)
    floor_median = statistics.median(floors)
    benchmark.group = "durable state file"
    benchmark.extra_info.update(
        state_file_bytes=size,
        rounds=rounds,
        cycle_median_s=cycle_median,
        fsync_baseline_median_s=floor_median,
        ratio_per_write=(cycle_median / 2) / floor_median,
    )
    print(
        f"\ndurable admit+remove {cycle_median * 1e3:.2f} ms, fsync baseline "
        f"{floor_median * 1e3:.2f} ms ({size} bytes), ratio per write "
        f"{benchmark.extra_info['ratio_per_write']:.2f}"
    )

    benchmark.pedantic(cycle, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    assert path.read_bytes() == before
    mm.close()


def test_fsync_baseline(benchmark: Any, tmp_path: Path) -> None:
    # Recorded on its own too, so the floor appears in the benchmark table next to the cycle.
    mm = _durable_manager(tmp_path / "state")
    size = len(mm.checkpoint().encode())
    mm.close()
    path = tmp_path / "baseline"
    benchmark.group = "durable state file"
    benchmark.extra_info.update(state_file_bytes=size)
    benchmark.pedantic(fsync_baseline, args=(path, size), rounds=ROUNDS, warmup_rounds=2)
    assert path.read_bytes() == b"x" * size
