"""The filter language shared by the explorer and ``mliap-tui export --filter``.

A filter is a whitespace-separated list of clauses; all clauses must hold (AND). A clause is
``KEY OP VALUE`` with no spaces inside (``el=Ti,O``, not ``el=Ti, O``), or a bare flag word.

Grammar
-------
::

    filter   := clause ( WS clause )*
    clause   := KEY OP VALUE | FLAG
    OP       := '=' | '!=' | '<' | '<=' | '>' | '>='
    VALUE    := item ( ',' item )*            (a list means "any of"; '!=' means "none of")
    item     := word | number | range
    range    := [number] '..' [number]        (inclusive at both ends; either end may be omitted)
    number   := decimal [ 'eV' | 'meV' ] [ '/atom' ]   (energies only; no unit = eV/atom)
    FLAG     := 'failed' | 'ok'

The clauses, with examples, are :data:`FILTER_REFERENCE` (below): the app's help, ``export
--help`` and this documentation are all made from it.

Semantics
---------
Material clauses select crystals. Row clauses (``err:``, ``serr:``, ``failed``/``ok``) select
(material, model) evaluations, among the models in scope (``model=``, default every model).
``match=`` says how they decide whether a *material* is kept:

* ``match=any`` (default): at least one model in scope matches every row clause;
* ``match=all``: every model in scope that has a result matches;
* ``match=selected``: the model selected in the explorer (``m``) matches (explorer only; in
  ``export`` name the model with ``model=``).

On the tidy error table (one row per material, model, mode; :func:`apply_filter`, ``export``'s
default layout) the rows of the kept materials that match the row clauses are kept. On a
one-row-per-material view (the explorer's table, ``export --layout wide``) the kept materials are
shown with every model's columns, and the cells of models that do not match are dimmed
(:meth:`Filter.wide_mask`).
"""



from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import polars as pl

from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.core.vocab import (
    CRYSTAL_SYSTEMS,
    DOF_LABELS,
    METRIC_ALIASES,
    METRIC_LABEL,
    METRIC_SHORT,
    METRICS,
)

ColumnResolver = Callable[[str], pl.Expr]

#: An unsuffixed energy above this (eV/atom) is almost surely meV typed without the unit.
PLAUSIBLE_ENERGY_EV_PER_ATOM = 5.0

#: modes the filter accepts: the evaluation modes, and "all"
MODES = ("static", "relax", "all")
DEFAULT_MODE = "static"

#: The language, clause by clause: (section, [(example, meaning), ...]). Every help text is made
#: from this list (the app's help screen, ``export --help``).
FILTER_REFERENCE: list[tuple[str, list[tuple[str, str]]]] = [
    ("material clauses (select crystals)", [
        ("sg=136  sg=195..230  sg=P4_2/mnm", "space group by number, range or Hermann-Mauguin symbol"),
        ("cs=tetragonal  cs=cub,hex", "crystal system(s); a unique prefix works"),
        ("dof=3..10  dof<5", "total DOF (lattice + Wyckoff); also ldof= lattice, wdof= Wyckoff, pdof= polar DOF, "
         "nsites= sites in the cell"),
        ("el=Ti,O  elmode=any|only  el!=Pb", "elements: contains all of them (default), any of them, only them; "
         "el!= excludes"),
        ("chemsys=O-Ti  formula=TiO2  id=mp-149", "chemical system (any element order), reduced formula, material ids"),
        ("ehull=..0.05  ehull=..50meV  eform=-1..0", "DFT energy above hull / formation energy (eV/atom; meV converts)"),
    ]),
    ("model and row clauses (select evaluations)", [
        ("model=chgnet-0.3.0  model=sevennet*", "models in scope, comma list; * is a wildcard"),
        ("err:ehull>50meV  err:eform=20meV..100meV", "absolute error |prediction - DFT| of a metric (e, eform, ehull)"),
        ("serr:ehull<-0.05", "signed error prediction - DFT (negative = underpredicted)"),
        ("failed  ok", "only failed / only successful evaluations"),
        ("match=any|all|selected", "a material is kept when any model in scope matches the row clauses (default), "
         "all of them, or the model selected with m"),
        ("mode=static|relax", "evaluation mode (static is the default)"),
    ]),
    ("force-table clauses (the Forces screen)", [
        ("data=si-vacancy  data=si-*", "dataset(s)"),
        ("slope<0.8", "per-structure slope of MLIP on DFT force components"),
        ("mae>0.2  cmae<0.1  b>0.01  r2<0.9", "force MAE, slope-corrected MAE, intercept (eV/Å), R² of the fit"),
    ]),
]


