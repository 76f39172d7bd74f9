"""The app tests' fixture cache is real: CHGNet energies close to DFT, and real failures."""

from __future__ import annotations

import polars as pl
from support_tui import DATASET, N_CHGNET_020, N_MATERIALS


def test_fixture_cache_is_real(tui_cache):
    """The fixture holds real CHGNet energies close to DFT, and real failures."""
    from mliap_tui.analysis.errors import error_table

    table = error_table(tui_cache, DATASET)
    ok = table.filter(pl.col("status") == "ok")
    assert set(ok["model"].unique()) == {"chgnet-0.3.0", "chgnet-0.2.0"}
    assert ok.filter(pl.col("model") == "chgnet-0.3.0").height == N_MATERIALS
    assert ok.filter(pl.col("model") == "chgnet-0.2.0").height == N_CHGNET_020
    # a working potential is within ~0.3 eV/atom of DFT on average, and not identical to it
    mae = ok["d_e_form_per_atom"].abs().mean()
    assert 0.001 < mae < 0.3
    failed = table.filter(pl.col("status") == "failed")
    assert failed.height == 2 and failed["error"].str.contains("isolated atom").all()
    systems = table.filter(pl.col("status") == "ok")["crystal_system"].n_unique()
    assert systems >= 5


