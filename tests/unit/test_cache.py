import os
import signal
import subprocess
import sys

import polars as pl
import pytest

from mliap_tui.cache import (
    MATERIALS_SCHEMA,
    PREDICTIONS_SCHEMA,
    SCHEMA_VERSION,
    Cache,
    check_name,
    conform,
)


def _pred(mid, model="m", status="ok", e=-1.0, t=0.0):
    return pl.DataFrame(
        {"material_id": [mid], "model": [model], "mode": ["static"], "status": [status],
         "e_per_atom_pred_native": [e], "created_unix_s": [t]}
    )


def test_conform_adds_missing_columns_and_orders_them():
    df = conform(pl.DataFrame({"material_id": ["mp-1"], "n_sites": [2]}), MATERIALS_SCHEMA)
    assert df.columns == list(MATERIALS_SCHEMA.names())
    assert df.schema["n_sites"] == pl.Int32
    assert df["formula"][0] is None


def test_materials_round_trip_and_duplicate_ids_refused(tmp_path):
    cache = Cache(tmp_path)
    cache.write_materials("d", pl.DataFrame({"material_id": ["mp-2", "mp-1"], "formula": ["Si", "C"]}))
    back = cache.scan_materials("d").collect()
    assert back["material_id"].to_list() == ["mp-1", "mp-2"]
    assert back.schema == MATERIALS_SCHEMA
    meta = pl.read_parquet_metadata(cache.materials_path("d"))
    assert meta["mliap_tui_schema_version"] == str(SCHEMA_VERSION)
    with pytest.raises(ValueError, match="duplicate material_id"):
        cache.write_materials("d", pl.DataFrame({"material_id": ["a", "a"]}))
    assert cache.datasets() == ["d"]


def test_missing_dataset_error_says_how_to_import(tmp_path):
    with pytest.raises(FileNotFoundError, match="mliap-tui data import sample"):
        Cache(tmp_path).scan_materials("sample")


def test_newest_prediction_wins_and_failed_rows_are_superseded(tmp_path):
    cache = Cache(tmp_path)
    cache.dataset_dir("d").mkdir(parents=True)  # chunks belong to a dataset that exists
    cache.write_prediction_chunk("d", "m", "static", pl.concat([_pred("a", status="failed", t=1), _pred("b", t=1)]))
    cache.write_prediction_chunk("d", "m", "static", _pred("a", e=-2.0, t=2))
    rows = cache.scan_predictions("d").collect().sort("material_id")
    assert rows.schema == PREDICTIONS_SCHEMA
    assert rows["material_id"].to_list() == ["a", "b"]
    assert rows["status"].to_list() == ["ok", "ok"]
    assert rows["e_per_atom_pred_native"][0] == -2.0
    assert cache.done_keys("d", "m", "static") == {"a", "b"}


def test_names_that_would_escape_the_cache_are_refused():
    for bad in ["../x", "a/b", "", ".hidden"]:
        with pytest.raises(ValueError):
            check_name(bad)
    assert check_name("chgnet-0.3.0") == "chgnet-0.3.0"


def test_killed_writer_leaves_no_partial_file(tmp_path):
    """A writer killed mid-write leaves only complete parquet files behind (temp + rename)."""
    script = f"""
import polars as pl, numpy as np
from mliap_tui.cache import Cache
c = Cache(r"{tmp_path}")
c.dataset_dir("d").mkdir(parents=True)
big = pl.DataFrame({{"material_id": [str(i) for i in range(200000)], "model": "m", "mode": "static",
                    "status": "ok", "forces_pred_ev_per_ang": [list(np.zeros(30))] * 200000}})
while True:
    c.write_prediction_chunk("d", "m", "static", big)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        import time
        deadline = time.time() + 60
        while not Cache(tmp_path).prediction_files("d") and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    files = Cache(tmp_path).prediction_files("d")
    assert files, "writer never committed a chunk"
    for f in files:  # every visible file reads back whole
        assert pl.read_parquet(f).height == 200000
