"""``mliap-tui pes``: symmetry-restricted PES slice of one material, headless."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading

from mliap_tui.cli import options

EPILOG = """examples:
  mliap-tui pes mp-390 --list-axes
  mliap-tui pes mp-560588 --axes Zn:2b:z,lattice:a --models sevennet-0
  mliap-tui pes mp-390 --axes O:8e:z --points 31 --range 0.2A --out scan.csv
  mliap-tui pes mp-10014 --axes S:3a.1:z,S:3a.2:z --range 2A --models sevennet-0
  mliap-tui pes mp-390 --axes O:8e:z,lattice:a --range 0.3A,3% --reference r.csv

Axes: <element>:<mult><letter>:<coord> for a free Wyckoff coordinate, and
lattice:a|b/a|c/a|alpha|beta|gamma for a lattice strain (--list-axes lists
them with their value at the DFT structure). Ranges: 0.3A = each atom of the
orbit moves ±0.3 Å (the default), 5% = strain (the lattice default), 2deg
(angles), or a bare number in the axis's own unit (fractional coordinate, or
strain). Points where two atoms come closer than --closest-approach × the sum
of their covalent radii are masked; a point more than --collapse eV/atom below
the DFT point is a model collapse, reported apart from the minimum. Energies
are cached: a slice asked again is read back; Ctrl-C stops, keeping what is
done, and the same command resumes."""


def register(sub: argparse._SubParsersAction) -> None:
    from mliap_tui.analysis.pes.slices import (
        DEFAULT_CLOSEST_APPROACH,
        DEFAULT_COLLAPSE_EV_PER_ATOM,
    )

    p = sub.add_parser("pes", help="symmetry-restricted PES slice (1D/2D) of one material",
                       description="Energy maps of one crystal along the free coordinates of its Wyckoff\n"
                       "positions and its lattice parameters, with the space group held fixed.",
                       epilog=EPILOG, formatter_class=options.formatter())
    p.add_argument("material_id", help="material id in the dataset, e.g. mp-560588")
    options.add_data(p)
    p.add_argument("--axes", default=None, help="one or two comma-separated axes (default: the first coordinate "
                   "axis, or lattice:a)")
    options.add_models(p, default="chgnet-0.3.0")
    p.add_argument("--range", dest="range_", default=None, metavar="R[,R]",
                   help="half-range, one for all axes or one per axis: 0.3A (Å), 5%% (strain), 2deg, or a bare "
                   "number in axis units (default: 0.3A for coordinates, 5%% for lattice axes)")
    p.add_argument("--points", type=options.odd_points, default=21, help="grid points per axis (odd, >= 3; default 21)")
    p.add_argument("--closest-approach", type=options.non_negative_float, default=DEFAULT_CLOSEST_APPROACH,
                   metavar="F", help="mask points where two atoms are closer than F × the sum of their covalent "
                   f"radii (default {DEFAULT_CLOSEST_APPROACH:g}; 0 masks nothing)")
    p.add_argument("--collapse", type=options.non_negative_float, default=DEFAULT_COLLAPSE_EV_PER_ATOM,
                   metavar="EV", help="flag points more than EV eV/atom below the DFT point as model collapse "
                   f"(default {DEFAULT_COLLAPSE_EV_PER_ATOM:g})")
    options.add_device(p)
    options.add_torch_threads(p)
    p.add_argument("--reference", default=None, help="CSV of axis values (axis units) and e_per_atom_ev to compare "
                   "against (e.g. your DFT grid)")
    p.add_argument("--out", default=None, help="write the grid (axis values, mask, energies) to this CSV")
    p.add_argument("--list-axes", action="store_true", help="list the slice axes of the material and exit")
    options.add_cache(p)
    p.set_defaults(handler=cmd_pes)


def cmd_pes(args) -> int:
    import warnings

    import polars as pl

    from mliap_tui.analysis.pes import slices as pes
    from mliap_tui.analysis.pes import stats as pa
    from mliap_tui.cli.progress import RichProgress

    cache = options.cache_of(args)
    models = options.model_ids(args.models)
    try:
        rows = cache.scan_materials(args.data).filter(pl.col("material_id") == args.material_id).collect()
        if rows.is_empty():
            print(f"error: {args.material_id} is not in dataset {args.data!r}", file=sys.stderr)
            return 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            crystal = pes.prepare(rows.row(0, named=True))
        if args.list_axes:
            print(f"{args.material_id}: space group {crystal.spacegroup_number} ({crystal.crystal_system}), "
                  f"{crystal.wyckoff}, {crystal.n_sites} atoms in the conventional cell")
            for a in crystal.axes:
                print(f"  {a.name:<14} {a.dft_label:<30} default {a.describe_range(a.default_range)}")
            return 0
        if args.axes:
            axes = [a.strip() for a in args.axes.split(",") if a.strip()]
        else:
            coord = [a.name for a in crystal.axes if a.kind == "coord"]
            axes = [coord[0] if coord else "lattice:a"]
        resolved = [pes.resolve_axis(crystal, a) for a in axes]
        range_ = pes.parse_ranges(args.range_, resolved)
        s = pes.build_slice(cache, args.data, args.material_id, axes, range_, args.points, args.closest_approach,
                            args.collapse, crystal=crystal)
        reference = pa.load_reference_csv(args.reference, s) if args.reference else None
    except (pes.PesError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_sigint(signum, frame):  # first Ctrl-C: stop after the batch in flight, keep what is done
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        with RichProgress() as show:
            pes.evaluate_slice(cache, s, models, device=args.device, dtype=args.dtype, on_event=show, stop=stop,
                               torch_threads=args.torch_threads)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    summary = s.run_summary
    for line in run_lines(summary):
        print(line)
    for line in slice_report(s, reference):
        print(line)
    if args.out:
        pes.slice_to_frame(s, reference).write_csv(args.out)
        print(f"\ngrid written to {args.out}")
    if s.cancelled:
        print(f"\ncancelled: {', '.join(f'{m} {s.n_done(m)}/{int(s.evaluated.sum())}' for m in models)} points "
              "evaluated; the same command resumes", file=sys.stderr)
        return 130
    return 0 if summary.ok else 1


def run_lines(summary) -> list[str]:
    """One line per model of the evaluation: what was cached, evaluated, failed, and how fast."""
    from mliap_tui.core.units import format_duration

    out = []
    for m in summary.models:
        state = f"error: {m.error}" if m.error else ("cancelled" if m.cancelled else "ok")
        rate = f", {m.structures_per_s:.0f} points/s" if m.structures_per_s else ""
        out.append(f"{m.model}: {m.done}/{m.todo} evaluated ({m.failed} failed), {m.already_done} cached"
                   f"{rate}, {format_duration(m.wall_s)} · {state}")
    return out


def slice_report(s, reference=None) -> list[str]:
    """The text report of a slice: axes with their DFT values and ranges, the mask, then per
    model (and reference) the minimum over valid points, curvatures, critical points and any
    model collapse; then difference maps. Lines fit 80 columns."""
    from mliap_tui.analysis.pes import slices as pes
    from mliap_tui.analysis.pes import stats as pa
    from mliap_tui.core.units import plural

    spec, crystal = s.spec, s.crystal
    out = [f"\n{spec.material_id} · space group {crystal.spacegroup_number} ({crystal.crystal_system}) · "
           f"{crystal.wyckoff}",
           f"slice {' × '.join(spec.axes)}, {'×'.join(map(str, spec.shape))} points; "
           "E relative to the DFT structure"]
    for ax, r in zip(s.axes, spec.ranges):
        out.append(f"  {ax.name:<14} {ax.dft_label + ' at DFT':<24} {ax.describe_range(r)}")
    n_mask, n_total = int(s.mask.sum()), s.mask.size
    if n_mask:
        skipped = int((~s.evaluated).sum())
        finite = [c for c in s.contacts.values() if math.isfinite(c.distance_ang) and c.limit_ang > 0]
        mildest = max(finite, key=lambda c: c.distance_ang / c.limit_ang) if finite else next(iter(s.contacts.values()))
        out.append(f"  masked {n_mask}/{n_total} points: atoms closer than {s.closest_approach:g} × the sum of "
                   "covalent radii")
        out.append(f"    (e.g. {mildest.text})" + (f"; {skipped} closer than {pes.EVALUATION_FLOOR_ANG:g} Å not "
                                                   "evaluated" if skipped else ""))
    stats = pa.analyze_slice(s, reference)
    for st in stats:
        out.append("")
        if not math.isfinite(st.min_e_rel_mev_per_atom):
            out.append(f"  {st.source}: {st.n_finite}/{st.n_points} points, no energy at the DFT point")
            continue
        where = "AT the DFT point" if st.min_at_dft else "off the DFT point"
        out.append(f"  {st.source}: {st.n_finite}/{st.n_points} points evaluated, {st.n_valid} valid")
        out.append(f"    minimum {st.min_e_rel_mev_per_atom:+.3f} meV/atom {where}")
        for k, ax in enumerate(s.axes):
            off, curv = st.min_offset_ang[k], st.curvature_ev_per_atom_per_ang2[k]
            u = "°" if ax.unit == "°" else "Å"
            off_text = "—" if off is None else f"{off:+.4f} {u}"
            curv_text = "—" if curv is None or not math.isfinite(curv) else f"{curv:.4f} eV/atom/{u}²"
            out.append(f"    {ax.name:<14} min offset {off_text:<12} curvature {curv_text}")
        if st.n_local_minima is not None:
            out.append(f"    {plural(st.n_local_minima, 'local minimum', 'local minima')}, "
                       f"{plural(st.n_saddles or 0, 'saddle point')} (valid points)")
        if st.collapses:
            deep = st.collapses[0]
            at = ", ".join(ax.format_value(spec.values(k)[deep.index[k]]) for k, ax in enumerate(s.axes))
            out.append(f"    MODEL COLLAPSE at {plural(st.n_collapsed, 'point')}: E more than "
                       f"{st.collapse_ev_per_atom:g} eV/atom below the DFT point")
            out.append(f"      deepest {deep.e_rel_mev_per_atom:+.1f} meV/atom at ({at}),")
            out.append(f"      shortest distance {deep.pair} {deep.closest_ang:.3f} Å"
                       f"{' (a masked point)' if deep.masked else ''}: a model pathology,")
            out.append("      not a minimum")
        if s.failures.get(st.source):
            out.append(f"    {len(s.failures[st.source])} failed points, e.g. {s.failures[st.source][0]}")
    sources = list(s.energies) + (["reference"] if reference is not None else [])
    for a, b in zip(sources, sources[1:]):
        d = pa.difference_map(s, a, b, reference)
        ok = pa.source_valid(s, a, reference) & pa.source_valid(s, b, reference)
        if ok.any():
            out.append(f"\n  {a} − {b}: max |Δ| {abs(d[ok]).max():.3f} meV/atom over {int(ok.sum())} valid points")
    return out
