"""Models you can trust: the load-time canary check on real models, weights identity through the
engine (another checkpoint under the same id is another model for the cache, shown apart), the
``--trust-model`` override recorded with the rows, and the refusal of real matgl 2.x checkpoints."""

from __future__ import annotations

import pytest
from support import shared_models_dir

from mliap_tui.analysis.errors import error_table
from mliap_tui.analysis.summary import summarize
from mliap_tui.cache import Cache
from mliap_tui.cache.weights import read_weights_record
from mliap_tui.data.importer import import_dataset
from mliap_tui.engine import protocol
from mliap_tui.engine.runner import run_evaluation
from mliap_tui.models.canary import (
    CANARY_MAE_LIMIT_EV_PER_ATOM,
    ModelRefused,
    evaluate_canary,
)
from mliap_tui.models.identity import file_sha256
from mliap_tui.models.registry import (
    get_spec,
    load_predictor,
    package_dir,
    refuse_pre_3_matgl_save,
)
from mliap_tui.tui.state import load_dataset

N = 6  # crystals of the shipped sample per engine test


@pytest.fixture(autouse=True)
def _private_hash_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("MLIAP_TUI_HASH_MEMO", str(tmp_path / "memo.json"))


@pytest.fixture
def cache(tmp_path) -> Cache:
    cache = Cache(tmp_path / "cache")
    import_dataset("sample", cache=cache, limit=N, n_jobs=1)
    return cache


def _bundled(package: str, relative: str) -> str:
    path = package_dir(package) / relative
    assert path.is_file(), path
    return str(path)


# ---- the canary on real models -------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["chgnet-0.3.0", "sevennet-0",
                                      pytest.param("chgnet-0.2.0", marks=pytest.mark.slow),
                                      pytest.param("sevennet-l3i5", marks=pytest.mark.slow)])
def test_published_weights_pass_the_canary(model_id):
    result = evaluate_canary(load_predictor(model_id))
    assert result.passed, result.summary()
    assert result.n_judged == result.n_total == 12
    assert result.mae_ev_per_atom < 0.06  # measured: 6 (l3i5) to 26 (CHGNet 0.3.0) meV/atom
    assert result.mae_ev_per_atom < CANARY_MAE_LIMIT_EV_PER_ATOM / 2


@pytest.mark.slow
def test_r2scan_energies_are_recorded_not_judged():
    result = evaluate_canary(load_predictor("chgnet-r2scan"))
    assert result.verdict == "unchecked" and "r2scan" in result.reason.lower()
    assert all(i.e_pred_native is not None and i.error is None for i in result.items)


def test_a_checkpoint_under_the_wrong_model_id_is_refused_naming_the_worst_crystals():
    # the CHGNet r2SCAN weights load fine as chgnet-0.3.0 (same architecture): eV/atom off the PBE scale
    wrong = _bundled("chgnet", get_spec("chgnet-r2scan").options["bundled_file"])
    result = evaluate_canary(load_predictor("chgnet-0.3.0", checkpoint=wrong))
    assert result.failed and result.mae_ev_per_atom > 1.0
    message = result.refusal_message()
    worst = result.worst(3)
    assert all(i.material_id in message for i in worst) and "--trust-model chgnet-0.3.0" in message
    assert "incompatible package version" in message and "\n" not in message


# ---- through the engine -----------------------------------------------------------------------------


def test_another_checkpoint_under_the_same_id_is_another_model(cache):
    l3i5 = _bundled("sevenn", get_spec("sevennet-l3i5").options["bundled_file"])
    first = run_evaluation(cache, "sample", ["sevennet-0"], device="cpu")
    again = run_evaluation(cache, "sample", ["sevennet-0"], device="cpu")
    assert first.ok and first.models[0].done == N and again.models[0].todo == 0
    other = run_evaluation(cache, "sample", ["sevennet-0"], device="cpu", checkpoints={"sevennet-0": l3i5})
    m = other.models[0]
    assert other.ok and (m.already_done, m.todo, m.ok) == (0, N, N)  # new weights: everything is computed
    assert m.weights_fingerprint == file_sha256(l3i5) != first.models[0].weights_fingerprint
    assert run_evaluation(cache, "sample", ["sevennet-0"], device="cpu", checkpoints={"sevennet-0": l3i5}).models[0].todo == 0

    rows = cache.scan_predictions("sample", ["sevennet-0"]).collect()
    assert rows.height == 2 * N and rows["weights_fingerprint"].n_unique() == 2
    assert rows["package_version"].str.starts_with("sevenn ").all() and not rows["trust_override"].any()
    labels = {f"sevennet-0~{first.models[0].weights_fingerprint[:7]}", f"sevennet-0~{m.weights_fingerprint[:7]}"}
    table = error_table(cache, "sample")
    assert set(table["model"]) == labels
    differ = table.pivot(on="model", index="material_id", values="e_per_atom_pred_native")
    assert (differ[sorted(labels)[0]] != differ[sorted(labels)[1]]).all()  # really other weights
    assert set(load_dataset(cache, "sample").models) == labels  # the explorer shows them apart
    notes = {n.label: n.text() for n in summarize(cache, "sample").weights}
    assert set(notes) == labels
    assert any("checkpoint: " in t and "canary passed" in t for t in notes.values())
    assert any("bundled: checkpoint_sevennet_0.pth" in t for t in notes.values())


