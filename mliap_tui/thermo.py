"""Thermodynamics on the Materials Project convention: MP2020 corrections, elemental references,
formation energies and energies above the convex hull.

Conventions
-----------
* Units: every energy here is in eV/atom unless its name ends in ``_ev`` (eV per cell).
* ``raw`` = the uncorrected VASP (or raw-PBE-trained model) energy. ``mp2020`` = that energy plus
  the Materials Project 2020 compatibility correction (``MaterialsProject2020Compatibility``:
  anion/oxide-type corrections and the GGA/GGA+U mixing corrections)::

      e_per_atom_mp2020 = e_per_atom_raw + mp2020_correction_per_atom(structure)

  The correction depends only on the structure (composition, oxide/sulfide type read from the
  geometry, the inferred GGA vs GGA+U run type), never on the energy. So for a model trained on
  raw PBE energies (MACE-MP, SevenNet, M3GNet, ORB) the corrected prediction is
  ``raw prediction + mp2020_correction_per_atom`` of the same structure, and a model trained on
  corrected energies (CHGNet) is used as is.
* GGA vs GGA+U is inferred the way ``MPRelaxSet`` writes the INCAR: the U table of the most
  electronegative element is used, and only O and F have tables (Co, Cr, Fe, Mn, Mo, Ni, V, W).
  So +U is on when the structure holds O or F *and* one of those metals; with both O and F the
  F table is the one MPRelaxSet reads (its values are identical to the O table).
* Formation energy: ``e_form = e_per_atom - sum_i x_i mu_i`` with ``x_i`` atomic fractions and
  ``mu_i`` the MP2020 energy per atom of the lowest-energy elemental polymorph in the MP elemental
  reference entries (2023-02-07). Both sides must be on the mp2020 convention.
* Energy above hull, two ways:
  (a) fixed DFT hull: ``ehull_pred = ehull_dft + (e_form_pred - e_form_dft)``; works on any
      subset and can be negative (a prediction below the DFT hull);
  (b) rebuilt hull: a pymatgen (Patched)PhaseDiagram of the predicted energies of all given
      entries of each chemical system plus elemental references; needs the competing phases.
* Signed errors are always prediction minus DFT, so underprediction is negative.

Tie-break caveat (inherited from pymatgen): when the oxidation states of a composition cannot be
guessed, the anion correction goes to the most electronegative element only. Si and Cu (both
X = 1.90 on the Pauling scale), Se and C (2.55) and H and Os/Ru/Ir/Pd (2.20) tie, and the tie is
decided by the order of elements in the structure, so e.g. ErCuSi2 may or may not get the Si
correction (+0.071 eV/Si) depending on the site order.
"""

from __future__ import annotations

import gzip
import json
import math
import multiprocessing
import os
import warnings
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

#: Elements with a U table in MPRelaxSet (read when one of them is the most electronegative).
MP2020_U_ANIONS: tuple[str, ...] = ("O", "F")
#: Elements that get a Hubbard U in MP oxides/fluorides (MPRelaxSet LDAUU table).
MP2020_U_ELEMENTS: tuple[str, ...] = ("Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W")
#: Elements whose MP2020 anion correction depends on the guessed oxidation state.
MP2020_OXIDATION_DEPENDENT_ANIONS: frozenset[str] = frozenset(
    ("Br", "I", "Se", "Si", "Sb", "Te", "H", "N", "F", "Cl")
)
RUN_TYPES = ("GGA", "GGA+U")
#: Below this many structures the batch correction stays in-process (pool start-up costs more).
MIN_STRUCTURES_FOR_POOL = 2000


class MissingElementalReferenceError(KeyError):
    """An element has no elemental reference energy."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else "missing elemental reference"


# --------------------------------------------------------------------------------------------
# GGA / GGA+U inference
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def mp_hubbard_u_table_ev() -> dict[str, dict[str, float]]:
    """MPRelaxSet's LDAUU table: {anion: {element: U in eV}}, non-zero entries only."""
    from pymatgen.io.vasp.sets import MPRelaxSet

    table = MPRelaxSet.CONFIG["INCAR"]["LDAUU"]
    return {
        anion: {el: float(u) for el, u in values.items() if float(u) != 0.0}
        for anion, values in table.items()
        if isinstance(values, dict)
    }


