"""Analyze tab: upload or capture an ECG picture, classify it, store it, show the guidance and a PDF.

The Analyze button runs the public `analyze` API endpoint (the same call gradio_client makes), then two
private follow-up steps draw the result and render the PDF, so the UI and the API cannot drift apart.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from ecg_app.analysis import EXPLANATION_CAPTION, EXPLANATION_TITLE, analyze_and_store, explanation_note
from ecg_app.clinical import charts
from ecg_app.clinical.measurements import RhythmStrip
from ecg_app.clinical.report import render_report_pdf
from ecg_app.serving.intake import IntakeError, read_bytes
from ecg_app.store import PatientInfo, StoredAnalysis, warnings_to_json
from ecg_app.ui.context import ANALYSIS_CONCURRENCY, AppContext
from ecg_app.ui.widgets import (
    disclaimer_html,
    emergency_banner,
    explanation_caption,
    guidance_html,
    measurements_html,
    placeholder,
    quality_notice,
    result_card,
)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = (
    ("MI(19).jpg", "Myocardial infarction"),
    ("PMI(9).jpg", "History of MI"),
    ("HB(109).jpg", "Abnormal heartbeat"),
    ("Normal(29).jpg", "Normal"),
    ("coffee.jpg", "Not an ECG"),
)
EXAMPLES_ATTRIBUTION = (
    "ECG examples: Khan A.H., Hussain M. (2021) *ECG Images dataset of Cardiac Patients*, Mendeley Data V2, "
    "[doi:10.17632/gwbz3fsgp8.2](https://doi.org/10.17632/gwbz3fsgp8.2), CC BY 4.0. "
    "Coffee photo: scikit-image sample data, CC0."
)
SEX_CHOICES = ["Not stated", "Female", "Male", "Other"]
EMPTY_RESULT = "Upload or capture an ECG image, optionally add patient details, then press Analyze."
PDF_LABEL = "Download PDF report"


def raw_image_input(**kwargs: Any) -> gr.Image:
    """A gr.Image whose value reaches our code as the uploaded file itself, untouched.

    The stock preprocessing opens the picture with Pillow before our code runs, so a file that is not an
    image fails inside Gradio with a generic error instead of intake's clear message. The override is set
    on the instance: subclassing a Gradio component makes Gradio write a .pyi stub into the source tree.
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    stock_preprocess = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        return stock_preprocess(payload)  # None, or a webcam frame sent as a data URL

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def stored_result(stored: StoredAnalysis) -> dict:
    """The API's answer: the fields of `ecg-app analyze --json`."""
    return {
        "file": stored.original_filename,
        **stored.prediction.to_dict(),
        "id": str(stored.id),
        "quality_warnings": warnings_to_json(stored.quality_warnings),
        "measurements": stored.to_dict()["measurements"],
    }


def run_analysis(ctx: AppContext, image_path: str | None, patient: PatientInfo) -> StoredAnalysis:
    """Intake, classify and store one upload; IntakeError for bad files, ValueError for bad fields."""
    if not image_path:
        raise IntakeError("no_image", "Please upload or capture an ECG image first.")
    if ctx.classifier is None:
        raise FileNotFoundError("no trained model installed")
    limits = ctx.settings.intake_limits
    data = read_bytes(image_path, limits)
    return analyze_and_store(data, Path(image_path).name, patient, ctx.store, ctx.classifier, limits)


def report_path(ctx: AppContext, analysis_id: object) -> Path:
    """Where an analysis's PDF is rendered in the app's scratch folder (removed with the analysis)."""
    return ctx.work_dir / f"ecg-report-{str(analysis_id)[:8]}.pdf"


def write_report(ctx: AppContext, analysis: StoredAnalysis) -> Path:
    """Render the analysis's PDF into the app's scratch folder (Gradio serves it from there)."""
    path = report_path(ctx, analysis.id)
    path.write_bytes(render_report_pdf(analysis, model_dir=ctx.settings.model_dir))
    return path


def patient_from_fields(
    name: str | None, age: str | int | None, sex: str | None, notes: str | None
) -> PatientInfo:
    """PatientInfo from the form; 'Not stated' and empty fields mean absent. ValueError if invalid."""
    sex = None if not sex or sex == SEX_CHOICES[0] else sex
    age = str(age).strip() if age is not None else ""
    return PatientInfo(name=name or None, age=age or None, sex=sex, notes=notes or None)


def result_views(result: dict) -> tuple[str, Any, Any, str]:
    """Card, emergency banner (shown only when it has something to say), chart and guidance."""
    banner = emergency_banner(result)
    return (
        result_card(result),
        gr.update(value=banner, visible=bool(banner)),
        charts.probability_figure(result["probabilities"], title="Class probabilities"),
        guidance_html(result),
    )


def quality_view(warnings: list[dict] | None) -> Any:
    """The amber image-quality notice, shown only when there is something to say."""
    notice = quality_notice(warnings)
    return gr.update(value=notice, visible=bool(notice))


def explanation_views(analysis: StoredAnalysis | None) -> tuple[Any, str]:
    """The Grad-CAM overlay (hidden when there is none) and its caption, or the note that says why not."""
    path = analysis.explanation_path if analysis is not None and analysis.is_ecg else None
    has_map = path is not None and path.is_file()
    note = explanation_note(analysis.label if analysis is not None else "", has_map)
    if note is not None:
        return gr.update(value=None, visible=False), explanation_caption(note, note=True)
    return gr.update(value=str(path), visible=True), explanation_caption(EXPLANATION_CAPTION)


def measurements_view(analysis: StoredAnalysis | None) -> str:
    """The measurements table of a stored analysis, QTc judged for its patient's sex ("" when gone)."""
    return "" if analysis is None else measurements_html(analysis.measurements, analysis.patient.sex)


