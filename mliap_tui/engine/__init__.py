"""The batch evaluation engine: worker subprocesses that evaluate (material, model) pairs.

Modules, bottom-up:

* ``protocol``  the documented job / event formats (JSON), see docs/ENGINE_PROTOCOL.md
* ``progress``  windowed rates, ETA, peak memory, event aggregation
* ``batching``  atom-count batching, OOM/exception splitting, the prefetch pipeline
* ``worker``    one model in one process: ``python -m mliap_tui.engine.worker --job JOB.json``
* ``runner``    the orchestrator: plans the missing pairs, starts workers, relays events
* ``rich_progress``  renders events as rich progress bars (CLI only; the worker never imports rich)

Importing this package is cheap: it imports none of its modules until asked.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_evaluation", "EvaluationRun", "RunSummary"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mliap_tui.engine import runner

        return getattr(runner, name)
    raise AttributeError(name)
