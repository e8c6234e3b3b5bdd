"""What every tab needs at run time, built once by `build_app` and passed to each tab builder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_app.config import Settings

# Two CPU cores: more parallel inferences only queue inside TensorFlow and raise every user's latency.
ANALYSIS_CONCURRENCY = 2

if TYPE_CHECKING:
    from ecg_app.analysis import Predictor
    from ecg_app.store import AnalysisStore


@dataclass
class AppContext:
    """Settings, the history store, the shared classifier (None without a model) and a scratch folder."""

    settings: Settings
    store: AnalysisStore
    classifier: Predictor | None
    work_dir: Path
