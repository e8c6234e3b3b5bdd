"""Hostile patient text (tests/hostile_text.py) and hostile upload file names through the real layers:
the store (SQLAlchemy round trip and search), the CSV export, the History tab's HTML, the PDF report, the
Analyze form and the `analyze` command. The running app's API is in tests/integration/test_security.py.

The Analyze tab shows no patient text (its result card, guidance and JSON hold model output and the file
name only), so the History tab and the PDF are where typed text is displayed.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from ecg_app.cli import main
from ecg_app.clinical.report import render_report_html, render_report_pdf
from ecg_app.store import AnalysisFilter, PatientInfo, open_store
from ecg_app.store.models import Analysis
from ecg_app.store.repository import MAX_FILENAME_CHARS
from ecg_app.ui import analyze_tab, history_tab
from tests.conftest import encode, settings_for, synthetic_printout
from tests.hostile_text import CASES, HostileText
from tests.test_report import norm, page_texts
from tests.test_store import make_prediction

GENERATED = datetime(2025, 3, 2, 9, 30, tzinfo=UTC)
FIELDS = ("name", "notes")
LIMIT_MESSAGE = {"name": "name or ID must be at most 200 characters", "notes": "notes must be at most 10,000"}
MARKERS = {"name": "NAME-MARKER", "notes": "NOTES-MARKER"}
FORMULA_START = ("=", "+", "-", "@")
# Every tag and attribute patient_html may produce: anything else would have come from the text.
HISTORY_TAGS = {"table", "tr", "th", "td", "p", "b"}


@pytest.fixture(scope="module")
def page() -> tuple:
    rgb = synthetic_printout(width=900, height=640, seed=9)
    return rgb, encode(rgb)


class Markup(HTMLParser):
    """Tags (with their attributes) and text of an HTML string, as a browser would parse them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple]] = []
        self.chunks: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(attrs)))

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def as_typed(case: HostileText) -> dict[str, str | None]:
    """The fields as the user typed them; a refused field is left empty so the other can be stored."""
    return {field: case.text if case.accepts(field) else None for field in FIELDS}


def expected(case: HostileText) -> dict[str, str | None]:
    return {field: case.stored(field) if case.accepts(field) else None for field in FIELDS}


def with_markers(case: HostileText) -> PatientInfo:
    """The same fields present as in the case, holding plain markers: the layout to compare against."""
    values = expected(case)
    return PatientInfo(**{field: MARKERS[field] if values[field] else None for field in FIELDS})


def shown_text(markup: Markup, case: HostileText) -> str:
    """What the marker layout's text becomes when the markers are the case's stored values."""
    text = markup.text
    for field, value in expected(case).items():
        if value:
            text = text.replace(MARKERS[field], value)
    return text


def squash(text: str) -> str:
    return "".join(text.split())


def csv_cell(value: str | None) -> str:
    """A stored value as the CSV export must write it: formulas behind a leading quote."""
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_START) else value


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_text_through_store_csv_history_and_pdf(store, page, case):
    # Refused fields: the same clear message from PatientInfo and the Analyze form, nothing to store.
    for field in FIELDS:
        if not case.accepts(field):
            with pytest.raises(ValueError, match=LIMIT_MESSAGE[field]):
                PatientInfo(**{field: case.text})
            form = {"name": None, "age": None, "sex": None, "notes": None, field: case.text}
            with pytest.raises(ValueError, match=LIMIT_MESSAGE[field]):
                analyze_tab.patient_from_fields(**form)
    typed, want = as_typed(case), expected(case)
    if not any(typed.values()):
        return
    rgb, data = page
    control = store.add(make_prediction("Normal"), data, rgb, "ok.png", PatientInfo("Control", notes="Ok"))
    added = store.add(make_prediction("MI"), data, rgb, "scan.png", PatientInfo(**typed))

    # Store: the columns hold exactly the expected text, and it reads back the same.
    with store.engine.connect() as connection:
        row = connection.execute(
            select(Analysis.patient_name, Analysis.notes).where(Analysis.id == added.id)
        ).one()
    assert tuple(row) == (want["name"], want["notes"])
    analysis = store.get(added.id)
    assert (analysis.patient.name, analysis.patient.notes) == (want["name"], want["notes"])
    # Search binds the text as a parameter and escapes LIKE wildcards: only this analysis matches.
    for value in filter(None, want.values()):
        found = store.list(AnalysisFilter(search=value[:200]))
        assert [item.id for item in found.items] == [added.id], value[:200]

    # CSV: read back with the csv module, verbatim apart from the formula guard.
    out = io.StringIO(newline="")
    store.export_csv(out)
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(out.getvalue(), newline=""))}
    assert set(rows) == {str(added.id), str(control.id)}
    exported = rows[str(added.id)]
    assert (exported["patient_name"], exported["notes"]) == (csv_cell(want["name"]), csv_cell(want["notes"]))
    assert not any(value.startswith(FORMULA_START) for value in exported.values())

    # History tab: the details fragment has only its own tags, and shows the text exactly.
    shown = Markup(history_tab.patient_html(analysis))
    layout = Markup(history_tab.patient_html(replace(analysis, patient=with_markers(case))))
    assert {tag for tag, _ in shown.tags} <= HISTORY_TAGS
    assert shown.tags == layout.tags
    assert shown.text == shown_text(layout, case)
    if want["name"]:  # the list's Patient column: plain text, which gr.Dataframe shows as text
        table = history_tab.table_rows(store.list(AnalysisFilter(search=want["name"][:200])))
        assert table["Patient"].tolist() == [want["name"]]

    # PDF: the report's HTML has the template's tags only and the text exactly (nothing evaluated, so
    # "{{ 7*7 }}" is printed, never 49); the PDF's text has it where the font has the glyphs (compared
    # without whitespace: lines may break after "/" or "-", and pypdf puts a line break there).
    html = Markup(render_report_html(analysis, generated_at=GENERATED))
    layout = Markup(render_report_html(replace(analysis, patient=with_markers(case)), generated_at=GENERATED))
    assert html.tags == layout.tags
    assert html.text == shown_text(layout, case)
    pdf_text = squash(" ".join(page_texts(render_report_pdf(analysis, generated_at=GENERATED))))
    fragments = case.pdf if case.pdf is not None else tuple(filter(None, want.values()))
    for fragment in fragments:
        assert squash(norm(fragment)) in pdf_text, fragment


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """The CLI's data dir and default SQLite database in tmp_path; an ECG picture to analyse."""
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ECG_APP_DATABASE_URL", raising=False)
    path = tmp_path / "scan.png"
    path.write_bytes(encode(synthetic_printout(seed=12)))
    return path


