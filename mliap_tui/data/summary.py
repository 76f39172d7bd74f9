"""A rich summary of one cached dataset (``mliap-tui data show``)."""

from __future__ import annotations

import polars as pl
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from mliap_tui.cache import Cache

CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")


def dof_histogram(total_dof: pl.Series, width: int = 30) -> Table:
    """Counts of crystals per total DOF value, with a bar."""
    counts = total_dof.drop_nulls().value_counts().sort(total_dof.name)
    table = Table(title="total DOF (lattice + Wyckoff)", box=None, pad_edge=False)
    table.add_column("DOF", justify="right")
    table.add_column("crystals", justify="right")
    table.add_column("")
    peak = max(counts["count"].to_list() or [1])
    for dof, n in counts.iter_rows():
        table.add_row(str(dof), str(n), "█" * max(1, round(width * n / peak)))
    return table


def render_dataset_summary(cache: Cache, dataset: str) -> Panel:
    df = cache.scan_materials(dataset).select(
        "material_id", "n_sites", "elements", "spacegroup_number", "crystal_system", "total_dof",
        "e_form_per_atom_dft_mp2020", "e_above_hull_dft_mp2020", "e_per_atom_dft_mp2020",
        "e_per_atom_dft_raw", "e_per_atom_dft_origin", "symprec_ang",
    ).collect()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    n_elements = df["elements"].explode().n_unique()
    head.add_row("crystals", f"{len(df):,}  ({df['n_sites'].sum():,} atoms, {df['n_sites'].min()}-{df['n_sites'].max()} per cell)")
    head.add_row("elements", str(n_elements))
    head.add_row("space groups", f"{df['spacegroup_number'].n_unique()} (symprec {df['symprec_ang'].max()} Å)")
    for col, label in [
        ("e_form_per_atom_dft_mp2020", "DFT e_form (MP2020)"),
        ("e_above_hull_dft_mp2020", "DFT Ehull (MP2020)"),
        ("e_per_atom_dft_mp2020", "DFT energy (MP2020)"),
        ("e_per_atom_dft_raw", "DFT energy (raw)"),
    ]:
        s = df[col].drop_nulls()
        if len(s):
            head.add_row(label, f"{len(s):,} values, median {s.median():.3f} eV/atom")
    origins = df["e_per_atom_dft_origin"].drop_nulls().value_counts()
    if len(origins):
        head.add_row("energy origin", ", ".join(f"{o}: {n:,}" for o, n in origins.iter_rows()))

    systems = Table(title="crystal systems", box=None, pad_edge=False)
    systems.add_column("system")
    systems.add_column("crystals", justify="right")
    counts = dict(df["crystal_system"].value_counts().iter_rows())
    for cs in CRYSTAL_SYSTEMS:
        systems.add_row(cs, str(counts.get(cs, 0)))

    preds = cache.scan_predictions(dataset).group_by("model", "mode").agg(
        (pl.col("status") == "ok").sum().alias("ok"), (pl.col("status") == "failed").sum().alias("failed")
    ).sort("model", "mode").collect()
    models = Table(title="predictions in cache", box=None, pad_edge=False)
    for col in ("model", "mode", "ok", "failed", "missing"):
        models.add_column(col, justify="left" if col in ("model", "mode") else "right")
    for model, mode, ok, failed in preds.iter_rows():
        models.add_row(model, mode, f"{ok:,}", f"{failed:,}", f"{len(df) - ok - failed:,}")
    if not len(preds):
        models.add_row("none yet", "", "", "", f"run: mliap-tui run --data {dataset}")

    body = Group(head, "", systems, "", dof_histogram(df["total_dof"]), "", models)
    return Panel(body, title=f"dataset [bold]{dataset}[/bold]", subtitle=str(cache.dataset_dir(dataset)), expand=False)
