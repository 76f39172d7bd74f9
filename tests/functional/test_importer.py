"""The import pipeline: validation with per-row reasons, energy conventions, lossless structures,
the report, the cache round trip and the mp-api path on a recorded response."""

from __future__ import annotations

import gzip
import json
import sys
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from support import FIXTURES as FIX

from mliap_tui.cache import MATERIALS_SCHEMA, Cache
from mliap_tui.core import resources
from mliap_tui.data import mp_api
from mliap_tui.data.importer import (
    CORRECTION_MISMATCH_TOL_EV_PER_ATOM,
    ImportReport,
    binned_histogram,
    build_materials_table,
    check_dft_values,
    default_dataset_name,
    fill_energy_conventions,
    import_dataset,
)
from mliap_tui.data.readers import RawRecord, read_records
from mliap_tui.data.readers._common import structure_from_cif_text
from mliap_tui.data.structures import row_to_structure

FAKE_KEY = "0123456789abcdef0123456789abcdef"  # 32 characters, like a real key; never sent anywhere


def _build(path, fmt=None, **kw):
    return build_materials_table(read_records(path, fmt), "t", n_jobs=1, **kw)


def _rejected(report: ImportReport) -> dict[str, str]:
    return {mid: reason for _, mid, reason in report.rejected}


def _refs_from_file() -> dict[str, float]:
    """Lowest MP2020 energy per atom per element, read independently of mliap_tui.thermo."""
    with gzip.open(resources.elemental_refs_path(), "rt") as fh:
        raw = json.load(fh)
    out: dict[str, float] = {}
    for entry in raw.values():
        (el, n), = entry["composition"].items()
        e = (entry["energy"] + entry.get("correction", 0.0)) / n
        out[el] = min(out.get(el, e), e)
    return out


# ---- validation: bad rows are rejected with a reason, the rest loads ------------------------


def test_malformed_mp20_rows_rejected_with_reasons():
    df, report = _build(FIX / "mp20_malformed.csv")
    assert sorted(df["material_id"]) == ["mp-10009", "mp-1225695"]
    assert report.n_read == 9 and report.n_loaded == 2 and report.n_rejected == 7
    reasons = _rejected(report)
    assert "malformed CIF" in reasons["bad-broken-cif"]
    assert "zero volume" in reasons["bad-zero-volume"]
    assert "disordered or partially occupied site" in reasons["bad-partial-occupancy"]
    assert reasons["bad-unknown-element"] == "unknown element symbol 'Xx'"
    assert reasons["bad-nan-energy"] == "non-finite e_form_per_atom_dft_mp2020 (nan)"
    assert reasons["mp-1225695"].startswith("duplicate material_id (kept the first")
    assert reasons["row 9"] == "row 9: empty material_id"
    # the first of the duplicates is the one kept
    cuni = df.filter(pl.col("material_id") == "mp-1225695")
    assert cuni["e_form_per_atom_dft_mp2020"][0] == pytest.approx(0.0648625199999992)
    assert report.rejection_reasons()["malformed CIF"] == 2


def test_structure_folder_rejections():
    df, report = _build(FIX / "structures")
    assert sorted(df["material_id"]) == ["POSCAR_mp-1224266", "mp-10009", "mp-1225695", "mp-626680"]
    reasons = _rejected(report)
    assert set(reasons) == {"broken", "empty", "partial_occupancy", "unknown_element", "POSCAR_zero_volume",
                            "overlapping_atoms"}
    assert reasons["empty"] == "empty file"
    assert reasons["overlapping_atoms"] == "atoms 0.004 Å apart (Na1 and Cl2), closer than 0.5 Å (--min-distance)"
    assert reasons["POSCAR_zero_volume"].startswith("zero or invalid cell volume")
    assert reasons["unknown_element"] == "unknown element symbol 'Xx'"
    assert "partially occupied" in reasons["partial_occupancy"]
    # no energies in CIF/POSCAR files, but symmetry and the MP2020 correction are there
    assert df["e_per_atom_dft_mp2020"].null_count() == len(df)
    assert df["e_per_atom_dft_origin"].null_count() == len(df)
    assert df["mp2020_correction_per_atom"].null_count() == 0
    assert df["spacegroup_number"].null_count() == 0


