"""The hostile-input corpus (tests/hostile_inputs.py) through the running app's `analyze` API.

One server for the whole module: every refused file must come back as an AppError carrying intake's
message and add no history row, every accepted one is classified and stored, and the app keeps answering
a normal analysis between and after them.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from app_server import has_model, running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ecg_app.serving.intake import IntakeError, load_image
from tests.conftest import encode, synthetic_printout
from tests.hostile_inputs import CASES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_model(), reason="no trained model in model/ yet"),
]

HEALTH_CHECK_EVERY = 10  # cases between two checks that a normal analysis still works


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Client:
    with running_app(tmp_path_factory.mktemp("hostile-app-data")) as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def valid_ecg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("valid") / "valid-ecg.jpg"
    path.write_bytes(encode(synthetic_printout(seed=7), "JPEG", quality=90))
    return path


def history_total(client: Client) -> int:
    return client.predict(api_name="/history")["total"]


def analyze(client: Client, path: Path) -> dict:
    return client.predict(image=handle_file(str(path)), api_name="/analyze")


def assert_still_works(client: Client, valid_ecg: Path) -> None:
    before = history_total(client)
    result = analyze(client, valid_ecg)
    assert result["file"] == valid_ecg.name and result["label"] in result["probabilities"]
    assert history_total(client) == before + 1


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[case.name for case in CASES])
def test_hostile_upload(client, valid_ecg, tmp_path, index, case):
    path = case.write(tmp_path, sparse=False)  # the real bytes: the over-limit file is just over 20 MB
    before = history_total(client)
    if case.accepted:
        result = analyze(client, path)
        assert result["file"] == path.name
        assert result["label"] in result["probabilities"]
        assert history_total(client) == before + 1
    else:
        with pytest.raises(IntakeError) as expected:
            load_image(path)
        assert expected.value.code == case.code
        message = re.escape(html.escape(expected.value.message))
        with pytest.raises(AppError, match=message):
            analyze(client, path)
        assert history_total(client) == before
    if index % HEALTH_CHECK_EVERY == HEALTH_CHECK_EVERY - 1:
        assert_still_works(client, valid_ecg)


def test_app_still_answers_after_the_whole_corpus(client, valid_ecg):
    assert_still_works(client, valid_ecg)
