"""End to end in Debian's Chromium (Playwright): analyze (with Grad-CAM and image-quality warnings), PDF,
history, performance, about, bad upload.

Screenshots of each tab go to docs/screenshots/ (committed with the docs); set ECG_APP_SCREENSHOT_DIR to
write them elsewhere, e.g. in CI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from app_server import has_model, model_dir, running_app

from ecg_app.analysis import EXPLANATION_CAPTION, NO_EXPLANATION_NON_ECG
from ecg_app.config import REPO_ROOT
from ecg_app.labels import CLASSES, DISPLAY_NAMES
from ecg_app.ui.analyze_tab import EXAMPLES, EXAMPLES_DIR
from tests.hostile_text import BROWSER_PAYLOAD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ECG_IMAGE = EXAMPLES_DIR / "MI(19).jpg"
PATIENT = "Browser Test"
TIMEOUT_MS = 30_000
HEADLINES = {*DISPLAY_NAMES.values(), "Not an ECG image", "Inconclusive result: needs review"}
NOT_AN_ECG = "Not an ECG image"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not has_model(), reason="no trained model in model/ yet"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> str:
    with running_app(tmp_path_factory.mktemp("browser-data")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("ECG_APP_SCREENSHOT_DIR") or REPO_ROOT / "docs" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def plot_data(page, selector: str) -> list[dict]:
    """The traces Plotly drew inside a gr.Plot (what the user sees, not what the server sent)."""
    page.wait_for_selector(f"{selector} .js-plotly-plot")
    return page.evaluate(
        "(sel) => document.querySelector(sel + ' .js-plotly-plot').data.map("
        "t => ({type: t.type, x: Array.from(t.x || []), y: Array.from(t.y || [])}))",
        selector,
    )


def download(page, selector: str) -> bytes:
    page.wait_for_function(
        "(sel) => { const b = document.querySelector(sel + ' button') || document.querySelector(sel);"
        " return b && !b.disabled; }",
        arg=selector,
    )
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


def upload_and_analyze(page, image: Path, patient: str | None = None, notes: str | None = None) -> str:
    if patient:
        page.get_by_text("Patient details (optional)").click()
        page.locator("#patient-name textarea, #patient-name input").first.fill(patient)
        page.locator("#patient-age textarea, #patient-age input").first.fill("47")
        if notes:
            page.locator("#patient-notes textarea").first.fill(notes)
    page.set_input_files("#ecg-image input[type=file]", str(image))
    page.wait_for_selector("#ecg-image img")
    page.click("#analyze-button")
    headline = page.wait_for_selector("#result-card [data-testid=predicted-class]")
    return headline.inner_text().strip()


def check_explanation(page, image_id: str, caption_id: str, headline: str) -> None:
    """The Grad-CAM picture and its caption for an ECG result; for a non-ECG result, the note instead."""
    caption = page.locator(f"#{caption_id} [data-testid=explanation-caption]")
    caption.wait_for()
    if headline == NOT_AN_ECG:
        assert NO_EXPLANATION_NON_ECG in caption.inner_text()
        assert not page.locator(f"#{image_id}").is_visible()
        return
    assert EXPLANATION_CAPTION in caption.inner_text()
    picture = page.wait_for_selector(f"#{image_id} img")
    assert picture.is_visible() and "gradcam" in (picture.get_attribute("src") or "")


def blurred_copy(image: Path, folder: Path) -> Path:
    """The picture as an out-of-focus phone photo would show it."""
    import cv2
    from PIL import Image

    from ecg_app.serving.intake import load_image

    out = folder / f"blurred-{image.stem}.jpg"
    Image.fromarray(cv2.GaussianBlur(load_image(image), (0, 0), 4)).save(out, quality=92)
    return out


def seed_history(url: str) -> None:
    """A few earlier analyses through the API, so History looks like a working day in the screenshot."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    for i, (name, _) in enumerate(EXAMPLES):
        patient = {"patient_name": f"Demo patient {chr(65 + i)}", "age": str(40 + 7 * i), "sex": "Female"}
        client.predict(image=handle_file(str(EXAMPLES_DIR / name)), **patient, api_name="/analyze")


