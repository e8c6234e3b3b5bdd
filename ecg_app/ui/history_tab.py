"""History tab: stored analyses, newest first, with filters, paging, details, PDF, delete and CSV export;
filtered by patient, that patient's timeline (oldest first), two analyses compared side by side, and the
patient erased.

The table is reloaded from the store whenever the tab is opened, so analyses made in the Analyze tab (or
by API clients and the CLI) show up without a manual refresh.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import gradio as gr
import pandas as pd

from ecg_app.analysis import EXPLANATION_TITLE
from ecg_app.clinical.comparison import Comparison, compare
from ecg_app.clinical.guidance import RISK_LEVELS
from ecg_app.clinical.measurements import LABELS, shown
from ecg_app.labels import CLASSES, DISPLAY_NAMES
from ecg_app.store import AnalysisFilter, Page, StoredAnalysis, warnings_to_json
from ecg_app.store.repository import patient_key
from ecg_app.ui.analyze_tab import (
    explanation_views,
    measurements_view,
    quality_view,
    report_path,
    result_views,
    write_report,
)
from ecg_app.ui.context import AppContext
from ecg_app.ui.widgets import placeholder

PAGE_SIZE = 20
ALL = "All"
COLUMNS = ["Date (UTC)", "Patient", "Class", "Confidence", "Risk", "Status", "ID", "Heart rate"]
CLASS_CHOICES = [(ALL, ALL)] + [(DISPLAY_NAMES[c], c) for c in CLASSES]
RISK_CHOICES = [ALL, *RISK_LEVELS]
NO_SELECTION = "Select a row to see its image, Grad-CAM map, probabilities, measurements and guidance."


def _day(value: Any) -> datetime | None:
    """A DateTime field's value as midnight UTC of that day (None when empty)."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).strip())
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def make_filter(
    label: str | None,
    risk: str | None,
    since: Any,
    until: Any,
    search: str | None,
    patient: str | None = None,
) -> AnalysisFilter:
    """Filter from the widgets: both dates inclusive (the store's `until` is exclusive, hence +1 day)."""
    end = _day(until)
    return AnalysisFilter(
        label=None if label in (None, "", ALL) else label,
        risk_level=None if risk in (None, "", ALL) else risk,
        since=_day(since),
        until=end + timedelta(days=1) if end else None,
        search=(search or "").strip() or None,
        patient=(patient or "").strip() or None,
    )