def _element_symbols(obj: Any) -> list[str]:
    """Element symbols (in order of appearance) of a Structure, Composition, dict or formula."""
    from pymatgen.core import Composition, Structure

    if isinstance(obj, Structure):
        comp = obj.composition
    elif isinstance(obj, Composition):
        comp = obj
    elif isinstance(obj, Mapping):
        return [str(el) for el, amt in obj.items() if float(amt) > 0]
    elif isinstance(obj, str):
        comp = Composition(obj)
    else:
        raise TypeError(f"expected a Structure, Composition, dict or formula, got {type(obj).__name__}")
    return [el.symbol for el, amt in comp.items() if amt > 0]


@lru_cache(maxsize=4096)
def _run_type_for_elements(symbols: frozenset[str]) -> tuple[str, tuple[tuple[str, float], ...]]:
    from pymatgen.core import Element

    if not symbols:
        raise ValueError("empty composition: cannot infer the MP run type")
    # MPRelaxSet sorts by Pauling electronegativity and reads the table of the last element.
    # He, Ne and Ar have no Pauling X (NaN); leave them out so they cannot upset the ordering.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_pauling = {s: Element(s).X for s in symbols}
    finite = [s for s in sorted(symbols) if not math.isnan(x_pauling[s])]
    most_electroneg = max(finite, key=x_pauling.__getitem__) if finite else None
    table = mp_hubbard_u_table_ev().get(most_electroneg, {})
    hubbards = tuple(sorted((el, u) for el, u in table.items() if el in symbols))
    return ("GGA+U" if hubbards else "GGA"), hubbards


def infer_mp_run_type(structure_or_composition: Any) -> tuple[str, dict[str, float]]:
    """("GGA" | "GGA+U", {element: U in eV}) as MPRelaxSet would run this composition.

    +U is used when the most electronegative element is O or F and one of the MP U elements
    (Co, Cr, Fe, Mn, Mo, Ni, V, W) is present; ``hubbards`` lists only the non-zero U values.
    Accepts a Structure, Composition, {element: amount} dict or formula string.
    """
    run_type, hubbards = _run_type_for_elements(frozenset(_element_symbols(structure_or_composition)))
    return run_type, dict(hubbards)


# --------------------------------------------------------------------------------------------
# MP2020 corrections
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def mp2020_compatibility():
    """The shared ``MaterialsProject2020Compatibility`` (check_potcar=False: POTCARs are not
    known for model predictions, and the WBM PBE54 set has other POTCAR hashes). Default
    ``strict_anions="require_bound"``: with "no_check" K2Se5 (Se at -0.4) would get a Se
    correction that the WBM/MP corrected energies do not carry."""
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


@lru_cache(maxsize=65536)
def _oxidation_state_guess(reduced: tuple[tuple[str, float], ...]) -> dict[str, float]:
    """First ``oxi_state_guesses(max_sites=-20)`` of a reduced composition, as MP2020 does it.

    pymatgen reduces the composition itself for ``max_sites < 0``, so the guess depends on the
    reduced composition only and can be cached across structures. {} when no guess exists.
    """
    from pymatgen.core import Composition

    try:
        guesses = Composition(dict(reduced)).oxi_state_guesses(max_sites=-20)
    except ValueError:
        guesses = ()
    return dict(guesses[0]) if guesses else {}


def _oxidation_states_for(comp) -> dict[str, float]:
    """Oxidation states MP2020 needs; skipped ({}) when no oxidation-dependent anion is present,
    because then the result cannot affect any correction."""
    symbols = {el.symbol for el in comp.elements}
    if len(symbols) < 2 or not (symbols & MP2020_OXIDATION_DEPENDENT_ANIONS):
        return {}
    reduced = comp.reduced_composition
    return _oxidation_state_guess(tuple((el.symbol, float(amt)) for el, amt in reduced.items()))


