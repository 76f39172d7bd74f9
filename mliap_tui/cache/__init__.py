"""The parquet cache: the one schema (:mod:`.schema`) and the store that reads and writes it
(:mod:`.store`). Import from here::

    from mliap_tui.cache import Cache
    cache = Cache.open()            # $MLIAP_TUI_CACHE or ./cache
    materials = cache.scan_materials("sample")
"""

from mliap_tui.cache.quarantine import QuarantineNote
from mliap_tui.cache.schema import (
    MATERIALS_COLUMNS,
    MATERIALS_SCHEMA,
    PREDICTION_COLUMNS,
    PREDICTION_KEY,
    PREDICTIONS_SCHEMA,
    SCHEMA_VERSION,
)
from mliap_tui.cache.store import (
    Cache,
    CacheWriteError,
    CorruptMaterials,
    check_name,
    conform,
    default_cache_root,
    write_json_atomic,
    write_parquet_atomic,
)

__all__ = [
    "MATERIALS_COLUMNS",
    "MATERIALS_SCHEMA",
    "PREDICTIONS_SCHEMA",
    "PREDICTION_COLUMNS",
    "PREDICTION_KEY",
    "SCHEMA_VERSION",
    "Cache",
    "CacheWriteError",
    "CorruptMaterials",
    "QuarantineNote",
    "check_name",
    "conform",
    "default_cache_root",
    "write_json_atomic",
    "write_parquet_atomic",
]
