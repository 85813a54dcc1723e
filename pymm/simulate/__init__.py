"""``pymm simulate``: one workload replayed under several configurations, side by side.

>>> from pymm.simulate import generate, run
>>> result = run(generate("db-batch", events=200, seed=1), ["kubelet:"], samples=4)
>>> result.configs[0].label, result.events
('kubelet', 200)

Workloads (:mod:`pymm.simulate.workloads`) are event arrays from a named mix, or a replay
scenario's own operations; configurations (:mod:`pymm.simulate.configs`) are
``LABEL:KEY=VALUE,...``; the engine's simulation core measures each (:mod:`pymm.simulate.core`);
:mod:`pymm.simulate.report` draws the table and the plot.
"""

from pymm.simulate.configs import DEFAULT_CONFIGS, SimConfig, default_configs, parse_config
from pymm.simulate.core import ConfigResult, Series, SimulationResult, probe_pod, run
from pymm.simulate.workloads import MIXES, Workload, from_scenario, generate, load_scenario

__all__ = [
    "DEFAULT_CONFIGS",
    "MIXES",
    "ConfigResult",
    "Series",
    "SimConfig",
    "SimulationResult",
    "Workload",
    "default_configs",
    "from_scenario",
    "generate",
    "load_scenario",
    "parse_config",
    "probe_pod",
    "run",
]