def test_physically_impossible_cells_are_rejected_with_short_reasons():
    """Overlapping atoms (with the pair), a collapsed cell, a huge cell, too many atoms, NaN
    coordinates: each rejected with one short reason; limits are configurable."""
    from pymatgen.core import Lattice, Structure

    from mliap_tui.data.readers import RawRecord
    from mliap_tui.data.structures import CellLimits, check_cell

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # CsCl-type, 4.884 Å apart
    dense = Structure(Lattice.cubic(1.5), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    huge = Structure(Lattice.orthorhombic(5, 5, 2000), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    big = nacl * (6, 6, 6)
    records = [RawRecord(mid, "test", s) for mid, s in
               [("ok", nacl), ("dense", dense), ("huge", huge), ("big", big)]]
    df, report = build_materials_table(records, "cells", refs={}, n_jobs=1, limits=CellLimits(max_atoms=300))
    reasons = _rejected(report)
    assert df["material_id"].to_list() == ["ok"]
    assert reasons["dense"].startswith("cell volume 1.69 Å³/atom, below 2 Å³/atom")
    assert reasons["huge"] == "lattice vector of 2000 Å (longer than 1000 Å)"
    assert reasons["big"] == "432 atoms, more than the limit of 300 (--max-atoms)"
    assert check_cell(nacl.lattice.matrix, ["Na", "Cl"], [[0, 0, 0], [float("nan"), 0, 0]]) == (
        "NaN or infinite lattice or coordinates")
    # a looser closest approach lets the overlap through; a stricter one rejects rock salt itself
    assert check_cell(nacl.lattice.matrix, ["Na", "Cl"], nacl.frac_coords, CellLimits(min_distance_ang=5.0)) == (
        "atoms 4.884 Å apart (Na1 and Cl2), closer than 5 Å (--min-distance)")


def test_malformed_cif_reason_is_the_first_real_parser_message():
    """Not pymatgen's whole warning stream: the parser's own message and a few stray words."""
    cif = (FIX / "structures" / "mp-10009.cif").read_text().replace(
        "_cell_length_a   4.13459945", "_cell_length_a   This is not valid", 1)
    with pytest.raises(ValueError) as err:
        structure_from_cif_text(cif)
    assert str(err.value) == "malformed CIF (could not convert string to float: 'This'; unexpected text near 'is not valid')"


def test_nan_energy_rejected_and_missing_structure_reported():
    df, report = _build(FIX / "wbm_malformed.json")
    assert df["material_id"].to_list() == ["wbm-3-38149"]
    reasons = _rejected(report)
    assert reasons["wbm-5-19374"] == "non-finite e_per_atom_dft_mp2020 (nan)"
    assert reasons["wbm-3-27145"] == "record 2: no structure"


def test_check_dft_values():
    assert check_dft_values({"e_per_atom_dft_raw": -1.0, "forces_dft_ev_per_ang": [0.0] * 6}, 2) is None
    assert check_dft_values({"forces_dft_ev_per_ang": [0.0] * 5}, 2) == "forces have 5 values, expected 3 x 2 sites"
    assert "non-finite DFT forces" in check_dft_values({"forces_dft_ev_per_ang": [0.0] * 5 + [np.inf]}, 2)
    assert check_dft_values({"e_above_hull_dft_mp2020": float("-inf")}, 2) == "non-finite e_above_hull_dft_mp2020 (-inf)"
    assert "unknown DFT column" in check_dft_values({"energy": 1.0}, 2)


# ---- lossless structures -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["mp20_biternary_test_head.csv.gz", "wbm_pbe54_head.json.gz", "mptrj_3_systems.db", "structures"]
)
def test_row_to_structure_round_trip_is_lossless(name):
    originals = {r.material_id: r.structure for r in read_records(FIX / name) if r.ok}
    df, _ = _build(FIX / name)
    assert len(df) > 0
    for row in df.iter_rows(named=True):
        orig, back = originals[row["material_id"]], row_to_structure(row)
        np.testing.assert_array_equal(back.lattice.matrix, orig.lattice.matrix)
        np.testing.assert_allclose(back.frac_coords, orig.frac_coords, rtol=0, atol=1e-12)
        assert [s.specie.symbol for s in back] == [s.specie.symbol for s in orig]
        assert row["n_sites"] == len(orig)
        assert row["formula"] == orig.composition.reduced_formula


# ---- energy conventions --------------------------------------------------------------------


def test_fill_energy_conventions_branches():
    both = fill_energy_conventions(-5.0, -5.3, -0.3)
    assert (both.e_per_atom_dft_raw, both.e_per_atom_dft_mp2020, both.origin, both.warning) == (-5.0, -5.3, "reported", None)
    assert both.mp2020_correction_per_atom == pytest.approx(-0.3)
    mismatch = fill_energy_conventions(-5.0, -5.3, -0.3 + 2 * CORRECTION_MISMATCH_TOL_EV_PER_ATOM)
    assert mismatch.mp2020_correction_per_atom == pytest.approx(-0.3) and "differs" in mismatch.warning
    raw_only = fill_energy_conventions(-5.0, None, -0.25)
    assert raw_only.e_per_atom_dft_mp2020 == pytest.approx(-5.25) and raw_only.origin == "reported"
    mp_only = fill_energy_conventions(None, -5.25, -0.25)
    assert mp_only.e_per_atom_dft_raw == pytest.approx(-5.0)
    rebuilt = fill_energy_conventions(None, None, -0.25, rebuilt_e_per_atom_mp2020=-6.0)
    assert (rebuilt.e_per_atom_dft_mp2020, rebuilt.e_per_atom_dft_raw, rebuilt.origin) == (-6.0, -5.75, "rebuilt")
    no_corr = fill_energy_conventions(-5.0, None, None)
    assert no_corr.e_per_atom_dft_mp2020 is None and no_corr.origin == "reported"
    nothing = fill_energy_conventions(None, None, -0.1)
    assert nothing.origin is None and nothing.e_per_atom_dft_mp2020 is None


def test_mp20_total_energies_rebuilt_from_elemental_refs():
    refs = _refs_from_file()
    df, report = _build(FIX / "mp20_biternary_test_head.csv.gz")
    assert report.n_loaded == 8 and report.energy_origin_counts == {"rebuilt": 8}
    for row in df.iter_rows(named=True):
        species = row["species"]
        mu = sum(refs[el] for el in species) / len(species)
        assert row["e_per_atom_dft_mp2020"] == pytest.approx(row["e_form_per_atom_dft_mp2020"] + mu, abs=1e-9)
        assert row["e_per_atom_dft_raw"] == pytest.approx(row["e_per_atom_dft_mp2020"] - row["mp2020_correction_per_atom"], abs=1e-12)
        assert row["e_per_atom_dft_origin"] == "rebuilt"
        assert row["mp2020_run_type"] in ("GGA", "GGA+U")
    # symmetry at 0.1 Å reproduces the space group the CSV reports (no mismatch warnings)
    assert not [w for w in report.warnings if "space group" in w[2]]
    gate = df.filter(pl.col("material_id") == "mp-10009").row(0, named=True)
    assert gate["spacegroup_number"] == 194 and gate["crystal_system"] == "hexagonal"
    assert gate["total_dof"] == gate["lattice_dof"] + gate["wyckoff_dof"]


def test_wbm_reported_energies_keep_their_correction():
    df, report = _build(FIX / "wbm_pbe54_head.json.gz")
    assert report.energy_origin_counts == {"reported": 4}
    sctei = df.filter(pl.col("material_id") == "wbm-5-19374").row(0, named=True)
    assert sctei["mp2020_correction_per_atom"] == pytest.approx((2 * -0.379 + 2 * -0.422) / 6, abs=1e-9)
    assert sctei["mp2020_run_type"] == "GGA"
    # the computed MP2020 corrections agree with the reported ones for these four crystals
    assert not [w for w in report.warnings if "correction" in w[2]]


def test_entries_without_adjustments_get_computed_mp2020():
    df, _ = _build(FIX / "wbm_computed_structure_entries.json.gz")
    wbm, _ = _build(FIX / "wbm_pbe54_head.json.gz")
    a = df.sort("material_id")
    b = wbm.sort("material_id")
    # entries JSON (raw + MP2020 adjustments, or raw only) and the WBM file end up identical
    np.testing.assert_allclose(a["e_per_atom_dft_raw"], b["e_per_atom_dft_raw"], atol=1e-12)
    np.testing.assert_allclose(a["e_per_atom_dft_mp2020"], b["e_per_atom_dft_mp2020"], atol=1e-9)
    np.testing.assert_allclose(a["mp2020_correction_per_atom"], b["mp2020_correction_per_atom"], atol=1e-9)


def test_forces_are_stored_flat():
    df, _ = _build(FIX / "mptrj_3_systems.db")
    assert df["forces_dft_ev_per_ang"].list.len().to_list() == [3 * n for n in df["n_sites"]]
    assert df["e_per_atom_dft_raw"].null_count() == 0
    # raw MPtrj energies get the MP2020 convention added (Cr/Fe oxide -> GGA+U)
    crfeo3 = df.filter(pl.col("formula") == "CrFeO3").row(0, named=True)
    assert crfeo3["mp2020_run_type"] == "GGA+U" and crfeo3["mp2020_correction_per_atom"] < 0
    assert crfeo3["e_per_atom_dft_mp2020"] == pytest.approx(crfeo3["e_per_atom_dft_raw"] + crfeo3["mp2020_correction_per_atom"])


def test_symmetry_failure_and_correction_failure_are_reported(monkeypatch):
    from mliap_tui import symmetry, thermo

    recs = [r for r in read_records(FIX / "wbm_pbe54_head.json.gz")]
    real_sym, real_corr = symmetry.symmetry_columns, thermo.mp2020_corrections_per_atom

    def sym(rows, symprec_ang, n_jobs):
        out = real_sym(rows, symprec_ang, n_jobs)
        out[0] = {"error": "spglib found no symmetry"}
        return out

    def corr(structures, n_jobs):
        out = real_corr(structures, n_jobs)
        out[1] = (None, "GGA", "ValueError: MP2020 rejects this entry")
        return out

    monkeypatch.setattr(symmetry, "symmetry_columns", sym)
    monkeypatch.setattr(thermo, "mp2020_corrections_per_atom", corr)
    df, report = build_materials_table(recs, "t", n_jobs=1)
    assert _rejected(report) == {recs[0].material_id: "symmetry analysis failed at symprec 0.1 Å: spglib found no symmetry"}
    second = df.filter(pl.col("material_id") == recs[1].material_id).row(0, named=True)
    # both totals were reported, so the row keeps its reported correction despite the failure
    assert second["e_per_atom_dft_mp2020"] is not None
    assert [w[1] for w in report.warnings] == [recs[1].material_id]
    assert report.warnings[0][2].endswith("the reported one is stored")
    # a row with only a raw energy cannot get its MP2020 total without the correction
    raw_only = RawRecord(recs[1].material_id, "x", recs[1].structure, {"e_per_atom_dft_raw": -4.9})
    monkeypatch.setattr(thermo, "mp2020_corrections_per_atom", lambda s, n: [(None, "GGA", "ValueError: nope")])
    monkeypatch.setattr(symmetry, "symmetry_columns", real_sym)
    df, report = build_materials_table([raw_only], "t", n_jobs=1)
    assert df["e_per_atom_dft_mp2020"][0] is None and df["e_per_atom_dft_raw"][0] == -4.9
    assert report.warnings[0][2] == "MP2020 correction could not be computed (ValueError: nope); left empty"


# ---- report --------------------------------------------------------------------------------


def test_report_dict_round_trip_and_rendering():
    from rich.console import Console

    _, report = _build(FIX / "mp20_malformed.csv")
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["n_loaded"] == 2 and d["n_rejected"] == 7 and len(d["rejected"]) == 7
    assert ImportReport.from_dict(d).to_dict() == d
    assert sum(report.crystal_system_counts.values()) == sum(report.dof_histogram.values()) == 2
    from mliap_tui.cli import render

    console = Console(record=True, width=160)
    console.print(render.import_report(report))
    text = console.export_text()
    for needle in ("2 loaded", "7 rejected", "symprec 0.1 Å", "eV/atom", "unknown element symbol 'Xx'", "hexagonal"):
        assert needle in text, needle


def test_binned_histogram():
    assert binned_histogram({1: 2, 3: 1}) == [("1", 2), ("2", 0), ("3", 1)]
    bins = binned_histogram({k: 1 for k in range(1, 61)}, max_bins=12)
    assert len(bins) == 12 and bins[0] == ("1-5", 5) and sum(n for _, n in bins) == 60


# ---- import into the cache -----------------------------------------------------------------


def test_import_dataset_writes_table_and_report(tmp_path):
    cache = Cache(tmp_path)
    report = import_dataset(FIX / "mp20_malformed.csv", cache=cache, n_jobs=1)
    assert report.dataset == "mp20_malformed" == default_dataset_name(FIX / "mp20_malformed.csv")
    df = cache.scan_materials("mp20_malformed").collect()
    assert df.schema == MATERIALS_SCHEMA
    assert sorted(df["material_id"]) == ["mp-10009", "mp-1225695"]
    assert (df["dataset"] == "mp20_malformed").all()
    stored = json.loads(cache.report_path("mp20_malformed").read_text())
    assert stored["n_rejected"] == 7 and stored["materials_path"] == str(cache.materials_path("mp20_malformed"))
    # the stored table still round-trips losslessly
    originals = {r.material_id: r.structure for r in read_records(FIX / "mp20_malformed.csv") if r.ok}
    for row in df.iter_rows(named=True):
        np.testing.assert_array_equal(row_to_structure(row).frac_coords, originals[row["material_id"]].frac_coords)


def test_import_limit_and_append(tmp_path):
    cache = Cache(tmp_path)
    first = import_dataset(FIX / "mp20_biternary_test_head.csv.gz", dataset="mix", cache=cache, limit=3, n_jobs=1)
    assert (first.n_read, first.n_loaded) == (3, 3)
    second = import_dataset(
        [FIX / "mp20_biternary_test_head.csv.gz", FIX / "wbm_pbe54_head.json.gz"],
        dataset="mix", cache=cache, append=True, n_jobs=1,
    )
    # the 3 MP-20 rows already stored are duplicates now; 5 new MP-20 + 4 WBM rows are added
    assert second.n_read == 12 and second.n_loaded == 9 and second.n_in_dataset == 12
    assert all("already" not in r and "existing dataset" in r for _, _, r in second.rejected)
    df = cache.scan_materials("mix").collect()
    assert len(df) == 12 and df["material_id"].is_unique().all()
    assert set(df["e_per_atom_dft_origin"]) == {"rebuilt", "reported"}


def test_import_sample_uses_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "SAMPLE_MATERIALS_FILE", "missing.csv.gz")
    with pytest.raises(FileNotFoundError, match="missing from the installed mliap_tui package"):
        import_dataset("sample", cache=Cache(tmp_path))
    monkeypatch.setattr(resources, "sample_materials_path", lambda: FIX / "mp20_biternary_test_head.csv.gz")
    report = import_dataset("sample", cache=Cache(tmp_path), limit=2, n_jobs=1)
    assert report.dataset == "sample" and report.n_loaded == 2
    assert report.sources == [str(FIX / "mp20_biternary_test_head.csv.gz")]


