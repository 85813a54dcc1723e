"""What durability costs: an admit + remove cycle on a MemoryManager with ``state_dir`` against
the floor of one in-place write + fsync of a file of the state file's size
(:func:`pymm.statefile.fsync_baseline`).

A cycle writes the state file twice (after the admission and after the removal), each time
through a temporary file, its fsync, a rename and a directory fsync. ``extra_info`` records
the medians and these ratios, all per write:

* ``ratio_per_write``: (cycle / 2) / bare fsync, the figure the durable-state issue asked about;
* ``protocol_floor_ratio``: the same four steps with bare system calls and the same bytes,
  nothing of pymm around them, over the bare fsync: the least any implementation of that
  protocol costs on this disk;
* ``rename_commit_ratio``: a rename alone made durable by a directory fsync, no data written,
  over the bare fsync: a lower bound for any scheme whose commit point is a rename;
* ``overhead_vs_floor``: (cycle / 2) / protocol floor, what pymm itself adds.

Everything is timed interleaved, round by round and in a rotating order, so that drift in the
disk's speed hits all alike.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymm import Container, Machine, MemoryManager, Pod, _engine, compile_pod
from pymm.statefile import STATE_FILE_NAME, fsync_baseline

ROUNDS = 40
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


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _protocol_floor(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename, directory fsync: the protocol and nothing else."""
    tmp = path.with_name(f".{path.name}.floor")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(path.parent)


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
    with_pod = path.read_bytes()
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

    # The floor writes the very bytes the cycle writes, in the same alternation.
    floor_dir = tmp_path / "floor"
    floor_dir.mkdir()
    floor_path = floor_dir / STATE_FILE_NAME

    def floor() -> None:
        _protocol_floor(floor_path, with_pod)
        _protocol_floor(floor_path, before)

    floor()
    assert floor_path.read_bytes() == before
    assert sorted(p.name for p in floor_dir.iterdir()) == [STATE_FILE_NAME]

    rename_dir = tmp_path / "rename"
    rename_dir.mkdir()
    names = [rename_dir / "a", rename_dir / "b"]
    names[0].write_bytes(before)

    def rename_commit() -> None:
        os.rename(names[0], names[1])
        _fsync_dir(rename_dir)
        names.reverse()

    rename_commit()
    assert [p.name for p in rename_dir.iterdir()] == [names[0].name]

    rounds = SMOKE_ROUNDS if benchmark.disabled else ROUNDS
    timings: dict[str, list[float]] = {"cycle": [], "baseline": [], "floor": [], "rename": []}
    steps = {"cycle": cycle, "baseline": baseline, "floor": floor, "rename": rename_commit}
    order = list(steps.items())
    for round_ in range(rounds):
        # Rotate who goes first: a step pays for journal work the step before it left behind.
        shift = round_ % len(order)
        for name, step in order[shift:] + order[:shift]:
            timings[name].append(_seconds(step))
    median = {name: statistics.median(values) for name, values in timings.items()}
    # Per write: a cycle, and a floor call, each write the file twice; a rename call is one.
    per_write = median["cycle"] / 2
    floor_per_write = median["floor"] / 2
    benchmark.group = "durable state file"
    benchmark.extra_info.update(
        state_file_bytes=size,
        rounds=rounds,
        cycle_median_s=median["cycle"],
        fsync_baseline_median_s=median["baseline"],
        protocol_floor_median_s=floor_per_write,
        rename_commit_median_s=median["rename"],
        ratio_per_write=per_write / median["baseline"],
        protocol_floor_ratio=floor_per_write / median["baseline"],
        rename_commit_ratio=median["rename"] / median["baseline"],
        overhead_vs_floor=per_write / floor_per_write,
    )
    info = benchmark.extra_info
    print(
        f"\nper write ({size} bytes): pymm {per_write * 1e3:.3f} ms, bare fsync "
        f"{median['baseline'] * 1e3:.3f} ms, protocol floor {floor_per_write * 1e3:.3f} ms, "
        f"durable rename alone {median['rename'] * 1e3:.3f} ms\n"
        f"ratios to the bare fsync: pymm {info['ratio_per_write']:.2f}, protocol floor "
        f"{info['protocol_floor_ratio']:.2f}, rename alone {info['rename_commit_ratio']:.2f}; "
        f"pymm over the floor {info['overhead_vs_floor']:.2f}"
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


def test_admit_many_is_one_durable_write(benchmark: Any, tmp_path: Path) -> None:
    """100 pods admitted by one ``admit_many`` (one durable write) against one ``admit`` (one
    write): the target is at most 3x, as an agent restarting with its pods needs."""
    mm = _durable_manager(tmp_path / "state")
    path = tmp_path / "state" / STATE_FILE_NAME
    batch = [
        compile_pod(Pod.of(f"b{i}", Container.of("c", cpu="1", memory="128Mi"))) for i in range(100)
    ]
    one = compile_pod(Pod.of("one", Container.of("c", cpu="1", memory="128Mi")))
    # Correctness first: the whole batch is on disk when the call returns, in one write.
    admissions = mm.admit_many(batch)
    assert all(a.admitted for a in admissions)
    assert {f"b{i}" for i in range(100)} <= _entries_on_disk(path)
    mm.remove_many([f"b{i}" for i in range(100)])
    assert not {f"b{i}" for i in range(100)} & _entries_on_disk(path)

    def many() -> None:
        mm.admit_many(batch)

    def single() -> None:
        mm.admit(one)

    def release() -> None:
        # Untimed: put the state back for the next round.
        mm.remove_many([f"b{i}" for i in range(100)], missing_ok=True)
        mm.remove("one", missing_ok=True)

    rounds = SMOKE_ROUNDS if benchmark.disabled else ROUNDS
    timings: dict[str, list[float]] = {"many": [], "single": []}
    for round_ in range(rounds):
        for name, step in [("many", many), ("single", single)][:: 1 if round_ % 2 else -1]:
            release()
            timings[name].append(_seconds(step))
    ratio = statistics.median(timings["many"]) / statistics.median(timings["single"])
    benchmark.group = "durable state file"
    benchmark.extra_info.update(rounds=rounds, admit_many_100_over_one_admit=ratio)
    print(f"\nadmit_many of 100 pods / one durable admit: {ratio:.2f}")
    release()
    benchmark.pedantic(many, setup=release, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert {f"b{i}" for i in range(100)} <= _entries_on_disk(path)
    mm.close()
