"""Print the canary check of models, crystal by crystal (what `mliap-tui run` decides at load time).

    python scripts/canary_report.py chgnet-0.3.0 sevennet-0 ...
    python scripts/canary_report.py m3gnet-mp-2021.2.8-pes=/path/to/matgl/folder --skip-save-check

MODEL=PATH loads MODEL with a checkpoint. ``--skip-save-check`` loads matgl folders even when they
were saved by matgl < 3 (which `run` refuses before loading), to measure what they would give.
Energies in eV/atom, errors in meV/atom (prediction - DFT, on the model's own convention).
"""

from __future__ import annotations

import argparse
import math
import time

from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.models.canary import evaluate_canary
from mliap_tui.models.identity import resolve_identity
from mliap_tui.models.registry import get_spec, load_predictor


def load(model: str, checkpoint: str | None, skip_save_check: bool):
    if skip_save_check and checkpoint and get_spec(model).family == "matgl":
        import matgl

        from mliap_tui.models.matgl_adapter import MatglPredictor

        return MatglPredictor(get_spec(model), matgl.load_model(checkpoint), device="cpu", dtype="float32")
    return load_predictor(model, device="cpu", checkpoint=checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL[=CHECKPOINT]")
    parser.add_argument("--skip-save-check", action="store_true", help="measure matgl folders saved by matgl < 3 anyway")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for item in args.models:
        model, _, checkpoint = item.partition("=")
        t0 = time.perf_counter()
        predictor = load(model, checkpoint or None, args.skip_save_check)
        load_s = time.perf_counter() - t0
        identity = resolve_identity(predictor.spec, checkpoint or None)
        result = evaluate_canary(predictor, identity)
        print(f"\n{model}{' with ' + checkpoint if checkpoint else ''}  [{result.convention}, weights {identity.short}, "
              f"{identity.package_version}; load {load_s:.1f} s, canary {result.seconds:.1f} s]")
        print(f"  {'material':11} {'formula':8} {'DFT':>9} {'pred':>9} {'error':>8}")
        for i in result.items:
            if i.failure:
                print(f"  {i.material_id:11} {i.formula:8} {i.e_dft_mp2020:9.3f}  not evaluated: {i.failure}")
                continue
            pred = i.e_pred_mp2020 if i.e_pred_mp2020 is not None else i.e_pred_native
            err = f"{i.error * MEV_PER_EV:+8.0f}" if i.error is not None else "       -"
            print(f"  {i.material_id:11} {i.formula:8} {i.e_dft_mp2020:9.3f} {pred:9.3f} {err}")
        mae = result.mae_ev_per_atom
        print(f"  -> {result.verdict.upper()}: {result.reason}"
              + (f" (MAE {mae * MEV_PER_EV:.1f})" if mae is not None and math.isfinite(mae) else ""))


if __name__ == "__main__":
    main()