def test_import_missing_path_fails_before_writing(tmp_path):
    cache = Cache(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="no such file"):
        import_dataset(tmp_path / "nope.csv", cache=cache)
    assert cache.datasets() == []


def test_all_rejected_writes_no_table(tmp_path):
    cache = Cache(tmp_path)
    report = import_dataset(FIX / "empty.csv", cache=cache)
    assert report.n_loaded == 0 and report.rejected == [(str(FIX / "empty.csv"), "empty", "empty file")]
    assert not cache.has_materials("empty") and cache.report_path("empty").is_file()


# ---- mp-api on recorded responses ---------------------------------------------------------


def _thermo_docs() -> list[dict]:
    """Recorded ``materials.thermo.search`` documents (GGA_GGA+U; see tests/fixtures/README.md)."""
    return json.loads((FIX / "mp_api_thermo_response.json").read_text())


def _summary_docs() -> list[dict]:
    return json.loads((FIX / "mp_api_summary_response.json").read_text())


class _FakeThermo:
    """Stands in for MPRester().materials.thermo: serves the recorded documents, the fields asked
    for, like mp-api with use_document_model=False. ``fail``: {page number: exception} raised when
    that page (1-based, counting page requests) is asked for."""

    def __init__(self, log, fail=None):
        self.log, self.fail, self.pages = log, dict(fail or {}), 0

    def search(self, material_ids=None, thermo_types=None, fields=None, chunk_size=1000, num_chunks=None, **criteria):
        self.log.append({"endpoint": "thermo", "material_ids": material_ids, "thermo_types": thermo_types,
                         "fields": fields, **criteria})
        docs = [d for d in _thermo_docs() if not criteria.get("chemsys") or d["material_id"] != "mp-1225695"]
        if material_ids is None:  # the listing
            return [{"material_id": d["material_id"], "fields_not_requested": []} for d in docs]
        self.pages += 1
        if self.pages in self.fail:
            raise self.fail[self.pages]
        return [{k: d[k] for k in [*fields, "fields_not_requested"]} for d in docs if d["material_id"] in material_ids]


