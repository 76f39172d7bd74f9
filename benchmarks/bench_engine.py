"""Static-energy throughput: the engine vs a naive ASE loop vs the model family's own batched API.

    python benchmarks/bench_engine.py                       # CHGNet 0.3.0, 200 MP-20 crystals, CPU
    python benchmarks/bench_engine.py --model sevennet-0 --limit 100
    python benchmarks/bench_engine.py --device cuda --limit 2000

Same structures (the first ``--limit`` crystals of the shared MP-20 test split), same model, same
device, one process after the other; structures/s of

* naive ASE loop: what a user would write, one calculator call per structure with the family's own
  ASE calculator (``atoms.calc = calc; atoms.get_potential_energy()``);
* family batched API: CHGNet ``predict_structure(structures, task="e", batch_size=B)``; SevenNet's
  batch inference path (``sevenn inference``: graphs from ``SevenNetGraphDataset.file_to_graph_list``,
  a torch_geometric DataLoader, one batched forward per batch; CSV writing left out);
* engine: ``run_evaluation`` into a fresh cache (worker subprocess, atom-count batches, prefetch
  of graph building, chunked parquet writes). Its "eval" rate excludes worker start-up and model
  loading like the other two (which get an already loaded model); "end to end" includes them.

Model loading and the conversion of the CSV's CIFs into structures are not timed for any method.
The two baselines run with 1 torch thread, the engine's thread count and all cores (when those
differ) and keep their best result. With ``--repeats N`` each method runs N times,
interleaved, and the best time counts (the machine may be shared).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from _paths import SHARED_DATA_DIR  # noqa: E402

from mliap_tui.cache import Cache  # noqa: E402
from mliap_tui.data.structures import row_to_atoms, row_to_structure, structure_columns  # noqa: E402

MP20 = SHARED_DATA_DIR / "mp" / "mp20_biternary_test.csv.gz"
DATASET = "bench"
#: batch_size defaults of the family APIs (CHGNet.predict_structure, sevenn inference)
FAMILY_DEFAULT_BATCH = {"chgnet": 16, "sevenn": 4}


def load_rows(limit: int) -> list[dict]:
    from pymatgen.core import Structure

    rows = []
    with gzip.open(MP20, "rt") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec in csv.DictReader(fh):
            s = Structure.from_str(rec["cif"], fmt="cif")
            rows.append({"material_id": rec["material_id"], "dataset": DATASET, "source": MP20.name,
                         "mp2020_correction_per_atom": 0.0, **structure_columns(s)})
            if len(rows) == limit:
                break
    return rows


# ---- the three methods -----------------------------------------------------------------------


def naive_ase_loop(calc, atoms_list) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    energies = []
    for atoms in atoms_list:
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() / len(atoms))
    return time.perf_counter() - t, np.array(energies)


def chgnet_batched(model, structures, batch_size: int) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    out = model.predict_structure(structures, task="e", batch_size=batch_size)
    return time.perf_counter() - t, np.array([float(o["e"]) for o in out])


class SevenNetBatched:
    """sevenn's batch inference path (sevenn.scripts.inference.inference) without the CSV output."""

    def __init__(self, atoms_list, device: str, workdir: Path):
        from ase.io import write
        from sevenn.util import model_from_checkpoint

        self.path = workdir / "structures.extxyz"
        write(self.path, atoms_list)
        self.model, _ = model_from_checkpoint("7net-0")
        self.model.to(device)
        self.model.set_is_batch_data(True)
        self.model.eval()
        self.device = device

    def __call__(self, batch_size: int) -> tuple[float, np.ndarray]:
        import sevenn._keys as KEY
        from sevenn.train.graph_dataset import SevenNetGraphDataset
        from torch_geometric.loader import DataLoader

        t = time.perf_counter()
        graphs = SevenNetGraphDataset.file_to_graph_list(str(self.path), cutoff=self.model.cutoff, num_cores=1,
                                                         allow_unlabeled=True)
        energies = []
        for batch in DataLoader(graphs, batch_size, shuffle=False):
            out = self.model(batch.to(self.device)).detach().cpu()
            e = out[KEY.PRED_TOTAL_ENERGY].numpy().reshape(-1)
            energies.extend((e / out[KEY.NUM_ATOMS].numpy().reshape(-1)).tolist())
        return time.perf_counter() - t, np.array(energies)


def engine(rows: list[dict], model: str, device: str, batch_atoms: int | None, workdir: Path, k: int,
           threads: int | None) -> tuple[float, float, np.ndarray]:
    from mliap_tui.engine.protocol import WorkerFinished
    from mliap_tui.engine.runner import run_evaluation

    cache = Cache(workdir / f"cache-{k}")
    cache.write_materials(DATASET, pl.DataFrame(rows))
    finished: list[WorkerFinished] = []
    t = time.perf_counter()
    summary = run_evaluation(cache, DATASET, [model], device=device, batch_atoms=batch_atoms, torch_threads=threads,
                             on_event=lambda ev: finished.append(ev) if isinstance(ev, WorkerFinished) else None)
    wall = time.perf_counter() - t
    if not summary.ok:
        raise SystemExit(f"engine run failed: {summary.errors}")
    eval_s = max(f.eval_s for f in finished)
    preds = cache.scan_predictions(DATASET, [model], "static").collect()
    order = {r["material_id"]: i for i, r in enumerate(rows)}
    preds = preds.sort(pl.col("material_id").replace_strict(order, return_dtype=pl.Int64))
    return eval_s, wall, preds["e_per_atom_pred_native"].to_numpy()


