"""What a cached dataset holds (``mliap-tui data show``): counts only, rendered by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.cache.store import collect_fresh
from mliap_tui.cache.weights import label_weight_variants
from mliap_tui.core.vocab import CRYSTAL_SYSTEMS

#: DFT columns reported by the overview -> their labels (all eV/atom).
DFT_ENERGY_LABELS = {
    "e_form_per_atom_dft_mp2020": "DFT e_form (MP2020)",
    "e_above_hull_dft_mp2020": "DFT Ehull (MP2020)",
    "e_per_atom_dft_mp2020": "DFT energy (MP2020)",
    "e_per_atom_dft_raw": "DFT energy (raw)",
}


@dataclass
class DatasetOverview:
    dataset: str
    path: str
    n_crystals: int
    n_atoms: int
    min_sites: int | None
    max_sites: int | None
    n_elements: int
    n_spacegroups: int
    symprec_ang: float | None
    #: DFT column -> (non-null count, median eV/atom)
    dft_energies: dict[str, tuple[int, float]] = field(default_factory=dict)
    energy_origins: dict[str, int] = field(default_factory=dict)
    crystal_systems: dict[str, int] = field(default_factory=dict)  # every system, 0 included
    dof_counts: list[tuple[int, int]] = field(default_factory=list)  # (total DOF, crystals), sorted
    #: (model, mode, ok, failed, missing)
    predictions: list[tuple[str, str, int, int, int]] = field(default_factory=list)


def dataset_overview(cache: Cache, dataset: str) -> DatasetOverview:
    df = cache.scan_materials(dataset).select(
        "material_id", "n_sites", "elements", "spacegroup_number", "crystal_system", "total_dof",
        *DFT_ENERGY_LABELS, "e_per_atom_dft_origin", "symprec_ang",
    ).collect()
    dft = {}
    for col in DFT_ENERGY_LABELS:
        s = df[col].drop_nulls()
        if len(s):
            dft[col] = (len(s), float(s.median()))
    counts = dict(df["crystal_system"].value_counts().iter_rows())
    dof = df["total_dof"].drop_nulls().value_counts().sort("total_dof")
    preds = collect_fresh(lambda: label_weight_variants(cache.scan_predictions(dataset)).group_by("model", "mode").agg(
        (pl.col("status") == "ok").sum().alias("ok"), (pl.col("status") == "failed").sum().alias("failed")
    ).sort("model", "mode"))
    return DatasetOverview(
        dataset=dataset,
        path=str(cache.dataset_dir(dataset)),
        n_crystals=len(df),
        n_atoms=int(df["n_sites"].sum() or 0),
        min_sites=df["n_sites"].min(),
        max_sites=df["n_sites"].max(),
        n_elements=df["elements"].explode().n_unique() if len(df) else 0,
        n_spacegroups=df["spacegroup_number"].n_unique(),
        symprec_ang=df["symprec_ang"].max(),
        dft_energies=dft,
        energy_origins=dict(df["e_per_atom_dft_origin"].drop_nulls().value_counts().iter_rows()),
        crystal_systems={cs: int(counts.get(cs, 0)) for cs in CRYSTAL_SYSTEMS},
        dof_counts=[(int(d), int(n)) for d, n in dof.iter_rows()],
        predictions=[(m, mode, int(ok), int(f), len(df) - int(ok) - int(f)) for m, mode, ok, f in preds.iter_rows()],
    )