class _FakeSummary:
    def __init__(self, log):
        self.log = log

    def search(self, material_ids=None, fields=None, chunk_size=1000, **criteria):
        self.log.append({"endpoint": "summary", "material_ids": material_ids, "fields": fields})
        return [{k: d[k] for k in fields} for d in _summary_docs() if d["material_id"] in material_ids]


def _fake_mprester(log, db_version="2025.09.25", fail=None):
    class FakeMPRester:
        def __init__(self, api_key=None, use_document_model=True, **kw):
            log.append({"api_key": api_key, "use_document_model": use_document_model})
            self.db_version = db_version
            self.materials = SimpleNamespace(thermo=_FakeThermo(log, fail), summary=_FakeSummary(log))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    return FakeMPRester


@pytest.fixture
def recorded_mp(monkeypatch):
    """Route the mp download to the recorded responses, 2 documents per page (3 pages)."""
    monkeypatch.setenv("MP_API_KEY", FAKE_KEY)
    monkeypatch.setattr(mp_api, "DEFAULT_PAGE_SIZE", 2)
    logs: list[list[dict]] = []

    def use(**kw) -> list[dict]:
        log: list[dict] = []
        logs.append(log)
        monkeypatch.setattr(mp_api, "load_mprester", lambda: _fake_mprester(log, **kw))
        return log

    return use