def table_rows(page: Page) -> pd.DataFrame:
    rows = [
        [
            f"{a.created_at:%Y-%m-%d %H:%M}",
            a.patient.name or "—",
            a.display_name,
            f"{a.confidence:.1%}",
            a.risk_level,
            "needs review" if a.needs_review else "ok",
            str(a.id)[:8],
            shown("heart_rate_bpm", a.measurements.heart_rate_bpm if a.measurements else None),
        ]
        for a in page.items
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def page_text(page: Page, patient: str | None = None) -> str:
    if page.total == 0:
        return "No analyses match these filters."
    pages = (page.total + page.limit - 1) // page.limit
    current = page.offset // page.limit + 1
    first, last = page.offset + 1, page.offset + len(page.items)
    whose = f"Timeline of patient {escape(patient)}, oldest first · " if patient else ""
    return f"{whose}Page {current} of {pages} · analyses {first}–{last} of {page.total}"


def choice_label(analysis: StoredAnalysis) -> str:
    return f"{analysis.created_at:%Y-%m-%d %H:%M} · {analysis.display_name} · {str(analysis.id)[:8]}"


def comparison_html(result: Comparison) -> str:
    """The two results in columns, each class's probability then and now and its change."""
    a, b = result.earlier, result.later
    head = (
        f"<tr><th></th><th>{a.created_at:%Y-%m-%d %H:%M}</th><th>{b.created_at:%Y-%m-%d %H:%M}</th>"
        "<th>Change</th></tr>"
    )
    rows = [
        f"<tr><th>Class</th><td>{escape(a.display_name)}</td><td>{escape(b.display_name)}</td>"
        f"<td>{'changed' if a.label != b.label else 'same'}</td></tr>",
        f"<tr><th>Risk</th><td>{escape(a.risk_level)}</td><td>{escape(b.risk_level)}</td>"
        f"<td>{'changed' if a.risk_level != b.risk_level else 'same'}</td></tr>",
    ]
    for label, change in result.probability_changes().items():
        rows.append(
            f"<tr><th>P({escape(DISPLAY_NAMES[label])})</th><td>{a.probabilities[label]:.1%}</td>"
            f"<td>{b.probabilities[label]:.1%}</td><td>{change:+.1%}</td></tr>"
        )
    warning = "" if result.same_patient else '<p class="ecg-notes">Not stored under the same patient.</p>'
    return (
        f'<p id="compare-summary"><b>{escape(result.summary())}</b></p>{warning}'
        f'<table class="ecg-kv" id="compare-table">{head}{"".join(rows)}</table>'
        f"{comparison_measurements_html(result)}"
    )


def comparison_measurements_html(result: Comparison) -> str:
    """The measurements then and now and their change ("—" where one of them was not measured); nothing
    when neither analysis was measured."""
    changes = result.measurement_changes()
    if all(then is None and now is None for then, now, _ in changes.values()):
        return '<p class="ecg-notes" id="compare-measurements">Neither ECG was measured.</p>'
    rows = "".join(
        f"<tr><th>{escape(LABELS[name])}</th><td>{shown(name, then)}</td><td>{shown(name, now)}</td>"
        f"<td>{shown(name, change, signed=True)}</td></tr>"
        for name, (then, now, change) in changes.items()
    )
    head = "<tr><th>Measurement</th><th>Earlier</th><th>Later</th><th>Change</th></tr>"
    return f'<table class="ecg-kv" id="compare-measurements">{head}{rows}</table>'


def patient_html(analysis: StoredAnalysis) -> str:
    p = analysis.patient
    items = [
        ("Date (UTC)", f"{analysis.created_at:%Y-%m-%d %H:%M:%S}"),
        ("File", analysis.original_filename),
        ("Patient", p.name or "—"),
        ("Age", "—" if p.age is None else str(p.age)),
        ("Sex", (p.sex or "—").capitalize()),
        ("Model", analysis.model_version),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
    notes = f'<p class="ecg-notes"><b>Notes.</b> {escape(p.notes)}</p>' if p.notes else ""
    return f'<table class="ecg-kv">{rows}</table>{notes}'


def build_history_tab(ctx: AppContext) -> gr.Tab:
    with gr.Tab("History", id="history", elem_id="tab-history") as tab:
        with gr.Row(equal_height=True, elem_classes="ecg-filters"):
            label = gr.Dropdown(
                CLASS_CHOICES, value=ALL, label="Class", min_width=150, elem_id="filter-class"
            )
            risk = gr.Dropdown(RISK_CHOICES, value=ALL, label="Risk", min_width=110, elem_id="filter-risk")
            since = gr.DateTime(label="From", include_time=False, type="string", min_width=150)
            until = gr.DateTime(label="To", include_time=False, type="string", min_width=150)
            search = gr.Textbox(
                label="Search",
                placeholder="patient, notes",
                max_lines=1,
                min_width=160,
                elem_id="filter-search",
            )
            patient = gr.Textbox(
                label="Patient (timeline)",
                placeholder="name or ID",
                max_lines=1,
                min_width=160,
                elem_id="filter-patient",
            )
        with gr.Row(visible=False, elem_id="erase-row") as erase_row:
            erase_button = gr.Button(
                "Erase this patient…", size="sm", scale=0, elem_id="erase-patient", elem_classes="ecg-danger"
            )
        with gr.Row(visible=False, elem_id="erase-confirm") as erase_confirm:
            erase_question = gr.HTML()
            erase_yes = gr.Button("Yes, erase", variant="stop", size="sm", elem_id="confirm-erase")
            erase_cancel = gr.Button("Cancel", size="sm", elem_id="cancel-erase")
        erase_name = gr.State(None)  # the patient the question named
        table = gr.Dataframe(
            headers=COLUMNS,
            value=pd.DataFrame(columns=COLUMNS),
            interactive=False,
            wrap=True,
            max_height=520,
            elem_id="history-table",
            label="Analyses (newest first; select a row for details)",
        )
        with gr.Row(equal_height=True, elem_classes="ecg-pager"):
            prev_button = gr.Button("← Previous", size="sm", min_width=100, scale=0)
            page_info = gr.Markdown(elem_id="history-page-info")
            next_button = gr.Button("Next →", size="sm", min_width=100, scale=0)
            export_button = gr.Button("Export CSV", size="sm", min_width=120, scale=0, elem_id="export-csv")
        export_file = gr.File(label="CSV export of the filtered list", visible=False, elem_id="csv-file")
        offset = gr.State(0)
        page_ids = gr.State([])
        with gr.Accordion("Compare two analyses (of this page)", open=False, elem_id="compare"):
            with gr.Row(equal_height=True):
                first_choice = gr.Dropdown([], label="First", elem_id="compare-first")
                second_choice = gr.Dropdown([], label="Second", elem_id="compare-second")
                compare_button = gr.Button("Compare", size="sm", scale=0, elem_id="compare-button")
            with gr.Row(visible=False, elem_id="compare-panel") as compare_panel:
                earlier_image = gr.Image(
                    label="Earlier", interactive=False, height=260, elem_id="compare-earlier"
                )
                later_image = gr.Image(label="Later", interactive=False, height=260, elem_id="compare-later")
            compare_text = gr.HTML(elem_id="compare-text")

        detail_placeholder = gr.HTML(placeholder(NO_SELECTION))
        with gr.Row(visible=False, equal_height=False, elem_id="history-detail") as detail:
            with gr.Column(scale=5, min_width=320):
                image = gr.Image(label="Image", interactive=False, height=300, buttons=["fullscreen"])
                explanation = gr.Image(
                    label=EXPLANATION_TITLE,
                    interactive=False,
                    height=300,
                    buttons=["fullscreen"],
                    elem_id="history-explanation",
                )
                explanation_text = gr.HTML(elem_id="history-explanation-caption")
                info = gr.HTML()
                selected_id = gr.Textbox(label="Analysis ID", interactive=False, elem_id="selected-id")
                with gr.Row():
                    pdf_button = gr.DownloadButton(
                        "Download PDF", size="sm", interactive=False, elem_id="history-pdf"
                    )
                    delete_button = gr.Button(
                        "Delete…", size="sm", elem_id="delete-button", elem_classes="ecg-danger"
                    )
                with gr.Row(visible=False, elem_id="delete-confirm") as confirm_row:
                    gr.Markdown("**Delete this analysis and its image permanently?**")
                    confirm_button = gr.Button(
                        "Yes, delete", variant="stop", size="sm", elem_id="confirm-delete"
                    )
                    cancel_button = gr.Button("Cancel", size="sm", elem_id="cancel-delete")
            with gr.Column(scale=7, min_width=420):
                card = gr.HTML()
                emergency = gr.HTML(visible=False)
                quality = gr.HTML(visible=False, elem_id="history-quality-warnings")
                chart = gr.Plot(show_label=False)
                measurements = gr.HTML(elem_id="history-measurements")
                guidance = gr.HTML()

        filters = [label, risk, since, until, search, patient]  # `load`'s arguments, in its order
        listing = [table, page_info, offset, page_ids, first_choice, second_choice, erase_row, erase_confirm]

        def load(label, risk, since, until, search, patient, offset=0):
            try:
                flt = make_filter(label, risk, since, until, search, patient)
            except ValueError as exc:
                raise gr.Error(f"Please enter dates as YYYY-MM-DD ({escape(str(exc))}).") from exc
            timeline = flt.patient is not None
            page = ctx.store.list(flt, limit=PAGE_SIZE, offset=max(0, int(offset)))  # a patient's: oldest 1st
            if not page.items and page.offset > 0:  # e.g. the last row of the last page was deleted
                page = ctx.store.list(flt, limit=PAGE_SIZE, offset=max(0, page.total - PAGE_SIZE))
            choices = [(choice_label(a), str(a.id)) for a in page.items]
            return (
                table_rows(page),
                page_text(page, flt.patient),
                page.offset,
                [str(a.id) for a in page.items],
                gr.update(choices=choices, value=None),
                gr.update(choices=choices, value=None),
                gr.update(visible=timeline and page.total > 0),
                gr.update(visible=False),  # a pending "erase?" question is asked again for a new list
            )

        def first_page(*values):
            return load(*values, offset=0)

        def previous_page(*values):
            *values, current = values
            return load(*values, offset=max(0, current - PAGE_SIZE))

        def next_page(*values):
            *values, current = values
            return load(*values, offset=current + PAGE_SIZE)

        def current_page(*values):
            *values, current = values
            return load(*values, offset=current)

        def select(ids: list[str], evt: gr.SelectData):
            # Match on the ID column, not the row index, which changes when the user sorts the table.
            short = str((evt.row_value or [""])[-1])
            matches = [i for i in ids if short and i.startswith(short)]
            if matches:
                return matches[0]
            row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
            return ids[row] if isinstance(row, int) and row < len(ids) else gr.skip()

        def show(analysis_id: str):
            analysis = ctx.store.get(analysis_id) if analysis_id else None
            if analysis is None:
                hidden = gr.update(visible=False)
                return (gr.update(visible=True), hidden, None, "", "", hidden, None, "", hidden, None, "", "")
            warnings = warnings_to_json(analysis.quality_warnings)
            result = {
                **analysis.prediction.to_dict(),
                "risk_level": analysis.risk_level,
                "quality_warnings": warnings,
            }
            card_html, banner, figure, advice = result_views(result)
            picture, caption = explanation_views(analysis)
            return (
                gr.update(visible=False),
                gr.update(visible=True),
                str(analysis.image_path),
                patient_html(analysis),
                card_html,
                banner,
                figure,
                advice,
                quality_view(warnings),
                picture,
                caption,
                measurements_view(analysis),
            )

        def report(analysis_id: str):
            """PDF report of a stored analysis (by its ID), as a file."""
            analysis = ctx.store.get(analysis_id) if analysis_id else None
            if analysis is None:
                raise gr.Error("No analysis with this ID.")
            return str(write_report(ctx, analysis))

        def delete(analysis_id: str):
            if analysis_id and ctx.store.delete(analysis_id):
                report_path(ctx, analysis_id).unlink(missing_ok=True)
                gr.Info("Analysis deleted.")
            return gr.update(visible=False), "", gr.update(visible=True), gr.update(visible=False)

        def show_comparison(first_id: str | None, second_id: str | None):
            found = [ctx.store.get(key) if key else None for key in (first_id, second_id)]
            if None in found or first_id == second_id:
                raise gr.Error("Choose two different analyses to compare.")
            result = compare(*found)
            return (
                gr.update(visible=True),
                str(result.earlier.image_path),
                str(result.later.image_path),
                comparison_html(result),
            )

        def ask_erase(patient_value: str):
            flt = AnalysisFilter(patient=(patient_value or "").strip() or None)
            count = ctx.store.list(flt, limit=1).total if flt.patient else 0
            if not count:
                raise gr.Error("No analyses of this patient.")
            question = (
                f"<b>Erase patient {escape(flt.patient)}: delete all {count} analyses and their pictures, "
                "overlays and reports permanently?</b>"
            )
            return gr.update(visible=True), question, flt.patient  # the name confirmed, not the field's later

        def erase(confirmed: str | None):
            if not confirmed:
                raise gr.Error("Nothing to erase: choose the patient again.")
            deleted = ctx.store.delete_patient(confirmed)
            for key in deleted:
                report_path(ctx, key).unlink(missing_ok=True)
            gr.Info(f"Erased {len(deleted)} analyses of patient {escape(confirmed)}.")
            hidden = gr.update(visible=False)
            return hidden, None, "", gr.update(visible=True), hidden, hidden, ""

        def export(*values):
            flt = make_filter(*values)
            path = ctx.work_dir / f"ecg-history-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
            with open(path, "w", newline="", encoding="utf-8") as handle:
                count = ctx.store.export_csv(handle, flt)
            return gr.update(value=str(path), visible=True, label=f"CSV export: {count} analyses")

        private: dict = dict(api_visibility="private")
        tab.select(first_page, inputs=filters, outputs=listing, **private)
        for widget in (label, risk, since, until):
            widget.change(first_page, inputs=filters, outputs=listing, **private)
        search.submit(first_page, inputs=filters, outputs=listing, **private)
        search.blur(first_page, inputs=filters, outputs=listing, **private)
        prev_button.click(previous_page, inputs=[*filters, offset], outputs=listing, **private)
        next_button.click(next_page, inputs=[*filters, offset], outputs=listing, **private)
        detail_outputs = [
            *(detail_placeholder, detail, image, info, card, emergency, chart, guidance),
            *(quality, explanation, explanation_text, measurements),
        ]
        # select -> reset the panel -> details -> PDF (the public `report` endpoint) -> enable the button.
        (
            table.select(select, inputs=[page_ids], outputs=[selected_id], **private)
            .success(
                lambda: (gr.update(visible=False), gr.update(value=None, interactive=False)),
                outputs=[confirm_row, pdf_button],
                queue=False,
                **private,
            )
            .success(show, inputs=[selected_id], outputs=detail_outputs, **private)
            .success(report, inputs=[selected_id], outputs=[pdf_button], api_name="report")
            .success(lambda: gr.update(interactive=True), outputs=[pdf_button], queue=False, **private)
        )
        delete_button.click(lambda: gr.update(visible=True), outputs=[confirm_row], queue=False, **private)
        cancel_button.click(lambda: gr.update(visible=False), outputs=[confirm_row], queue=False, **private)
        confirm_button.click(
            delete,
            inputs=[selected_id],
            outputs=[confirm_row, selected_id, detail_placeholder, detail],
            **private,
        ).then(current_page, inputs=[*filters, offset], outputs=listing, **private)
        export_button.click(export, inputs=filters, outputs=[export_file], **private)

        def patient_page(*values):
            """The first page for the patient typed in, withdrawing an erase question only when it named
            another patient: leaving the field for the erase button blurs it, and that list may land
            after the question it must not then withdraw."""
            *values, pending = values
            listed = load(*values, offset=0)
            typed = values[filters.index(patient)]
            try:
                same = pending is not None and patient_key(pending) == patient_key(typed)
            except ValueError:  # a name too long to be one; `load` has said so
                same = False
            return (*listed[:-1], gr.update() if same else listed[-1])

        # One at a time, so a list sees the question asked before it (the name it keeps it for).
        in_turn: dict = dict(concurrency_id="patient-list", concurrency_limit=1)
        patient.submit(patient_page, inputs=[*filters, erase_name], outputs=listing, **private, **in_turn)
        patient.blur(patient_page, inputs=[*filters, erase_name], outputs=listing, **private, **in_turn)
        compare_button.click(
            show_comparison,
            inputs=[first_choice, second_choice],
            outputs=[compare_panel, earlier_image, later_image, compare_text],
            **private,
        )
        erase_button.click(
            ask_erase,
            inputs=[patient],
            outputs=[erase_confirm, erase_question, erase_name],
            **private,
            **in_turn,
        )
        erase_cancel.click(
            lambda: (gr.update(visible=False), None),
            outputs=[erase_confirm, erase_name],
            queue=False,
            **private,
        )
        erase_yes.click(
            erase,
            inputs=[erase_name],
            outputs=[
                *(erase_confirm, erase_name, selected_id, detail_placeholder, detail),
                *(compare_panel, compare_text),
            ],
            **private,
        ).then(first_page, inputs=filters, outputs=listing, **private)

        def history(
            label: str = "",
            risk: str = "",
            since: str = "",
            until: str = "",
            search: str = "",
            limit: int = 50,
            offset: int = 0,
            patient: str = "",
        ) -> dict:
            """Stored analyses, newest first (one `patient`'s: oldest first), filtered and paged: as
            `ecg-app history list --json` prints."""
            flt = make_filter(label, risk, since, until, search, patient)
            page = ctx.store.list(flt, limit=limit, offset=offset)
            items = [item.to_dict() for item in page.items]
            return {"total": page.total, "limit": page.limit, "offset": page.offset, "items": items}

        gr.api(history, api_name="history", concurrency_limit=None)
    return tab
