"""Weights identity, the cache's weights variants, matgl save eras, plug-in references and the
canary crystals: pure functions, no model loaded."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import polars as pl
import pytest
from support import FIXTURES, shared_models_dir

from mliap_tui.cache import PREDICTIONS_SCHEMA, Cache
from mliap_tui.cache.weights import (
    label_weight_variants,
    read_weights_record,
    weights_records,
    write_weights_record,
)
from mliap_tui.cli.options import split_models
from mliap_tui.core.vocab import CRYSTAL_SYSTEMS
from mliap_tui.models.identity import file_sha256, files_fingerprint, resolve_identity
from mliap_tui.models.matgl_saves import pre_3_refusal, read_matgl_save
from mliap_tui.models.plugins import PluginError, ase_spec, is_ase_ref, parse_ase_ref


@pytest.fixture(autouse=True)
def _private_hash_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("MLIAP_TUI_HASH_MEMO", str(tmp_path / "memo.json"))


# ---- fingerprints ------------------------------------------------------------------------------


def test_file_hash_is_memoised_by_path_size_and_mtime(tmp_path):
    f = tmp_path / "weights.pth"
    f.write_bytes(b"A" * 1000)
    first = file_sha256(f)
    memo = json.loads((tmp_path / "memo.json").read_text())
    assert memo[os.path.realpath(f)]["sha256"] == first
    st = f.stat()
    f.write_bytes(b"B" * 1000)  # same size; put the old mtime back: the memo answers (the file is not read)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(f) == first
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new mtime: hashed again
    assert file_sha256(f) != first


def test_fingerprint_is_the_content_not_the_name(tmp_path):
    a, b, c = tmp_path / "a.pth", tmp_path / "copy-elsewhere.bin", tmp_path / "c.pth"
    a.write_bytes(b"weights-1")
    shutil.copy(a, b)
    c.write_bytes(b"weights-2")
    assert files_fingerprint(a)[0] == files_fingerprint(b)[0] != files_fingerprint(c)[0]
    folder = tmp_path / "model"
    folder.mkdir()
    for name, data in (("model.json", b"{}"), ("model.pt", b"1"), ("state.pt", b"2")):
        (folder / name).write_bytes(data)
    fp, files = files_fingerprint(folder)
    assert len(files) == 3 and len(fp) == 64
    (folder / "state.pt").write_bytes(b"3")
    assert files_fingerprint(folder)[0] != fp
    with pytest.raises(FileNotFoundError):
        files_fingerprint(tmp_path / "nope")


def test_identity_of_a_checkpoint_and_of_an_ase_reference(tmp_path):
    from mliap_tui.models.registry import get_spec

    ckpt = tmp_path / "finetuned.pth.tar"
    ckpt.write_bytes(b"not really chgnet")
    ident = resolve_identity(get_spec("chgnet-0.3.0"), str(ckpt))
    assert ident.fingerprint == file_sha256(ckpt) and ident.source == f"checkpoint: {ckpt}"
    emt = resolve_identity(ase_spec("ase:ase.calculators.emt:EMT"))
    assert emt.fingerprint and emt.package_version.startswith("ase ")
    # a file named in the kwargs is part of the identity: other content, other weights
    params = tmp_path / "params.json"
    params.write_text("1")
    one = resolve_identity(ase_spec(f'ase:ase.calculators.emt:EMT:{{"path": "{params}"}}')).fingerprint
    params.write_text("2")
    os.utime(params, ns=(1, 10**18))
    assert resolve_identity(ase_spec(f'ase:ase.calculators.emt:EMT:{{"path": "{params}"}}')).fingerprint != one


# ---- the cache keeps weights apart -------------------------------------------------------------


def _rows(model: str, fingerprint: str | None, energy: float, ids=("mp-1", "mp-2"), t: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame(
        {"material_id": list(ids), "model": [model] * len(ids), "mode": ["static"] * len(ids),
         "status": ["ok"] * len(ids), "e_per_atom_pred_native": [energy] * len(ids),
         "weights_fingerprint": [fingerprint] * len(ids), "created_unix_s": [t] * len(ids)},
        schema_overrides={"weights_fingerprint": pl.Utf8},
    )


def test_rows_of_other_weights_are_kept_apart_and_labelled(tmp_path):
    cache = Cache(tmp_path)
    fp_a, fp_b = "a" * 64, "b" * 64
    cache.dataset_dir("d").mkdir(parents=True)  # chunks belong to a dataset that exists
    cache.write_prediction_chunk("d", "m", "static", _rows("m", fp_a, -1.0, t=1))
    cache.write_prediction_chunk("d", "m", "static", _rows("m", fp_b, -2.0, t=2))
    cache.write_prediction_chunk("d", "m", "static", _rows("m", fp_a, -1.5, ids=("mp-1",), t=3))  # newer, same weights
    preds = cache.scan_predictions("d").collect()
    assert preds.height == 4  # (mp-1, mp-2) x (a, b): the newest row per weights wins
    assert preds.filter((pl.col("material_id") == "mp-1") & (pl.col("weights_fingerprint") == fp_a))["e_per_atom_pred_native"].to_list() == [-1.5]
    assert cache.done_keys("d", "m", "static", weights_fingerprint=fp_b) == {"mp-1", "mp-2"}
    assert cache.done_keys("d", "m", "static", weights_fingerprint="c" * 64) == set()
    labelled = label_weight_variants(preds)
    assert set(labelled["model"]) == {"m~aaaaaaa", "m~bbbbbbb"} and set(labelled["model_id"]) == {"m"}
    # one weights only: the plain id
    single = label_weight_variants(preds.filter(pl.col("weights_fingerprint") == fp_a))
    assert set(single["model"]) == {"m"}


def test_rows_written_before_schema_2_stay_readable_as_unrecorded_weights(tmp_path):
    cache = Cache(tmp_path)
    path = cache.predictions_dir("d", "m", "static") / "part-00000000000000000001-old.parquet"
    path.parent.mkdir(parents=True)
    old = _rows("m", None, -1.0).drop("weights_fingerprint")  # a version-1 file has no such column
    old.write_parquet(path)
    cache.write_prediction_chunk("d", "m", "static", _rows("m", "a" * 64, -1.1, t=5))
    preds = cache.scan_predictions("d").collect()
    assert preds.height == 4 and preds.schema == PREDICTIONS_SCHEMA
    assert preds["weights_fingerprint"].null_count() == 2
    assert cache.done_keys("d", "m", "static", weights_fingerprint="a" * 64) == {"mp-1", "mp-2"}
    assert sorted(set(label_weight_variants(preds)["model"])) == ["m~aaaaaaa", "m~unrecorded"]


def test_weights_records_round_trip(tmp_path):
    cache = Cache(tmp_path)
    assert read_weights_record(cache, "m", "a" * 64) is None
    write_weights_record(cache, "m", "a" * 64, {"model": "m", "fingerprint": "a" * 64, "first_seen_unix_s": 2})
    write_weights_record(cache, "m", "b" * 64, {"model": "m", "fingerprint": "b" * 64, "first_seen_unix_s": 1})
    assert [r["fingerprint"][0] for r in weights_records(cache)] == ["b", "a"]
    with pytest.raises(ValueError, match="fingerprint"):
        read_weights_record(cache, "m", "../../etc")


# ---- matgl save eras ---------------------------------------------------------------------------


@pytest.mark.parametrize("era", ["matgl-3.0.0", "matgl-4.1.2"])
def test_saves_of_matgl_3_and_later_are_accepted(era):
    save = read_matgl_save(FIXTURES / "matgl_saves" / era)  # model.json of real saves by that matgl
    assert save.saved_by_matgl_3_or_later and save.architecture == "M3GNet"


def test_a_pre_3_save_is_refused_with_the_reason(tmp_path):
    doc = json.loads((FIXTURES / "matgl_saves" / "matgl-4.1.2" / "model.json").read_text())
    # what a matgl 1.x/2.x Potential.save wrote: the same header, without the 3.0.3+ arguments
    for key in ("compile_model", "compile_mode", "calc_charge"):
        doc["kwargs"].pop(key)
    (tmp_path / "model.json").write_text(json.dumps(doc))
    save = read_matgl_save(tmp_path)
    assert not save.saved_by_matgl_3_or_later
    message = pre_3_refusal(save, "m3gnet-matpes-pbe", "matgl 4.1.2")
    assert "saved by matgl < 3.0" in message and "message-passing" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="model.json"):
        read_matgl_save(tmp_path / "missing")


def test_the_shared_matgl_2x_checkpoints_are_recognised_as_pre_3():
    root = shared_models_dir()
    if root is None or not (root / "matgl-2.x").is_dir():
        pytest.skip("needs the real matgl 2.x checkpoints in ../shared/models (absent here)")
    folders = sorted((root / "matgl-2.x").iterdir())
    assert len(folders) == 2
    assert not any(read_matgl_save(f).saved_by_matgl_3_or_later for f in folders)


# ---- ase: references ----------------------------------------------------------------------------


def test_ase_references():
    ref = parse_ase_ref("ase:ase.calculators.emt:EMT")
    assert (ref.name, ref.module, ref.factory, ref.kwargs, ref.convention) == ("ase-emt", "ase.calculators.emt", "EMT", {}, "raw_pbe")
    named = parse_ase_ref('mine=ase[mp2020]:pkg.mod:make:{"device": "cpu", "n": [1, 2]}')
    assert (named.name, named.convention, named.kwargs) == ("mine", "mp2020", {"device": "cpu", "n": [1, 2]})
    hashed = parse_ase_ref('ase:pkg.mod:make:{"a": 1}')
    assert hashed.name.startswith("ase-make-") and hashed.name != parse_ase_ref('ase:pkg.mod:make:{"a": 2}').name
    assert is_ase_ref("ase:a.b:c") and not is_ase_ref("chgnet-0.3.0")
    spec = ase_spec("ase:ase.calculators.emt:EMT")
    assert spec.id == "ase-emt" and spec.family == "ase" and spec.energy_convention == "raw_pbe"
    for bad, why in (("ase:nomodule", "ase:package.module:factory"), ("ase:a.b:c:{not json", "not valid JSON"),
                     ("ase:a.b:c:[1]", "JSON object"), ("ase[pbe0]:a.b:c", "unknown energy convention")):
        with pytest.raises(PluginError, match=why):
            parse_ase_ref(bad)


def test_models_option_keeps_json_kwargs_whole():
    assert split_models('chgnet-0.3.0, ase:m.n:f:{"a": 1, "b": [1, 2]},sevennet-0') == [
        "chgnet-0.3.0", 'ase:m.n:f:{"a": 1, "b": [1, 2]}', "sevennet-0"]
    assert split_models("") == [] and split_models("a,,a") == ["a"]


# ---- the canary crystals -----------------------------------------------------------------------


def test_canary_crystals_cover_chemistries_and_crystal_systems():
    from mliap_tui.models.canary import canary_crystals

    crystals = canary_crystals()
    assert 8 <= len(crystals) <= 12
    assert {c.crystal_system for c in crystals} == set(CRYSTAL_SYSTEMS)
    kinds = " ".join(c.chemistry for c in crystals)
    for kind in ("oxide", "intermetallic", "halide", "nitride"):
        assert kind in kinds
    assert all(len({*c.species}) >= 2 for c in crystals)  # one kind of site hides message-passing errors
    for c in crystals:
        atoms = c.atoms()
        assert len(atoms) == len(c.species) and atoms.get_volume() > 0
        assert np.isfinite(c.e_per_atom_dft_mp2020) and -12 < c.e_per_atom_dft_mp2020 < 0


def test_canary_crystals_are_the_samples_with_its_energies():
    """Each canary crystal is the shipped sample's crystal, with the energies its import stores."""
    from pymatgen.core import Structure

    from mliap_tui.core.resources import sample_materials_path
    from mliap_tui.data.importer import build_materials_table
    from mliap_tui.data.readers import read_records
    from mliap_tui.models.canary import canary_crystals

    ids = {c.material_id: c for c in canary_crystals()}
    records = [r for r in read_records(sample_materials_path(), "mp_csv") if r.material_id in ids]
    table, _ = build_materials_table(iter(records), "canary-check", n_jobs=1)
    assert table.height == len(ids)
    for row in table.iter_rows(named=True):
        c = ids[row["material_id"]]
        assert row["e_per_atom_dft_mp2020"] == pytest.approx(c.e_per_atom_dft_mp2020, abs=1e-9)
        assert row["mp2020_correction_per_atom"] == pytest.approx(c.mp2020_correction_per_atom, abs=1e-9)
        assert row["mp2020_run_type"] == "GGA"
        s = Structure(np.reshape(c.lattice_ang, (3, 3)), list(c.species), np.reshape(c.frac_coords, (-1, 3)))
        assert s.composition.reduced_formula == row["formula"]