def test_mp_import_reads_the_gga_gga_u_thermo_documents(tmp_path, recorded_mp):
    log = recorded_mp()
    cache = Cache(tmp_path)
    progress: list = []
    report = import_dataset("mp", cache=cache, n_jobs=1, on_download=progress.append)
    assert log[0] == {"api_key": FAKE_KEY, "use_document_model": False}
    pages = [e for e in log if e.get("endpoint") == "thermo" and e["material_ids"] is not None]
    assert all(e["thermo_types"] == ["GGA_GGA+U"] and e["fields"] == list(mp_api.THERMO_FIELDS) for e in pages)
    assert [e["material_ids"] for e in pages] == [["mp-10009", "mp-626680"], ["mp-1002572", "mp-1224266"], ["mp-1225695"]]
    # the last recorded document has no structure in its entry: joined from materials.summary by id
    assert [e["material_ids"] for e in log if e.get("endpoint") == "summary"] == [["mp-1224266"]]
    docs = {d["material_id"]: d for d in _thermo_docs()}
    source = "mp-api:materials.thermo GGA_GGA+U, database 2025.09.25"
    assert report.n_loaded == len(docs) and report.sources == [source], report.rejected
    df = cache.scan_materials("mp").collect()
    assert set(df["source"]) == {source}  # the database version is on every row
    summary = {d["material_id"]: d for d in _summary_docs()}
    for row in df.iter_rows(named=True):
        doc = docs[row["material_id"]]
        assert row["e_per_atom_dft_mp2020"] == doc["energy_per_atom"]
        assert row["e_per_atom_dft_raw"] == doc["uncorrected_energy_per_atom"]
        assert row["mp2020_correction_per_atom"] == pytest.approx(doc["energy_per_atom"] - doc["uncorrected_energy_per_atom"])
        assert row["e_form_per_atom_dft_mp2020"] == doc["formation_energy_per_atom"]
        assert row["e_above_hull_dft_mp2020"] == doc["energy_above_hull"]
        entry = doc["entries"][doc["energy_type"]]
        structure = Structure.from_dict(entry.get("structure") or summary[row["material_id"]]["structure"])
        np.testing.assert_array_equal(row_to_structure(row).frac_coords, structure.frac_coords)
    # the reported MP2020 corrections are what this package computes for these crystals
    assert not [w for w in report.warnings if "correction" in w[2]], report.warnings
    assert [(p.pages_done, p.pages_total) for p in progress] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert progress[-1].docs_done == 5 and progress[-1].eta_s == 0.0 and progress[-1].database_version == "2025.09.25"
    assert not cache.download_dir("mp").exists()  # the pages went into the dataset