def filter_help_text(width: int = 100, sections: Sequence[str] | None = None) -> str:
    """The filter language as plain text: one line per clause, examples then meaning.
    ``sections``: the titles of FILTER_REFERENCE to include (default: all)."""
    import textwrap

    lines = ["A filter is clauses separated by spaces; all must hold (AND). No spaces inside a clause.",
             "Lists (a,b) mean any of them; ranges a..b include both ends; energies are eV/atom unless meV."]
    col = max(len(example) for _, rows in FILTER_REFERENCE for example, _ in rows) + 2
    side_by_side = width - col - 2 >= 40  # else: the example on its line, the meaning below it
    for section, rows in FILTER_REFERENCE:
        if sections is not None and section not in sections:
            continue
        lines += ["", section + ":"]
        for example, meaning in rows:
            if side_by_side:
                wrapped = textwrap.wrap(meaning, width - col - 2) or [""]
                lines.append(f"  {example:<{col}}{wrapped[0]}")
                lines += [" " * (col + 2) + rest for rest in wrapped[1:]]
            else:
                lines.append(f"  {example}")
                lines += ["      " + rest for rest in textwrap.wrap(meaning, width - 6)]
    return "\n".join(lines)


# key alias -> canonical key
_KEYS = {
    "sg": "sg", "spacegroup": "sg", "spg": "sg",
    "cs": "cs", "system": "cs", "crystal_system": "cs",
    "dof": "dof", "total_dof": "dof",
    "ldof": "ldof", "lattice_dof": "ldof",
    "wdof": "wdof", "wyckoff_dof": "wdof",
    "pdof": "pdof", "polar_dof": "pdof",
    "nsites": "nsites", "n_sites": "nsites",
    "el": "el", "elements": "el", "element": "el",
    "elmode": "elmode",
    "match": "match",
    "chemsys": "chemsys",
    "formula": "formula",
    "id": "id", "material_id": "id",
    "ehull": "ehull", "e_above_hull": "ehull",
    "eform": "eform", "e_form": "eform",
    "model": "model", "models": "model",
    "mode": "mode",
    "status": "status",
    "data": "data", "dataset": "data",
    "slope": "slope", "mae": "mae", "cmae": "cmae", "r2": "r2", "b": "b", "intercept": "b",
}
_INT_COLUMNS = {"dof": "total_dof", "ldof": "lattice_dof", "wdof": "wyckoff_dof", "pdof": "polar_dof", "nsites": "n_sites"}
_INT_LABELS = {**{k: DOF_LABELS[c] for k, c in _INT_COLUMNS.items() if c in DOF_LABELS}, "nsites": "sites"}
_ENERGY_COLUMNS = {"ehull": "e_above_hull_dft_mp2020", "eform": "e_form_per_atom_dft_mp2020"}
_ENERGY_LABELS = {"ehull": "DFT Ehull", "eform": "DFT Eform"}
#: Keys of the per-structure force table (the Forces screen): column, label with unit.
_FORCE_COLUMNS = {"slope": "slope_origin", "mae": "mae_ev_per_ang", "cmae": "cmae_ev_per_ang", "r2": "r2",
                  "b": "intercept_ev_per_ang"}
_FORCE_LABELS = {"slope": "force slope", "mae": "force MAE (eV/Å)", "cmae": "force cMAE (eV/Å)", "r2": "force R²",
                 "b": "force intercept (eV/Å)"}
_CLAUSE_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z_][A-Za-z0-9_]*)?)(?P<op>!=|<=|>=|=|<|>)(?P<value>.*)$")
_NUMBER_RE = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?P<unit>mev|ev)?(?:/atom)?$", re.IGNORECASE)
_FLAGS = {"failed", "ok"}
_MATERIAL_KEYS = {"sg", "cs", "dof", "ldof", "wdof", "pdof", "nsites", "el", "chemsys", "formula", "id", "ehull", "eform"}


class FilterError(ValueError):
    """A filter string that cannot be parsed, with the offending clause and a hint.

    ``position`` is the character offset of the offending clause in the filter text (0 for a
    problem with the filter as a whole) and ``length`` its length, so a UI can point at it.
    """

    def __init__(self, message: str, position: int = 0, length: int = 0) -> None:
        super().__init__(message)
        self.position = position
        self.length = length