def _hubbards_for(run_type: str | None, hubbards: Mapping[str, float] | None, structure) -> tuple[str, dict]:
    inferred_type, inferred_u = infer_mp_run_type(structure)
    if run_type is None:
        run_type = inferred_type
    if run_type not in RUN_TYPES:
        raise ValueError(f"run_type must be one of {RUN_TYPES}, got {run_type!r}")
    if hubbards is None:
        hubbards = inferred_u if run_type == "GGA+U" else {}
    return run_type, {str(k): float(v) for k, v in hubbards.items()}


def mp2020_correction_ev(
    structure,
    e_raw_total_ev: float | None = None,
    run_type: str | None = None,
    hubbards: Mapping[str, float] | None = None,
) -> float:
    """Total MP2020 energy correction of the cell in eV (``mp2020 = raw + correction``).

    ``run_type`` ("GGA" | "GGA+U") and ``hubbards`` ({element: U eV}) default to what MPRelaxSet
    would use (:func:`infer_mp_run_type`). The oxide type (oxide/peroxide/superoxide/ozonide) and
    sulfide type are read from the structure. The correction does not depend on the energy;
    ``e_raw_total_ev`` is accepted for completeness only. Raises ValueError when the MP2020 scheme
    rejects the entry (e.g. an Fe oxide declared as plain GGA).
    """
    from pymatgen.entries.compatibility import CompatibilityError
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    if not structure.is_ordered:
        raise ValueError(f"{structure.composition.formula}: disordered structure, MP2020 needs an ordered cell")
    run_type, hubbards = _hubbards_for(run_type, hubbards, structure)
    comp = structure.composition
    entry = ComputedStructureEntry(
        structure,
        0.0 if e_raw_total_ev is None else float(e_raw_total_ev),
        parameters={"run_type": run_type, "is_hubbard": bool(hubbards), "hubbards": hubbards},
        data={"oxidation_states": _oxidation_states_for(comp)},
    )
    with warnings.catch_warnings():
        # "Failed to guess oxidation states": expected for intermetallics, handled by pymatgen.
        warnings.simplefilter("ignore")
        try:
            adjustments = mp2020_compatibility().get_adjustments(entry)
        except CompatibilityError as exc:
            msg = str(exc).split(" for {")[0]  # pymatgen appends the whole entry dict
            raise ValueError(f"{comp.reduced_formula}: MP2020 rejects this entry: {msg}") from None
    return float(sum(adj.value for adj in adjustments))


def mp2020_correction_per_atom(
    structure,
    e_raw_total_ev: float | None = None,
    run_type: str | None = None,
    hubbards: Mapping[str, float] | None = None,
) -> float:
    """MP2020 correction in eV/atom: :func:`mp2020_correction_ev` / number of sites."""
    return mp2020_correction_ev(structure, e_raw_total_ev, run_type, hubbards) / len(structure)


def _correction_row(item) -> tuple[float | None, str, str | None]:
    """(eV/atom, run_type, error) for one Structure or Structure dict; never raises."""
    run_type = ""
    try:
        from pymatgen.core import Structure

        structure = Structure.from_dict(item) if isinstance(item, dict) else item
        run_type, _ = infer_mp_run_type(structure)
        return mp2020_correction_per_atom(structure), run_type, None
    except Exception as exc:  # one bad structure must not stop a 150k import
        return None, run_type, f"{type(exc).__name__}: {exc}"


def _correction_chunk(items: list) -> list[tuple[float | None, str, str | None]]:
    return [_correction_row(item) for item in items]


def mp2020_corrections_per_atom(
    structures: Sequence,
    n_jobs: int | None = None,
    chunk_size: int = 500,
) -> list[tuple[float | None, str, str | None]]:
    """MP2020 corrections of many structures: one (eV/atom | None, run_type, error | None) each.

    ``structures`` holds pymatgen Structures or their ``as_dict()`` dicts (dicts are cheaper to
    send to worker processes). ``n_jobs``: worker processes; None = all cores when there are at
    least ``MIN_STRUCTURES_FOR_POOL`` structures, else in-process; 1 = in-process. Workers are
    spawned (safe from threaded callers). A structure that fails gets ``None`` and its error.
    """
    items = list(structures)
    if n_jobs is None:
        n_jobs = (os.cpu_count() or 1) if len(items) >= MIN_STRUCTURES_FOR_POOL else 1
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    if n_jobs == 1 or len(items) <= 1:
        return _correction_chunk(items)
    chunk_size = max(1, min(chunk_size, math.ceil(len(items) / n_jobs)))
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
        return list(chain.from_iterable(pool.map(_correction_chunk, chunks)))


