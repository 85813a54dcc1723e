"""``pymm bench`` and the scenario builders of :mod:`pymm._bench.suite`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pymm import compile_pod
from pymm._bench.suite import (
    SHAPES,
    check_placed_admission,
    design_target_manager,
    gb200_like,
    guaranteed,
    placed_manager,
    replay_throughput,
    scale_machine,
    suite_cases,
)
from pymm.cli import main


def test_bench_quick_writes_json_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "results.json", tmp_path / "admission.png"
    rc = main(["bench", "--quick", "--output", str(out), "--plot", str(png)])
    captured = capsys.readouterr()
    assert rc == 0
    assert "median µs" in captured.out and "DESIGN target" in captured.out
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    # Every suite case and the replay, each with a positive median.
    assert [r["case"] for r in rows[:-1]] == [c.case for c in suite_cases()]
    assert rows[-1]["case"].startswith("replay") and rows[-1]["total_s"] > 0
    assert all(r["median_us"] > 0 and r["p90_us"] >= r["median_us"] for r in rows)
    admissions = {(r["nodes"], r["shape"]) for r in rows if r["case"].startswith("admit")}
    assert admissions == {(n, s) for n in (2, 4, 8, 16, 34, 64, 128) for s in SHAPES}
    assert png.stat().st_size > 10_000
    assert png.read_bytes().startswith(b"\x89PNG")


def test_bench_plot_without_matplotlib_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes ``import matplotlib`` raise ImportError, as when it is not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = main(["bench", "--quick", "--plot", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "matplotlib" in err and "pymm[plot]" in err
    assert not (tmp_path / "x.png").exists()


def test_gb200_like_shape() -> None:
    m = gb200_like()
    assert len(m.nodes) == 34
    assert [n.id for n in m.nodes] == list(range(34))
    assert [n.id for n in m.nodes if n.cpus] == [0, 1]
    assert {n.kind for n in m.nodes[2:]} == {"HBM"}
    d = m.distances
    assert d is not None and len(d) == 34 and all(len(row) == 34 for row in d)
    assert all(d[i][j] == d[j][i] for i in range(34) for j in range(34))
    assert all(d[i][i] == 10 for i in range(34))
    assert (d[0][1], d[0][2], d[2][3]) == (40, 80, 120)
    assert len(gb200_like(4).nodes) == 6


def test_scale_machine_shape() -> None:
    m = scale_machine(128)
    assert len(m.nodes) == 128
    assert {n.memory_bytes for n in m.nodes} == {64 << 30}
    pools = {(p.page_size_kib, p.num_pages) for p in m.nodes[0].hugepages}
    assert pools == {(2048, 2048), (1 << 20, 4)}
    d = m.distances
    assert d is not None
    # Two sockets: near inside a half, far across.
    assert (d[0][0], d[0][63], d[0][64], d[127][64]) == (10, 12, 32, 12)
    with pytest.raises(ValueError):
        scale_machine(129)


@pytest.mark.parametrize("n", [2, 8, 34, 128])
def test_placed_admission_lands_where_the_kubelet_would(n: int) -> None:
    machine = gb200_like() if n == 34 else n
    mm = placed_manager(machine, search="exact" if n <= 16 else "auto")
    for shape, res in SHAPES.items():
        pod = compile_pod(guaranteed(f"check-{shape}", res))
        nodes = check_placed_admission(mm, pod, res)
        # Two nodes only when the 100Gi pod's group is all there is.
        assert len(nodes) == (2 if n == 2 else 1)


def test_design_target_has_sixteen_containers_placed() -> None:
    mm = design_target_manager()
    entries = mm.state["entries"]
    assert sum(len(containers) for containers in entries.values()) == 16
    assert mm.policy_name == "Static"


def test_replay_throughput_small_run_is_correct() -> None:
    # The function raises unless all admissions succeed and the state returns to the start.
    assert 0 < replay_throughput(500, nodes=8) < 5
    assert replay_throughput(3, nodes=4) > 0
    with pytest.raises(ValueError):
        replay_throughput(0)