@dataclass(frozen=True, eq=False)
class Clause:
    """One parsed clause. ``scope`` is 'material', 'row', 'model', 'mode' or 'option'."""

    key: str
    text: str
    scope: str
    describe: str
    predicate: Callable[[ColumnResolver], pl.Expr] | None = None
    columns: tuple[str, ...] = ()
    values: tuple = ()


def _ok_all(exprs: Sequence[pl.Expr]) -> pl.Expr:
    if not exprs:
        return pl.lit(True)
    return pl.all_horizontal(list(exprs)) if len(exprs) > 1 else exprs[0]


def _ok_any(exprs: Sequence[pl.Expr]) -> pl.Expr:
    if not exprs:
        return pl.lit(False)
    return pl.any_horizontal(list(exprs)) if len(exprs) > 1 else exprs[0]


@dataclass(frozen=True)
class Filter:
    """A parsed filter. Build with :func:`parse_filter`; turn into polars with :meth:`expr`."""

    clauses: tuple[Clause, ...] = field(default=())

    # ---- introspection -------------------------------------------------------------------
    @property
    def text(self) -> str:
        """Canonical text (parses back to the same filter)."""
        return " ".join(c.text for c in self.clauses)

    def __bool__(self) -> bool:
        return bool(self.clauses)

    def _of(self, scope: str) -> list[Clause]:
        return [c for c in self.clauses if c.scope == scope]

    @property
    def mode(self) -> str | None:
        """Evaluation mode the filter selects: 'static' unless ``mode=`` says otherwise; None = all."""
        modes = self._of("mode")
        value = modes[-1].values[0] if modes else DEFAULT_MODE
        return None if value == "all" else value

    @property
    def model_patterns(self) -> tuple[str, ...] | None:
        """Model ids/patterns of ``model=`` clauses (None when no model clause)."""
        models = self._of("model")
        if not models:
            return None
        return tuple(v for c in models for v in c.values)

    @property
    def has_row_clauses(self) -> bool:
        return bool(self._of("row"))

    @property
    def row_metrics(self) -> tuple[str, ...]:
        """Metrics referenced by err:/serr: clauses."""
        return tuple(dict.fromkeys(c.values[0] for c in self._of("row") if c.key in ("err", "serr")))

    def required_columns(self) -> set[str]:
        return {col for c in self.clauses for col in c.columns}

    def select_models(self, available: Iterable[str]) -> list[str]:
        """The models of ``available`` (in that order) that the model clauses select."""
        available = list(available)
        patterns = self.model_patterns
        if patterns is None:
            return available
        return [m for m in available if any(_glob_match(m, p) for p in patterns)]

    def describe(self) -> str:
        """One human-readable line, energies in meV/atom (and how row clauses decide)."""
        if not self.clauses:
            return "no filter"
        text = " · ".join(c.describe for c in self.clauses if c.scope != "option") or "no filter"
        if self.has_row_clauses:
            text += {"any": " · kept if any model matches", "all": " · kept if every model matches",
                     "selected": " · kept if the selected model matches"}[self.match]
        return text

    # ---- polars --------------------------------------------------------------------------
    def material_expr(self, col: ColumnResolver = pl.col) -> pl.Expr:
        """Material clauses only (columns of the materials table)."""
        return _ok_all([c.predicate(col) for c in self._of("material")])

    def row_expr(self, col: ColumnResolver = pl.col) -> pl.Expr:
        """Row clauses only (``status`` and ``d_*`` error columns, resolved through ``col``)."""
        return _ok_all([c.predicate(col) for c in self._of("row")])

    def model_expr(self, col: ColumnResolver = pl.col) -> pl.Expr:
        patterns = self.model_patterns
        if patterns is None:
            return pl.lit(True)
        exact = [p for p in patterns if not any(ch in p for ch in "*?")]
        globs = [p for p in patterns if p not in exact]
        parts = []
        if exact:
            parts.append(col("model").is_in(exact))
        for glob in globs:
            parts.append(col("model").str.contains(_glob_regex(glob)))
        return _ok_any(parts)

    def expr(self, col: ColumnResolver = pl.col, *, by_mode: bool = True) -> pl.Expr:
        """The whole filter over the tidy error table (one row per material, model, mode).

        ``by_mode=False`` leaves the mode out (a table without a ``mode`` column).
        """
        parts = [self.material_expr(col), self.model_expr(col), self.row_expr(col)]
        if by_mode and self.mode is not None:
            parts.append(col("mode") == self.mode)
        return _ok_all(parts)

    @property
    def match(self) -> str:
        """How row clauses decide for a material: 'any' (default), 'all' or 'selected'."""
        clauses = self._of("option")
        values = [c.values[0] for c in clauses if c.key == "match"]
        return values[-1] if values else "any"

    def scope_models(self, available: Iterable[str], selected: str | None = None) -> list[str]:
        """The models whose rows decide for a material: ``model=`` ones, or only ``selected``
        with ``match=selected`` (then a FilterError without a selection)."""
        models = self.select_models(available)
        if self.match == "selected":
            if selected is None:
                raise FilterError("match=selected uses the model selected in the explorer (m); elsewhere name it with model=")
            models = [m for m in models if m == selected]
        return models

    def wide_mask(self, models: Sequence[str], column: Callable[[str, str], str] | None = None,
                  selected: str | None = None) -> pl.Expr:
        """Material mask over a one-row-per-material table with per-model columns.

        ``column(name, model)`` names the per-model columns (default ``f"{name}@{model}"``);
        ``models`` are the models present in the table; ``selected`` the explorer's selected
        model (for ``match=selected``). See the module docstring for the semantics.
        """
        column = column or wide_column
        mat = self.material_expr()
        if self.model_patterns is None and not self.has_row_clauses and self.match != "selected":
            return mat
        scope = self.scope_models(models, selected)
        if self.match == "all" and self.has_row_clauses:
            # every model in scope that has a result matches (and at least one has a result)
            has = [pl.col(column("status", m)).is_not_null() for m in scope]
            each = [~pl.col(column("status", m)).is_not_null() | self.model_row_mask(m, column) for m in scope]
            return mat & _ok_any(has) & _ok_all(each)
        return mat & _ok_any([self.model_row_mask(m, column) for m in scope])

    def model_row_mask(self, model: str, column: Callable[[str, str], str] | None = None) -> pl.Expr:
        """On a wide table: the row of ``model`` exists and matches the row clauses."""
        column = column or wide_column
        return pl.col(column("status", model)).is_not_null() & self.row_expr(lambda name: pl.col(column(name, model)))

    # ---- editing -------------------------------------------------------------------------
    def without(self, *keys: str) -> "Filter":
        keys = {_KEYS.get(k, k) for k in keys}
        return replace(self, clauses=tuple(c for c in self.clauses if c.key not in keys))

    def with_text(self, text: str, **kwargs) -> "Filter":
        """This filter with the clauses of ``text`` added, replacing clauses of the same key."""
        extra = parse_filter(text, **kwargs)
        keys = {c.key for c in extra.clauses}
        if "el" in keys:  # an element list and its mode travel together
            keys.add("elmode")
        kept = tuple(c for c in self.clauses if c.key not in keys)
        return parse_filter(" ".join([c.text for c in kept] + [c.text for c in extra.clauses]), **kwargs)