def test_dashboard_end_to_end(page, app_url, shots):
    seed_history(app_url)
    page.goto(app_url)
    page.wait_for_selector("#analyze-button")

    # Analyze: class headline, probability chart in the fixed class order, PDF download.
    headline = upload_and_analyze(page, ECG_IMAGE, patient=PATIENT)
    assert headline in HEADLINES
    bars = plot_data(page, "#probability-chart")
    assert bars[0]["type"] == "bar"
    assert bars[0]["y"] == [DISPLAY_NAMES[c] for c in CLASSES]
    assert download(page, "#pdf-download").startswith(b"%PDF")
    check_explanation(page, "explanation-image", "explanation-caption", headline)
    assert not page.locator("#quality-warnings").is_visible()  # a sharp scan: nothing to warn about
    # Measurements: the rate read off the strip (this printout's footer prints 56 bpm), the strip as read.
    panel = page.locator("#measurements-panel").inner_text()
    rate = re.search(r"Heart rate\s+(\d+) bpm", panel)
    assert rate and abs(int(rate[1]) - 56) <= 5, panel
    page.wait_for_selector("#rhythm-strip-plot .js-plotly-plot")
    strip = page.evaluate(  # numpy arrays reach Plotly as typed arrays: read them as Plotly decoded them
        "(sel) => document.querySelector(sel + ' .js-plotly-plot')._fullData.map("
        "t => ({type: t.type, n: t.x.length, last: t.x[t.x.length - 1]}))",
        "#rhythm-strip-plot",
    )
    assert [t["type"] for t in strip] == ["scatter", "scatter"] and strip[0]["last"] > 9  # 10 s of strip
    assert strip[1]["n"] >= 7  # the beats marked (about 9 at 56 bpm)
    page.screenshot(path=str(shots / "analyze.png"), full_page=True)

    # History: the analysis is listed (tab refreshes on open); selecting it shows details and its PDF.
    open_tab(page, "History")
    row = page.locator("#history-table [role=gridcell]", has_text=PATIENT).first
    row.wait_for()
    row.click()
    page.wait_for_selector("#history-detail [data-testid=predicted-class]")
    assert page.locator("#history-detail [data-testid=predicted-class]").inner_text().strip() == headline
    assert plot_data(page, "#history-detail")[0]["type"] == "bar"
    details = page.locator("#history-detail .ecg-kv").inner_text()
    assert PATIENT in details and "47" in details
    check_explanation(page, "history-explanation", "history-explanation-caption", headline)
    assert download(page, "#history-pdf").startswith(b"%PDF")
    page.screenshot(path=str(shots / "history.png"), full_page=True)

    # Text search narrows the list; the CSV export holds exactly the filtered rows.
    page.locator("#filter-search input, #filter-search textarea").first.fill("Demo patient B")
    page.keyboard.press("Enter")
    page.locator("#history-page-info", has_text="analyses 1–1 of 1").wait_for()
    page.click("#export-csv")
    link = page.wait_for_selector("#csv-file a[download], #csv-file a")
    with page.expect_download() as info:
        link.click()
    lines = Path(info.value.path()).read_text(encoding="utf-8").strip().splitlines()
    assert len(lines) == 2 and "Demo patient B" in lines[1]

    # Model Performance: the confusion-matrix heatmap (or the plain notice when metrics are missing).
    open_tab(page, "Model Performance")
    if (model_dir() / "metrics.json").is_file():
        assert plot_data(page, "#cm-counts")[0]["type"] == "heatmap"
        assert plot_data(page, "#cm-normalised")[0]["type"] == "heatmap"
    else:
        page.get_by_text("metrics.json is missing").wait_for()
    page.screenshot(path=str(shots / "performance.png"), full_page=True)

    # About: dataset citation and disclaimer.
    open_tab(page, "About")
    about = page.locator("#tab-about")
    about.get_by_text("doi:10.17632/gwbz3fsgp8.2").first.wait_for()
    about.get_by_text("not a substitute for professional diagnosis").first.wait_for()
    page.screenshot(path=str(shots / "about.png"), full_page=True)


