"""Compaction of committed chunks (cache/compact.py), the derived-table store (cache/derived.py)
and the cache inventory (cache/inventory.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import polars as pl
import pytest

from mliap_tui.cache import Cache
from mliap_tui.cache.claims import ClaimBoard, Owner
from mliap_tui.cache.compact import COMPACTION_KEY, compact, compact_all
from mliap_tui.cache.derived import read_derived, write_derived
from mliap_tui.cache.inventory import cache_info


def chunk(ids, model="m", status="ok", e=-1.0, t=None):
    n = len(ids)
    return pl.DataFrame({"material_id": list(ids), "model": [model] * n, "mode": ["static"] * n, "status": [status] * n,
                         "e_per_atom_pred_native": [e] * n, "created_unix_s": [time.time() if t is None else t] * n})


def make(tmp_path) -> Cache:
    cache = Cache(tmp_path)
    cache.write_materials("d", pl.DataFrame({"material_id": [f"x{i:04d}" for i in range(100)]}))
    return cache


def test_compaction_keeps_what_readers_see_and_leaves_one_sorted_file(tmp_path):
    cache = make(tmp_path)
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0003", "x0001"], status="failed", t=1))
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0002", "x0001"], e=-2.0, t=2))  # x0001 retried: ok now
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0000"], t=3))
    cache.write_prediction_chunk("d", "other", "static", chunk(["x0000"], model="other", t=3))
    before = cache.scan_predictions("d").collect().sort("model", "material_id")

    result = compact(cache, "d", "m", "static")
    assert result.changed and (result.files_merged, result.rows_before, result.rows_after) == (3, 5, 4)
    files = cache.prediction_files("d", "m", "static")
    assert [f.name for f in files] == [result.path.split("/")[-1]] and files[0].name.endswith("-n4.parquet")
    on_disk = pl.read_parquet(files[0])
    assert on_disk["material_id"].to_list() == ["x0000", "x0001", "x0002", "x0003"]  # sorted, one row each
    after = cache.scan_predictions("d").collect().sort("model", "material_id")
    assert after.equals(before)
    assert on_disk.filter(pl.col("material_id") == "x0001")["status"].item() == "ok"

    again = compact(cache, "d", "m", "static")
    assert not again.changed and again.skipped == "already compact"
    # a later chunk is merged with the compacted file by readers, and by the next compaction
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0003"], e=-3.0, t=4))
    assert cache.scan_predictions("d", ["m"]).collect().filter(pl.col("material_id") == "x0003")["status"].item() == "ok"
    assert [(r.model, r.changed) for r in compact_all(cache)] == [("m", True), ("other", True)]
    assert [r.skipped for r in compact_all(cache)] == ["already compact", "already compact"]
    assert cache.scan_predictions("d", ["m"]).collect().height == 4


def test_a_second_compaction_of_the_same_folder_waits_its_turn(tmp_path):
    cache = make(tmp_path)
    for i in range(3):
        cache.write_prediction_chunk("d", "m", "static", chunk([f"x{i:04d}"]))
    other = ClaimBoard(cache.claims_dir("d", "m", "static"), Owner.current("someone-else"))
    assert other.try_claim(COMPACTION_KEY) is not None
    result = compact(cache, "d", "m", "static")
    assert not result.changed and "another process is compacting" in result.skipped
    assert len(cache.prediction_files("d", "m", "static")) == 3
    other.release_all()
    assert compact(cache, "d", "m", "static").changed


WRITER = r"""
import sys, time
import polars as pl
from mliap_tui.cache import Cache
cache = Cache(sys.argv[1])
n, per = int(sys.argv[2]), int(sys.argv[3])
for k in range(n):
    ids = [f"w{k:04d}-{j}" for j in range(per)]
    df = pl.DataFrame({"material_id": ids, "model": ["m"] * per, "mode": ["static"] * per, "status": ["ok"] * per,
                       "e_per_atom_pred_native": [float(k)] * per, "created_unix_s": [time.time()] * per})
    cache.write_prediction_chunk("d", "m", "static", df)
    print(k, flush=True)
    time.sleep(0.005)
