"""Tests for pymm.sysfs (topology discovery) and the ``pymm topology`` command."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pymm.commands import topology
from pymm.errors import SysfsError
from pymm.sysfs import discover, format_list, memory_kind, parse_list

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "pymm" / "catalog"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sysfs"
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists())
NODE = Path("sys/devices/system/node")


def expected(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((FIXTURES / name / "expected.json").read_text())
    return spec


def catalog(name: str) -> dict[str, Any]:
    machine: dict[str, Any] = json.loads((CATALOG / f"{name}.json").read_text())
    return machine


def copy_fixture(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


def test_all_required_fixtures_exist() -> None:
    assert set(FIXTURE_NAMES) >= {
        "vm-1node",
        "xeon-gold-6242-2s",
        "xeon-8480-2s-snc4",
        "xeon-max-2s-hbm-flat",
        "spr-2s-cxl",
        "threadripper-3960x-nps4",
        "sparse-0-2-5",
    }


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_discover_matches_source(name: str) -> None:
    spec = expected(name)
    machine = discover(FIXTURES / name)
    assert machine["name"] == name
    assert machine["source"] == f"sysfs:{FIXTURES / name}"
    assert [n["id"] for n in machine["nodes"]] == [n["id"] for n in spec["nodes"]]
    for got, want in zip(machine["nodes"], spec["nodes"], strict=True):
        assert got["memory_bytes"] == want["memory_bytes"]
        assert got["cpus"] == want["cpus"] == len(want["cpu_ids"])
        assert parse_list(got["cpulist"]) == want["cpu_ids"]
        assert got["hugepages"] == want["hugepages"]
        assert got["kind"] == want["kind"], got["kind_reason"]
        assert got["has_cpu"] is (want["cpus"] > 0)
        assert got["has_memory"] is (want["memory_bytes"] > 0)
        assert got["has_normal_memory"] is (want["memory_bytes"] > 0)
        want_tier = next(
            (int(t) for t, members in spec.get("tiers", {}).items() if want["id"] in members),
            None,
        )
        assert got["tier"] == want_tier
        if want.get("access"):
            assert got["access"] == {
                "read_latency_ns": want["access"]["read_latency"],
                "write_latency_ns": want["access"]["write_latency"],
                "read_bandwidth_mbps": want["access"]["read_bandwidth"],
                "write_bandwidth_mbps": want["access"]["write_bandwidth"],
            }
        else:
            assert got["access"] is None
    assert machine["distances"] == spec["distances"]


@pytest.mark.parametrize("name", [n for n in FIXTURE_NAMES if expected(n)["catalog"]])
def test_discover_agrees_with_catalog(name: str) -> None:
    source = catalog(expected(name)["catalog"])
    machine = discover(FIXTURES / name)
    assert [(n["id"], n["memory_bytes"], n["cpus"], n["kind"]) for n in machine["nodes"]] == [
        (n["id"], n["memory_bytes"], n["cpus"], n["kind"]) for n in source["nodes"]
    ]
    assert machine["distances"] == source["distances"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_distance_rule_alone_gives_same_kinds(name: str, tmp_path: Path) -> None:
    # Tiers and HMAT are optional in the kernel; without them the SLIT rule must still agree.
    root = copy_fixture(name, tmp_path)
    shutil.rmtree(root / "sys/devices/virtual", ignore_errors=True)
    for access in (root / NODE).glob("node*/access0"):
        shutil.rmtree(access)
    machine = discover(root)
    assert all(n["tier"] is None and n["access"] is None for n in machine["nodes"])
    assert [n["kind"] for n in machine["nodes"]] == [n["kind"] for n in expected(name)["nodes"]]


def test_sparse_ids_distances_follow_node_order() -> None:
    machine = discover(FIXTURES / "sparse-0-2-5")
    assert [n["id"] for n in machine["nodes"]] == [0, 2, 5]
    # Row 2 belongs to node 5: its distance to node 0 is 17, to node 2 is 27.
    assert machine["distances"][2] == [17, 27, 10]
    node5 = machine["nodes"][2]
    assert (node5["kind"], node5["tier"], node5["cpus"], node5["cpulist"]) == ("CXL", 22, 0, "")


def test_memoryless_cpu_nodes() -> None:
    machine = discover(FIXTURES / "threadripper-3960x-nps4")
    memoryless = [n for n in machine["nodes"] if not n["has_memory"]]
    assert [n["id"] for n in memoryless] == [0, 3]
    for node in memoryless:
        assert node["memory_bytes"] == 0
        assert node["has_cpu"] and node["cpus"] == 12
        assert node["kind"] == "DRAM"
        assert "memoryless" in node["kind_reason"]


def test_snc4_cpulists_are_disjoint_and_cover_all_cpus() -> None:
    machine = discover(FIXTURES / "xeon-8480-2s-snc4")
    seen: list[int] = []
    for node in machine["nodes"]:
        seen += parse_list(node["cpulist"])
    assert sorted(seen) == list(range(112))
    assert machine["nodes"][0]["cpulist"] == "0-6,56-62"


def test_hbm_reason_comes_from_tier_when_present() -> None:
    machine = discover(FIXTURES / "xeon-max-2s-hbm-flat")
    hbm = machine["nodes"][2]
    assert hbm["kind"] == "HBM"
    assert "tier 3" in hbm["kind_reason"] and "tier 4" in hbm["kind_reason"]
    cxl = discover(FIXTURES / "spr-2s-cxl")["nodes"][3]
    assert cxl["kind"] == "CXL" and "HMAT" in cxl["kind_reason"]


@pytest.mark.parametrize("path", sorted(CATALOG.glob("*.json")), ids=lambda p: p.stem)
def test_memory_kind_reproduces_catalog(path: Path) -> None:
    machine = json.loads(path.read_text())
    kinds = [
        memory_kind(i, machine["nodes"], machine["distances"])[0]
        for i in range(len(machine["nodes"]))
    ]
    assert kinds == [n["kind"] for n in machine["nodes"]]


def _nodes(*specs: tuple[int, int]) -> list[dict[str, Any]]:
    return [{"id": i, "cpus": c, "memory_bytes": m} for i, (c, m) in enumerate(specs)]


def test_memory_kind_rule_edges() -> None:
    gib = 1 << 30
    nodes = _nodes((8, gib), (8, gib), (0, gib))
    dist = [[10, 21, 0], [21, 10, 0], [0, 0, 10]]

    def kind_at(near: int, far: int) -> str:
        dist[2][0], dist[2][1] = near, far
        return memory_kind(2, nodes, dist)[0]

    assert kind_at(13, 23) == "HBM"
    assert kind_at(14, 24) == "CXL"
    assert kind_at(20, 30) == "CXL"
    assert kind_at(21, 31) == "unknown"  # as far as the other socket: no evidence
    assert memory_kind(2, nodes, None)[0] == "unknown"
    # No memory and no CPUs at all.
    assert memory_kind(0, _nodes((0, 0), (4, gib)), [[10, 20], [20, 10]])[0] == "unknown"
    # Tier evidence beats distance; equal tiers fall through to distance.
    tiered = [dict(n, tier=4) for n in nodes]
    dist[2][0], dist[2][1] = 14, 24
    tiered[2]["tier"] = 2
    assert memory_kind(2, tiered, dist)[0] == "HBM"
    tiered[2]["tier"] = 4
    assert memory_kind(2, tiered, dist)[0] == "CXL"
    # HMAT: more bandwidth than DRAM is HBM even at a CXL-like distance.
    dram_access = {"read_latency_ns": 100, "read_bandwidth_mbps": 200000}
    hmat = [dict(n, access=dram_access) for n in nodes[:2]]
    hmat.append(dict(nodes[2], access={"read_latency_ns": 120, "read_bandwidth_mbps": 800000}))
    assert memory_kind(2, hmat, dist)[0] == "HBM"
    # Single CPU node: the kernel's REMOTE_DISTANCE (20) bounds the CXL band.
    single = _nodes((4, gib), (0, gib))
    assert memory_kind(1, single, [[10, 17], [17, 10]])[0] == "CXL"
    assert memory_kind(1, single, [[10, 20], [20, 10]])[0] == "unknown"


@pytest.mark.parametrize(
    ("text", "ids"),
    [("", []), ("0", [0]), ("0-1,4\n", [0, 1, 4]), ("0,1", [0, 1]), ("2-3,0", [0, 2, 3])],
)
def test_parse_list(text: str, ids: list[int]) -> None:
    assert parse_list(text) == ids
    assert parse_list(format_list(ids)) == ids


@pytest.mark.parametrize(
    "bad", ["a", "1-", "3-1", "1,,2", "-1", "١٢", "0-²", "65536", "0-99999999999999999"]
)
def test_parse_list_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_list(bad)


def test_format_list_uses_kernel_ranges() -> None:
    assert format_list([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert format_list([]) == ""


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(SysfsError, match="sys/devices/system/node") as info:
        discover(tmp_path / "nope")
    assert isinstance(info.value, OSError)


def test_garbage_meminfo_names_the_file(tmp_path: Path) -> None:
    root = copy_fixture("xeon-gold-6242-2s", tmp_path)
    (root / NODE / "node1" / "meminfo").write_text("Node 1 MemTotal: lots\n")
    with pytest.raises(SysfsError) as info:
        discover(root)
    message = str(info.value)
    assert "node1/meminfo" in message and "\n" not in message


def test_missing_node_dir_and_bad_distance(tmp_path: Path) -> None:
    root = copy_fixture("xeon-gold-6242-2s", tmp_path)
    (root / NODE / "node1" / "distance").write_text("10 21 30\n")
    with pytest.raises(SysfsError, match=r"node1/distance: 3 distances for 2 online nodes"):
        discover(root)
    (root / NODE / "online").write_text("0-2\n")
    with pytest.raises(SysfsError, match="node2"):
        discover(root)
    (root / NODE / "online").write_text("zero\n")
    with pytest.raises(SysfsError, match="online"):
        discover(root)


def test_missing_distance_files_give_none(tmp_path: Path) -> None:
    root = copy_fixture("spr-2s-cxl", tmp_path)
    (root / NODE / "node3" / "distance").unlink()
    machine = discover(root)
    assert machine["distances"] is None
    # HMAT still decides the kind without distances.
    assert [n["kind"] for n in machine["nodes"]] == ["DRAM", "DRAM", "CXL", "CXL"]


def test_real_machine() -> None:
    if not Path("/sys/devices/system/node/online").exists():
        pytest.skip("this kernel exposes no NUMA nodes in sysfs")
    machine = discover("/")
    assert machine["source"] == "sysfs:/"
    nodes = machine["nodes"]
    assert len(nodes) >= 1
    assert any(n["memory_bytes"] > 0 for n in nodes)
    assert sum(n["cpus"] for n in nodes) >= 1
    assert all(n["kind"] in {"DRAM", "HBM", "CXL", "unknown"} for n in nodes)
    assert machine["distances"] is not None
    for row in machine["distances"]:
        assert len(row) == len(nodes)
    for i in range(len(nodes)):
        assert machine["distances"][i][i] == 10


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pymm")
    topology.register(parser.add_subparsers())
    return parser


def test_topology_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = FIXTURES / "xeon-max-2s-hbm-flat"
    args = _parser().parse_args(["topology", "--sysfs", str(root), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    source = catalog("xeon-max-2s-hbm-flat")
    assert [n["kind"] for n in out["nodes"]] == ["DRAM", "DRAM", "HBM", "HBM"]
    assert [n["memory_bytes"] for n in out["nodes"]] == [n["memory_bytes"] for n in source["nodes"]]
    assert out["distances"] == source["distances"]


def test_topology_command_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["topology", "--sysfs", str(FIXTURES / "spr-2s-cxl")])
    assert args.sysfs == str(FIXTURES / "spr-2s-cxl") and args.json is False
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "CXL" in out and "DRAM" in out
    assert "128.0" in out  # node 3: 137438953472 bytes
    assert "remote-socket distance" in out  # the rule line


def test_topology_command_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = _parser().parse_args(["topology", "--sysfs", str(tmp_path), "--json"])
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("pymm: error: ")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_topology_default_root() -> None:
    args = _parser().parse_args(["topology"])
    assert args.sysfs == "/" and args.func is topology.run
