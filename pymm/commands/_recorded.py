"""The configuration a state directory was created with (``DIR/pymm-config.json``).

The first ``pymm admit`` (or ``remove``) that creates a state directory records the machine
(the description itself, so a later run needs neither the catalog nor sysfs) and every
manager flag in effect. Later commands given the directory take what they are not told from
there; a flag given again must agree with it, since a state file only restores under the
configuration it was written with. The machine is the exception: it is the hardware's fact, so
a machine given on the command line is checked against the state file by the kubelet's own
start-up validation (with its detailed differences) and, when that passes, recorded in place
of the old one (a reboot's drift accepted with ``--tolerate-drift`` is the usual reason).

A directory without the file (an older pymm's, or one made by the Python API) works with flags
exactly as before. The kubelet version is recorded by its concrete name; a file written before
1.38 became the newest says ``latest`` for what was then the newest, 1.32, and is read so.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymm import __version__, _engine, parse_quantity
from pymm._text import json_loads
from pymm.errors import ConfigError, PymmError, ReservedMemoryError, StateFileError
from pymm.machine import DEFAULT_MACHINE, MAX_U64, Machine, page_size_kib
from pymm.manager import reserved_memory_config
from pymm.statefile import CONFIG_FILE_NAME, atomic_write, check_state_directory, read_file

__all__ = [
    "CHOICES",
    "DEFAULTS",
    "SCHEMA",
    "Recorded",
    "apply_recorded",
    "check_flag",
    "check_reserved",
    "flags_of",
    "load_recorded",
    "parse_hugepages",
    "write_recorded",
]

_FORMAT = 1

#: The engine's configuration keys with their defaults and choices (the one place they live).
SCHEMA = _engine.config_schema()

#: The choices of each flag that takes one of a fixed set, by ``argparse`` destination.
CHOICES: dict[str, list[str]] = {
    key: entry["choices"] for key, entry in SCHEMA.items() if "choices" in entry
}


def _as_flag_list(options: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in options.items()]


#: Each recorded flag's ``argparse`` destination and its value when neither the command line
#: nor the directory names one: the engine's default, in the flag's form. ``hugepages`` is
#: the machine's, not the engine's configuration; ``reserved_memory`` None is the manager's
#: default (1Gi per node with the Static policy).
DEFAULTS: dict[str, Any] = {
    "hugepages": [],
    "reserved_memory": SCHEMA["reserved_memory"]["default"],
    "node_allocatable": SCHEMA["node_allocatable"]["default"],
    "memory_policy": SCHEMA["memory_policy"]["default"],
    "topology_policy": SCHEMA["topology_policy"]["default"],
    "scope": SCHEMA["scope"]["default"],
    "policy_option": _as_flag_list(SCHEMA["policy_options"]["default"]),
    "memory_policy_option": _as_flag_list(SCHEMA["memory_policy_options"]["default"]),
    "kubelet_version": SCHEMA["kubelet_version"]["default"],
    "feature_gates": _as_flag_list(SCHEMA["feature_gates"]["default"]),
    "search": SCHEMA["search"]["default"],
}


@dataclass(frozen=True)
class Recorded:
    """A state directory's ``pymm-config.json``."""

    path: Path
    machine: Machine
    machine_source: str
    flags: dict[str, Any]


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _show(dest: str, value: Any) -> str:
    if value is None:
        return "default (1Gi of memory on every node)" if dest == "reserved_memory" else "default"
    if isinstance(value, list):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


def _canonical_reserved(value: Any, machine: Machine, memory_policy: str) -> Any:
    if value is None:
        value = machine.reserve_per_node("1Gi") if memory_policy == "Static" else []
    return sorted(
        (entry["numaNode"], kind, parse_quantity(str(qty)))
        for entry in reserved_memory_config(value)
        for kind, qty in entry["limits"].items()
    )


def _canonical_options(value: Any) -> Any:
    # As the manager takes them: a key given twice counts with its last value.
    return sorted(dict(str(item).partition("=")[::2] for item in value or ()).items())


def _canonical_hugepages(value: Any) -> Any:
    return sorted((page_size_kib(s), n) for s, n in parse_hugepages(value or ()).items())


