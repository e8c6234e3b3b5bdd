"""About tab: what the app does and does not do, the classes, the model card, the data and its licence."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import gradio as gr

from ecg_app import __version__
from ecg_app.clinical.guidance import load_guidance
from ecg_app.labels import CLASSES, DISPLAY_NAMES
from ecg_app.ui.context import AppContext
from ecg_app.ui.widgets import disclaimer_html, risk_badge

DATASET_CITATION = (
    'Khan A.H., Hussain M. (2021). "ECG Images dataset of Cardiac Patients". Mendeley Data, V2. '
    "doi:10.17632/gwbz3fsgp8.2. Licence: CC BY 4.0."
)
DATASET_URL = "https://doi.org/10.17632/gwbz3fsgp8.2"

CLASS_MEANINGS = {
    "MI": "Features of an acute or recent heart attack (ST changes, new Q waves, T-wave inversion).",
    "HMI": "Features of a previous heart attack (old scar: pathological Q waves, poor R-wave progression).",
    "AHB": "An abnormal heartbeat: arrhythmia or conduction abnormality.",
    "Normal": "A normal 12-lead ECG pattern.",
    "NonECG": "The picture is not an ECG printout; no cardiac assessment is given.",
}


def _model_version(model_dir: Path) -> str:
    try:
        return str(json.loads((model_dir / "model.json").read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no trained model installed"


def classes_table() -> str:
    book = load_guidance()
    rows = "".join(
        f"<tr><td><b>{escape(DISPLAY_NAMES[c])}</b><br><span class='ecg-muted'>{escape(c)}</span></td>"
        f"<td>{escape(CLASS_MEANINGS[c])}</td><td>{risk_badge(book.for_label(c).risk_level)}</td></tr>"
        for c in CLASSES
    )
    return (
        '<table class="ecg-table"><thead><tr><th>Class</th><th>Meaning</th><th>Risk level</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def about_markdown(model_dir: Path, keep_originals: bool = False) -> str:
    keep = "on here" if keep_originals else "off here"
    return f"""
## ECG image classifier

This dashboard classifies a **photo or scan of a 12-lead ECG printout** into one of four ECG classes, or
recognises that the picture is not an ECG. For each result it shows the class probabilities, a risk
level and general guidance (suggested tests, monitoring, lifestyle advice), keeps a history of analyses
and produces a PDF report.

**Measurements.** Heart rate, rhythm regularity, PR, QRS, QT/QTc and the QRS axis are read off the
trace of the known template; on other layouts only the heart rate, where the printed grid gives the
time scale. A number the trace does not support is shown as not measured, with the reason.

**What it does not do.** It does not interpret rhythms beat by beat (no arrhythmia names) or use the
patient's symptoms and history. It was trained on printouts from one hospital, one ECG machine and one
print template, so other layouts, poor photos and rare conditions are less reliable. A result is a
second look for education and research, **never a diagnosis**: a qualified clinician must read every ECG.
Results below the model's confidence threshold are marked *needs review*, as are ECGs whose probability
of infarction is too high to rule one out although another class is shown (their risk is raised to
high), and non-ECG pictures are rejected instead of being forced into a cardiac class.

**Privacy.** What is kept of an upload is de-identified: on a printout of the known template
everything outside the trace area (the header with the patient ID, the footer, the margins) is painted
white in the stored picture, its thumbnail, its Grad-CAM map and the PDF report; on other pictures every
word the text reader (Tesseract) finds is painted white. Photo metadata (EXIF: place, device, time) is
dropped, and the upload's own bytes are not kept, only their SHA-256 so that a re-upload is recognised,
unless this installation keeps originals (`ECG_APP_KEEP_ORIGINALS=1`: {keep}). What you type in (patient
name or ID, age, sex, notes) and the file's name are stored as given. A patient's analyses can be erased
from the History tab or with `ecg-app history delete --patient`. Details: docs/security.md.

**Version:** ecg-app {__version__}, model {escape(_model_version(model_dir))}.
"""


DATASET_MARKDOWN = f"""
### Training data

{DATASET_CITATION} <{DATASET_URL}>

12-lead ECG images of cardiac patients from one hospital. The published files contain many exact
duplicates; training and evaluation use duplicate-aware splits so the reported test figures are not
inflated by copies of training images. Non-ECG examples come from public image collections (scikit-image,
ImageNet samples, chest X-rays, document scans). The example images in the Analyze tab are four images of
this dataset (CC BY 4.0) and the scikit-image "coffee" photograph (CC0).
"""


def model_card(model_dir: Path) -> str | None:
    path = model_dir / "MODEL_CARD.md"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def card_section(card: str, keyword: str) -> str | None:
    """Body of the first '## ' section whose heading contains `keyword` (case-insensitive), if any."""
    match = re.search(rf"^## [^\n]*{re.escape(keyword)}[^\n]*\n(.*?)(?=^## |\Z)", card, re.I | re.M | re.S)
    return match.group(1).strip() if match else None


def build_about_tab(ctx: AppContext) -> gr.Tab:
    """Static page; the model card is read once at start-up from model/MODEL_CARD.md when present."""
    with gr.Tab("About", id="about", elem_id="tab-about") as tab, gr.Column(elem_classes="ecg-about"):
        gr.Markdown(about_markdown(ctx.settings.model_dir, ctx.settings.keep_originals))
        gr.HTML(disclaimer_html())
        gr.Markdown("### Classes")
        gr.HTML(classes_table())
        card = model_card(ctx.settings.model_dir)
        gr.Markdown("### Model card summary")
        if card:
            summary = card_section(card, "what it does")
            limits = card_section(card, "limit")
            gr.Markdown(
                "\n\n".join(filter(None, [summary, "**Known limitations**" if limits else "", limits]))
            )
            with gr.Accordion("Full model card: data, training, evaluation, limitations", open=False):
                gr.Markdown(card)
        else:
            gr.Markdown(
                "_No model card installed (model/MODEL_CARD.md)._ Known limitations: a single-source "
                "training set of a few hundred distinct images, one print template, no external "
                "validation; see the Model Performance tab for the test results."
            )
        gr.Markdown(DATASET_MARKDOWN)
    return tab