def test_a_refused_model_writes_nothing_and_trust_model_runs_it_with_the_override_recorded(cache):
    wrong = _bundled("chgnet", get_spec("chgnet-r2scan").options["bundled_file"])
    events: list = []
    refused = run_evaluation(cache, "sample", ["chgnet-0.3.0"], device="cpu", checkpoints={"chgnet-0.3.0": wrong},
                             on_event=events.append)
    m = refused.models[0]
    assert not refused.ok and m.error_kind == "model_refused" and "refused by the canary check" in m.error
    errors = [e for e in events if isinstance(e, protocol.WorkerError)]
    assert errors and errors[0].kind == "model_refused"
    assert cache.scan_predictions("sample").collect().height == 0
    record = read_weights_record(cache, "chgnet-0.3.0", file_sha256(wrong))
    (canary,) = record["canary"].values()
    assert canary["verdict"] == "failed" and canary["n_judged"] == 12  # cached per weights fingerprint

    events.clear()
    trusted = run_evaluation(cache, "sample", ["chgnet-0.3.0"], device="cpu", checkpoints={"chgnet-0.3.0": wrong},
                             trust_models=["chgnet-0.3.0"], on_event=events.append)
    assert trusted.ok and trusted.models[0].ok == N
    started = next(e for e in events if isinstance(e, protocol.WorkerStarted))
    assert started.trust_override and started.canary.startswith("failed")
    logs = [e.message for e in events if isinstance(e, protocol.Log)]
    assert any("runs only because of --trust-model" in msg for msg in logs)
    rows = cache.scan_predictions("sample").collect()
    assert rows["trust_override"].all() and (rows["weights_fingerprint"] == file_sha256(wrong)).all()
    (note,) = summarize(cache, "sample").weights
    assert "FAILED the canary, run with --trust-model" in note.text()
    assert read_weights_record(cache, "chgnet-0.3.0", file_sha256(wrong))["trusted_by_user"] is True


def test_the_shared_matgl_2x_checkpoints_are_refused_before_loading(cache):
    root = shared_models_dir()
    if root is None or not (root / "matgl-2.x").is_dir():
        pytest.skip("needs the real matgl 2.x checkpoints in ../shared/models (absent here)")
    pairs = {"m3gnet-mp-2021.2.8-pes": root / "matgl-2.x" / "M3GNet-MP-2021.2.8-PES",
             "m3gnet-matpes-pbe": root / "matgl-2.x" / "M3GNet-MatPES-PBE-v2025.1-PES"}
    for model, folder in pairs.items():
        with pytest.raises(ModelRefused, match="saved by matgl < 3.0"):
            refuse_pre_3_matgl_save(get_spec(model), folder)
    summary = run_evaluation(cache, "sample", list(pairs), device="cpu", checkpoints={m: str(f) for m, f in pairs.items()},
                             trust_models=True)  # --trust-model does not override a pre-3.0 save
    for m in summary.models:
        assert m.error_kind == "model_refused", m.error
        assert "saved by matgl < 3.0" in m.error and "message-passing" in m.error and "\n" not in m.error
    assert cache.scan_predictions("sample").collect().height == 0


def test_the_classic_m3gnet_is_registered_with_its_hub_name_and_an_honest_note():
    spec = get_spec("m3gnet-mp-2021.2.8-pes")
    assert (spec.family, spec.weights, spec.energy_convention) == ("matgl", "M3GNet-MP-2021.2.8-PES", "raw_pbe")
    assert "refit" in spec.options["hub_note"] and "matgl >= 3" in spec.options["hub_note"]
    assert get_spec("m3gnet-matpes-pbe").weights == "M3GNet-PES-MatPES-PBE-2025.2"
    assert get_spec("tensornet-matpes-pbe").weights == "TensorNet-PES-MatPES-PBE-2025.2"
