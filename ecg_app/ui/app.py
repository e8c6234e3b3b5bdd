"""The dashboard: `build_app(settings)` assembles the four tabs; `launch` serves them.

The classifier and the store are created once per process and shared by every request. The networks
are loaded and traced before the server reports ready, so the first analysis does not wait for
TensorFlow; the rest of the warm-up (the ECG detector, the first explanation, WeasyPrint's fonts) runs
in a background thread while the server starts, so it no longer delays start-up (docs/dashboard.md).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from ecg_app import __version__
from ecg_app.config import Settings
from ecg_app.serving.intake import load_image
from ecg_app.ui.about_tab import build_about_tab
from ecg_app.ui.analyze_tab import EXAMPLES_DIR, build_analyze_tab
from ecg_app.ui.context import ANALYSIS_CONCURRENCY, AppContext
from ecg_app.ui.history_tab import build_history_tab
from ecg_app.ui.performance_tab import build_performance_tab

if TYPE_CHECKING:
    from ecg_app.serving.classifier import Prediction

log = logging.getLogger(__name__)

CSS_FILE = Path(__file__).with_name("style.css")
WARM_UP_EXAMPLE = EXAMPLES_DIR / "Normal(29).jpg"
UPLOAD_CACHE_S = (300, 1800)  # (how often, how old): Gradio deletes cached uploads older than this
THEME = gr.themes.Default(
    primary_hue="cyan",
    secondary_hue="slate",
    neutral_hue="slate",
    radius_size="sm",
    font=["Inter", "Segoe UI", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["DejaVu Sans Mono", "Menlo", "monospace"],
)
QUEUE_MAX_SIZE = 64
HEADER_HTML = f"""
<div class="ecg-header">
  <div class="ecg-logo" aria-hidden="true">
    <svg viewBox="0 0 48 24" width="44" height="22">
      <polyline points="0,14 12,14 16,4 21,22 26,10 30,14 48,14" fill="none" stroke="currentColor"
        stroke-width="2.4" stroke-linejoin="round" stroke-linecap="round"/>
    </svg>
  </div>
  <div>
    <div class="ecg-title">ECG Image Classifier</div>
    <div class="ecg-subtitle">12-lead ECG printout analysis · research and education use only,
      not a medical device · v{__version__}</div>
  </div>
</div>
"""


@dataclass
class App:
    """A built dashboard and the context its callbacks use."""

    blocks: gr.Blocks
    context: AppContext


def load_classifier(settings: Settings):
    """The shared classifier, or None (with a warning) when no trained model is installed."""
    from ecg_app.serving.classifier import get_classifier

    try:
        return get_classifier(settings.model_dir)
    except FileNotFoundError as exc:
        log.warning("%s: the Analyze tab will report that no model is installed", exc)
        return None


def warm_up(context: AppContext) -> Prediction | None:
    """Load the networks and trace them with one prediction (returned): what every analysis needs."""
    if context.classifier is None:
        return None
    return context.classifier.predict(load_image(WARM_UP_EXAMPLE))


def finish_warm_up(context: AppContext, prediction: Prediction) -> None:
    """Load the ECG detector, build and trace Grad-CAM and load WeasyPrint's fonts before the first
    real request needs them, from `warm_up`'s prediction of the example. Safe beside requests: each
    part is built once under its own lock."""
    from ecg_app.analysis import explainer_for, explanation_overlay
    from ecg_app.clinical.report import render_report_pdf
    from ecg_app.labels import NON_ECG
    from ecg_app.store import StoredAnalysis

    rgb = load_image(WARM_UP_EXAMPLE)
    context.classifier.detect([rgb])  # the ECG detector runs only for Non-ECG calls: load it now too
    explainer = explainer_for(context.classifier)
    if explainer is not None:
        explanation_overlay(explainer, rgb, "Normal" if prediction.label == NON_ECG else prediction.label)
    fake = StoredAnalysis(
        id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        original_filename=WARM_UP_EXAMPLE.name,
        image_sha256="0" * 64,
        image_path=WARM_UP_EXAMPLE,
        thumbnail_path=WARM_UP_EXAMPLE,
        media_type="image/jpeg",
        label=prediction.label,
        confidence=prediction.confidence,
        probabilities=prediction.probabilities,
        risk_level=prediction.risk_level,
        model_version=prediction.model_version,
        status=prediction.status,
    )
    render_report_pdf(fake, model_dir=context.settings.model_dir)
    log.info("warm-up finished: detector, explanation and PDF ready")


def _finish_warm_up_quietly(context: AppContext, prediction: Prediction) -> None:
    """`finish_warm_up` in a background thread: a failure there only means a slower first request."""
    try:
        finish_warm_up(context, prediction)
    except Exception:
        log.exception("background warm-up failed; the first analysis will do that work instead")


def build_app(settings: Settings | None = None, *, store=None, classifier=None, warm: bool = True) -> App:
    """Open the store (migrating it), load the model, and lay out the tabs."""
    from ecg_app.store import open_store

    settings = settings or Settings.from_env()
    work_dir = Path(tempfile.mkdtemp(prefix="ecg-app-"))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    context = AppContext(
        settings=settings,
        store=store if store is not None else open_store(settings),
        classifier=classifier if classifier is not None else load_classifier(settings),
        work_dir=work_dir,
    )
    warmed = warm_up(context) if warm else None
    # Gradio keeps each upload (the original bytes, header and EXIF included) in its cache: deleted here
    # 30 minutes after upload (checked every 5), since only the de-identified picture is to be kept.
    with gr.Blocks(
        title="ECG Image Classifier", analytics_enabled=False, delete_cache=UPLOAD_CACHE_S
    ) as blocks:
        gr.HTML(HEADER_HTML)
        with gr.Tabs(elem_id="main-tabs"):
            build_analyze_tab(context)
            build_history_tab(context)
            build_performance_tab(context)
            build_about_tab(context)
    blocks.queue(default_concurrency_limit=ANALYSIS_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    if warmed is not None:
        threading.Thread(
            target=_finish_warm_up_quietly, args=(context, warmed), name="ecg-app-warm-up", daemon=True
        ).start()
    return App(blocks=blocks, context=context)


def launch(
    app: App, host: str = "127.0.0.1", port: int | None = 7860, *, block: bool = True, quiet: bool = False
) -> str:
    """Serve the app; returns its local URL (with `block=False` the server runs in a background thread)."""
    settings = app.context.settings
    auth = list(settings.users) or None
    _, url, _ = app.blocks.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        auth_message="ECG Image Classifier: please sign in." if auth else None,
        prevent_thread_lock=not block,
        quiet=quiet,
        theme=THEME,
        css_paths=[CSS_FILE],
        allowed_paths=[str(app.context.store.images.root)],
        max_file_size=2 * settings.max_upload_bytes,
        footer_links=["api", "settings"],
        run_history=False,
        enable_monitoring=False,
        show_error=True,
        favicon_path=None,
    )
    return url