@pytest.mark.parametrize("interruption", [ConnectionError("Read timed out"), KeyboardInterrupt()],
                         ids=["network error", "ctrl-c"])
def test_an_interrupted_mp_download_resumes_at_the_first_missing_page(tmp_path, recorded_mp, interruption):
    cache = Cache(tmp_path)
    recorded_mp(fail={2: interruption})
    if isinstance(interruption, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            import_dataset("mp", cache=cache, n_jobs=1)
    else:
        with pytest.raises(RuntimeError, match=r"failed at page 2 of 3 \(ConnectionError: Read timed out\); "
                                               r"1 page\(s\) are kept in the cache: run the same command again"):
            import_dataset("mp", cache=cache, n_jobs=1)
    folder = cache.download_dir("mp")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "page-00000.parquet"]
    assert not cache.has_materials("mp")

    log = recorded_mp()
    progress: list = []
    report = import_dataset("mp", cache=cache, n_jobs=1, on_download=progress.append)
    thermo = [e for e in log if e.get("endpoint") == "thermo"]
    # no new listing, and only the two missing pages are fetched
    assert [e["material_ids"] for e in thermo] == [["mp-1002572", "mp-1224266"], ["mp-1225695"]]
    assert progress[0].resumed_pages == 1 and (progress[0].pages_done, progress[-1].pages_done) == (1, 3)

    recorded_mp()
    whole = import_dataset("mp", cache=Cache(tmp_path / "uninterrupted"), n_jobs=1)
    assert report.n_loaded == whole.n_loaded == 5
    resumed_rows = cache.scan_materials("mp").collect()
    assert resumed_rows.equals(Cache(tmp_path / "uninterrupted").scan_materials("mp").collect())