def parse_options(items: Iterable[str], flag: str = "--policy-option") -> dict[str, str]:
    """``KEY=VALUE`` flag values as a map, the last value of a key counting."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        options[key] = value
    return options


def parse_hugepages(items: Iterable[str]) -> dict[str, int]:
    """``--hugepages SIZE=PAGES`` values as size -> pages."""
    pools: dict[str, int] = {}
    for item in items:
        size, sep, count = item.partition("=")
        # isdigit() alone accepts superscripts and other digits int() refuses.
        if not sep or not size or not (count.isascii() and count.isdigit()):
            raise ConfigError(f"--hugepages {item!r}: expected SIZE=PAGES, e.g. 2Mi=1024")
        try:
            _engine.hugepage_size_kib(size)
        except PymmError as e:
            raise ConfigError(f"--hugepages {item!r}: page size {size!r}: {e}") from e
        if int(count) > MAX_U64:
            raise ConfigError(f"--hugepages {item!r}: PAGES must be at most {MAX_U64}")
        pools[size] = int(count)
    return pools


def _canonical_quantity(value: Any) -> Any:
    return None if value is None else parse_quantity(str(value))


def _canonical_version(value: Any) -> Any:
    # "latest" names the newest kubelet: the same as naming it.
    return _engine.decode_config({"kubelet_version": value})["kubelet_version"]


def _canonical_gates(value: Any) -> Any:
    return sorted(
        _engine.decode_config({"feature_gates": list(value or ())})["feature_gates"].items()
    )


def _same(value: Any) -> Any:
    return value


_CANONICAL: dict[str, Callable[[Any], Any]] = {
    "kubelet_version": _canonical_version,
    "feature_gates": _canonical_gates,
    "hugepages": _canonical_hugepages,
    "node_allocatable": _canonical_quantity,
    "policy_option": _canonical_options,
    "memory_policy_option": _canonical_options,
}


def _machine_source(args: argparse.Namespace) -> str:
    if getattr(args, "sysfs", None):
        return f"sysfs under {args.sysfs}"
    return str(getattr(args, "machine", None) or DEFAULT_MACHINE)


def load_recorded(state_dir: str | Path) -> Recorded | None:
    """The directory's recorded configuration, or None when it has none."""
    directory = Path(state_dir)
    if not (directory.exists() or directory.is_symlink()):
        return None
    path = check_state_directory(directory) / CONFIG_FILE_NAME
    data = read_file(path)
    if data is None:
        return None
    try:
        doc = json_loads(data.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError(f"expected an object with format {_FORMAT}")
        flags = doc.get("flags")
        if not isinstance(flags, dict):
            raise ValueError("flags: expected an object")
        recorded = {k: _recorded_flag(k, flags.get(k)) for k in DEFAULTS}
        if recorded["kubelet_version"] is not None:
            # Recorded before 1.38 became the newest, "latest" meant 1.32: read as it meant.
            try:
                recorded["kubelet_version"] = _engine.recorded_kubelet_version(
                    recorded["kubelet_version"]
                )
            except PymmError as e:
                raise ValueError(f"flags.kubelet_version: {e}") from e
        version = recorded["kubelet_version"]
        for dest, value in recorded.items():
            if value is not None:
                check_flag(dest, value, f"flags.{dest}", version)
        if "machine" not in doc:
            raise ValueError("machine: required")
        try:
            machine = Machine.from_dict(doc["machine"])
        except PymmError as e:
            raise ValueError(f"machine: {e}") from e
        source = doc.get("machineSource", machine.name)
        if not isinstance(source, str):
            raise ValueError(f"machineSource: expected a string, got {type(source).__name__}")
    except (ValueError, KeyError, RecursionError) as e:
        raise StateFileError(
            f"cannot use {path}: {e}; it records the configuration this state directory was "
            "created with (move it away to use flags only)"
        ) from e
    return Recorded(path, machine, source, recorded)


#: The flags given as a list (argparse's ``append``); the others are one string.
_LIST_FLAGS = frozenset(
    {"hugepages", "policy_option", "memory_policy_option", "reserved_memory", "feature_gates"}
)


def _recorded_flag(dest: str, value: Any) -> Any:
    """A recorded flag as the command line would have given it, so that an edited file fails
    here with the file named, not later in code that trusts argparse's types."""
    if value is None:
        return None
    if dest in _LIST_FLAGS:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError(f"flags.{dest}: expected a list of strings or null")
    if isinstance(value, str):
        return value
    raise ValueError(f"flags.{dest}: expected a string or null")


def check_flag(dest: str, value: Any, label: str, kubelet_version: str | None = None) -> None:
    """Checks one flag's value with the engine's rules, the error (exit 2 in the CLI) starting
    with ``label``: the flag as the user gave it (``--tolerate-drift '-1Gi'``), or the key of
    ``pymm-config.json`` holding it. ``kubelet_version`` decides which policy options exist."""
    try:
        if dest in CHOICES:
            if value not in CHOICES[dest]:
                known = ", ".join(CHOICES[dest])
                raise ConfigError(f"expected one of {known}, got {value!r}", key=dest)
        elif dest == "reserved_memory":
            _engine.parse_reserved_memory(value)
        elif dest == "node_allocatable":
            _engine.canonical_quantity(value)
        elif dest == "tolerate_drift":
            _engine.parse_size(value)
        elif dest == "hugepages":
            parse_hugepages(value)
        elif dest in ("policy_option", "memory_policy_option", "feature_gates"):
            config: dict[str, Any] = (
                {"feature_gates": list(value)}
                if dest == "feature_gates"
                else {f"{dest}s": parse_options(value, _flag(dest))}
            )
            if kubelet_version is not None:
                config["kubelet_version"] = kubelet_version
            _engine.decode_config(config)
    except ReservedMemoryError as e:
        raise ReservedMemoryError(f"{label}: {e}", node=e.node) from e
    except PymmError as e:
        key, suggestion = getattr(e, "key", None), getattr(e, "suggestion", None)
        raise ConfigError(f"{label}: {e}", key=key, suggestion=suggestion) from e


def apply_recorded(
    args: argparse.Namespace, recorded: Recorded | None, flags: Mapping[str, str] | None = None
) -> Machine | None:
    """Fill the flags ``args`` lacks from ``recorded`` (else from :data:`DEFAULTS`), refusing
    a flag that disagrees with it (``flags`` renames a destination's flag in the message).
    Returns the recorded machine when the command line names none (the caller builds the
    machine from the flags otherwise)."""
    for dest, default in DEFAULTS.items():
        given = getattr(args, dest, None)
        if recorded is None or given is None:
            continue
        if dest == "reserved_memory":
            continue  # compared by check_reserved, once the machine and policy are settled
        theirs = recorded.flags.get(dest)
        theirs = default if theirs is None else theirs
        canonical = _CANONICAL.get(dest, _same)
        if canonical(given) != canonical(theirs):
            raise _conflict(dest, given, theirs, recorded.path, (flags or {}).get(dest))
    for dest, default in DEFAULTS.items():
        if getattr(args, dest, None) is None:
            value = recorded.flags.get(dest) if recorded is not None else None
            setattr(args, dest, default if value is None else value)
    machine_given = args.machine is not None or args.sysfs is not None
    return None if machine_given or recorded is None else recorded.machine


def check_reserved(
    given: Any, recorded: Recorded | None, machine: Machine, memory_policy: str
) -> None:
    """``--reserved-memory`` against the recorded one, both resolved on ``machine``."""
    if recorded is None or given is None:
        return
    theirs = recorded.flags.get("reserved_memory")
    mine_c = _canonical_reserved(given, machine, memory_policy)
    if mine_c != _canonical_reserved(theirs, machine, memory_policy):
        raise _conflict("reserved_memory", given, theirs, recorded.path)


def _conflict(
    dest: str, mine: Any, theirs: Any, path: Path, flag: str | None = None
) -> ConfigError:
    return ConfigError(
        f"{flag or _flag(dest)} {_show(dest, mine)} conflicts with the state directory's "
        f"{_show(dest, theirs)} "
        f"(recorded in {path})"
    )


def write_recorded(
    state_dir: Path, args: argparse.Namespace, machine: Machine, source: str | None = None
) -> None:
    """Record ``machine`` (without ``--hugepages``: those are a flag) and the flags in effect,
    with the same durable write as the state file. Call it holding the directory's lock."""
    doc = {
        "format": _FORMAT,
        "createdBy": f"pymm {__version__}",
        "machineSource": source if source is not None else _machine_source(args),
        "machine": machine.to_dict(),
        "flags": {dest: _recordable(dest, getattr(args, dest)) for dest in DEFAULTS},
    }
    atomic_write(state_dir / CONFIG_FILE_NAME, (json.dumps(doc, indent=1) + "\n").encode())


def _recordable(dest: str, value: Any) -> Any:
    """A flag as the directory records it: the kubelet version by its concrete name, never
    ``latest`` (whose meaning moves as pymm learns newer kubelets)."""
    if dest == "kubelet_version" and value is not None:
        return _canonical_version(value)
    return value


def flags_of(args: argparse.Namespace) -> Mapping[str, Any]:
    return {dest: _recordable(dest, getattr(args, dest)) for dest in DEFAULTS}
