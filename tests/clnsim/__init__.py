"""A stand-in for Core Lightning's lightningd that drives real plugin processes (see lightningd.py)."""

from .lightningd import CliError, FaultCounts, Faults, PluginDied, SimNetwork, SimNode
from .manifest import ManifestError

__all__ = [
    "CliError",
    "FaultCounts",
    "Faults",
    "ManifestError",
    "PluginDied",
    "SimNetwork",
    "SimNode",
]
