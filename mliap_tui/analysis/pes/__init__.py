"""Symmetry-restricted PES slices: :mod:`.slices` builds and evaluates the grids (through the
engine), :mod:`.stats` finds minima, saddles and curvatures and compares models."""