def test_a_partial_download_of_another_database_version_starts_over(tmp_path, recorded_mp):
    cache = Cache(tmp_path)
    recorded_mp(db_version="2025.06.09", fail={2: ConnectionError("reset")})
    with pytest.raises(RuntimeError):
        import_dataset("mp", cache=cache, n_jobs=1)
    log = recorded_mp(db_version="2025.09.25")
    report = import_dataset("mp", cache=cache, n_jobs=1)
    assert len([e for e in log if e.get("endpoint") == "thermo" and e["material_ids"] is not None]) == 3
    assert ("-", "an earlier partial download was discarded: the database changed from 2025.06.09 to 2025.09.25") in [
        (m, r) for _, m, r in report.warnings]
    assert report.sources == ["mp-api:materials.thermo GGA_GGA+U, database 2025.09.25"]


def test_mp_download_limit_and_criteria(tmp_path, recorded_mp):
    log = recorded_mp()
    download = mp_api.MPDownload(Cache(tmp_path), "mp", limit=3, page_size=5, chemsys=["Cu-Ni"])
    records = list(download.records())
    assert [r.material_id for r in records] == ["mp-10009", "mp-626680", "mp-1002572"]  # sorted by number, first 3
    assert log[1]["chemsys"] == ["Cu-Ni"] and log[1]["material_ids"] is None
    assert all(r.ok for r in records) and records[0].meta["energy_type"] == "GGA"


