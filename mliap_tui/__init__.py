"""mliap-tui: audit universal machine-learning interatomic potentials against DFT.

Layers, from the bottom up (each only imports the ones before it):
data -> symmetry -> thermo -> models -> engine -> analysis -> cache -> tui.
Nothing below ``mliap_tui.tui`` imports textual.
"""

__version__ = "0.1.0"