# --------------------------------------------------------------------------------------------
# Elemental references and formation energies
# --------------------------------------------------------------------------------------------
def default_elemental_refs_path() -> Path:
    """The MP elemental reference entries shipped with the package (``core.resources``)."""
    from mliap_tui.core.resources import elemental_refs_path

    return elemental_refs_path()


@lru_cache(maxsize=8)
def _load_elemental_refs_cached(path: str, mtime_ns: int) -> tuple[tuple[str, float], ...]:
    from pymatgen.entries.computed_entries import ComputedEntry

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        raw = json.load(fh)
    entries = raw.values() if isinstance(raw, dict) else raw
    best: dict[str, float] = {}
    for item in entries:
        with warnings.catch_warnings():  # "No Pauling electronegativity for Ne": harmless here
            warnings.simplefilter("ignore")
            entry = item if isinstance(item, ComputedEntry) else ComputedEntry.from_dict(item)
        comp = entry.composition
        if not comp.is_element:
            raise ValueError(f"{path}: {dict(comp.as_dict())} is not an elemental entry")
        element = comp.elements[0].symbol
        # energy_per_atom includes any energy adjustments stored with the entry (MP2020 applies
        # none to elements; the 2023-02-07 file carries correction = 0 for all 89 elements).
        e = float(entry.energy_per_atom)
        if element not in best or e < best[element]:
            best[element] = e
    if not best:
        raise ValueError(f"{path}: no elemental entries")
    return tuple(sorted(best.items()))


def load_elemental_refs(path: str | Path | None = None) -> dict[str, float]:
    """{element: MP2020 energy per atom (eV/atom) of its lowest-energy elemental polymorph}.

    ``path``: a (gzipped) JSON of ComputedEntry dicts, either {element: entry} or a list;
    default :func:`default_elemental_refs_path`. With several entries per element the lowest
    energy per atom wins.
    """
    path = Path(path) if path is not None else default_elemental_refs_path()
    if not path.is_file():
        raise FileNotFoundError(f"elemental reference file not found: {path}")
    return dict(_load_elemental_refs_cached(str(path.resolve()), path.stat().st_mtime_ns))


def _refs_or_default(refs: Mapping[str, float] | None) -> Mapping[str, float]:
    return load_elemental_refs() if refs is None else refs


def atomic_fractions(composition: Any) -> dict[str, float]:
    """{element: atomic fraction} of a {element: amount} dict, Composition, Structure or formula."""
    from pymatgen.core import Composition, Structure

    if isinstance(composition, Structure):
        composition = composition.composition
    if isinstance(composition, str):
        composition = Composition(composition)
    if isinstance(composition, Composition):
        amounts = {el.symbol: float(amt) for el, amt in composition.items()}
    else:
        amounts = defaultdict(float)
        for el, amt in composition.items():
            amounts[str(el)] += float(amt)
    if any(a < 0 for a in amounts.values()):
        raise ValueError(f"negative amount in composition {dict(amounts)}")
    total = sum(amounts.values())
    if not total > 0:
        raise ValueError(f"empty composition {dict(amounts)}")
    return {el: a / total for el, a in amounts.items() if a > 0}


def elemental_reference_energy_per_atom(composition: Any, refs: Mapping[str, float]) -> float:
    """sum_i x_i mu_i in eV/atom; raises MissingElementalReferenceError naming absent elements."""
    fractions = atomic_fractions(composition)
    missing = sorted(el for el in fractions if el not in refs)
    if missing:
        raise MissingElementalReferenceError(f"no elemental reference energy for {', '.join(missing)}")
    return float(sum(x * float(refs[el]) for el, x in fractions.items()))


