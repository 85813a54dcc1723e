"""Replaying admission scenarios (the format of ``tests/conformance/SCENARIOS.md``).

The engine decodes the scenarios, replays them and compares results (``engine/src/scenario.rs``:
what each scenario operation means is the engine's lifecycle, the same for every driver). This
module reads and writes the files: a restart in a scenario restores from a state file that was
really written with the durable write protocol and read back, as a kubelet restarts from disk;
``durable=True`` keeps the whole scenario in a state directory, every operation written and read
back (the slower path, with the same results).
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pymm import _engine, statefile
from pymm.errors import ScenarioError
from pymm.statefile import STATE_FILE_NAME, atomic_write

__all__ = [
    "compare_results",
    "load_reference",
    "load_scenarios",
    "replay",
    "replay_each",
    "replay_results",
    "replay_scenario",
    "scenario_machine",
]


def _read_text(path: str | Path, what: str) -> str:
    """A file's text; ``.gz`` files are decompressed."""
    p = Path(path)
    try:
        data = p.read_bytes()
        if p.suffix == ".gz":
            data = gzip.decompress(data)
        return data.decode()
    except OSError as e:
        raise ScenarioError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from e
    except (EOFError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: not a {what} file: {e}") from e


def load_scenarios(path: str | Path) -> _engine.Scenarios:
    """The scenarios of a file (``.json`` or ``.json.gz``): ``{"scenarios": [...]}``, or a
    results file whose results embed their ``scenario``. Decoded and checked by the engine."""
    return _engine.Scenarios.from_json(_read_text(path, "scenarios"), str(path))


def load_reference(path: str | Path) -> _engine.Reference:
    """Reference results (``.json`` or ``.json.gz``) to compare with: held as text, each
    scenario's results parsed when it is compared."""
    return _engine.Reference.from_json(_read_text(path, "results"), str(path))


def scenario_machine(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's machine description for a scenario's ``machine``."""
    machine, _config = _engine.Scenarios({"scenarios": [{"name": "-", "machine": spec}]}).setup(0)
    return dict(machine)


def _as_scenarios(scenarios: _engine.Scenarios | Iterable[Mapping[str, Any]]) -> _engine.Scenarios:
    if isinstance(scenarios, _engine.Scenarios):
        return scenarios
    if isinstance(scenarios, Mapping):
        raise ScenarioError("expected scenarios (a list of scenario objects), got one mapping")
    return _engine.Scenarios({"scenarios": list(scenarios)})


class _Files:
    """Where a replay keeps its state file: a fresh temporary state directory per restart,
    or (``durable``) one directory for the whole replay, written after every operation."""

    def __init__(self, workdir: Path | None, durable: bool) -> None:
        self._workdir = workdir
        self._durable = durable
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> _Files:
        if self._durable:
            self._dir = tempfile.TemporaryDirectory(prefix="pymm-replay-", dir=self._workdir)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            self._dir.cleanup()

    def restart_from(self, text: str) -> tuple[str, str]:
        if self._dir is not None:
            return self._read(Path(self._dir.name) / STATE_FILE_NAME)
        with tempfile.TemporaryDirectory(prefix="pymm-replay-", dir=self._workdir) as tmp:
            path = Path(tmp) / STATE_FILE_NAME
            atomic_write(path, text.encode())
            return self._read(path)

    @staticmethod
    def _read(path: Path) -> tuple[str, str]:
        data = statefile.read_file(path)
        if data is None:
            raise ScenarioError(f"the state file {path} vanished before the restart read it")
        return data.decode(), str(path)

    def after(self, text: str) -> None:
        assert self._dir is not None
        atomic_write(Path(self._dir.name) / STATE_FILE_NAME, text.encode())


def replay_results(
    scenarios: _engine.Scenarios | Iterable[Mapping[str, Any]],
    kubelet_version: str | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    workdir: Path | None = None,
    durable: bool = False,
) -> _engine.ReplayResults:
    """Replays every scenario in the engine; ``kubelet_version`` applies to scenarios that name
    none. Temporary state directories go under ``workdir`` (default: the system's)."""
    chosen = _as_scenarios(scenarios)
    with _Files(workdir, durable) as files:
        return chosen.replay(
            kubelet_version,
            files.restart_from,
            files.after if durable else None,
            progress,
        )


def replay_each(
    scenarios: _engine.Scenarios,
    each: Callable[[int, _engine.ReplayResults], object],
    kubelet_version: str | None = None,
    *,
    workdir: Path | None = None,
) -> None:
    """Replays every scenario, handing each one's results to ``each(index, results)`` as soon
    as it is done, so a long replay holds one scenario's results at a time."""
    with _Files(workdir, False) as files:
        scenarios.replay_each(each, kubelet_version, files.restart_from)


def replay(
    scenarios: _engine.Scenarios | Iterable[Mapping[str, Any]],
    kubelet_version: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """:func:`replay_results` as plain data (``{"meta": ..., "results": [...]}``)."""
    return replay_results(scenarios, kubelet_version, progress).to_py()


def replay_scenario(
    sc: Mapping[str, Any],
    kubelet_version: str | None = None,
    workdir: Path | None = None,
    *,
    durable: bool = False,
) -> dict[str, Any]:
    """One scenario's results as plain data (see :func:`replay_results`)."""
    if not isinstance(sc, Mapping):
        raise ScenarioError(f"a scenario must be an object, got {type(sc).__name__}")
    out = replay_results([sc], kubelet_version, workdir=workdir, durable=durable).to_py()
    return out["results"][0]  # type: ignore[no-any-return]


def compare_results(mine: Mapping[str, Any], ref: Mapping[str, Any]) -> list[str]:
    """Differences between two result sets under SCENARIOS.md's comparison rules."""
    return _engine.compare_results(mine, ref)