"""


def test_compaction_against_a_concurrent_writer_loses_no_row(tmp_path):
    """A writer process commits 300 chunks while this process compacts the folder again and again
    and reads it in between: every committed row is there at the end, once, and no read failed."""
    cache = make(tmp_path)
    n, per = 300, 7
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n), str(per)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    compactions = reads = 0
    try:
        while writer.poll() is None:
            result = compact(cache, "d", "m", "static")
            compactions += result.changed
            seen = cache.scan_predictions("d", ["m"], "static").select("material_id").collect()  # a reader meanwhile
            assert seen["material_id"].is_unique().all()
            reads += 1
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0, writer.stderr.read()
    assert compactions >= 3, "the writer finished before compaction overlapped it; make it write more"
    compact(cache, "d", "m", "static")
    rows = cache.scan_predictions("d", ["m"], "static").collect()
    expected = {f"w{k:04d}-{j}" for k in range(n) for j in range(per)}
    assert set(rows["material_id"]) == expected and rows.height == n * per
    files = cache.prediction_files("d", "m", "static")
    assert len(files) == 1 and pl.read_parquet(files[0]).height == n * per


def test_derived_tables_are_found_only_for_their_version(tmp_path):
    cache = make(tmp_path)
    table = pl.DataFrame({"material_id": ["x0000"], "value": [1.5]})
    path = write_derived(cache, "d", "m", "static", "hull", "v1", table)
    assert path.parent == cache.dataset_dir("d") / "derived" / "m" / "static"
    assert read_derived(cache, "d", "m", "static", "hull", "v1").equals(table)
    assert read_derived(cache, "d", "m", "static", "hull", "v2") is None
    assert read_derived(cache, "d", "m", "relax", "hull", "v1") is None
    path.write_bytes(b"PAR1 garbage")  # damaged: a miss, not an error
    assert read_derived(cache, "d", "m", "static", "hull", "v1") is None


def test_cache_info_counts_rows_on_disk(tmp_path):
    cache = make(tmp_path)
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0000", "x0001"], status="failed", t=1))
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0001"], t=2))
    write_derived(cache, "d", "m", "static", "hull", "v1", pl.DataFrame({"material_id": ["x0000"]}))
    (info,) = cache_info(cache)
    assert (info.dataset, info.materials, info.derived_files) == ("d", 100, 1)
    (folder,) = info.folders
    assert (folder.model, folder.mode, folder.files, folder.compacted, folder.rows, folder.pairs, folder.failed) == (
        "m", "static", 2, 0, 3, 2, 1)
    assert folder.bytes > 0 and info.bytes > folder.bytes
    compact(cache, "d", "m", "static")
    (folder,) = cache_info(cache)[0].folders
    assert (folder.files, folder.compacted, folder.rows, folder.pairs, folder.failed) == (1, 1, 2, 2, 1)


@pytest.mark.parametrize("first", [True, False])
def test_scan_reads_a_lone_compacted_file_as_is(tmp_path, first):
    cache = make(tmp_path)
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0001", "x0000"], t=1))
    if first:
        compact(cache, "d", "m", "static")
    plan = cache.scan_predictions("d", ["m"], "static").explain()
    assert ("UNIQUE" in plan.upper()) != first


def test_a_read_whose_listed_file_was_compacted_away_lists_again(tmp_path):
    """A scan lists files when it is made; if compaction removes one before the read, the read is
    built again from a fresh listing (store.collect_fresh) and sees the same rows."""
    from mliap_tui.cache.store import collect_fresh

    cache = make(tmp_path)
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0000"], t=1))
    cache.write_prediction_chunk("d", "m", "static", chunk(["x0001"], t=2))
    builds = []

    def build():
        lf = cache.scan_predictions("d", ["m"], "static")
        if not builds:
            compact(cache, "d", "m", "static")  # the listed chunks are gone now
        builds.append(1)
        return lf

    rows = collect_fresh(build)
    assert len(builds) == 2 and sorted(rows["material_id"]) == ["x0000", "x0001"]
    with pytest.raises(FileNotFoundError, match="not in the cache"):  # a build error is not retried
        collect_fresh(lambda: cache.scan_materials("nosuch"))