def strip_view(strip: RhythmStrip | None) -> Any:
    """The rhythm strip the measurements were read from, with its beats; hidden when there is none (a
    Non-ECG, a failed reading; never kept in the history)."""
    if strip is None:
        return gr.update(value=None, visible=False)
    return gr.update(value=charts.rhythm_strip_figure(strip), visible=True)


def build_analyze_tab(ctx: AppContext) -> gr.Tab:
    with gr.Tab("Analyze", id="analyze", elem_id="tab-analyze") as tab:
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=340):
                image = raw_image_input(
                    label="ECG image",
                    sources=["upload", "webcam", "clipboard"],
                    height=340,
                    elem_id="ecg-image",
                )
                with gr.Accordion("Patient details (optional)", open=False, elem_id="patient-details"):
                    patient_name = gr.Textbox(label="Name or ID", max_lines=1, elem_id="patient-name")
                    with gr.Row():
                        age = gr.Textbox(label="Age", placeholder="years", max_lines=1, elem_id="patient-age")
                        sex = gr.Dropdown(
                            SEX_CHOICES, value=SEX_CHOICES[0], label="Sex", elem_id="patient-sex"
                        )
                    notes = gr.Textbox(label="Notes", lines=2, elem_id="patient-notes")
                analyze_button = gr.Button("Analyze", variant="primary", size="lg", elem_id="analyze-button")
                gr.Examples(
                    examples=[[str(EXAMPLES_DIR / name)] for name, _ in EXAMPLES],
                    example_labels=[label for _, label in EXAMPLES],
                    inputs=[image],
                    label="Example images",
                    elem_id="examples",
                )
                gr.Markdown(EXAMPLES_ATTRIBUTION, elem_classes="ecg-attribution")
            with gr.Column(scale=7, min_width=420):
                card = gr.HTML(placeholder(EMPTY_RESULT), elem_id="result-card")
                emergency = gr.HTML(visible=False, elem_id="emergency-banner")
                quality = gr.HTML(visible=False, elem_id="quality-warnings")
                with gr.Column(visible=False, elem_id="result-details") as details:
                    chart = gr.Plot(show_label=False, elem_id="probability-chart")
                    measurements = gr.HTML(elem_id="measurements-panel")
                    strip_plot = gr.Plot(show_label=False, visible=False, elem_id="rhythm-strip-plot")
                    explanation = gr.Image(
                        label=EXPLANATION_TITLE,
                        interactive=False,
                        height=300,
                        buttons=["fullscreen"],
                        elem_id="explanation-image",
                    )
                    explanation_text = gr.HTML(elem_id="explanation-caption")
                    report = gr.DownloadButton(
                        PDF_LABEL, interactive=False, variant="secondary", elem_id="pdf-download"
                    )
                    guidance = gr.HTML(elem_id="guidance")
                    with gr.Accordion("Technical details (API result)", open=False):
                        result_json = gr.JSON(label="Result", elem_id="result-json")
                gr.HTML(disclaimer_html())
        rhythm_strip = gr.State(None)  # the analysis's digitised strip: returned by it, never stored

        def analyze(
            image: str | None,
            patient_name: str | None = None,
            age: str | None = None,
            sex: str | None = None,
            notes: str | None = None,
        ) -> tuple[dict, RhythmStrip | None]:
            """Classify an ECG picture and store it; returns the fields of `ecg-app analyze --json`."""
            try:
                patient = patient_from_fields(patient_name, age, sex, notes)
                stored = run_analysis(ctx, image, patient)
                return stored_result(stored), stored.measurements.strip
            except IntakeError as exc:
                raise gr.Error(escape(exc.message), title="Cannot analyse this file") from exc
            except ValueError as exc:
                raise gr.Error(escape(str(exc)), title="Please check the patient details") from exc
            except FileNotFoundError as exc:
                raise gr.Error(
                    "No trained model is installed on this server.", title="Model missing"
                ) from exc

        shown_with_result = [quality, explanation, explanation_text, measurements, strip_plot]

        def show(result: dict, strip: RhythmStrip | None):
            pending = gr.update(value=None, interactive=False, label=PDF_LABEL)
            analysis = ctx.store.get(result["id"])
            picture, caption = explanation_views(analysis)
            quality_html = quality_view(result.get("quality_warnings"))
            return (
                *result_views(result),
                *(quality_html, picture, caption, measurements_view(analysis), strip_view(strip)),
                *(gr.update(visible=True), pending),
            )

        def make_pdf(result: dict):
            analysis = ctx.store.get(result["id"])
            if analysis is None:
                return gr.update(value=None, interactive=False, label="Analysis was deleted")
            return gr.update(value=str(write_report(ctx, analysis)), interactive=True, label=PDF_LABEL)

        def clear():
            hidden = gr.update(visible=False)
            return placeholder(EMPTY_RESULT), hidden, hidden, hidden, None

        (
            analyze_button.click(
                analyze,
                inputs=[image, patient_name, age, sex, notes],
                outputs=[result_json, rhythm_strip],  # a state: not part of the API's answer
                api_name="analyze",
                concurrency_id="analysis",
                concurrency_limit=ANALYSIS_CONCURRENCY,
            )
            .success(
                show,
                inputs=[result_json, rhythm_strip],
                outputs=[card, emergency, chart, guidance, *shown_with_result, details, report],
                api_visibility="private",
                queue=False,
            )
            .success(make_pdf, inputs=[result_json], outputs=[report], api_visibility="private")
        )
        image.change(
            clear,
            outputs=[card, emergency, quality, details, result_json],
            api_visibility="private",
            queue=False,
        )
    return tab
