"""``mliap-tui pes``: symmetry-restricted PES slice of one material, headless."""

from __future__ import annotations

import argparse
import sys

from mliap_tui.cli import options

EPILOG = """examples:
  mliap-tui pes mp-560588 --data sample --axes Zn:2b:z,lattice:a --models chgnet-0.3.0,sevennet-0
  mliap-tui pes mp-390 --axes O:8e:z --points 31 --range 0.05 --out scan.csv
  mliap-tui pes mp-390 --list-axes
Axes: <element>:<mult><letter>:<coord> for a free Wyckoff coordinate (fractional, default ±0.1),
lattice:a|b/a|c/a|alpha|beta|gamma for a relative lattice strain (default ±0.05). Ranges are
clipped where atoms come closer than --min-distance. Grid energies are cached: a slice asked again
is read back, an interrupted one resumes."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pes", help="symmetry-restricted PES slice (1D/2D) of one material",
                       description="Energy maps of one crystal along the free coordinates of its Wyckoff "
                       "positions and its lattice parameters, with the space group held fixed.",
                       epilog=EPILOG, formatter_class=options.formatter())
    p.add_argument("material_id", help="material id in the dataset, e.g. mp-560588")
    options.add_data(p)
    p.add_argument("--axes", default=None, help="one or two comma-separated axes (default: the first coordinate "
                   "axis, or lattice:a)")
    options.add_models(p, default="chgnet-0.3.0")
    p.add_argument("--range", dest="range_", default=None,
                   help="half-range: one value for all axes or one per axis, comma-separated")
    p.add_argument("--points", type=options.positive_int, default=21, help="grid points per axis (odd; default 21)")
    p.add_argument("--min-distance", type=float, default=0.7, help="closest approach allowed (Å, default 0.7)")
    options.add_device(p)
    p.add_argument("--reference", default=None, help="CSV of axis values and e_per_atom_ev to compare against")
    p.add_argument("--out", default=None, help="write the grid (axis values, energies) to this CSV")
    p.add_argument("--list-axes", action="store_true", help="list the slice axes of the material and exit")
    options.add_cache(p)
    p.set_defaults(handler=cmd_pes)


def cmd_pes(args) -> int:
    import warnings

    import polars as pl

    from mliap_tui.analysis.pes import slices as pes
    from mliap_tui.analysis.pes import stats as pa

    cache = options.cache_of(args)
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
                extra = (f"direction {a.direction_frac} frac, {a.ang_per_unit:.3f} Å per unit" if a.kind == "coord"
                         else f"strain, {a.ang_per_unit:.3f} {a.unit} at 0")
                print(f"  {a.name:<20} ±{a.default_range:g}  {extra}")
            return 0
        if args.axes:
            axes = [a.strip() for a in args.axes.split(",") if a.strip()]
        else:
            coord = [a.name for a in crystal.axes if a.kind == "coord"]
            axes = [coord[0] if coord else "lattice:a"]
        range_ = None
        if args.range_:
            vals = [float(v) for v in str(args.range_).split(",")]
            range_ = vals[0] if len(vals) == 1 else vals
        models = options.model_ids(args.models)
        s = pes.compute_slice(cache, args.data, args.material_id, axes, models, range_=range_, points=args.points,
                              min_dist_ang=args.min_distance, device=args.device, dtype=args.dtype)
    except (pes.PesError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reference = pa.load_reference_csv(args.reference, s) if args.reference else None
    if s.run_summary is not None:
        print(s.run_summary.format())
    print(f"{args.material_id} slice {' × '.join(s.spec.axes)}: ranges ±{', ±'.join(f'{r:.4g}' for r in s.spec.ranges)}"
          f" (requested ±{', ±'.join(f'{r:.4g}' for r in s.spec.requested_ranges)}), {'x'.join(map(str, s.spec.shape))}"
          f" points; energies relative to the DFT structure")
    stats = pa.analyze_slice(s, reference)
    for st in stats:
        print(f"\n  {st.source}: {st.n_finite}/{st.n_points} points, minimum "
              f"{st.min_e_rel_mev_per_atom:+.3f} meV/atom {'AT the DFT point' if st.min_at_dft else 'off the DFT point'}"
              + (f", {st.n_local_minima} local minima, {st.n_saddles} saddles" if st.n_local_minima is not None else ""))
        for k, ax in enumerate(s.axes):
            off_ang = st.min_offset_ang[k]
            curv_a = st.curvature_ev_per_atom_per_ang2[k]
            unit = "°" if ax.unit == "°" else "Å"
            print(f"    {ax.name:<18} min offset {st.min_offset[k]:+.4f} {'frac' if ax.kind == 'coord' else 'strain'}"
                  f" ({'—' if off_ang is None else f'{off_ang:+.4f} {unit}'}),"
                  f" curvature {st.curvature_ev_per_atom_per_unit2[k]:.3f} eV/atom/unit²"
                  f" ({'—' if curv_a is None else f'{curv_a:.4f} eV/atom/{unit}²'})")
        if s.failures.get(st.source):
            print(f"    {len(s.failures[st.source])} failed points, e.g. {s.failures[st.source][0]}")
    if len(models) > 1:
        for a, b in zip(models, models[1:]):
            d = pa.difference_map(s, a, b)
            print(f"\n  {a} − {b}: max |Δ| {abs(d[~(d != d)]).max():.3f} meV/atom over the slice")
    if args.out:
        pes.slice_to_frame(s, reference).write_csv(args.out)
        print(f"\ngrid written to {args.out}")
    return 0 if all(m.error is None for m in (s.run_summary.models if s.run_summary else [])) else 1

