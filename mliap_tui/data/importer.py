"""The import pipeline: RawRecords -> one validated materials table (+ a report) in the cache.

Steps (``build_materials_table``)
1. Every record is checked on its own; a failure rejects only that row, with its reason:
   reader errors (malformed CIF, empty file, ...), unusable structures (disorder/partial
   occupancy, no sites, zero volume, unknown element: ``structures.structure_columns``),
   non-finite DFT values (NaN/inf energies, forces of the wrong shape), duplicate material_id
   (the first loadable row is kept), failed symmetry analysis.
2. Symmetry columns at ``symprec_ang`` (Å) via ``mliap_tui.symmetry.symmetry_columns``.
3. MP2020 corrections via ``mliap_tui.thermo.mp2020_corrections_per_atom`` (eV/atom and the
   GGA/GGA+U run type MP would use), then the energy conventions are completed
   (``fill_energy_conventions``): ``mp2020 = raw + correction``; when a source reports both raw and
   MP2020 energies, the stored correction is the reported ``mp2020 - raw`` (so each row stays
   self-consistent) and a disagreement with the computed one (> 1 meV/atom) is a warning; when
   only a formation energy is known (MP-20/MPTS-52), the MP2020 total energy is rebuilt from the
   MP elemental references (``e_per_atom_dft_origin = 'rebuilt'``, else ``'reported'``).

``import_dataset`` reads a path (or ``'sample'`` / ``'mp'``), builds the table and writes it and
the report to the cache. All energies are eV/atom, forces eV/Å, lengths Å.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from mliap_tui.cache import (
    MATERIALS_SCHEMA,
    Cache,
    check_name,
    conform,
    write_json_atomic,
    write_parquet_atomic,
)
from mliap_tui.core.vocab import CRYSTAL_SYSTEMS, DEFAULT_SYMPREC_ANG
from mliap_tui.data.readers import DFT_KEYS, RawRecord, read_records
from mliap_tui.data.readers._common import base_name
from mliap_tui.data.structures import CellLimits, StructureError, structure_columns

#: Reported and computed MP2020 corrections that differ by more than this get a warning (eV/atom).
CORRECTION_MISMATCH_TOL_EV_PER_ATOM = 1e-3
SAMPLE_NAME = "sample"
MP_NAME = "mp"
#: imports the shipped force sample as two datasets (core.resources.FORCE_SAMPLE)
FORCE_SAMPLE_NAME = "sample-forces"


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What an import read, loaded and rejected (and why), and the symmetry of what it loaded.

    rejected / warnings: (source, material_id or file, reason). A rejected row is not in the
    table; a warning row is, with the issue noted (e.g. no MP2020 correction could be computed).
    spacegroup_counts / crystal_system_counts / dof_histogram: crystals loaded by this import per
    space-group number, crystal system and total DOF. n_in_dataset: rows in the dataset after the
    import (more than n_loaded when appending). n_atoms: sites in the loaded cells.
    seconds: wall time of the import (s).
    """

    dataset: str
    sources: list[str] = field(default_factory=list)
    n_read: int = 0
    n_loaded: int = 0
    n_atoms: int = 0
    n_in_dataset: int = 0
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)
    spacegroup_counts: dict[int, int] = field(default_factory=dict)
    crystal_system_counts: dict[str, int] = field(default_factory=dict)
    dof_histogram: dict[int, int] = field(default_factory=dict)
    energy_origin_counts: dict[str, int] = field(default_factory=dict)
    dft_value_counts: dict[str, int] = field(default_factory=dict)
    symprec_ang: float = DEFAULT_SYMPREC_ANG
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    materials_path: str | None = None

    @property
    def n_rejected(self) -> int:
        return len(self.rejected)

    def reject(self, source: str, material_id: str, reason: str) -> None:
        self.rejected.append((str(source), str(material_id), str(reason)))

    def warn(self, source: str, material_id: str, reason: str) -> None:
        self.warnings.append((str(source), str(material_id), str(reason)))

    def rejection_reasons(self) -> dict[str, int]:
        """Rejections per kind of reason (text before the first ':' or '(', row prefixes dropped)."""
        return dict(Counter(_reason_kind(r) for _, _, r in self.rejected).most_common())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (units in the key names where they apply)."""
        return {
            "dataset": self.dataset,
            "sources": list(self.sources),
            "n_read": self.n_read,
            "n_loaded": self.n_loaded,
            "n_rejected": self.n_rejected,
            "n_atoms": self.n_atoms,
            "n_in_dataset": self.n_in_dataset,
            "symprec_ang": self.symprec_ang,
            "seconds": round(self.seconds, 3),
            "phase_seconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
            "materials_path": self.materials_path,
            "rejection_reasons": self.rejection_reasons(),
            "rejected": [{"source": s, "material_id": m, "reason": r} for s, m, r in self.rejected],
            "warnings": [{"source": s, "material_id": m, "reason": r} for s, m, r in self.warnings],
            "spacegroup_counts": {str(k): v for k, v in sorted(self.spacegroup_counts.items())},
            "crystal_system_counts": dict(self.crystal_system_counts),
            "dof_histogram": {str(k): v for k, v in sorted(self.dof_histogram.items())},
            "energy_origin_counts": dict(self.energy_origin_counts),
            "dft_value_counts": dict(self.dft_value_counts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ImportReport":
        """Inverse of :meth:`to_dict` (e.g. to show the report stored in the cache)."""

        def triples(key: str) -> list[tuple[str, str, str]]:
            return [(x["source"], x["material_id"], x["reason"]) for x in d.get(key, [])]

        return cls(
            dataset=d["dataset"],
            sources=list(d.get("sources", [])),
            n_read=int(d.get("n_read", 0)),
            n_loaded=int(d.get("n_loaded", 0)),
            n_atoms=int(d.get("n_atoms", 0)),
            n_in_dataset=int(d.get("n_in_dataset", 0)),
            rejected=triples("rejected"),
            warnings=triples("warnings"),
            spacegroup_counts={int(k): int(v) for k, v in d.get("spacegroup_counts", {}).items()},
            crystal_system_counts={str(k): int(v) for k, v in d.get("crystal_system_counts", {}).items()},
            dof_histogram={int(k): int(v) for k, v in d.get("dof_histogram", {}).items()},
            energy_origin_counts={str(k): int(v) for k, v in d.get("energy_origin_counts", {}).items()},
            dft_value_counts={str(k): int(v) for k, v in d.get("dft_value_counts", {}).items()},
            symprec_ang=float(d.get("symprec_ang", DEFAULT_SYMPREC_ANG)),
            seconds=float(d.get("seconds", 0.0)),
            phase_seconds={str(k): float(v) for k, v in d.get("phase_seconds", {}).items()},
            materials_path=d.get("materials_path"),
        )

def binned_histogram(counts: Mapping[int, int], max_bins: int = 12) -> list[tuple[str, int]]:
    """(label, count) rows of an integer histogram merged into at most ``max_bins`` equal bins."""
    if not counts:
        return []
    lo, hi = min(counts), max(counts)
    width = max(1, math.ceil((hi - lo + 1) / max_bins))
    out = []
    for start in range(lo, hi + 1, width):
        end = start + width - 1
        n = sum(v for k, v in counts.items() if start <= k <= end)
        out.append((str(start) if width == 1 else f"{start}-{end}", n))
    return out


_ROW_PREFIX = re.compile(r"^(row|entry|record|frame) \d+( onward)?: ")


def _reason_kind(reason: str) -> str:
    text = _ROW_PREFIX.sub("", reason)
    return re.split(r"[:(]", text, maxsplit=1)[0].strip() or text


# --------------------------------------------------------------------------------------------
# per-row pure helpers
# --------------------------------------------------------------------------------------------
def check_dft_values(dft: Mapping[str, Any], n_sites: int) -> str | None:
    """None if every DFT value is usable, else the reason (NaN/inf energy, bad forces shape)."""
    for key, value in dft.items():
        if key not in DFT_KEYS:
            return f"unknown DFT column {key!r}"
        if value is None:
            continue
        if key == "forces_dft_ev_per_ang":
            forces = np.asarray(value, dtype=float)
            if forces.size != 3 * n_sites:
                return f"forces have {forces.size} values, expected 3 x {n_sites} sites"
            if not np.isfinite(forces).all():
                return f"non-finite DFT forces ({int((~np.isfinite(forces)).sum())} values)"
        elif not math.isfinite(float(value)):
            return f"non-finite {key} ({value})"
    return None


@dataclass(frozen=True)
class FilledEnergies:
    """Result of :func:`fill_energy_conventions` (all eV/atom)."""

    e_per_atom_dft_mp2020: float | None
    e_per_atom_dft_raw: float | None
    mp2020_correction_per_atom: float | None
    origin: str | None  # 'reported', 'rebuilt' or None (no total energy)
    warning: str | None = None


def fill_energy_conventions(
    e_per_atom_raw: float | None,
    e_per_atom_mp2020: float | None,
    correction_per_atom: float | None,
    rebuilt_e_per_atom_mp2020: float | None = None,
) -> FilledEnergies:
    """Complete the total energies of one crystal on both conventions (eV/atom).

    ``mp2020 = raw + correction``. When both totals are given, the correction is taken from them
    (``mp2020 - raw``) and a disagreement with ``correction_per_atom`` (computed MP2020) beyond
    ``CORRECTION_MISMATCH_TOL_EV_PER_ATOM`` is returned as a warning. When neither is given,
    ``rebuilt_e_per_atom_mp2020`` (e_form + sum_i x_i mu_i, ``thermo.rebuild_total_energies``) is
    used if known, with origin 'rebuilt'.
    """
    warning = None
    origin: str | None = "reported"
    raw, mp, corr = e_per_atom_raw, e_per_atom_mp2020, correction_per_atom
    if raw is not None and mp is not None:
        reported = mp - raw
        if corr is not None and abs(reported - corr) > CORRECTION_MISMATCH_TOL_EV_PER_ATOM:
            warning = (
                f"reported MP2020 correction {reported:+.4f} eV/atom differs from the computed "
                f"{corr:+.4f} eV/atom; the reported one is stored"
            )
        corr = reported
    elif raw is not None:
        mp = raw + corr if corr is not None else None
    elif mp is not None:
        raw = mp - corr if corr is not None else None
    elif rebuilt_e_per_atom_mp2020 is not None:
        mp = rebuilt_e_per_atom_mp2020
        raw = mp - corr if corr is not None else None
        origin = "rebuilt"
    else:
        origin = None
    return FilledEnergies(mp, raw, corr, origin, warning)


def _composition_counts(species: Sequence[str]) -> dict[str, float]:
    return {el: float(n) for el, n in Counter(species).items()}


# --------------------------------------------------------------------------------------------
# building the table
# --------------------------------------------------------------------------------------------
def build_materials_table(
    records: Iterable[RawRecord],
    dataset: str,
    symprec_ang: float = DEFAULT_SYMPREC_ANG,
    refs: Mapping[str, float] | None = None,
    n_jobs: int | None = None,
    existing_ids: Iterable[str] = (),
    sources: Sequence[str] | None = None,
    limits: CellLimits = CellLimits(),
) -> tuple[pl.DataFrame, ImportReport]:
    """Validate ``records`` into a materials table (cache.MATERIALS_SCHEMA) and its ImportReport.

    ``refs``: {element: eV/atom} MP elemental references for rebuilding total energies from
    formation energies (default ``thermo.load_elemental_refs()``, loaded only if needed).
    ``n_jobs``: worker processes for symmetry and corrections (None = their defaults).
    ``existing_ids``: ids already in the dataset (appending); records with them are rejected as
    duplicates. ``sources``: what to list as the report's sources (default: each record's source).
    ``limits``: what counts as a physical cell (closest approach, volume per atom, atom count).
    """
    from mliap_tui import thermo

    started = time.perf_counter()
    report = ImportReport(dataset=check_name(dataset, "dataset name"), symprec_ang=float(symprec_ang))
    seen_sources: dict[str, None] = {}
    kept_from: dict[str, str] = {mid: "the existing dataset" for mid in existing_ids}
    rows: list[dict[str, Any]] = []
    kept: list[RawRecord] = []

    for record in records:
        report.n_read += 1
        seen_sources.setdefault(record.source)
        mid, source = str(record.material_id).strip(), record.source
        if record.error is not None or record.structure is None:
            report.reject(source, mid, record.error or "no structure")
            continue
        if not mid:
            report.reject(source, "?", "empty material_id")
            continue
        try:
            columns = structure_columns(record.structure, limits)
        except StructureError as exc:
            report.reject(source, mid, str(exc))
            continue
        reason = check_dft_values(record.dft, columns["n_sites"])
        if reason:
            report.reject(source, mid, reason)
            continue
        if mid in kept_from:
            report.reject(source, mid, f"duplicate material_id (kept the first, from {kept_from[mid]})")
            continue
        kept_from[mid] = source
        row = {"material_id": mid, "dataset": dataset, "source": source, **columns}
        row.update({k: v for k, v in record.dft.items() if v is not None})
        rows.append(row)
        kept.append(record)
    report.sources = list(sources) if sources is not None else list(seen_sources)
    report.phase_seconds["read"] = time.perf_counter() - started

    sym: list[dict[str, Any]] = []
    corrections: list[tuple[float | None, str, str | None]] = []
    if rows:
        t0 = time.perf_counter()
        sym = _symmetry_columns_guarded(rows, symprec_ang, n_jobs)
        t1 = time.perf_counter()
        corrections = thermo.mp2020_corrections_per_atom([r.structure for r in kept], n_jobs)
        report.phase_seconds.update(symmetry=t1 - t0, mp2020=time.perf_counter() - t1)

    out_rows: list[dict[str, Any]] = []
    for row, record, sym_cols, (corr, run_type, corr_error) in zip(rows, kept, sym, corrections):
        mid, source = row["material_id"], row["source"]
        if sym_cols.get("error"):
            report.reject(source, mid, f"symmetry analysis failed at symprec {symprec_ang:g} Å: {sym_cols['error']}")
            continue
        row.update({k: v for k, v in sym_cols.items() if k != "error"})
        reported_sg = record.meta.get("spacegroup_number_reported")
        if reported_sg is not None and reported_sg != row.get("spacegroup_number"):
            report.warn(
                source, mid,
                f"space group {row.get('spacegroup_number')} at symprec {symprec_ang:g} Å, source reports {reported_sg}",
            )
        rebuilt = None
        e_form = row.get("e_form_per_atom_dft_mp2020")
        if row.get("e_per_atom_dft_raw") is None and row.get("e_per_atom_dft_mp2020") is None and e_form is not None:
            if refs is None:
                refs = thermo.load_elemental_refs()
            try:
                rebuilt = thermo.rebuild_total_energies(e_form, _composition_counts(row["species"]), refs)
            except (KeyError, ValueError) as exc:
                report.warn(source, mid, f"total energy not rebuilt: {exc}")
        if record.meta.get("own_dft_settings"):
            # energies from another DFT setup (not MP's): kept raw, never put on the MP2020 scale
            corr = None
        filled = fill_energy_conventions(row.get("e_per_atom_dft_raw"), row.get("e_per_atom_dft_mp2020"), corr, rebuilt)
        if filled.warning:
            report.warn(source, mid, filled.warning)
        if corr_error:
            kept_note = "the reported one is stored" if filled.mp2020_correction_per_atom is not None else "left empty"
            report.warn(source, mid, f"MP2020 correction could not be computed ({corr_error}); {kept_note}")
        row.update(
            e_per_atom_dft_mp2020=filled.e_per_atom_dft_mp2020,
            e_per_atom_dft_raw=filled.e_per_atom_dft_raw,
            e_per_atom_dft_origin=filled.origin,
            mp2020_correction_per_atom=filled.mp2020_correction_per_atom,
            mp2020_run_type=run_type or None,
        )
        out_rows.append(row)

    df = conform(pl.from_dicts(out_rows, schema=MATERIALS_SCHEMA), MATERIALS_SCHEMA) if out_rows else pl.DataFrame(schema=MATERIALS_SCHEMA)
    _summarise(df, report)
    report.seconds = time.perf_counter() - started
    return df, report


def _symmetry_columns_guarded(rows: list[dict[str, Any]], symprec_ang: float, n_jobs: int | None) -> list[dict[str, Any]]:
    """``symmetry.symmetry_columns``; if the batch raises, row by row so one bad row only costs itself."""
    from mliap_tui import symmetry

    try:
        return symmetry.symmetry_columns(rows, symprec_ang, n_jobs)
    except Exception:  # noqa: BLE001 - isolate the row(s) that crash the analysis
        out = []
        for row in rows:
            try:
                out.append(symmetry.symmetry_columns([row], symprec_ang, 1)[0])
            except Exception as exc:  # noqa: BLE001
                out.append({"error": f"crashed ({type(exc).__name__}: {exc})"})
        return out


def _summarise(df: pl.DataFrame, report: ImportReport) -> None:
    """Counts of the loaded table into the report."""
    report.n_loaded = report.n_in_dataset = len(df)
    report.n_atoms = int(df["n_sites"].sum() or 0) if len(df) else 0

    def counts(col: str) -> dict:
        vc = df[col].drop_nulls().value_counts()
        return {k: int(n) for k, n in vc.iter_rows()}

    report.spacegroup_counts = dict(sorted(counts("spacegroup_number").items()))
    report.crystal_system_counts = {cs: n for cs in CRYSTAL_SYSTEMS if (n := counts("crystal_system").get(cs))}
    report.dof_histogram = dict(sorted(counts("total_dof").items()))
    report.energy_origin_counts = counts("e_per_atom_dft_origin")
    report.dft_value_counts = {k: int(df[k].is_not_null().sum()) for k in DFT_KEYS if len(df)}


# --------------------------------------------------------------------------------------------
# import into the cache
# --------------------------------------------------------------------------------------------
def default_dataset_name(path_or_name: str | Path) -> str:
    """'sample', 'mp', or the file/folder stem made safe for a folder name."""
    if str(path_or_name) in (SAMPLE_NAME, MP_NAME):
        return str(path_or_name)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", base_name(Path(path_or_name).resolve())).strip("._-")
    return name or "dataset"


def sample_path() -> Path:
    """The shipped sample (MP-20 format csv.gz); FileNotFoundError naming the path if absent."""
    from mliap_tui.core.resources import sample_materials_path

    return sample_materials_path()


def resolve_dataset(cache: Cache, name_or_path: str, **import_options: Any) -> tuple[str, ImportReport | None]:
    """The dataset a command should work on, importing it first when that is what the user meant.

    ``name_or_path`` is a dataset already in the cache (returned as is), ``'sample'`` (the shipped
    sample, imported on first use), or an existing file/folder (imported under its default name,
    unless a dataset of that name is already cached). Anything else raises FileNotFoundError listing
    the datasets in the cache. Returns (dataset name, the ImportReport when an import happened).
    """
    if is_cached(cache, name_or_path):
        return str(name_or_path), None
    if str(name_or_path) == SAMPLE_NAME:
        return SAMPLE_NAME, import_dataset(SAMPLE_NAME, cache=cache, **import_options)
    path = Path(name_or_path).expanduser()
    if path.exists():
        name = default_dataset_name(path)
        if cache.has_materials(name):
            return name, None
        return name, import_dataset(path, dataset=name, cache=cache, **import_options)
    known = ", ".join(cache.datasets()) or "none yet"
    raise FileNotFoundError(
        f"dataset {name_or_path!r} is neither in the cache at {cache.root} (known: {known}) nor a file or "
        f"folder here: give a dataset name, 'sample', or a path to import (mliap-tui data import PATH)"
    )


def import_force_sample(cache: Cache, **import_options: Any) -> list[ImportReport]:
    """Import the shipped force sample (5 MPtrj frames, 8 Si vacancy-migration cells: real DFT
    forces) as the datasets ``mptrj-sample`` and ``si-vacancy-sample``."""
    from mliap_tui.core.resources import force_sample_paths

    return [import_dataset(path, dataset=name, cache=cache, **import_options)
            for name, path in force_sample_paths().items()]


def is_cached(cache: Cache, name_or_path: Any) -> bool:
    """Is ``name_or_path`` the name of a dataset in ``cache``? (False for a path or an odd name.)"""
    try:
        check_name(str(name_or_path))
    except ValueError:
        return False
    return cache.has_materials(str(name_or_path))


def import_dataset(
    path_or_name: str | Path | Sequence[str | Path],
    dataset: str | None = None,
    fmt: str | None = None,
    cache: Cache | None = None,
    symprec_ang: float = DEFAULT_SYMPREC_ANG,
    limit: int | None = None,
    n_jobs: int | None = None,
    api_key: str | None = None,
    append: bool = False,
    refs: Mapping[str, float] | None = None,
    limits: CellLimits = CellLimits(),
    on_download: Callable[[Any], None] | None = None,
) -> ImportReport:
    """Read, validate and store a dataset; return (and store) its ImportReport.

    ``path_or_name``: a file or folder, a list of them (one dataset), ``'sample'`` (the shipped
    MP-20-format sample) or ``'mp'`` (the Materials Project through mp-api; needs ``api_key`` or
    $MP_API_KEY). ``fmt``: reader format (default: detected per path). ``limit``: read at most
    this many records in total. ``append``: keep an existing table of ``dataset`` and add the new
    rows (ids already there are rejected as duplicates); otherwise the table is replaced.
    The table is written only when at least one row loaded (or rows existed when appending).
    ``on_download``: progress callback of the 'mp' download (``mp_api.DownloadProgress``), which
    commits its pages to the cache as they arrive and resumes an interrupted download.
    """
    cache = cache if cache is not None else Cache.open()
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    inputs = [path_or_name] if isinstance(path_or_name, (str, Path)) else list(path_or_name)
    if not inputs:
        raise ValueError("nothing to import: give a path, 'sample' or 'mp'")
    dataset = check_name(dataset or default_dataset_name(inputs[0]), "dataset name")

    streams = []
    sources = []
    download = None
    for item in inputs:
        if str(item) == MP_NAME:
            from mliap_tui.data import mp_api

            download = mp_api.MPDownload(cache, dataset, api_key=api_key, limit=limit, on_progress=on_download)
            streams.append(download.records())
            sources.append(mp_api.SOURCE)
        else:
            path = sample_path() if str(item) == SAMPLE_NAME else Path(item)
            path_fmt = fmt or ("mp_csv" if str(item) == SAMPLE_NAME else None)
            streams.append(read_records(path, path_fmt))  # raises now for a missing path / bad format
            sources.append(str(path))
    records = itertools.chain.from_iterable(streams)
    if limit is not None:
        records = itertools.islice(records, limit)
    per_atom_meta: list[tuple[str, dict]] = []  # per-atom values some readers attach (Si sets: r)
    records = _keep_per_atom_meta(records, per_atom_meta)

    existing = None
    if append and cache.has_materials(dataset):
        existing = cache.scan_materials(dataset).collect()
    df, report = build_materials_table(
        records,
        dataset,
        symprec_ang=symprec_ang,
        refs=refs,
        n_jobs=n_jobs,
        existing_ids=existing["material_id"].to_list() if existing is not None else (),
        sources=sources,
        limits=limits,
    )
    if download is not None:  # its source names the database version it read
        report.sources = [download.source if s == mp_api.SOURCE else s for s in report.sources]
        for note in download.notes:
            report.warn(download.source, "-", note)
    if existing is not None and len(existing):
        df = pl.concat([conform(existing, MATERIALS_SCHEMA), df], how="vertical")
    report.n_in_dataset = len(df)
    if len(df):
        report.materials_path = str(cache.write_materials(dataset, df))
        _write_atom_properties(cache, dataset, per_atom_meta, set(df["material_id"].to_list()))
    write_json_atomic(report.to_dict(), cache.report_path(dataset))
    if download is not None and len(df):
        download.cleanup()  # the pages are in the dataset now
    return report


def _keep_per_atom_meta(records: Iterable[RawRecord], out: list[tuple[str, dict]]) -> Iterable[RawRecord]:
    for rec in records:
        if rec.ok and "r_ang" in rec.meta:
            out.append((rec.material_id, rec.meta))
        yield rec


def _write_atom_properties(cache: Cache, dataset: str, pairs: list[tuple[str, dict]], kept_ids: set[str]) -> None:
    """Store the per-atom side table of the imported rows (merged with one already there)."""
    from mliap_tui.data.readers.si_rare_events import atom_properties_from_meta

    props = atom_properties_from_meta(pairs)
    if props is None:
        return
    props = props.filter(pl.col("material_id").is_in(list(kept_ids)))
    path = cache.atom_properties_path(dataset)
    if path.is_file():
        props = pl.concat([pl.read_parquet(path), props]).unique(["material_id", "atom_index"], keep="last")
    write_parquet_atomic(props.sort("material_id", "atom_index"), path)
