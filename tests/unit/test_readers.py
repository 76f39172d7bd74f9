"""Dataset readers on small real slices of the shared data (tests/fixtures, see make_fixtures.py)
and on malformed inputs: every bad file/row becomes an error record, the rest is read."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from support import FIXTURES as FIX

from mliap_tui.data.readers import FORMATS, RawRecord, detect_format, read_records
from mliap_tui.data.readers._common import (
    base_name,
    parse_float,
    structure_from_cif_text,
)
from mliap_tui.data.readers.entries_json import iter_entry_dicts

# Values copied from the source files (MP-20 / MPTS-52 CSV, WBM JSON, MPtrj db) by hand.
GATE_E_FORM = -0.5750923537499997  # mp-10009, mp20_biternary_test.csv.gz, eV/atom
NDSCO3_E_FORM = -3.8964648224999996  # mp-31117, mpts52_test.csv.gz, eV/atom
SCTEI_RAW_EV, SCTEI_CORRECTED_EV = -29.45579593, -31.05779593  # wbm-5-19374, eV per 6-atom cell
CRFEO3_ENERGY_EV = -73.4299391  # MPtrj row 1, eV per 10-atom cell


def _records(path, fmt=None, **kw) -> list[RawRecord]:
    return list(read_records(path, fmt, **kw))


def _by_id(records):
    return {r.material_id: r for r in records}


# ---- format detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("mp20_biternary_test_head.csv.gz", "mp_csv"),
        ("mpts52_test_head.csv", "mp_csv"),
        ("wbm_pbe54_head.json.gz", "wbm_json"),
        ("wbm_pbe52_head.json.gz", "wbm_json"),
        ("wbm_computed_structure_entries.json.gz", "entries_json"),
        ("mptrj_3_systems.extxyz", "extxyz"),
        ("mptrj_3_systems.db", "ase_db"),
        ("structures", "structure_files"),
        ("structures/mp-10009.cif", "structure_files"),
        ("structures/POSCAR_mp-1224266", "structure_files"),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(FIX / name) == fmt


def test_detect_format_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        detect_format(tmp_path / "missing.csv")
    odd = tmp_path / "data.parquet"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="--format"):
        detect_format(odd)
    ambiguous = tmp_path / "x.json"
    ambiguous.write_text('[{"a": 1}]')
    with pytest.raises(ValueError, match="--format entries_json or --format wbm_json"):
        detect_format(ambiguous)
    with pytest.raises(ValueError, match="unknown format"):
        read_records(FIX / "mpts52_test_head.csv", "parquet")


def test_base_name_strips_compression_and_format():
    assert base_name("a/mp20_test.csv.gz") == "mp20_test"
    assert base_name("Ca2.5Si.cif") == "Ca2.5Si"
    assert base_name("POSCAR") == "POSCAR"


def test_parse_float():
    assert parse_float("", "x") is None and parse_float(None, "x") is None
    assert parse_float("-1.5", "x") == -1.5
    assert math.isnan(parse_float("nan", "x"))
    with pytest.raises(ValueError, match="x is not a number"):
        parse_float("abc", "x")


# ---- MP-20 / MPTS-52 CSV -------------------------------------------------------------------


def test_mp20_csv_real_rows():
    recs = _records(FIX / "mp20_biternary_test_head.csv.gz")
    assert len(recs) == 8 and all(r.ok for r in recs)
    assert len({r.material_id for r in recs}) == 8
    gate = _by_id(recs)["mp-10009"]
    assert gate.structure.composition.reduced_formula == "GaTe" and len(gate.structure) == 8
    assert gate.dft == {"e_form_per_atom_dft_mp2020": GATE_E_FORM, "e_above_hull_dft_mp2020": 0.0}
    assert gate.meta["spacegroup_number_reported"] == 194
    # the P1 CIF is read as written: same cell (Å) and site order
    assert gate.structure.lattice.abc == pytest.approx((4.13459945, 4.13459945, 18.42557), abs=1e-8)
    assert [s.specie.symbol for s in gate.structure] == ["Ga"] * 4 + ["Te"] * 4
    assert all(r.source.endswith("mp20_biternary_test_head.csv.gz") for r in recs)


def test_mpts52_csv_uses_energy_above_hull_column():
    recs = _records(FIX / "mpts52_test_head.csv")
    assert len(recs) == 4 and all(r.ok for r in recs)
    nd = _by_id(recs)["mp-31117"]
    assert nd.structure.composition.reduced_formula == "NdScO3" and len(nd.structure) == 20
    assert nd.dft["e_form_per_atom_dft_mp2020"] == NDSCO3_E_FORM
    assert nd.dft["e_above_hull_dft_mp2020"] == 0.0
    assert "e_per_atom_dft_mp2020" not in nd.dft  # MPTS-52 has no total energies


def test_mp_csv_malformed_rows_are_per_row_errors():
    recs = _records(FIX / "mp20_malformed.csv")
    assert len(recs) == 9  # every row yields a record, none stops the file
    by = {r.material_id: r for r in recs}
    assert by["mp-10009"].ok and by["mp-1225695"].ok
    assert "row 3: malformed CIF" in by["bad-broken-cif"].error
    assert "zero volume" in by["bad-zero-volume"].error and "row 6" in by["bad-zero-volume"].error
    assert by["row 9"].error == "row 9: empty material_id"
    # these parse; the importer rejects them (disorder, unknown element, NaN)
    assert not by["bad-partial-occupancy"].structure.is_ordered
    assert "Xx" in by["bad-unknown-element"].structure.composition.formula
    assert math.isnan(by["bad-nan-energy"].dft["e_form_per_atom_dft_mp2020"])


def test_mp_csv_without_cif_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("material_id,formation_energy_per_atom\nmp-1,-1.0\n")
    (rec,) = _records(path)
    assert rec.error == "not an MP-20/MPTS-52 CSV: missing column(s) cif"


def test_cif_parser_error_names_the_problem():
    with pytest.raises(ValueError, match="empty CIF"):
        structure_from_cif_text("  \n")
    with pytest.raises(ValueError, match="malformed CIF"):
        structure_from_cif_text("data_x\n_cell_length_a 1\n")


# ---- WBM JSON ------------------------------------------------------------------------------


def test_wbm_pbe54_per_cell_energies_become_per_atom():
    recs = _by_id(_records(FIX / "wbm_pbe54_head.json.gz"))
    assert len(recs) == 4 and all(r.ok for r in recs.values())
    sctei = recs["wbm-5-19374"]
    assert len(sctei.structure) == 6
    assert sctei.dft["e_per_atom_dft_raw"] == pytest.approx(SCTEI_RAW_EV / 6, abs=1e-12)
    assert sctei.dft["e_per_atom_dft_mp2020"] == pytest.approx(SCTEI_CORRECTED_EV / 6, abs=1e-12)
    # the difference is exactly the MP2020 anion corrections 2 x I (-0.379) + 2 x Te (-0.422) eV
    diff_ev = (sctei.dft["e_per_atom_dft_mp2020"] - sctei.dft["e_per_atom_dft_raw"]) * 6
    assert diff_ev == pytest.approx(2 * -0.379 + 2 * -0.422, abs=1e-9)
    assert set(sctei.dft) == {"e_per_atom_dft_raw", "e_per_atom_dft_mp2020"}


def test_wbm_pbe52_adds_corrected_formation_energy():
    with gzip.open(FIX / "wbm_pbe52_head.json.gz", "rt") as fh:
        raw = {r["material_id"]: r for r in json.load(fh)}
    recs = _by_id(_records(FIX / "wbm_pbe52_head.json.gz"))
    for mid, rec in recs.items():
        n = len(rec.structure)
        assert rec.dft["e_per_atom_dft_raw"] == pytest.approx(raw[mid]["energy"] / n, abs=1e-12)
        assert rec.dft["e_per_atom_dft_mp2020"] == pytest.approx(raw[mid]["corrected_energy"] / n, abs=1e-12)
        assert rec.dft["e_form_per_atom_dft_mp2020"] == raw[mid]["corrected_formation_energy_per_atom"]
    # same crystals and DFT energies as the pbe54 file
    pbe54 = _by_id(_records(FIX / "wbm_pbe54_head.json.gz"))
    assert recs["wbm-5-19374"].dft["e_per_atom_dft_raw"] == pbe54["wbm-5-19374"].dft["e_per_atom_dft_raw"]


def test_wbm_malformed_records():
    recs = _records(FIX / "wbm_malformed.json")
    assert [r.material_id for r in recs] == ["wbm-3-38149", "wbm-5-19374", "wbm-3-27145"]
    assert recs[0].ok
    assert math.isnan(recs[1].dft["e_per_atom_dft_mp2020"])  # rejected later by the importer
    assert recs[2].error == "record 2: no structure"


# ---- ComputedStructureEntry JSON -----------------------------------------------------------


def test_entries_json_raw_and_mp2020_conventions():
    recs = _by_id(_records(FIX / "wbm_computed_structure_entries.json.gz"))
    assert set(recs) == {"wbm-3-38149", "wbm-5-19374", "wbm-3-27145", "wbm-5-8534"}
    sctei = recs["wbm-5-19374"]
    # energy = uncorrected, energy + correction = MP2020: matches the WBM file's own numbers
    assert sctei.dft["e_per_atom_dft_raw"] == pytest.approx(SCTEI_RAW_EV / 6, abs=1e-12)
    assert sctei.dft["e_per_atom_dft_mp2020"] == pytest.approx(SCTEI_CORRECTED_EV / 6, abs=1e-9)
    assert any("MP2020" in name for name in sctei.meta["energy_adjustments"])
    # no adjustments: the MP2020 total is unknown to the reader (the importer computes it)
    assert "e_per_atom_dft_mp2020" not in recs["wbm-3-38149"].dft
    assert recs["wbm-3-38149"].dft["e_form_per_atom_dft_mp2020"] == pytest.approx(-0.291504044)


def test_entries_json_containers(tmp_path):
    with gzip.open(FIX / "wbm_computed_structure_entries.json.gz", "rt") as fh:
        entries = json.load(fh)
    ids = [e["data"]["material_id"] for e in entries]
    shapes = {
        "list": entries,
        "wrapped": {"entries": entries},
        "by_id": {f"id-{i}": e for i, e in enumerate(entries)},
        "pandas_columns": {"material_id": {str(i): f"mp-{i}" for i in range(len(entries))},
                           "entry": {str(i): e for i, e in enumerate(entries)}},
        "pandas_records": [{"material_id": f"mp-{i}", "entry": e} for i, e in enumerate(entries)],
    }
    expected = {
        "list": ids,
        "wrapped": ids,
        "by_id": [f"id-{i}" for i in range(len(entries))],
        "pandas_columns": [f"mp-{i}" for i in range(len(entries))],
        "pandas_records": [f"mp-{i}" for i in range(len(entries))],
    }
    for name, obj in shapes.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(obj))
        recs = _records(path, "entries_json")
        assert [r.material_id for r in recs] == expected[name], name
        assert all(r.ok for r in recs), name
    assert [k for k, _ in iter_entry_dicts(entries[0])] == [None]


def test_entries_json_without_structure_and_malformed(tmp_path):
    entry = {"@class": "ComputedEntry", "energy": -1.0, "composition": {"Si": 1}, "entry_id": "mp-149"}
    path = tmp_path / "e.json"
    path.write_text(json.dumps([entry]))
    (rec,) = _records(path, "entries_json")
    assert rec.material_id == "mp-149" and "has no structure" in rec.error
    bad = tmp_path / "bad.json"
    bad.write_text('[{"@class": "ComputedStructureEntry", "energy": ')
    (rec,) = _records(bad, "entries_json")
    assert rec.error.startswith("malformed JSON")


@pytest.mark.parametrize("name", ["empty.csv", "empty.json", "structures/empty.cif"])
def test_empty_files_are_reported(name):
    fmt = {"empty.csv": "mp_csv", "empty.json": "wbm_json", "structures/empty.cif": "structure_files"}[name]
    (rec,) = _records(FIX / name, fmt)
    assert rec.error == "empty file" and rec.structure is None


# ---- extxyz and ASE db ---------------------------------------------------------------------


def test_ase_db_energies_and_forces():
    from ase.db import connect

    recs = _records(FIX / "mptrj_3_systems.db")
    assert [r.material_id for r in recs] == ["mptrj_3_systems-1", "mptrj_3_systems-2", "mptrj_3_systems-3"]
    first = recs[0]
    assert first.structure.composition.reduced_formula == "CrFeO3" and len(first.structure) == 10
    assert first.dft["e_per_atom_dft_raw"] == pytest.approx(CRFEO3_ENERGY_EV / 10, abs=1e-12)
    row = connect(str(FIX / "mptrj_3_systems.db")).get(id=1)
    np.testing.assert_array_equal(np.reshape(first.dft["forces_dft_ev_per_ang"], (-1, 3)), row.forces)
    np.testing.assert_allclose(first.structure.cart_coords, row.positions, atol=1e-12)
    assert all(len(r.dft["forces_dft_ev_per_ang"]) == 3 * len(r.structure) for r in recs)


def test_extxyz_written_from_the_mptrj_db(tmp_path):
    from ase.db import connect
    from ase.io import write

    frames = [row.toatoms() for row in connect(str(FIX / "mptrj_3_systems.db")).select()]
    frames[1].info["material_id"] = "mptrj-lasri"
    path = tmp_path / "frames.extxyz"
    write(path, frames, format="extxyz")
    recs = _records(path)
    assert [r.material_id for r in recs] == ["frames-0", "mptrj-lasri", "frames-2"]
    db_recs = _records(FIX / "mptrj_3_systems.db")
    for x, d in zip(recs, db_recs):
        assert x.dft["e_per_atom_dft_raw"] == pytest.approx(d.dft["e_per_atom_dft_raw"], abs=1e-10)
        np.testing.assert_allclose(x.dft["forces_dft_ev_per_ang"], d.dft["forces_dft_ev_per_ang"], atol=1e-7)
        np.testing.assert_allclose(x.structure.lattice.matrix, d.structure.lattice.matrix, atol=1e-7)
    # the shipped fixture is the same three frames
    shipped = _records(FIX / "mptrj_3_systems.extxyz")
    assert [len(r.structure) for r in shipped] == [len(r.structure) for r in db_recs]


def test_extxyz_energy_convention_option():
    recs = _records(FIX / "mptrj_3_systems.extxyz", energy_convention="mp2020")
    assert "e_per_atom_dft_mp2020" in recs[0].dft and "e_per_atom_dft_raw" not in recs[0].dft
    with pytest.raises(ValueError, match="energy_convention"):
        read_records(FIX / "mptrj_3_systems.extxyz", energy_convention="pbe")


def test_extxyz_truncated_frame_keeps_the_good_ones():
    recs = _records(FIX / "mptrj_truncated.extxyz")
    assert [r.ok for r in recs] == [True, True, False]
    assert recs[2].error.startswith("frame 2 onward unreadable")


def test_extxyz_molecule_is_rejected(tmp_path):
    from ase import Atoms
    from ase.io import write

    path = tmp_path / "mol.extxyz"
    write(path, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), format="extxyz")
    (rec,) = _records(path)
    assert "not periodic in 3D" in rec.error


def test_ase_db_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_text("this is not sqlite")
    (rec,) = _records(path)
    assert rec.error.startswith("not a readable ASE database")


# ---- folder of CIF / POSCAR files ----------------------------------------------------------


def test_structure_folder(tmp_path):
    recs = _by_id(_records(FIX / "structures"))
    assert "README" not in recs  # not a structure file, skipped
    assert {k for k, r in recs.items() if r.ok} == {
        "mp-10009", "mp-1225695", "POSCAR_mp-1224266", "mp-626680",
        "partial_occupancy", "unknown_element", "POSCAR_zero_volume", "overlapping_atoms",
    }  # the reader parses; the importer rejects the unusable ones
    assert recs["broken"].error.startswith("malformed CIF")
    assert recs["empty"].error == "empty file"
    # POSCAR written at 16 significant figures from the same CIF: same crystal
    cif_rows = _by_id(_records(FIX / "mp20_biternary_test_head.csv.gz"))
    np.testing.assert_allclose(
        recs["POSCAR_mp-1224266"].structure.frac_coords, cif_rows["mp-1224266"].structure.frac_coords, atol=1e-12
    )
    assert recs["mp-10009"].structure == cif_rows["mp-10009"].structure
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    (rec,) = _records(empty_dir)
    assert "no *.cif" in rec.error


def test_every_format_has_a_reader():
    assert set(FORMATS) == {"mp_csv", "entries_json", "wbm_json", "structure_files", "extxyz", "ase_db", "si_rare_events"}
