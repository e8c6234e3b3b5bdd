"""What every tab needs at run time, built once by `build_app` and passed to each tab builder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecg_app.config import Settings


@dataclass
class AppContext:
    """Settings, the history store, the shared classifier and a scratch folder for downloads."""

    settings: Settings
    store: Any
    classifier: Any
    work_dir: Path
