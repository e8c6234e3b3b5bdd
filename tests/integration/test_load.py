"""The issue's load figures: 10 parallel gradio_client clients, 100 analyses, each with its PDF, stored whole.

Runs `benchmarks/load_test.py`'s function against a real `ecg-app serve`; about a minute on 2 cores.
"""

from __future__ import annotations

import sys

import pytest
from app_server import has_model

from ecg_app.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from load_test import LOCKED, run_load_test  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_model(), reason="no trained model in model/ yet"),
]


def test_100_analyses_from_10_parallel_clients_are_all_stored_with_their_pdfs(tmp_path):
    result = run_load_test(tmp_path / "data", analyses=100, clients=10)
    print(result.summary())

    assert result.errors == []
    assert len(result.latencies) == 100 and result.bad_pdfs == []
    assert result.locked == 0, f"'{LOCKED}' seen"
    assert result.server_tracebacks == 0
    assert result.audit is not None and result.audit.integrity == "ok"
    assert set(result.audit.analyses) == set(result.returned) and len(result.returned) == 100
    assert result.audit.incomplete == [] and result.audit.orphans == []
    assert result.failures() == []  # also: the patient details each client sent were stored with it
