"""model.json and the other JSON records of a model directory, written atomically (a temp file renamed)
so that an interrupted fit never leaves one half written."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ecg_app.serving.classifier import MODEL_INFO_FILE


def write_json_atomic(data: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def record_in_model_info(model_dir: Path, key: str, record: dict) -> None:
    """Add a component fitted after training (the gate, the detector) to the directory's model.json."""
    info_path = Path(model_dir) / MODEL_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info[key] = record
    write_json_atomic(info, info_path)