def _glob_regex(pattern: str) -> str:
    """Anchored regex of a model pattern where '*' is any text and '?' one character."""
    return "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"


def _glob_match(name: str, pattern: str) -> bool:
    return re.match(_glob_regex(pattern), name) is not None


def wide_column(name: str, model: str) -> str:
    """Name of a per-model column of the wide table: ``d_e_above_hull@chgnet-0.3.0``."""
    return f"{name}@{model}"


# ---- value parsing -----------------------------------------------------------------------------
def _split(value: str, token: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value or any(not v for v in items):
        key = re.split(r"!=|<=|>=|=|<|>", token, maxsplit=1)[0]
        raise FilterError(f"{token!r}: empty list item; write lists with commas and no spaces, e.g. {key}=A,B")
    return items


def _int(text: str, token: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FilterError(f"{token!r}: {text!r} is not an integer") from None


def _float(text: str, token: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FilterError(f"{token!r}: {text!r} is not a number") from None
    if value != value:
        raise FilterError(f"{token!r}: NaN is not a threshold")
    return value


def _energy(text: str, token: str) -> float:
    """Energy in eV/atom from '0.05', '0.05eV', '50meV' (case-insensitive, optional '/atom')."""
    m = _NUMBER_RE.match(text.strip())
    if not m:
        raise FilterError(f"{token!r}: {text!r} is not an energy (write 0.05 for eV/atom or 50meV for meV/atom)")
    value = float(m["num"])
    unit = (m["unit"] or "").lower()
    if unit == "mev":
        return value / MEV_PER_EV
    if not unit and abs(value) > PLAUSIBLE_ENERGY_EV_PER_ATOM:
        raise FilterError(
            f"{token!r}: {value:g} eV/atom is not a plausible energy here; "
            f"write {m['num']}meV for meV/atom (numbers without a unit are eV/atom)"
        )
    return value


def _range(text: str, token: str, conv: Callable[[str, str], float | int]) -> tuple:
    """'a..b', '..b', 'a..' or 'a' -> (lo, hi) with None for an open end."""
    if ".." in text:
        lo_s, _, hi_s = text.partition("..")
        lo = conv(lo_s, token) if lo_s else None
        hi = conv(hi_s, token) if hi_s else None
        if lo is None and hi is None:
            raise FilterError(f"{token!r}: '..' needs at least one end (e.g. 3..10, ..10, 3..)")
        if lo is not None and hi is not None and lo > hi:
            raise FilterError(f"{token!r}: empty range {text!r} (lower end above upper end)")
        return (lo, hi)
    v = conv(text, token)
    return (v, v)


def _range_expr(e: pl.Expr, lo, hi) -> pl.Expr:
    if lo is not None and hi is not None:
        return e.is_between(lo, hi, closed="both") if lo != hi else (e == lo)
    if lo is not None:
        return e >= lo
    return e <= hi


def _compare(e: pl.Expr, op: str, v) -> pl.Expr:
    return {"<": e < v, "<=": e <= v, ">": e > v, ">=": e >= v}[op]


def _numeric_clause(e_of: Callable[[ColumnResolver], pl.Expr], op: str, value: str, token: str, conv) -> tuple[Callable, list]:
    """Predicate for ``op value`` on a numeric column, value a list of ranges for =/!=."""
    if op in ("<", "<=", ">", ">="):
        if "," in value or ".." in value:
            raise FilterError(f"{token!r}: with {op} give one number, or use = with a range (a..b)")
        v = conv(value, token)
        return (lambda col: _compare(e_of(col), op, v)), [(op, v)]
    ranges = [_range(item, token, conv) for item in _split(value, token)]

    def pred(col: ColumnResolver) -> pl.Expr:
        hit = _ok_any([_range_expr(e_of(col), lo, hi) for lo, hi in ranges])
        return ~hit if op == "!=" else hit

    return pred, ranges


def _fmt_num(v, energy: bool) -> str:
    if v is None:
        return ""
    return f"{v * MEV_PER_EV:g}" if energy else f"{v:g}"


def _describe_numeric(label: str, op: str, spec: list, energy: bool) -> str:
    unit = " meV/atom" if energy else ""
    if op in ("<", "<=", ">", ">="):
        sym = {"<=": "≤", ">=": "≥"}.get(op, op)
        return f"{label} {sym} {_fmt_num(spec[0][1], energy)}{unit}"
    parts = []
    for lo, hi in spec:
        if lo is not None and hi is not None:
            parts.append(_fmt_num(lo, energy) if lo == hi else f"{_fmt_num(lo, energy)}–{_fmt_num(hi, energy)}")
        elif lo is not None:
            parts.append(f"≥ {_fmt_num(lo, energy)}")
        else:
            parts.append(f"≤ {_fmt_num(hi, energy)}")
    neg = "not " if op == "!=" else ""
    return f"{label} {neg}{' or '.join(parts)}{unit}"


def _norm_symbol(symbol: str) -> str:
    return symbol.replace(" ", "").replace("_", "").lower()


def _spacegroup_type(hall: int):
    import warnings

    import spglib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib's old-error-handling notice
        return spglib.get_spacegroup_type(hall)


@lru_cache(maxsize=1)
def _spacegroup_symbols() -> dict[str, frozenset[int]]:
    """Normalised Hermann-Mauguin symbol (every setting spglib knows) -> space-group numbers."""
    table: dict[str, set[int]] = {}
    for hall in range(1, 531):
        sg = _spacegroup_type(hall)
        if sg is None:
            continue
        for name in (sg.international_short, sg.international_full, sg.international):
            if name:
                table.setdefault(_norm_symbol(name.split("(")[0]), set()).add(int(sg.number))
    return {k: frozenset(v) for k, v in table.items()}


@lru_cache(maxsize=1)
def _standard_symbols() -> dict[int, str]:
    out: dict[int, str] = {}
    for hall in range(1, 531):
        sg = _spacegroup_type(hall)
        if sg is not None:
            out.setdefault(int(sg.number), sg.international_short)
    return out


def spacegroup_symbol(number: int) -> str:
    """Short Hermann-Mauguin symbol of a space-group number (standard setting)."""
    return _standard_symbols().get(int(number), "?")


def _spacegroup_item(item: str, token: str) -> tuple[int, int]:
    if re.fullmatch(r"\d*\.\.\d*|\d+", item):
        lo, hi = _range(item, token, _int)
        for v in (lo, hi):
            if v is not None and not 1 <= v <= 230:
                raise FilterError(f"{token!r}: space-group numbers run from 1 to 230, got {v}")
        return (lo, hi)
    numbers = _spacegroup_symbols().get(_norm_symbol(item))
    if not numbers:
        raise FilterError(f"{token!r}: unknown space-group symbol {item!r} (try a number 1-230 or e.g. P4_2/mnm, Fm-3m)")
    if len(numbers) > 1:
        raise FilterError(f"{token!r}: symbol {item!r} is ambiguous (groups {sorted(numbers)}); use the number")
    n = next(iter(numbers))
    return (n, n)


def _crystal_system(item: str, token: str) -> str:
    item = item.lower()
    hits = [cs for cs in CRYSTAL_SYSTEMS if cs.startswith(item)]
    if item in CRYSTAL_SYSTEMS:
        return item
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FilterError(f"{token!r}: unknown crystal system {item!r}; one of {', '.join(CRYSTAL_SYSTEMS)}")
    raise FilterError(f"{token!r}: {item!r} is ambiguous ({', '.join(hits)})")


@lru_cache(maxsize=1)
def _element_symbols() -> frozenset[str]:
    from ase.data import chemical_symbols

    return frozenset(chemical_symbols[1:])


def _element(item: str, token: str) -> str:
    symbol = item[:1].upper() + item[1:].lower()
    if symbol not in _element_symbols():
        raise FilterError(f"{token!r}: {item!r} is not an element symbol")
    return symbol


def _metric(name: str, token: str) -> str:
    metric = METRIC_ALIASES.get(name.lower())
    if metric is None:
        raise FilterError(f"{token!r}: unknown metric {name!r}; use e, eform, ehull or ehull_rebuilt")
    return metric


# ---- parsing -----------------------------------------------------------------------------------
def _parse_clause(token: str, known_models: Sequence[str] | None, elmode: str) -> Clause:
    low = token.lower()
    if low in _FLAGS:
        status = "failed" if low == "failed" else "ok"
        return Clause(
            key="status", text=low, scope="row", describe=f"{status} evaluations only",
            predicate=lambda col: col("status") == status, columns=("status",), values=(status,),
        )
    m = _CLAUSE_RE.match(token)
    if not m:
        raise FilterError(
            f"cannot read {token!r}: a clause is KEY=VALUE (e.g. sg=136, dof=3..10, err:ehull>50meV) or "
            "the word 'failed'/'ok'; values may not contain spaces"
        )
    raw_key, op, value = m["key"].lower(), m["op"], m["value"]
    if not value:
        raise FilterError(f"{token!r}: missing value after {op!r}")

    # err:METRIC / serr:METRIC
    if ":" in raw_key:
        kind, _, metric_name = raw_key.partition(":")
        if kind not in ("err", "serr"):
            raise FilterError(f"{token!r}: unknown key {kind!r}: (use err:METRIC for |error|, serr:METRIC for signed error)")
        metric = _metric(metric_name, token)
        d_col = METRICS[metric][2]
        absolute = kind == "err"

        def e_of(col: ColumnResolver, d_col=d_col, absolute=absolute) -> pl.Expr:
            e = col(d_col)
            return e.abs() if absolute else e

        pred, spec = _numeric_clause(e_of, op, value, token, _energy)
        label = f"|Δ {METRIC_LABEL[metric]}|" if absolute else f"Δ {METRIC_LABEL[metric]} (signed)"
        return Clause(
            key=kind, text=f"{kind}:{METRIC_SHORT[metric]}{op}{value}", scope="row",
            describe=_describe_numeric(label, op, spec, energy=True),
            predicate=lambda col, pred=pred: pred(col) & col(d_col).is_not_null(),
            columns=(d_col,), values=(metric,),
        )

    key = _KEYS.get(raw_key)
    if key is None:
        raise FilterError(
            f"{token!r}: unknown key {raw_key!r}; keys: sg cs dof ldof wdof pdof nsites el elmode chemsys formula "
            "id ehull eform model mode err:METRIC serr:METRIC, and the words failed / ok (force tables also: "
            "data slope mae cmae r2 b)"
        )
    text = f"{key}{op}{value}"
    list_ops = ("=", "!=")
    if key in ("cs", "el", "chemsys", "formula", "id", "model", "mode", "elmode", "status", "sg", "data") and op not in list_ops:
        raise FilterError(f"{token!r}: {key} takes = or != (got {op!r})")

    if key == "sg":
        ranges = [_spacegroup_item(item, token) for item in _split(value, token)]

        def pred(col: ColumnResolver) -> pl.Expr:
            hit = _ok_any([_range_expr(col("spacegroup_number"), lo, hi) for lo, hi in ranges])
            return ~hit if op == "!=" else hit

        described = _describe_numeric("space group", op, ranges, False)
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            described += f" ({spacegroup_symbol(ranges[0][0])})"
        return Clause(key, text, "material", described,
                      pred, ("spacegroup_number",), tuple(ranges))
    if key == "cs":
        systems = tuple(dict.fromkeys(_crystal_system(item, token) for item in _split(value, token)))

        def pred(col: ColumnResolver) -> pl.Expr:
            hit = col("crystal_system").is_in(list(systems))
            return ~hit if op == "!=" else hit

        neg = "not " if op == "!=" else ""
        return Clause(key, f"cs{op}{','.join(systems)}", "material", f"crystal system {neg}{' or '.join(systems)}",
                      pred, ("crystal_system",), systems)
    if key in _INT_COLUMNS:
        column = _INT_COLUMNS[key]
        pred, spec = _numeric_clause(lambda col: col(column), op, value, token, _int)
        return Clause(key, text, "material", _describe_numeric(_INT_LABELS[key], op, spec, False), pred, (column,), tuple(spec))
    if key in _FORCE_COLUMNS:
        column = _FORCE_COLUMNS[key]
        pred, spec = _numeric_clause(lambda col: col(column), op, value, token, _float)
        return Clause(key, text, "row", _describe_numeric(_FORCE_LABELS[key], op, spec, False), pred, (column,), tuple(spec))
    if key == "data":
        names = tuple(_split(value, token))

        def pred(col: ColumnResolver) -> pl.Expr:
            hit = _ok_any([col("dataset").str.contains(_glob_regex(n)) for n in names])
            return ~hit if op == "!=" else hit

        neg = "not " if op == "!=" else ""
        return Clause(key, text, "material", f"dataset {neg}{' or '.join(names)}", pred, ("dataset",), names)
    if key in _ENERGY_COLUMNS:
        column = _ENERGY_COLUMNS[key]
        pred, spec = _numeric_clause(lambda col: col(column), op, value, token, _energy)
        return Clause(key, text, "material", _describe_numeric(_ENERGY_LABELS[key], op, spec, True), pred, (column,), tuple(spec))
    if key == "el":
        elements = tuple(dict.fromkeys(_element(item, token) for item in _split(value, token)))
        mode = "none" if op == "!=" else elmode

        def pred(col: ColumnResolver) -> pl.Expr:
            has = [col("elements").list.contains(e) for e in elements]
            if mode == "all":
                return _ok_all(has)
            if mode == "any":
                return _ok_any(has)
            if mode == "none":
                return ~_ok_any(has)
            return col("elements").list.eval(pl.element().is_in(list(elements))).list.all()

        words = {"all": "contain all of", "any": "contain any of", "only": "contain only", "none": "contain none of"}
        return Clause(key, f"el{op}{','.join(elements)}", "material", f"elements {words[mode]} {', '.join(elements)}",
                      pred, ("elements",), elements)
    if key == "match":
        mode = value.lower()
        if op != "=" or mode not in ("any", "all", "selected"):
            raise FilterError(f"{token!r}: match is any (default), all or selected")
        return Clause(key, f"match={mode}", "option", f"match {mode}", values=(mode,))
    if key == "elmode":
        if value.lower() not in ("all", "any", "only"):
            raise FilterError(f"{token!r}: elmode is all, any or only")
        return Clause(key, f"elmode={value.lower()}", "option", f"element mode {value.lower()}", values=(value.lower(),))
    if key == "chemsys":
        systems = tuple(
            "-".join(sorted(_element(e, token) for e in item.split("-"))) for item in _split(value, token)
        )

        def pred(col: ColumnResolver) -> pl.Expr:
            hit = col("chemsys").is_in(list(systems))
            return ~hit if op == "!=" else hit

        neg = "not " if op == "!=" else ""
        return Clause(key, f"chemsys{op}{','.join(systems)}", "material", f"chemical system {neg}{' or '.join(systems)}",
                      pred, ("chemsys",), systems)
    if key in ("formula", "id"):
        column = "formula" if key == "formula" else "material_id"
        items = tuple(_split(value, token))

        def pred(col: ColumnResolver) -> pl.Expr:
            hit = col(column).is_in(list(items))
            return ~hit if op == "!=" else hit

        neg = "not " if op == "!=" else ""
        label = "formula" if key == "formula" else "material"
        return Clause(key, text, "material", f"{label} {neg}{' or '.join(items)}", pred, (column,), items)
    if key == "model":
        if op == "!=":
            raise FilterError(f"{token!r}: model takes = (list the models to keep)")
        patterns = tuple(_split(value, token))
        if known_models is not None:
            for p in patterns:
                if not any(_glob_match(m, p) for m in known_models):
                    raise FilterError(f"{token!r}: no model {p!r} in this dataset; known: {', '.join(known_models) or 'none'}")
        return Clause(key, text, "model", f"model {' or '.join(patterns)}", columns=("model",), values=patterns)
    if key == "mode":
        mode_value = value.lower()
        if mode_value not in MODES or op != "=":
            raise FilterError(f"{token!r}: mode is static, relax or all")
        return Clause(key, f"mode={mode_value}", "mode", f"mode {mode_value}", columns=("mode",), values=(mode_value,))
    if key == "status":
        status = value.lower()
        if status not in ("ok", "failed"):
            raise FilterError(f"{token!r}: status is ok or failed")
        if op == "!=":
            status = "ok" if status == "failed" else "failed"
        return _parse_clause(status, known_models, elmode)
    raise FilterError(f"{token!r}: unhandled key {key!r}")  # pragma: no cover


def parse_filter(text: str | None, known_models: Sequence[str] | None = None) -> Filter:
    """Parse a filter string (see the module docstring). Raises FilterError with a hint.

    ``known_models``: when given, ``model=`` patterns must match one of them.
    """
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+", text or "")]
    elmode = "all"
    for _, token in spans:
        m = _CLAUSE_RE.match(token)
        if m and _KEYS.get(m["key"].lower()) == "elmode":
            elmode = m["value"].lower()
    clauses = []
    for start, token in spans:
        try:
            clauses.append(_parse_clause(token, known_models, elmode))
        except FilterError as exc:
            raise FilterError(str(exc), start, len(token)) from None
    el_at = [start for (start, _), c in zip(spans, clauses) if c.key == "el"]
    if len(el_at) > 1:
        raise FilterError("give elements in one clause (el=Ti,O) and combine them with elmode=all|any|only", el_at[1])
    elmode_at = [start for (start, _), c in zip(spans, clauses) if c.key == "elmode"]
    if elmode_at and not el_at:
        raise FilterError("elmode= needs an el= clause (e.g. el=Ti,O elmode=any)", elmode_at[0])
    return Filter(tuple(clauses))


def check_columns(flt: Filter, columns: Iterable[str]) -> None:
    """Raise FilterError when the filter needs columns the table does not have."""
    missing = sorted(flt.required_columns() - set(columns))
    if missing:
        hint = ""
        if any("rebuilt" in c for c in missing):
            hint = " (the rebuilt-hull metric is computed by `mliap-tui summary`/`export --rebuilt-hull`, not in this table)"
        raise FilterError(f"filter {flt.text!r} needs column(s) {', '.join(missing)} that this table lacks{hint}")


def apply_filter(table: pl.DataFrame | pl.LazyFrame, flt: Filter | str) -> pl.DataFrame | pl.LazyFrame:
    """Rows of the tidy error table (:func:`mliap_tui.analysis.errors.error_table`) matching ``flt``."""
    if isinstance(flt, str):
        flt = parse_filter(flt)
    columns = table.collect_schema().names() if isinstance(table, pl.LazyFrame) else table.columns
    check_columns(flt, columns)
    if flt.match == "selected":
        raise FilterError("match=selected uses the model selected in the explorer (m); here name it with model=")
    out = table.filter(flt.expr(by_mode="mode" in columns))
    if flt.match == "all" and flt.has_row_clauses and "material_id" in columns:
        # keep a material's rows only if every in-scope model with a result matches
        in_scope = table.filter(_ok_all([flt.material_expr(), flt.model_expr()] +
                                        ([pl.col("mode") == flt.mode] if flt.mode and "mode" in columns else [])))
        bad = in_scope.filter(~flt.row_expr()).select("material_id").unique()
        out = out.join(bad, on="material_id", how="anti")
    return out


GRAMMAR_HELP = filter_help_text()
