"""The force audit, computed once for every consumer: the Forces screen, ``mliap-tui
softening`` / ``rare-events`` and ``scripts/run_force_audit.py``.

For a set of datasets with DFT forces, the DFT/predicted force pairs are read once and give

* softening (Deng et al. 2025): per-structure slope of MLIP on DFT force components, MAE and
  slope-corrected MAE (``per_structure``), aggregated per dataset and model (``aggregate``);
* rare-event force errors (Liu, He, Mo 2023): per atom |F| error and angle (``atoms``),
  summarised for migrating vs all atoms (``summary``) and by distance to the migrating atom
  (``binned``).

Forces are eV/Å, angles degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import polars as pl

from mliap_tui.analysis import rare_events, softening
from mliap_tui.cache import Cache


@dataclass
class ForceAudit:
    pairs: pl.DataFrame  # softening.load_force_pairs rows of every dataset
    per_structure: pl.DataFrame  # softening.STRUCTURE_COLUMNS
    aggregate: pl.DataFrame  # per (dataset, model)
    atoms: pl.DataFrame  # rare_events.ATOM_SCHEMA + r_ang, is_rare_event
    summary: pl.DataFrame  # per (dataset, model, RE/all)
    binned: pl.DataFrame  # per (dataset, model, distance bin)

    @property
    def models(self) -> list[str]:
        return sorted(self.pairs["model"].unique().to_list()) if len(self.pairs) else []

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.pairs["dataset"].to_list())) if len(self.pairs) else []

    @property
    def empty(self) -> bool:
        return not len(self.pairs)


def force_audit(cache: Cache, datasets: Sequence[str], models: Iterable[str] | None = None) -> ForceAudit:
    """Softening and rare-event metrics of ``datasets`` (each read once)."""
    models = list(models) if models is not None else None
    pair_frames, atom_frames = [], []
    for dataset in datasets:
        pairs = softening.load_force_pairs(cache, dataset, models)
        pair_frames.append(pairs)
        atom_frames.append(rare_events.atom_errors(pairs, rare_events.load_atom_properties(cache, dataset)))
    pairs = pl.concat(pair_frames, how="vertical") if pair_frames else pl.DataFrame()
    per = softening.softening_table(pairs)
    agg = softening.aggregate_softening(pairs, per) if len(pairs) else pl.DataFrame()
    atoms = pl.concat(atom_frames, how="diagonal_relaxed") if atom_frames else pl.DataFrame()
    summary = rare_events.rare_event_summary(atoms) if len(atoms) else pl.DataFrame()
    binned = rare_events.distance_binned(atoms) if len(atoms) else pl.DataFrame()
    return ForceAudit(pairs, per, agg, atoms, summary, binned)


__all__ = ["ForceAudit", "force_audit"]
