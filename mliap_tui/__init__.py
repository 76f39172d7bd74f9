"""mliap-tui: audit universal machine-learning interatomic potentials against DFT.

Layers, from the bottom up (each only imports the ones before it; docs/ARCHITECTURE.md):
core -> cache -> symmetry | thermo -> data -> models -> engine -> analysis -> report -> tui -> cli.
Nothing below ``mliap_tui.tui`` imports textual or rich.
"""

__version__ = "0.1.0"
