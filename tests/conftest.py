"""Fixtures shared by the unit and functional tests.

Helpers that are not fixtures live in ``support.py`` (paths, the shared reference data, rows of
the shipped sample) and ``support_tui.py`` (the real CHGNet cache of the app tests); both are
importable from every test module because pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

import pytest

from mliap_tui.cache import Cache


@pytest.fixture(scope="session")
def tui_cache() -> Cache:
    """A real cache: 40 MP-20 crystals + one unusable cell, CHGNet 0.3.0 on all, 0.2.0 on 30."""
    from support_tui import get_cache

    return get_cache()


@pytest.fixture(scope="session")
def study_cache() -> Cache:
    """A real cache: 13 small sample crystals (real import), CHGNet 0.3.0 static and relaxed on all."""
    from support_study import get_cache

    return get_cache()