def test_thermo_docs_as_objects_and_bad_documents():
    doc = _thermo_docs()[0]
    entries = {k: ComputedStructureEntry.from_dict(v) for k, v in doc["entries"].items()}
    row = mp_api.thermo_doc_row(SimpleNamespace(**{**doc, "entries": entries}))
    rec = mp_api.page_row_to_record(row, "src")
    assert rec.ok and rec.material_id == doc["material_id"] and rec.dft["e_per_atom_dft_raw"] == doc["uncorrected_energy_per_atom"]
    assert rec.meta["structure_from"] == f"{doc['energy_type']} entry"
    bad = mp_api.page_row_to_record(mp_api.thermo_doc_row({**doc, "energy_per_atom": "nan?"}), "src")
    assert bad.error and "energy_per_atom" in bad.error
    r2scan = mp_api.page_row_to_record(mp_api.thermo_doc_row({**doc, "thermo_type": "R2SCAN"}), "src")
    assert r2scan.error == "thermo type R2SCAN, expected GGA_GGA+U"


def test_mp_api_needs_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(mp_api.MPApiUnavailable, match="--api-key KEY or set MP_API_KEY"):
        import_dataset("mp", cache=Cache(tmp_path))


def test_mp_api_needs_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mp_api", None)  # import mp_api now raises ImportError
    with pytest.raises(mp_api.MPApiUnavailable, match=r"pip install 'mliap-tui\[mp\]'"):
        mp_api.MPDownload(Cache(tmp_path), "mp", api_key=FAKE_KEY)


def test_mp_api_client_errors_are_one_line(monkeypatch, tmp_path):
    class Broken:
        def __init__(self, **kw):
            raise ConnectionError("api.materialsproject.org unreachable")

    monkeypatch.setattr(mp_api, "load_mprester", lambda: Broken)
    with pytest.raises(RuntimeError, match="Materials Project download failed .*unreachable") as err:
        list(mp_api.MPDownload(Cache(tmp_path), "mp", api_key=FAKE_KEY).records())
    assert "\n" not in str(err.value)


def test_raw_record_ok_flag():
    assert not RawRecord("x", "s", error="bad").ok
    assert not RawRecord("x", "s").ok


def test_shipped_sample_imports_cleanly(tmp_path):
    report = import_dataset("sample", cache=Cache(tmp_path), limit=20, n_jobs=1)
    assert report.n_read == 20 and report.n_loaded == 20, report.rejected
    df = Cache(tmp_path).scan_materials("sample").collect()
    assert df["e_form_per_atom_dft_mp2020"].null_count() == 0
    assert not [w for w in report.warnings if "space group" in w[2]]
