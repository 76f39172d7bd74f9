"""The full Materials Project (~150k crystals) on the GGA/GGA+U hull, through the ``mp-api`` client.

Needs ``pip install 'mliap-tui[mp]'`` and an API key (``--api-key`` or ``$MP_API_KEY``; free at
https://materialsproject.org/api). ``mp_api`` is imported lazily, so the rest of the package
works without it.

What is fetched, and why
- Since the 2022.10 database, ``materials.summary`` reports thermo fields of MP's mixing scheme
  (GGA/GGA+U with r2SCAN where available), whose corrected-minus-uncorrected energies are not
  MP2020 corrections. The models audited here were trained on GGA/GGA+U (MP2020) data, so the
  reference is the **GGA/GGA+U thermo document** of each material (``materials.thermo`` with
  thermo type ``GGA_GGA+U``):

  - ``energy_per_atom``             -> ``e_per_atom_dft_mp2020`` (MP2020-corrected total energy)
  - ``uncorrected_energy_per_atom`` -> ``e_per_atom_dft_raw``
  - ``formation_energy_per_atom``   -> ``e_form_per_atom_dft_mp2020``
  - ``energy_above_hull``           -> ``e_above_hull_dft_mp2020`` (on the GGA/GGA+U hull)
  - ``entries[energy_type]``: the ComputedStructureEntry those energies belong to, with its run
    parameters (run type GGA or GGA+U, Hubbard U values). Its structure (the GGA/GGA+U-relaxed
    cell the energy was computed on) is the crystal stored; where a document carries no structure,
    the material's structure (``materials.summary``) is fetched and joined by material id.

- The database version (``MPRester().db_version``) is recorded in every row's ``source`` and in
  the import report's sources.

How (:class:`MPDownload`)
1. The material ids with a GGA/GGA+U thermo document are listed once (one light query) and
   written with the database version to ``<cache>/datasets/<name>/download/manifest.json``.
2. Documents are fetched page by page (``page_size`` ids per request) and each page is committed
   to ``download/page-00000.parquet`` (temporary file + rename) as it arrives, with progress and
   an ETA through ``on_progress``.
3. An interrupted download (network error, Ctrl-C, a killed process) keeps every committed page;
   the same command resumes at the first missing page. A manifest from another database version
   is discarded and the download starts over (the values may have changed).
4. The import then reads the pages; after the dataset is written the download folder is removed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import polars as pl

from mliap_tui.cache import Cache, write_json_atomic, write_parquet_atomic
from mliap_tui.cache.quarantine import check_parquet
from mliap_tui.data.readers._common import (
    RawRecord,
    error_record,
    parse_float,
    structure_from_dict,
)

SOURCE = "mp-api:materials.thermo"
INSTALL_HINT = "pip install 'mliap-tui[mp]'"
API_KEY_ENV = "MP_API_KEY"
#: the thermo type of the GGA/GGA+U hull with MP2020 corrections (emmet ``ThermoType.GGA_GGA_U``)
THERMO_TYPE = "GGA_GGA+U"
#: the ThermoDoc fields requested
THERMO_FIELDS: tuple[str, ...] = (
    "material_id",
    "thermo_type",
    "energy_type",
    "entry_types",
    "uncorrected_energy_per_atom",
    "energy_per_atom",
    "formation_energy_per_atom",
    "energy_above_hull",
    "is_stable",
    "entries",
)
#: ThermoDoc field (eV/atom) -> materials-table column (eV/atom)
FIELD_COLUMNS: dict[str, str] = {
    "formation_energy_per_atom": "e_form_per_atom_dft_mp2020",
    "energy_above_hull": "e_above_hull_dft_mp2020",
    "energy_per_atom": "e_per_atom_dft_mp2020",
    "uncorrected_energy_per_atom": "e_per_atom_dft_raw",
}
#: the structures endpoint used where a thermo document carries no structure
STRUCTURE_FIELDS: tuple[str, ...] = ("material_id", "structure")
DEFAULT_PAGE_SIZE = 1000
MANIFEST = "manifest.json"

PAGE_SCHEMA = pl.Schema({
    "material_id": pl.Utf8,
    "structure_json": pl.Utf8,  # pymatgen Structure.as_dict() as JSON
    "structure_from": pl.Utf8,  # 'GGA+U entry', 'GGA entry' or 'materials.summary'
    "energy_type": pl.Utf8,  # GGA or GGA+U: the entry the energies come from
    "hubbards_json": pl.Utf8,  # the entry's U values (eV) as JSON, {} for GGA
    **{field_name: pl.Float64 for field_name in FIELD_COLUMNS},
    "is_stable": pl.Boolean,
    "error": pl.Utf8,
})


class MPApiUnavailable(RuntimeError):
    """The mp-api download cannot start: package not installed, or no API key."""


def resolve_api_key(api_key: str | None = None) -> str:
    """The API key from the argument, else ``$MP_API_KEY``; MPApiUnavailable if neither is set."""
    key = (api_key or os.environ.get(API_KEY_ENV) or "").strip()
    if not key:
        raise MPApiUnavailable(
            f"no Materials Project API key: pass --api-key KEY or set {API_KEY_ENV} "
            "(get one at https://materialsproject.org/api)"
        )
    return key


def load_mprester() -> type:
    """``mp_api.client.MPRester``, imported now; MPApiUnavailable with the install hint if absent."""
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise MPApiUnavailable(f"the 'mp' source needs the mp-api package: {INSTALL_HINT} ({exc})") from None
    return MPRester


def _get(doc: Any, name: str) -> Any:
    """A field of a document given as a dict or as a document object."""
    if isinstance(doc, Mapping):
        return doc.get(name)
    return getattr(doc, name, None)


def _as_dict(obj: Any) -> Any:
    """A pymatgen object (entry, structure) as its dict; dicts pass through."""
    if obj is None or isinstance(obj, Mapping):
        return obj
    as_dict = getattr(obj, "as_dict", None)
    return as_dict() if callable(as_dict) else obj


# --------------------------------------------------------------------------------------------
# one document -> one page row -> one RawRecord
# --------------------------------------------------------------------------------------------


def thermo_doc_row(doc: Any) -> dict[str, Any]:
    """A page row (PAGE_SCHEMA) from one ThermoDoc (dict or document object); never raises."""
    row: dict[str, Any] = {name: None for name in PAGE_SCHEMA}
    row["material_id"] = str(_get(doc, "material_id") or "")
    try:
        for field_name in FIELD_COLUMNS:
            row[field_name] = parse_float(_get(doc, field_name), field_name)
    except ValueError as exc:
        row["error"] = str(exc)
    stable = _get(doc, "is_stable")
    row["is_stable"] = None if stable is None else bool(stable)
    thermo_type = str(_get(doc, "thermo_type") or THERMO_TYPE)
    if thermo_type not in (THERMO_TYPE, "ThermoType.GGA_GGA_U"):
        row["error"] = f"thermo type {thermo_type}, expected {THERMO_TYPE}"
    entries = _get(doc, "entries") or {}
    energy_type = _get(doc, "energy_type")
    entry = _as_dict(entries.get(energy_type)) if energy_type else None
    if entry is None and len(entries) == 1:
        energy_type, entry = next(iter(entries.items()))
        entry = _as_dict(entry)
    row["energy_type"] = str(energy_type) if energy_type else None
    if isinstance(entry, Mapping):
        params = entry.get("parameters") or {}
        row["hubbards_json"] = json.dumps(params.get("hubbards") or {}, sort_keys=True)
        if entry.get("structure") is not None:
            row["structure_json"] = json.dumps(_as_dict(entry["structure"]))
            row["structure_from"] = f"{energy_type} entry"
    return row


def page_row_to_record(row: Mapping[str, Any], source: str) -> RawRecord:
    """One RawRecord from a committed page row; never raises."""
    material_id = row["material_id"]
    if row.get("error"):
        return error_record(material_id, source, row["error"])
    if not row.get("structure_json"):
        return error_record(material_id, source, "no structure in its thermo document nor in materials.summary")
    try:
        structure = structure_from_dict(json.loads(row["structure_json"]))
    except ValueError as exc:
        return error_record(material_id, source, str(exc))
    dft = {column: row[field_name] for field_name, column in FIELD_COLUMNS.items() if row.get(field_name) is not None}
    meta = {"energy_type": row.get("energy_type"), "structure_from": row.get("structure_from"),
            "hubbards": json.loads(row["hubbards_json"]) if row.get("hubbards_json") else {}}
    return RawRecord(material_id=material_id, source=source, structure=structure, dft=dft, meta=meta)


# --------------------------------------------------------------------------------------------
# the download
# --------------------------------------------------------------------------------------------


@dataclass
class DownloadProgress:
    """Where a download stands (``on_progress``). ``resumed_pages``: found committed in the cache
    from an earlier, interrupted download. ``eta_s``: from this session's pace (None at first)."""

    pages_done: int
    pages_total: int
    docs_done: int
    docs_total: int
    resumed_pages: int
    elapsed_s: float
    eta_s: float | None
    database_version: str


