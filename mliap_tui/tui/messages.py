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