REFUSALS = [(case, field) for case in CASES for field in FIELDS if not case.accepts(field)]


@pytest.mark.parametrize(("case", "field"), REFUSALS, ids=[f"{c.id}-{f}" for c, f in REFUSALS])
def test_analyze_command_refuses_over_long_text_before_storing(cli_env, capsys, case, field):
    option = {"name": "--patient-name", "notes": "--notes"}[field]
    assert main(["analyze", str(cli_env), option, case.text]) == 2
    assert re.search(LIMIT_MESSAGE[field], capsys.readouterr().err)
    with open_store() as store:
        assert store.list().total == 0


def test_analyze_command_stores_hostile_text_verbatim(cli_env, tmp_path, capsys, shipped_model):
    """One run of the real command with the shipped model: stored, exported and printed like the rest."""
    by_id = {case.id: case for case in CASES}
    name, notes = by_id["img_onerror"], by_id["csv_hyperlink"]
    args = ["--patient-name", name.text, "--notes", notes.text, "--model", str(shipped_model), "--json"]
    assert main(["analyze", str(cli_env), *args]) == 0
    capsys.readouterr()
    out = tmp_path / "history.csv"
    assert main(["history", "export", str(out)]) == 0
    (row,) = csv.DictReader(out.open(newline="", encoding="utf-8"))
    assert (row["patient_name"], row["notes"]) == (name.text, "'" + notes.text)
    pdf = tmp_path / "report.pdf"
    assert main(["report", row["id"], "-o", str(pdf)]) == 0
    text = squash(" ".join(page_texts(pdf.read_bytes())))
    assert squash(name.text) in text and squash(notes.text) in text


# -- upload file names: display text only, never a path --------------------------------------------------

FILE_NAMES = {
    "../../evil.png": "evil.png",
    "/etc/passwd": "passwd",
    "a\\b.png": "b.png",
    "C:\\Users\\x\\..\\evil.png": "evil.png",
    "\\\\server\\share\\evil.png": "evil.png",
    "..": "upload",
    "uploads/..": "upload",
    "": "upload",
    "evil\x00.png\n": "evil.png",
    "scan\u202egnp.exe": "scangnp.exe",
    "<img src=x onerror=alert(1)>.png": "<img src=x onerror=alert(1)>.png",
    "=cmd|' -C calc'!A0.png": "=cmd|' -C calc'!A0.png",
    "x" * 300 + ".png": "x" * (MAX_FILENAME_CHARS - 4) + ".png",
}
CONTENT_NAME = re.compile(r"^images/[0-9a-f]{2}/[0-9a-f]{64}(\.thumb|\.stored)?\.(png|jpg)$")


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_upload_file_names_are_stored_and_shown_only_as_text(tmp_path, monkeypatch, page):
    """Stored files are named by content; the upload's name is cleaned text, shown escaped."""
    work = tmp_path / "work" / "deeper"  # a relative name used as a path would land around here
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    rgb, data = page
    before = files_under(tmp_path)
    with open_store(settings_for(tmp_path)) as store:
        for raw, shown in FILE_NAMES.items():
            analysis = store.add(make_prediction(), data, rgb, raw, PatientInfo("File name test"))
            assert analysis.original_filename == shown, raw
            assert len(shown) <= MAX_FILENAME_CHARS and "/" not in shown and "\\" not in shown
            assert Markup(history_tab.patient_html(analysis)).text.count(shown) == 1
            html = render_report_html(analysis, generated_at=GENERATED)
            assert shown in Markup(html).text and "<img src=x" not in html
        out = io.StringIO(newline="")
        store.export_csv(out)
        exported = {row["file"] for row in csv.DictReader(io.StringIO(out.getvalue(), newline=""))}
        assert exported == {csv_cell(shown) for shown in FILE_NAMES.values()}
        new_files = files_under(tmp_path) - before
    data_files = {f.removeprefix("data/") for f in new_files if f.startswith("data/")}
    assert new_files == {f"data/{f}" for f in data_files}  # nothing written outside the data dir
    assert all(CONTENT_NAME.match(f) or f.startswith("ecg.sqlite3") for f in data_files), data_files
    assert not (tmp_path / "evil.png").exists() and not (work / "evil.png").exists()
