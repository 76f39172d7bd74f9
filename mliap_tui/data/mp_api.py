"""The full Materials Project (~150k crystals) through the official ``mp-api`` client.

Needs ``pip install 'mliap-tui[mp]'`` and an API key (``--api-key`` or ``$MP_API_KEY``; free at
https://materialsproject.org/api). ``mp_api`` is imported lazily, so the rest of the package
works without it.

One call to ``MPRester.materials.summary.search`` (paged by the client) asks for
``SUMMARY_FIELDS`` of every non-deprecated material, as plain dicts
(``use_document_model=False``). Conventions of the summary fields (eV/atom):

- ``formation_energy_per_atom`` -> ``e_form_per_atom_dft_mp2020``
- ``energy_above_hull``         -> ``e_above_hull_dft_mp2020``
- ``energy_per_atom``           -> ``e_per_atom_dft_mp2020`` (corrected total energy)
- ``uncorrected_energy_per_atom`` -> ``e_per_atom_dft_raw``

Caveat: since the 2022.10 database the summary's thermo fields come from MP's default mixing
scheme (GGA/GGA+U with r2SCAN where available). For a material whose energies come from r2SCAN
the corrected-minus-uncorrected difference is not an MP2020 correction; the importer then warns
that the reported correction differs from the computed MP2020 one, so such rows are visible.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterator, Mapping

from mliap_tui.data.readers._common import (
    RawRecord,
    error_record,
    parse_float,
    structure_from_dict,
)

SOURCE = "mp-api:materials.summary"
INSTALL_HINT = "pip install 'mliap-tui[mp]'"
API_KEY_ENV = "MP_API_KEY"
#: The SummaryDoc fields requested from the Materials Project.
SUMMARY_FIELDS: tuple[str, ...] = (
    "material_id",
    "structure",
    "formation_energy_per_atom",
    "energy_above_hull",
    "energy_per_atom",
    "uncorrected_energy_per_atom",
)
#: SummaryDoc field (eV/atom) -> materials-table column (eV/atom).
FIELD_COLUMNS: dict[str, str] = {
    "formation_energy_per_atom": "e_form_per_atom_dft_mp2020",
    "energy_above_hull": "e_above_hull_dft_mp2020",
    "energy_per_atom": "e_per_atom_dft_mp2020",
    "uncorrected_energy_per_atom": "e_per_atom_dft_raw",
}
DEFAULT_CHUNK_SIZE = 1000


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
    """A field of a SummaryDoc given as a dict or as a document object."""
    if isinstance(doc, Mapping):
        return doc.get(name)
    return getattr(doc, name, None)


def summary_doc_to_record(doc: Any, index: int = 0, source: str = SOURCE) -> RawRecord:
    """One RawRecord from one SummaryDoc (dict or document model); never raises."""
    material_id = _get(doc, "material_id")
    material_id = str(material_id) if material_id else f"mp-doc-{index}"
    structure = _get(doc, "structure")
    if structure is None:
        return error_record(material_id, source, f"doc {index}: no structure")
    try:
        structure = structure_from_dict(structure)
        dft = {}
        for field_name, column in FIELD_COLUMNS.items():
            value = parse_float(_get(doc, field_name), field_name)
            if value is not None:
                dft[column] = value
    except ValueError as exc:
        return error_record(material_id, source, f"doc {index}: {exc}")
    return RawRecord(material_id=material_id, source=source, structure=structure, dft=dft, meta={"index": index})


def fetch_summary_docs(
    api_key: str | None = None,
    limit: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **filters: Any,
) -> list[Any]:
    """SummaryDocs (dicts) of non-deprecated MP materials with ``SUMMARY_FIELDS``.

    ``limit``: at most this many docs (asks for ``ceil(limit / chunk_size)`` pages).
    ``filters``: extra ``summary.search`` criteria, e.g. ``elements=['Si']``, ``num_sites=(1, 20)``.
    Raises MPApiUnavailable (no package / no key) before any network access; errors of the
    client itself (network, rejected key) are re-raised as RuntimeError with its message.
    """
    key = resolve_api_key(api_key)
    mprester_cls = load_mprester()
    if limit is not None:
        if limit <= 0:
            return []
        chunk_size = max(1, min(chunk_size, limit))
    num_chunks = None if limit is None else math.ceil(limit / chunk_size)
    criteria = {"deprecated": False, **filters}
    try:
        with mprester_cls(api_key=key, use_document_model=False) as mpr:
            docs = mpr.materials.summary.search(
                fields=list(SUMMARY_FIELDS), chunk_size=chunk_size, num_chunks=num_chunks, **criteria
            )
    except MPApiUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the client's own errors, one clear line
        raise RuntimeError(f"Materials Project download failed ({type(exc).__name__}: {exc})") from exc
    docs = list(docs)
    return docs[:limit] if limit is not None else docs


def read_mp_api(api_key: str | None = None, limit: int | None = None, **filters: Any) -> Iterator[RawRecord]:
    """RawRecords of the Materials Project summary (see :func:`fetch_summary_docs`).

    Checks the key and the package immediately (raising MPApiUnavailable); the download itself
    happens when the returned iterator is first advanced.
    """
    resolve_api_key(api_key)
    load_mprester()

    def records() -> Iterator[RawRecord]:
        docs = fetch_summary_docs(api_key=api_key, limit=limit, **filters)
        for index, doc in enumerate(docs):
            yield summary_doc_to_record(doc, index)

    return records()