def e_form_per_atom(composition: Any, e_per_atom: float, refs: Mapping[str, float] | None = None) -> float:
    """Formation energy (eV/atom): ``e_per_atom - sum_i x_i mu_i``.

    ``e_per_atom`` and ``refs`` must share a convention (mp2020 with the MP references).
    ``refs`` defaults to :func:`load_elemental_refs`.
    """
    return float(e_per_atom) - elemental_reference_energy_per_atom(composition, _refs_or_default(refs))


def rebuild_total_energies(e_form_per_atom_dft: float, composition: Any, refs: Mapping[str, float] | None = None) -> float:
    """Total energy per atom (eV/atom, mp2020) from a formation energy: ``e_form + sum_i x_i mu_i``.

    For MP-20/MPTS-52, which carry only formation energies (approximate: those splits predate the
    2023-02-07 references).
    """
    return float(e_form_per_atom_dft) + elemental_reference_energy_per_atom(composition, _refs_or_default(refs))


def elemental_reference_energy_per_atom_batch(
    species: Any, refs: Mapping[str, float] | None = None, on_missing: str = "raise"
) -> np.ndarray:
    """sum_i x_i mu_i (eV/atom) for each row of per-site element lists.

    ``species``: a sequence of per-site element-symbol lists (the ``species`` column) or a polars
    Series of List[str]. ``on_missing``: "raise" (MissingElementalReferenceError naming the
    elements) or "nan" (rows with an unknown element, and empty rows, give NaN).
    """
    if on_missing not in ("raise", "nan"):
        raise ValueError(f"on_missing must be 'raise' or 'nan', got {on_missing!r}")
    refs = _refs_or_default(refs)
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - polars is a dependency
        pl = None
    if pl is not None and isinstance(species, pl.Series):
        lengths = species.list.len().fill_null(0).to_numpy().astype(np.int64)
        flat = species.explode().drop_nulls().to_numpy().astype(str)
    else:
        rows = [list(s) if s is not None else [] for s in species]
        lengths = np.fromiter((len(s) for s in rows), dtype=np.int64, count=len(rows))
        flat = np.array(list(chain.from_iterable(rows)), dtype=str)
    n = len(lengths)
    if flat.size == 0:
        if on_missing == "raise" and (lengths == 0).any():
            raise ValueError("row with no sites: cannot compute a reference energy")
        return np.full(n, np.nan)
    uniq, inverse = np.unique(flat, return_inverse=True)
    missing = [el for el in uniq.tolist() if el not in refs]
    if missing and on_missing == "raise":
        raise MissingElementalReferenceError(f"no elemental reference energy for {', '.join(missing)}")
    mu = np.array([float(refs[el]) if el in refs else np.nan for el in uniq.tolist()])
    row = np.repeat(np.arange(n), lengths)
    sums = np.bincount(row, weights=mu[inverse], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / lengths
    if on_missing == "raise" and (lengths == 0).any():
        raise ValueError(f"{int((lengths == 0).sum())} row(s) with no sites: cannot compute a reference energy")
    out[lengths == 0] = np.nan
    return out


def e_form_per_atom_batch(
    species: Any, e_per_atom: Any, refs: Mapping[str, float] | None = None, on_missing: str = "raise"
) -> np.ndarray:
    """Vectorised :func:`e_form_per_atom` (eV/atom): ``e_per_atom - sum_i x_i mu_i`` per row.

    ``species`` as in :func:`elemental_reference_energy_per_atom_batch`; ``e_per_atom`` an array
    (NaN propagates).
    """
    e = np.asarray(e_per_atom, dtype=float)
    ref = elemental_reference_energy_per_atom_batch(species, refs, on_missing)
    if e.shape != ref.shape:
        raise ValueError(f"{len(ref)} species rows but {e.size} energies")
    return e - ref


def rebuild_total_energies_batch(
    e_form_per_atom_dft: Any, species: Any, refs: Mapping[str, float] | None = None, on_missing: str = "raise"
) -> np.ndarray:
    """Vectorised :func:`rebuild_total_energies` (eV/atom, mp2020): ``e_form + sum_i x_i mu_i``."""
    e = np.asarray(e_form_per_atom_dft, dtype=float)
    ref = elemental_reference_energy_per_atom_batch(species, refs, on_missing)
    if e.shape != ref.shape:
        raise ValueError(f"{len(ref)} species rows but {e.size} formation energies")
    return e + ref


# --------------------------------------------------------------------------------------------
# Energy above hull
# --------------------------------------------------------------------------------------------
def e_above_hull_fixed_hull(e_above_hull_dft, e_form_pred, e_form_dft):
    """Ehull against the fixed DFT hull (eV/atom): ``ehull_dft + (e_form_pred - e_form_dft)``.

    Works elementwise on floats, numpy arrays and polars Series/expressions. The result can be
    negative: the prediction lies below the DFT hull. All three inputs on the mp2020 convention.
    """
    return e_above_hull_dft + (e_form_pred - e_form_dft)


def _chemsys(symbols: Iterable[str]) -> frozenset[str]:
    return frozenset(symbols)


def e_above_hull_rebuilt(
    material_ids: Sequence[str],
    compositions: Sequence[Any],
    e_per_atom_pred: Sequence[float],
    refs: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Ehull (eV/atom, >= 0) of each entry against a hull rebuilt from the given energies.

    ``e_per_atom_pred`` must be on the mp2020 convention (total energies, not formation
    energies). For every element the given elemental entries are used when there are any
    (predicted elemental references); otherwise ``refs[element]`` (default: MP references) is
    added as the terminal. Entries of all chemical systems go into one pymatgen
    ``PatchedPhaseDiagram`` (a plain ``PhaseDiagram`` when they span a single system), so each
    entry competes with every given entry whose elements are a subset of its own. Entries with a
    non-finite energy, or an element that has neither a given elemental entry nor a reference,
    get NaN.
    """
    from pymatgen.analysis.phase_diagram import (
        PatchedPhaseDiagram,
        PDEntry,
        PhaseDiagram,
    )
    from pymatgen.core import Composition

    ids = [str(m) for m in material_ids]
    if not (len(ids) == len(compositions) == len(e_per_atom_pred)):
        raise ValueError(
            f"lengths differ: {len(ids)} ids, {len(compositions)} compositions, {len(e_per_atom_pred)} energies"
        )
    if len(set(ids)) != len(ids):
        dup = sorted({m for m in ids if ids.count(m) > 1})[:5]
        raise ValueError(f"duplicate material_id: {dup}")
    refs = _refs_or_default(refs)

    entries: dict[str, PDEntry] = {}
    given_elements: set[str] = set()
    for mid, comp, e in zip(ids, compositions, e_per_atom_pred):
        if e is None or not math.isfinite(float(e)):
            continue
        comp = Composition(comp) if not isinstance(comp, Composition) else comp
        if comp.num_atoms <= 0:
            raise ValueError(f"{mid}: empty composition")
        entries[mid] = PDEntry(comp, float(e) * comp.num_atoms, name=mid)
        if comp.is_element:
            given_elements.add(comp.elements[0].symbol)

    all_elements = {el.symbol for entry in entries.values() for el in entry.composition.elements}
    terminals = [
        PDEntry(Composition(el), float(refs[el]), name=f"ref:{el}")
        for el in sorted(all_elements - given_elements)
        if el in refs
    ]
    covered = given_elements | {t.composition.elements[0].symbol for t in terminals}
    usable = {
        mid: entry for mid, entry in entries.items() if {el.symbol for el in entry.composition.elements} <= covered
    }
    out = {mid: float("nan") for mid in ids}
    if not usable:
        return out

    pd_entries = list(usable.values()) + terminals
    systems = {_chemsys(el.symbol for el in entry.composition.elements) for entry in pd_entries}
    maximal = [s for s in systems if not any(s < other for other in systems)]
    if len(maximal) == 1:
        diagram = PhaseDiagram(pd_entries)
    else:
        diagram = PatchedPhaseDiagram(pd_entries)
    with warnings.catch_warnings():
        # a compound whose system is only covered by its elements: pymatgen falls back to an
        # exact SLSQP decomposition and says so for every such entry; the result is right
        warnings.filterwarnings("ignore", message="No suitable PhaseDiagrams found")
        for mid, entry in usable.items():
            out[mid] = float(diagram.get_e_above_hull(entry))
    return out