OnProgress = Callable[[DownloadProgress], None]


class MPDownload:
    """A resumable, paged download of GGA/GGA+U thermo documents into the cache (module docstring).

    ``limit``: only the first N material ids (sorted). ``criteria``: extra ``thermo.search``
    filters (``chemsys=['Si-O']``, ``num_elements=(1, 2)``, ...). Checks the key and the package
    when made (MPApiUnavailable); nothing is fetched before :meth:`run`.
    """

    def __init__(self, cache: Cache, dataset: str, api_key: str | None = None, limit: int | None = None,
                 page_size: int | None = None, on_progress: OnProgress | None = None, **criteria: Any):
        page_size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.key = resolve_api_key(api_key)
        self.mprester_cls = load_mprester()
        self.cache, self.dataset = cache, dataset
        self.limit, self.page_size, self.criteria = limit, page_size, dict(criteria)
        self.on_progress = on_progress
        self.folder = cache.download_dir(dataset)
        self.database_version = ""
        self.ids: list[str] = []
        self.notes: list[str] = []  # what the download wants the user to know (restarts, ...)

    @property
    def source(self) -> str:
        version = f", database {self.database_version}" if self.database_version else ""
        return f"{SOURCE} {THERMO_TYPE}{version}"

    # -- pages ----------------------------------------------------------------------------------
    def page_path(self, k: int) -> Path:
        return self.folder / f"page-{k:05d}.parquet"

    def pages(self) -> list[list[str]]:
        return [self.ids[i : i + self.page_size] for i in range(0, len(self.ids), self.page_size)]

    def committed(self, k: int) -> bool:
        path = self.page_path(k)
        return path.is_file() and check_parquet(path) is None

    def _settings(self) -> dict[str, Any]:
        return {"source": SOURCE, "thermo_type": THERMO_TYPE, "limit": self.limit, "page_size": self.page_size,
                "criteria": json.loads(json.dumps(self.criteria, default=str))}

    def _load_manifest(self, database_version: str) -> bool:
        """Reuse a manifest of the same settings and database version; discard one that differs."""
        path = self.folder / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        same = {k: manifest.get(k) for k in self._settings()} == self._settings()
        if same and manifest.get("database_version") == database_version:
            self.ids = list(manifest["material_ids"])
            return True
        why = (f"the database changed from {manifest.get('database_version')} to {database_version}"
               if same else "it was made with other settings")
        self.notes.append(f"an earlier partial download was discarded: {why}")
        shutil.rmtree(self.folder, ignore_errors=True)
        return False

    # -- the network ------------------------------------------------------------------------------
    def run(self) -> None:
        """Fetch every page not committed yet (raises RuntimeError on a client error; pages stay)."""
        t0 = time.monotonic()
        fetched = 0
        k = 0
        try:
            with self.mprester_cls(api_key=self.key, use_document_model=False) as mpr:
                self.database_version = str(_database_version(mpr) or "unknown")
                if not self._load_manifest(self.database_version):
                    self.ids = self._list_ids(mpr)
                    write_json_atomic({**self._settings(), "database_version": self.database_version,
                                       "created_unix_s": time.time(), "material_ids": self.ids}, self.folder / MANIFEST)
                pages = self.pages()
                resumed = sum(1 for k in range(len(pages)) if self.committed(k))
                self._report(len(pages), resumed, resumed, 0, t0)
                for k, ids in enumerate(pages):
                    if self.committed(k):
                        continue
                    self._fetch_page(mpr, k, ids)
                    fetched += 1
                    self._report(len(pages), resumed + fetched, resumed, fetched, t0)
        except (MPApiUnavailable, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the client's own errors, one clear line
            kept = sum(1 for j in range(len(self.pages())) if self.committed(j))
            where = f" at page {k + 1} of {len(self.pages())}" if self.ids else ""
            keep = (f"; {kept} page(s) are kept in the cache: run the same command again to resume"
                    if kept else "")
            raise RuntimeError(f"Materials Project download failed{where} ({type(exc).__name__}: {exc}){keep}") from exc

    def _list_ids(self, mpr: Any) -> list[str]:
        docs = mpr.materials.thermo.search(thermo_types=[THERMO_TYPE], fields=["material_id"], **self.criteria)
        ids = sorted({str(_get(d, "material_id")) for d in docs if _get(d, "material_id")}, key=_id_order)
        return ids[: self.limit] if self.limit is not None else ids

    def _fetch_page(self, mpr: Any, k: int, ids: Sequence[str]) -> None:
        docs = mpr.materials.thermo.search(material_ids=list(ids), thermo_types=[THERMO_TYPE],
                                           fields=list(THERMO_FIELDS), chunk_size=max(1, len(ids)))
        rows = {}
        for doc in docs:
            row = thermo_doc_row(doc)
            if row["material_id"] in ids:
                rows[row["material_id"]] = row
        need = [m for m in ids if m in rows and rows[m]["structure_json"] is None and not rows[m]["error"]]
        if need:  # the structure of the material, joined by id
            for doc in mpr.materials.summary.search(material_ids=need, fields=list(STRUCTURE_FIELDS),
                                                    chunk_size=max(1, len(need))):
                mid, structure = str(_get(doc, "material_id")), _as_dict(_get(doc, "structure"))
                if mid in rows and structure is not None:
                    rows[mid]["structure_json"] = json.dumps(structure)
                    rows[mid]["structure_from"] = "materials.summary"
        for m in ids:
            if m not in rows:
                rows[m] = {**{name: None for name in PAGE_SCHEMA}, "material_id": m,
                           "error": f"no {THERMO_TYPE} thermo document returned"}
        frame = pl.DataFrame([rows[m] for m in ids], schema=PAGE_SCHEMA)
        write_parquet_atomic(frame, self.page_path(k), metadata={"mp_database_version": self.database_version})

    def _report(self, total: int, done: int, resumed: int, fetched: int, t0: float) -> None:
        if self.on_progress is None:
            return
        elapsed = time.monotonic() - t0
        eta = elapsed / fetched * (total - done) if fetched else (0.0 if done >= total else None)
        docs_done = min(len(self.ids), done * self.page_size)
        self.on_progress(DownloadProgress(done, total, docs_done, len(self.ids), resumed, elapsed, eta,
                                          self.database_version))

    # -- reading back ---------------------------------------------------------------------------------
    def records(self) -> Iterator[RawRecord]:
        """Download what is missing, then yield a RawRecord per material id, in id order."""
        self.run()
        source = self.source
        for k in range(len(self.pages())):
            for row in pl.read_parquet(self.page_path(k)).iter_rows(named=True):
                yield page_row_to_record(row, source)

    def cleanup(self) -> None:
        """Remove the download folder (after the dataset is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _database_version(mpr: Any) -> str | None:
    version = getattr(mpr, "db_version", None)
    if version:
        return str(version)
    getter = getattr(mpr, "get_database_version", None)
    return getter() if callable(getter) else None


def _id_order(material_id: str) -> tuple[str, float, str]:
    """mp-2 before mp-10: prefix, number, rest."""
    prefix, _, rest = material_id.partition("-")
    return prefix, int(rest) if rest.isdigit() else math.inf, rest


__all__ = [
    "API_KEY_ENV", "DEFAULT_PAGE_SIZE", "DownloadProgress", "FIELD_COLUMNS", "MPApiUnavailable", "MPDownload",
    "PAGE_SCHEMA", "SOURCE", "THERMO_FIELDS", "THERMO_TYPE", "load_mprester", "page_row_to_record",
    "resolve_api_key", "thermo_doc_row",
]
