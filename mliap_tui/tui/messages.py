"""Typed messages that thread workers post back to the UI (Harlequin style)."""

from __future__ import annotations

from textual.message import Message

from mliap_tui.analysis.export import ExportResult
from mliap_tui.tui.state import LoadedDataset, MaterialDetail, View


class DatasetLoaded(Message):
    def __init__(self, token: int, data: LoadedDataset) -> None:
        super().__init__()
        self.token = token
        self.data = data


class DatasetLoadFailed(Message):
    def __init__(self, token: int, dataset: str, error: str) -> None:
        super().__init__()
        self.token = token
        self.dataset = dataset
        self.error = error


class ViewComputed(Message):
    def __init__(self, token: int, view: View) -> None:
        super().__init__()
        self.token = token
        self.view = view


class ViewFailed(Message):
    def __init__(self, token: int, error: str) -> None:
        super().__init__()
        self.token = token
        self.error = error


class DetailLoaded(Message):
    def __init__(self, detail: MaterialDetail) -> None:
        super().__init__()
        self.detail = detail


class DetailFailed(Message):
    def __init__(self, material_id: str, error: str) -> None:
        super().__init__()
        self.material_id = material_id
        self.error = error


class ExportFinished(Message):
    def __init__(self, result: ExportResult | None, error: str | None = None) -> None:
        super().__init__()
        self.result = result
        self.error = error


# ---- run screen ---------------------------------------------------------------------------


class EngineEvent(Message):
    """One typed engine event (mliap_tui.engine.protocol) from the run's thread worker."""

    def __init__(self, token: int, event: object) -> None:
        super().__init__()
        self.token = token
        self.event = event


class RunEnded(Message):
    """EvaluationRun.run() returned (summary) or raised (error, one line)."""

    def __init__(self, token: int, summary: object | None, error: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.summary = summary
        self.error = error


class PlanComputed(Message):
    """What each selected model still has to do (EvaluationRun.plan())."""

    def __init__(self, token: int, plan: list, error: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.plan = plan
        self.error = error


class FailuresLoaded(Message):
    """Failed rows (material_id, formula, error) of one model read from the cache."""

    def __init__(self, model: str, rows: list[dict], error: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.rows = rows
        self.error = error


class ResultsChanged(Message):
    """New predictions of ``dataset`` are in the cache (a run ended): views of it should reload.

    Posted by the Run screen; the app hands it to the Explore screen, which reloads (or switches
    to ``dataset`` when it shows another one).
    """

    def __init__(self, dataset: str | None) -> None:
        super().__init__()
        self.dataset = dataset


class SampleImported(Message):
    def __init__(self, dataset: str | None, report_text: str, error: str | None = None) -> None:
        super().__init__()
        self.dataset = dataset
        self.report_text = report_text
        self.error = error


class DeviceSampled(Message):
    def __init__(self, sample: object) -> None:
        super().__init__()
        self.sample = sample


# ---- study screen -------------------------------------------------------------------------


class StudyLoaded(Message):
    """The per-crystal rows of the study (``analysis.study.StudyData``); ``geometry_pending``:
    relaxed cells still to compare with the DFT structures (a second load follows)."""

    def __init__(self, token: int, data: object, geometry_pending: int = 0) -> None:
        super().__init__()
        self.token = token
        self.data = data
        self.geometry_pending = geometry_pending


class StudyProgress(Message):
    """Relaxed cells compared with their DFT structures so far."""

    def __init__(self, token: int, done: int, total: int) -> None:
        super().__init__()
        self.token = token
        self.done = done
        self.total = total


class StudyStatsReady(Message):
    """The tables of one (metric, grouping) of the study: error_stats, relax_stats, trend_stats."""

    def __init__(self, token: int, key: tuple, errors: object, relax: object, trends: object) -> None:
        super().__init__()
        self.token = token
        self.key = key
        self.errors = errors
        self.relax = relax
        self.trends = trends


class StudyFailed(Message):
    def __init__(self, token: int, error: str) -> None:
        super().__init__()
        self.token = token
        self.error = error
