"""The bottom layer: what every other layer may use and nothing of ours is imported by.

* :mod:`~mliap_tui.core.units`      conversion constants and number formatting with units
* :mod:`~mliap_tui.core.vocab`      the names: crystal systems, modes, dtypes, metrics, failure
  kinds, energy conventions (``StrEnum``s with labels) and the shared defaults
* :mod:`~mliap_tui.core.geometry`   lattice from parameters, shortest interatomic distance
* :mod:`~mliap_tui.core.resources`  files shipped inside the package (sample, references)
* :mod:`~mliap_tui.core.host`       facts about this machine (usable cores, free disk)

Nothing here imports textual, rich, torch or a model package.
"""
