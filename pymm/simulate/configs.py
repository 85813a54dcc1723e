"""Configurations to compare: ``LABEL:KEY=VALUE,KEY=VALUE`` and the default set.

A configuration is a label and a few keys, each mapped to one :class:`~pymm.MemoryManager`
argument: Topology Manager settings and options, memory-manager policy options, and the
reserved memory. Values are passed on as given; the engine checks them, with its own errors.
Two keys belong to the simulation itself, not to the manager: ``defrag=K`` (on a rejected
admission, apply a defragmentation plan that moves at most K running pods; see
:class:`Defrag`) and ``defrag-evict`` (whether such a plan may also evict pods).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymm.errors import ConfigError
from pymm.machine import Machine
from pymm.manager import MemoryManager, reserved_memory_config

__all__ = [
    "DEFAULT_CONFIGS",
    "DEFRAG_TIME_LIMIT",
    "KEYS",
    "MEMORY_POLICY_OPTIONS",
    "PRESETS",
    "TOPOLOGY_OPTIONS",
    "Defrag",
    "SimConfig",
    "default_configs",
    "open_manager",
    "parse_config",
    "parse_configs",
]

#: Keys that become MemoryManager keyword arguments of their own.
_SETTINGS = {"topology-policy": "topology_policy", "scope": "scope"}
#: Topology Manager policy options (``policy_options=``).
TOPOLOGY_OPTIONS = (
    "prefer-closest-numa-nodes",
    "numa-allocation-strategy",
    "restrict-to-cpu-numa-nodes",
)
#: Memory-manager policy options (``memory_policy_options=``).
MEMORY_POLICY_OPTIONS = (
    "admit-when-fits",
    "spread-hugepages",
    "memory-tiers",
    "strict-numa-groups",
    "resize-in-place",
)
RESERVED = "reserved-memory"
#: The simulation's own keys (what happens on a rejection), not the manager's.
DEFRAG = "defrag"
DEFRAG_EVICT = "defrag-evict"
KEYS = (*_SETTINGS, *TOPOLOGY_OPTIONS, *MEMORY_POLICY_OPTIONS, RESERVED, DEFRAG, DEFRAG_EVICT)
#: Seconds the solver may take for one defragmentation plan in a simulation; past it, the best
#: plan found (if any) is used, else the rejection stands.
DEFRAG_TIME_LIMIT = 2.0


@dataclass(frozen=True)
class SimConfig:
    """One configuration: ``options`` maps keys of :data:`KEYS` to their values."""

    label: str
    options: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.label}:" + ",".join(f"{k}={v}" for k, v in self.options.items())

    @property
    def defrag(self) -> Defrag | None:
        """The defragmentation policy, if the configuration has one."""
        return defrag_of(self)


@dataclass(frozen=True)
class Defrag:
    """On a rejected admission of a pod the memory manager pins, plan the fewest running pods
    to move (:func:`pymm.defrag.defrag_plan`, at most ``max_moves``, evictions only with
    ``evict`` and counted among them) and, when such a plan makes the pod fit, apply it."""

    max_moves: int
    evict: bool = False
    time_limit: float = DEFRAG_TIME_LIMIT


def defrag_of(config: SimConfig) -> Defrag | None:
    text = config.options.get(DEFRAG)
    evict_text = config.options.get(DEFRAG_EVICT)
    if text is None:
        if evict_text is not None:
            raise ConfigError(f"--config {config.label}: {DEFRAG_EVICT} needs {DEFRAG}=K")
        return None
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1 or str(k) != text.strip():
        raise ConfigError(
            f"--config {config.label}: {DEFRAG}={text!r}: expected the most pods a plan may "
            "move, a whole number of at least 1"
        )
    if evict_text not in (None, "true", "false"):
        raise ConfigError(
            f"--config {config.label}: {DEFRAG_EVICT}={evict_text!r}: expected true or false"
        )
    return Defrag(k, evict_text == "true")


_LEAST = {"numa-allocation-strategy": "least-allocated"}
#: The default comparison: the kubelet against each of pymm's placement strategies, the
#: fragmentation-aware one (``least-stranded``) included.
DEFAULT_CONFIGS: tuple[SimConfig, ...] = (
    SimConfig("kubelet", {}),
    SimConfig("least-allocated", _LEAST),
    SimConfig("most-allocated", {"numa-allocation-strategy": "most-allocated"}),
    SimConfig("least-stranded", {"numa-allocation-strategy": "least-stranded"}),
    SimConfig("admit-when-fits", {"admit-when-fits": "true", **_LEAST}),
    SimConfig(
        "best",
        {"admit-when-fits": "true", **_LEAST, "prefer-closest-numa-nodes": "true"},
    ),
)
#: Configurations named by a bare ``--config LABEL``: the default set and one per option.
PRESETS: dict[str, SimConfig] = {
    c.label: c
    for c in (
        *DEFAULT_CONFIGS,
        SimConfig("closest", {"prefer-closest-numa-nodes": "true"}),
        SimConfig("strict", {"strict-numa-groups": "true"}),
        SimConfig("spread", {"spread-hugepages": "true"}),
        SimConfig("restrict", {"restrict-to-cpu-numa-nodes": "true"}),
        SimConfig("tiers", {"memory-tiers": "true"}),
        SimConfig("single-numa-node", {"topology-policy": "single-numa-node"}),
        SimConfig("defrag", {DEFRAG: "2"}),
    )
}


def default_configs() -> list[SimConfig]:
    return list(DEFAULT_CONFIGS)


def parse_config(text: str) -> SimConfig:
    """``LABEL:KEY=VALUE,...``; ``LABEL:`` alone is the kubelet's defaults, and a bare
    ``LABEL`` names a configuration of the default set.

    ``reserved-memory`` takes the kubelet flag's syntax (``0:memory=1Gi,hugepages-1Gi=2Gi;
    1:memory=1Gi``: the commas before a resource name stay in the value) or one quantity to
    reserve on every node.
    """
    label, sep, rest = text.partition(":")
    label = label.strip()
    if not label:
        raise ConfigError(f"--config {text!r}: expected LABEL:KEY=VALUE,... (the label is empty)")
    if not sep:
        if label in PRESETS:
            return PRESETS[label]
        raise ConfigError(
            f"--config {text!r}: not a named configuration "
            f"({', '.join(PRESETS)}); write LABEL:KEY=VALUE,..."
        )
    options: dict[str, str] = {}
    for item in _items(rest):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not value:
            raise ConfigError(f"--config {label}: {item!r} is not KEY=VALUE")
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.0)
            raise ConfigError(
                f"--config {label}: unknown key {key!r}; did you mean {close[0]!r}? "
                f"(keys: {', '.join(KEYS)})"
            )
        if key in options:
            raise ConfigError(f"--config {label}: {key!r} given twice")
        options[key] = value
    config = SimConfig(label, options)
    defrag_of(config)
    return config


def _items(rest: str) -> Iterable[str]:
    """Splits on commas, except those inside a ``reserved-memory`` value (its own resource
    lists are comma-separated)."""
    items: list[str] = []
    for part in rest.split(","):
        if not part.strip():
            continue
        key = part.partition("=")[0].strip()
        continues = key == "memory" or key.startswith("hugepages-")
        if continues and items and items[-1].lstrip().startswith(f"{RESERVED}="):
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def parse_configs(items: Sequence[SimConfig | str] | None) -> list[SimConfig]:
    """Each configuration (a ``--config`` text or a SimConfig), or the default set without
    any; labels must be unique."""
    configs = (
        [c if isinstance(c, SimConfig) else parse_config(c) for c in items]
        if items
        else default_configs()
    )
    seen: set[str] = set()
    for c in configs:
        if c.label in seen:
            raise ConfigError(f"--config: label {c.label!r} is used twice")
        seen.add(c.label)
    return configs


def _reserved(value: str, machine: Machine) -> list[dict[str, Any]]:
    if ":" in value:
        return reserved_memory_config(value)
    return machine.reserve_per_node(value)


def manager_kwargs(
    config: SimConfig,
    machine: Machine,
    reserved_memory: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The MemoryManager keyword arguments of a configuration. Without ``reserved-memory``,
    ``reserved_memory`` (the workload's), or else 1Gi of memory on every node."""
    kwargs: dict[str, Any] = {"search": "auto", "topology_policy": "best-effort"}
    topology: dict[str, str] = {}
    memory: dict[str, str] = {}
    for key, value in config.options.items():
        if key in _SETTINGS:
            kwargs[_SETTINGS[key]] = value
        elif key in TOPOLOGY_OPTIONS:
            topology[key] = value
        elif key in MEMORY_POLICY_OPTIONS:
            memory[key] = value
    if memory:
        kwargs["memory_policy_options"] = memory
    kwargs["policy_options"] = topology
    if RESERVED in config.options:
        kwargs["reserved_memory"] = _reserved(config.options[RESERVED], machine)
    elif reserved_memory is not None:
        kwargs["reserved_memory"] = list(reserved_memory)
    else:
        kwargs["reserved_memory"] = machine.reserve_per_node("1Gi")
    return kwargs


def open_manager(
    config: SimConfig,
    machine: Machine,
    reserved_memory: Sequence[Mapping[str, Any]] | None = None,
    **extra: Any,
) -> MemoryManager:
    """A MemoryManager for a configuration; ``extra`` (e.g. ``state_dir``) is passed on.
    Errors name the configuration."""
    kwargs = manager_kwargs(config, machine, reserved_memory)
    try:
        return MemoryManager(machine, **kwargs, **extra)
    except ConfigError as e:
        raise type(e)(f"--config {config.label}: {e}") from e