# ---- main ------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="chgnet-0.3.0", choices=["chgnet-0.3.0", "sevennet-0"])
    ap.add_argument("--limit", type=int, default=200, help="structures from the MP-20 test split (default 200)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--batch-atoms", type=int, default=None, help="engine atom budget per batch (default: the model's)")
    ap.add_argument("--api-batch-size", type=int, default=None,
                    help="structures per batch for the family API (default: the engine's mean batch, in structures)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each method, interleaved; the best counts")
    ap.add_argument("--skip-naive", action="store_true", help="leave the naive ASE loop out (slow on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the engine (default: its own choice)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # sevenn's graph-building progress bars
    warnings.filterwarnings("ignore")

    import torch

    from mliap_tui.core.host import usable_cores
    from mliap_tui.engine.worker import default_batch_atoms, default_torch_threads
    from mliap_tui.models.registry import load_predictor, resolve_device

    device = resolve_device(args.device)
    threads = args.threads or default_torch_threads()
    thread_options = sorted({1, threads, usable_cores()}) if device == "cpu" else [torch.get_num_threads()]
    rows = load_rows(args.limit)
    n, n_atoms = len(rows), sum(r["n_sites"] for r in rows)
    predictor = load_predictor(args.model, device=device)
    batch_atoms = args.batch_atoms or default_batch_atoms(predictor.spec, device)
    family = "chgnet" if args.model.startswith("chgnet") else "sevenn"
    # the API runs at the engine's mean batch (in structures) and at the family's own default
    api_sizes = [args.api_batch_size] if args.api_batch_size else sorted(
        {max(1, round(batch_atoms / (n_atoms / n))), FAMILY_DEFAULT_BATCH[family]})
    print(f"{args.model} on {device} (torch {torch.__version__}), {n} MP-20 crystals, {n_atoms} atoms "
          f"({n_atoms / n:.1f}/structure)\nengine: {threads} torch threads, {batch_atoms} atoms per batch; "
          f"baselines: best of torch threads {thread_options}, API batch sizes {api_sizes}", flush=True)

    atoms_list = [row_to_atoms(r) for r in rows]
    calc = predictor.ase_calculator()
    workdir = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    if family == "chgnet":
        from chgnet.model import CHGNet

        api_model = CHGNet.load(model_name="0.3.0", use_device=device, verbose=False)
        structures = [row_to_structure(r) for r in rows]
        api = lambda bs: chgnet_batched(api_model, structures, bs)  # noqa: E731
        api_label = "CHGNet.predict_structure(task='e', batch_size={})"
    else:
        sevenn_api = SevenNetBatched(atoms_list, device, workdir)
        api = lambda bs: sevenn_api(bs)  # noqa: E731
        api_label = "sevenn batch inference (batch_size={})"

    # warm-up (first calls pay one-time costs)
    naive_ase_loop(calc, [a.copy() for a in atoms_list[:3]])
    predictor.predict(atoms_list[:3])

    best: dict[str, tuple[float, str]] = {}  # method -> (seconds, configuration)
    energies: dict[str, np.ndarray] = {}
    engine_wall = float("inf")

    def keep(method: str, t: float, config: str) -> None:
        if t < best.get(method, (float("inf"), ""))[0]:
            best[method] = (t, config)

    for k in range(args.repeats):
        for nt in thread_options:
            if device == "cpu":
                torch.set_num_threads(nt)
            if not args.skip_naive:
                t, energies["naive"] = naive_ase_loop(calc, [a.copy() for a in atoms_list])
                keep("naive", t, f"{nt} threads")
                print(f"  naive ASE loop            {n / t:8.2f} structures/s  ({nt} threads)", flush=True)
            for bs in api_sizes:
                t, energies["api"] = api(bs)
                keep("api", t, f"{nt} threads, batch {bs}")
                print(f"  family batched API        {n / t:8.2f} structures/s  ({nt} threads, batch {bs})", flush=True)
        t, wall, energies["engine"] = engine(rows, args.model, args.device, args.batch_atoms, workdir, k, args.threads)
        keep("engine", t, f"{threads} threads, {batch_atoms} atoms")
        engine_wall = min(engine_wall, wall)
        print(f"  engine (eval)             {n / t:8.2f} structures/s  (end to end {n / wall:.2f}/s)", flush=True)

    for name, e in energies.items():
        if name != "engine":
            print(f"  max |engine - {name}| = {np.abs(e - energies['engine']).max():.2e} eV/atom")

    labels = {"naive": f"naive ASE loop ({type(calc).__name__})", "api": api_label.format("B"),
              "engine": "mliap-tui engine (eval)"}
    print()
    print(f"{'method':<46} {'best configuration':<24} {'structures/s':>12} {'atoms/s':>9} {'engine is':>10}")
    engine_rate = n / best["engine"][0]
    for key in ("naive", "api", "engine"):
        if key in best:
            t, config = best[key]
            print(f"{labels[key]:<46} {config:<24} {n / t:12.2f} {n_atoms / t:9.0f} {engine_rate / (n / t):9.2f}x")
    print(f"{'engine end to end (start-up + model load)':<46} {'':<24} {n / engine_wall:12.2f} {n_atoms / engine_wall:9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