def test_blurred_photo_shows_quality_warning_and_gradcam(page, app_url, shots, tmp_path):
    page.goto(app_url)
    page.wait_for_selector("#analyze-button")
    headline = upload_and_analyze(page, blurred_copy(ECG_IMAGE, tmp_path), patient="Blurred Photo")
    notice = page.locator("#quality-warnings [data-testid=quality-warnings]")
    notice.wait_for()
    assert "Image quality" in notice.inner_text() and "The image looks blurred." in notice.inner_text()
    check_explanation(page, "explanation-image", "explanation-caption", headline)
    assert len(plot_data(page, "#probability-chart")[0]["x"]) == 5  # drawn before the screenshot
    page.screenshot(path=str(shots / "analyze-quality.png"), full_page=True)

    # The same warning and map in the History detail of that analysis.
    open_tab(page, "History")
    row = page.locator("#history-table [role=gridcell]", has_text="Blurred Photo").first
    row.wait_for()
    row.click()
    page.wait_for_selector("#history-detail [data-testid=predicted-class]")
    stored_notice = page.locator("#history-quality-warnings [data-testid=quality-warnings]")
    stored_notice.wait_for()
    assert "The image looks blurred." in stored_notice.inner_text()
    check_explanation(page, "history-explanation", "history-explanation-caption", headline)

    # Analysing another picture hides the previous result's warning.
    open_tab(page, "Analyze")
    page.get_by_role("button", name="Normal", exact=True).click()
    page.wait_for_function(
        "() => !document.querySelector('#quality-warnings [data-testid=quality-warnings]')"
        " || !document.querySelector('#quality-warnings').offsetParent"
    )


def test_patient_text_is_shown_as_text_never_run_as_markup(page, app_url):
    """Markup typed as the name and the notes is shown literally in the History list and details, and
    its onerror handler never runs (tests/hostile_text.py has the whole corpus, without a browser)."""
    page.goto(app_url)
    page.wait_for_selector("#analyze-button")
    assert upload_and_analyze(page, ECG_IMAGE, patient=BROWSER_PAYLOAD, notes=BROWSER_PAYLOAD) in HEADLINES

    open_tab(page, "History")
    row = page.locator("#history-table [role=gridcell]", has_text=BROWSER_PAYLOAD).first
    row.wait_for()
    assert row.inner_text().strip() == BROWSER_PAYLOAD
    row.click()
    page.wait_for_selector("#history-detail [data-testid=predicted-class]")
    details = page.locator("#history-detail .ecg-kv").inner_text()
    notes = page.locator("#history-detail .ecg-notes").inner_text()
    assert BROWSER_PAYLOAD in details and notes == f"Notes. {BROWSER_PAYLOAD}"
    assert page.locator('img[src="x"]').count() == 0
    assert page.evaluate("() => typeof window.__pwned") == "undefined"


