"""The dashboard's API through gradio_client, against `ecg-app serve` on a free port and a temp data dir."""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import pytest
from app_server import has_model, running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from ecg_app.labels import CLASSES, DISPLAY_NAMES, ECG_CLASSES, NON_ECG
from ecg_app.serving.classifier import DETECTOR_DISAGREES, GATE_DISAGREES
from ecg_app.ui.analyze_tab import EXAMPLES_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_model(), reason="no trained model in model/ yet"),
]

ECG_IMAGE = EXAMPLES_DIR / "MI(19).jpg"
NON_ECG_IMAGE = EXAMPLES_DIR / "coffee.jpg"
# The fields `ecg-app analyze --json` prints.
CLI_FIELDS = {
    "file", "id", "label", "display_name", "confidence", "probabilities",
    "risk_level", "status", "ecg_distance", "ecg_probability", "model_version", "quality_warnings",
    "measurements",
}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Client:
    with running_app(tmp_path_factory.mktemp("app-data")) as url:
        yield Client(url, verbose=False)


def history(client: Client, **filters) -> dict:
    return client.predict(**filters, api_name="/history")


def analyze(client: Client, path: Path, **patient) -> dict:
    return client.predict(image=handle_file(str(path)), **patient, api_name="/analyze")


def check_result(result: dict, filename: str) -> None:
    assert set(result) == CLI_FIELDS
    assert result["file"] == filename
    assert list(result["probabilities"]) == list(CLASSES)
    assert math.isclose(sum(result["probabilities"].values()), 1.0, abs_tol=1e-4)
    codes = {warning["code"] for warning in result["quality_warnings"]}
    # The softmax said Non-ECG but the gate or the detector recognised an ECG: the best ECG class.
    if codes & {GATE_DISAGREES.code, DETECTOR_DISAGREES.code}:
        ecg_probabilities = {c: p for c, p in result["probabilities"].items() if c != NON_ECG}
        assert result["label"] == max(ecg_probabilities, key=ecg_probabilities.get)
        assert result["status"] == "needs_review"
    else:
        assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
    assert result["confidence"] == pytest.approx(result["probabilities"][result["label"]], abs=1e-6)
    assert result["display_name"] == DISPLAY_NAMES[result["label"]]
    assert result["status"] in ("ok", "needs_review")
    assert all(set(warning) == {"code", "message"} for warning in result["quality_warnings"])


def test_analyze_real_ecg_is_stored_with_patient_details(client):
    result = analyze(client, ECG_IMAGE, patient_name="API Test", age=61, sex="Male", notes="chest pain")
    check_result(result, ECG_IMAGE.name)
    assert result["label"] in ECG_CLASSES
    stored = history(client, search="API Test")
    assert stored["total"] == 1
    item = stored["items"][0]
    assert item["id"] == result["id"]
    assert (item["patient_name"], item["patient_age"], item["patient_sex"]) == ("API Test", 61, "male")


def test_analyze_non_ecg_picture(client):
    result = analyze(client, NON_ECG_IMAGE)
    check_result(result, NON_ECG_IMAGE.name)
    assert result["label"] == NON_ECG
    assert result["risk_level"] == "NONE"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: ECG_IMAGE.read_bytes()[:20_000], "damaged or incomplete"),
        (lambda: b"this is not a picture\n" * 50, "not an image we can read"),
        (lambda: b"", "empty"),
    ],
    ids=["truncated-jpeg", "text-file", "empty-file"],
)
def test_bad_file_gives_clear_error_and_stores_nothing(client, tmp_path, content, message):
    before = history(client)["total"]
    bad = tmp_path / "upload.jpg"
    bad.write_bytes(content())
    with pytest.raises(AppError, match=message):
        analyze(client, bad)
    assert history(client)["total"] == before
    # The app keeps working after the error.
    check_result(analyze(client, NON_ECG_IMAGE), NON_ECG_IMAGE.name)


@pytest.mark.parametrize(("age", "message"), [(200, "between 0 and 150"), ("sixty", "whole number")])
def test_invalid_patient_age_is_refused(client, age, message):
    before = history(client)["total"]
    with pytest.raises(AppError, match=message):
        analyze(client, ECG_IMAGE, age=age)
    assert history(client)["total"] == before


def test_history_lists_newest_first_with_filters_and_paging(client):
    first = analyze(client, ECG_IMAGE, patient_name="Order A")
    second = analyze(client, NON_ECG_IMAGE, patient_name="Order B")
    everything = history(client)
    assert everything["items"][0]["id"] == second["id"]
    assert everything["items"][1]["id"] == first["id"]
    stamps = [item["created_at"] for item in everything["items"]]
    assert stamps == sorted(stamps, reverse=True)

    non_ecg = history(client, label=NON_ECG)
    assert non_ecg["total"] >= 1 and all(item["label"] == NON_ECG for item in non_ecg["items"])
    assert all(item["risk_level"] == "NONE" for item in history(client, risk="NONE")["items"])

    page = history(client, limit=1, offset=1)
    assert page["total"] == everything["total"] and len(page["items"]) == 1
    assert page["items"][0]["id"] == first["id"]

    today = everything["items"][0]["created_at"][:10]
    assert history(client, since=today, until=today)["total"] == everything["total"]
    assert history(client, until="2000-01-01")["total"] == 0


def test_pdf_report_of_a_stored_analysis(client):
    from pypdf import PdfReader

    result = analyze(client, ECG_IMAGE, patient_name="PDF Test")
    path = Path(client.predict(result["id"], api_name="/report"))
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert "PDF Test" in text
    assert result["id"][:8] in text


def test_blurred_ecg_gets_a_blurry_warning_in_the_result_history_and_pdf(client, tmp_path):
    from pypdf import PdfReader

    from ecg_app.analysis import EXPLANATION_TITLE
    from ecg_app.serving.intake import load_image

    blurred = tmp_path / "blurred.jpg"
    Image.fromarray(cv2.GaussianBlur(load_image(ECG_IMAGE), (0, 0), 4)).save(blurred, quality=92)
    result = analyze(client, blurred)
    check_result(result, "blurred.jpg")
    assert "blurry" in {warning["code"] for warning in result["quality_warnings"]}
    assert analyze(client, ECG_IMAGE)["quality_warnings"] == []  # a sharp scan of the same page

    (item,) = [item for item in history(client, limit=500)["items"] if item["id"] == result["id"]]
    assert item["quality_warnings"] == result["quality_warnings"]

    path = Path(client.predict(result["id"], api_name="/report"))
    text = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(path).pages)
    assert "Image quality" in text and "The image looks blurred." in text
    assert (EXPLANATION_TITLE in text) == (result["label"] != NON_ECG)  # Grad-CAM for ECG results only


def test_pdf_report_of_unknown_id_is_an_error(client):
    with pytest.raises(AppError, match="No analysis"):
        client.predict("00000000-0000-0000-0000-000000000000", api_name="/report")


def test_login_required_when_users_are_configured(tmp_path):
    with running_app(tmp_path / "auth-data", users="alice:s3cret,bob:pw2") as url:
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises different types across versions
            Client(url, verbose=False, auth=("alice", "wrong"))
        authed = Client(url, verbose=False, auth=("alice", "s3cret"))
        assert authed.predict(api_name="/history")["total"] == 0