def test_example_non_ecg_and_delete_from_history(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("#analyze-button")
    page.get_by_role("button", name="Not an ECG").click()
    page.wait_for_selector("#ecg-image img")
    page.click("#analyze-button")
    card = page.wait_for_selector("#result-card [data-testid=predicted-class]")
    assert card.inner_text().strip() in {"Not an ECG image", "Inconclusive result: needs review"}
    assert "Please upload a valid" in page.locator("#result-card").inner_text()
    assert not page.locator("#emergency-banner").is_visible()
    check_explanation(page, "explanation-image", "explanation-caption", card.inner_text().strip())

    open_tab(page, "History")
    page.wait_for_selector("#history-table [role=gridcell]")
    first_id = page.locator("#history-table [data-testid=cell-0-6]").inner_text().strip()
    page.locator("#history-table [data-testid=cell-0-0]").click()
    page.wait_for_selector("#history-detail [data-testid=predicted-class]")
    assert page.locator("#selected-id input, #selected-id textarea").first.input_value().startswith(first_id)
    page.click("#delete-button")
    page.click("#confirm-delete")
    page.wait_for_function(
        "(id) => ![...document.querySelectorAll('#history-table [role=gridcell]')]"
        ".some(c => c.innerText.trim() === id)",
        arg=first_id,
    )


def test_bad_upload_shows_error_and_app_keeps_working(page, app_url, tmp_path):
    page.goto(app_url)
    page.wait_for_selector("#analyze-button")
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(b"this is not a picture\n" * 40)
    page.set_input_files("#ecg-image input[type=file]", str(bad))
    page.click("#analyze-button")
    toast = page.wait_for_selector("[data-testid=toast-text]")
    assert "not an image we can read" in toast.inner_text()
    assert "Upload or capture an ECG image" in page.locator("#result-card").inner_text()

    assert upload_and_analyze(page, ECG_IMAGE) in HEADLINES


def test_a_patients_timeline_compare_and_erase(page, app_url):
    """Two ECGs of one patient (through the API), found by the patient filter in time order, compared side
    by side, then the patient erased after a confirmation: no analysis of theirs is left."""
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    patient = "Timeline Patient 7"
    made = [
        client.predict(image=handle_file(str(EXAMPLES_DIR / name)), patient_name=patient, api_name="/analyze")
        for name in ("Normal(29).jpg", "MI(19).jpg")
    ]
    assert client.predict(patient=patient, api_name="/history")["total"] == 2

    page.goto(app_url)
    open_tab(page, "History")
    page.wait_for_selector("#history-table [role=gridcell]")
    field = page.locator("#filter-patient textarea, #filter-patient input").first
    field.fill(patient)
    field.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#history-page-info').innerText.includes('Timeline of patient')"
    )
    assert "analyses 1–2 of 2" in page.locator("#history-page-info").inner_text()
    shown = [page.locator(f"#history-table [data-testid=cell-{k}-6]").inner_text().strip() for k in (0, 1)]
    assert shown == [item["id"][:8] for item in made]  # oldest first
    rates = [page.locator(f"#history-table [data-testid=cell-{k}-7]").inner_text().strip() for k in (0, 1)]
    assert rates == [f"{item['measurements']['heart_rate_bpm']:.0f} bpm" for item in made]

    page.get_by_text("Compare two analyses").click()
    for which, option in (("#compare-first", 0), ("#compare-second", 1)):
        page.locator(f"{which} input").click()
        page.locator("[data-testid=dropdown-option]").nth(option).click()
    page.click("#compare-button")
    summary = page.wait_for_selector("#compare-summary")
    assert "days apart" in summary.inner_text()
    assert page.locator("#compare-table").inner_text().count("%") >= 10  # two probabilities per class
    assert page.locator("#compare-measurements").inner_text().count("bpm") == 3  # then, now, change
    for side in ("#compare-earlier img", "#compare-later img"):  # both pictures load after the table
        page.wait_for_selector(side, state="visible")

    page.click("#erase-patient")
    assert "delete all 2 analyses" in page.locator("#erase-confirm").inner_text()
    field.fill("Someone Else")  # a new list withdraws the question: it named the patient before
    field.press("Enter")
    page.wait_for_selector("#erase-confirm", state="hidden")
    field.fill(patient)
    field.press("Enter")
    page.wait_for_function("() => document.querySelector('#history-page-info').innerText.includes('of 2')")
    page.click("#erase-patient")
    page.click("#confirm-erase")
    page.wait_for_function(
        "() => document.querySelector('#history-page-info').innerText.includes('No analyses match')"
    )
    assert client.predict(patient=patient, api_name="/history")["total"] == 0
