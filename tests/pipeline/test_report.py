"""The exceptions workbook, checked cell by cell through openpyxl and read back with calamine."""

import datetime as dt
import re
import zipfile
from copy import copy

import pytest
from openpyxl import load_workbook

from pipeline.config import load_config
from pipeline.ingest import read_claims
from pipeline.report import EXCEPTION_HEADERS, SHEETS, STATUSES, labels_for
from pipeline.review import STATE_SHEET as REVIEW_STATE
from pipeline.sample import clean_claim, write_csv
from pipeline.scrub import scrub_file
from schemas import columns as C
from tests.conftest import AS_OF, SAMPLES


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    return scrub_file(SAMPLES / "mixed.csv", out, load_config(SAMPLES / "claimscrub.toml"), AS_OF,
                      run_id="test-run")


def test_sheets_header_and_rows(mixed):
    """It writes the five sheets in order (and the hidden review state), the exact header, and one row per
    finding."""
    wb = load_workbook(mixed.workbook)
    assert [ws.title for ws in wb.worksheets if ws.sheet_state == "visible"] == list(SHEETS)
    assert wb[REVIEW_STATE].sheet_state == "hidden"
    ws = wb["Exceptions"]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == EXCEPTION_HEADERS
    assert len(rows) - 1 == len(mixed.findings)
    got = {(r[1], r[7], r[3]) for r in rows[1:]}
    assert ("MIX-HFS-017", "HFS-017", mixed.findings.query("rule == 'HFS-017'").source_row.iat[0]) in got
    sev = [r[8] for r in rows[1:]]
    assert sev == sorted(sev, key=["error", "warning", "info"].index)
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref.startswith("A1:P")


def test_every_rule_fires_on_the_mixed_sample(mixed):
    """It fires every catalog rule at least once on the mixed sample (FILE rules aside)."""
    from schemas.rules import RULES

    fired = set(mixed.findings["rule"])
    expected = {r.id for r in RULES if not r.id.startswith("FILE")}
    assert expected <= fired


def test_status_dropdown_no_formulas_dates_typed(mixed):
    """It offers the status list, writes no formula anywhere and types dates as dates."""
    wb = load_workbook(mixed.workbook)
    ws = wb["Exceptions"]
    (dv,) = ws.data_validations.dataValidation
    assert dv.type == "list" and dv.formula1 == '"' + ",".join(STATUSES) + '"'
    assert str(dv.sqref).startswith("N2:N")
    for sheet in wb.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate)
    assert isinstance(ws["F2"].value, dt.datetime) and ws["F2"].number_format == "yyyy-mm-dd"
    links = [c.hyperlink.location for (c,) in ws.iter_rows(min_col=1, max_col=1, min_row=2) if c.hyperlink]
    assert links and all(x.startswith("'Claims'!A") for x in links)
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(values_only=True) if r and r[0]}
    assert summary["Input file"] == "mixed.csv" and summary["Run id"] == "test-run"


def test_calamine_reads_the_same_values(mixed):
    """It gives the same Exceptions values to a second reader."""
    from python_calamine import CalamineWorkbook

    ours = [list(r) for r in load_workbook(mixed.workbook)["Exceptions"].iter_rows(values_only=True)]
    theirs = CalamineWorkbook.from_path(str(mixed.workbook)).get_sheet_by_name("Exceptions").to_python()
    norm = lambda v: None if v in ("", None) else (v.date() if isinstance(v, dt.datetime) else v)  # noqa: E731
    assert [[norm(v) for v in r] for r in ours] == [[norm(v) for v in r] for r in theirs]


@pytest.mark.parametrize("evil", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx",
                                  "#N/A", "bell\x07char", "non\uffffchar\ufffe",
                                  "<!--claimscrub-rows--> ]]> &amp; <x/>"])
def test_text_from_input_never_becomes_a_formula(tmp_path, evil):
    """It writes hostile text as text (formula injection)."""
    lines = clean_claim()
    for line in lines:
        line[C.PAYER] = evil
        line[C.NDC] = None
    o = scrub_file(write_csv(lines, tmp_path / "e.csv"), tmp_path, None, AS_OF)
    ws = load_workbook(o.workbook)["Exceptions"]
    cell = ws["G2"]
    assert cell.data_type == "s"
    assert cell.value == re.sub("[\x07\ufffe\uffff]", "\ufffd", evil.strip())  # ingest trims outer white space


def test_same_input_same_body(tmp_path):
    """It writes the same rows, ids and order for the same input and settings."""
    a = scrub_file(SAMPLES / "mixed.csv", tmp_path / "a", None, AS_OF)
    b = scrub_file(SAMPLES / "mixed.csv", tmp_path / "b", None, AS_OF)
    rows = lambda p: list(load_workbook(p)["Exceptions"].iter_rows(values_only=True))  # noqa: E731
    assert rows(a.workbook) == rows(b.workbook)
    assert a.findings_csv.read_text() == b.findings_csv.read_text()


def test_review_styles(mixed):
    """It colours severities, highlights the offending cells, links ids and keeps number formats."""
    wb = load_workbook(mixed.workbook)
    ws = wb["Exceptions"]
    colour = {"error": "00F8CBAD", "warning": "00FFE699", "info": "00DDEBF7"}
    for (sev,) in ws.iter_rows(min_row=2, min_col=9, max_col=9):
        assert sev.fill.fgColor.rgb == colour[sev.value]
    assert all(c.alignment.wrap_text for (c,) in ws.iter_rows(min_row=2, min_col=12, max_col=12))
    linked = [c for (c,) in ws.iter_rows(min_row=2, min_col=1, max_col=1) if c.hyperlink]
    assert linked and all(c.font.color.rgb == "000563C1" and c.data_type == "s" for c in linked)
    assert all(isinstance(c.value, int) for (c,) in ws.iter_rows(min_row=2, min_col=3, max_col=3) if c.value)
    claims = wb["Claims"]
    assert claims.freeze_panes == "B2"  # source row and header stay in view
    header = [c.value for c in claims[1]]
    labels = labels_for(read_claims(SAMPLES / "mixed.csv").mapped)  # the file's own headers
    assert header[0] == "Row in File" and labels[C.NDC] in header and C.NDC not in header
    by_row = {r[0].value: r for r in claims.iter_rows(min_row=2)}
    hdfs17 = mixed.findings.query("rule == 'HFS-017'").iloc[0]
    ndc_cell = by_row[hdfs17.source_row][header.index(labels[C.NDC])]
    assert ndc_cell.fill.fgColor.rgb == "00FFC7CE"
    unflagged = by_row[hdfs17.source_row][header.index(labels[C.PAYER])]
    assert unflagged.fill.fill_type is None
    charge = by_row[hdfs17.source_row][header.index(labels[C.CHARGE])]
    assert charge.number_format == '"$"#,##0.00' and isinstance(charge.value, float | int)
    date = by_row[hdfs17.source_row][header.index(labels[C.SERVICE_DATE])]
    assert isinstance(date.value, dt.datetime) and date.number_format == "yyyy-mm-dd"


def _props(c):
    """What a reviewer sees of a cell: value, type, format, fill, font, wrap, quote prefix, link."""
    return (c.value, c.data_type, c.number_format, c.fill.fill_type and c.fill.fgColor.rgb, c.font.b,
            c.font.color and c.font.color.rgb, c.font.u, c.alignment.wrap_text, c.quotePrefix,
            c.hyperlink and (c.hyperlink.location, c.hyperlink.tooltip))


def test_streamed_rows_are_the_cells_openpyxl_writes(tmp_path):
    """It writes the large sheets' rows as the same cells as openpyxl's own ws.append would."""
    from openpyxl import Workbook
    from openpyxl.cell import Cell, WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.worksheet.hyperlink import Hyperlink

    from pipeline.xlsxrows import CHUNK_ROWS, Column, Link, stream_rows

    texts = ["plain", " lead", "trail ", "a & b <c> \"d\" 'e'", "cr\rlf\r\nnl\ttab", "über ✓ 𝄞", "x" * 300, None]
    numbers = [0, -3, 12345678901234567, 2.5, 1e-9, float("nan"), None, 7]
    dates = [dt.date(2024, 1, 2), dt.date(1900, 1, 1), dt.date(1900, 3, 1), None, dt.datetime(2024, 5, 6, 7, 8),
             dt.date(2024, 1, 2), None, dt.date(2031, 12, 31)]
    n = CHUNK_ROWS + 3  # crosses a chunk boundary
    rows = range(n)

    def protos(ws):
        wrap, fill, money = WriteOnlyCell(ws), WriteOnlyCell(ws), WriteOnlyCell(ws)
        wrap.alignment = Alignment(wrap_text=True, vertical="top")
        fill.fill, fill.number_format = PatternFill("solid", fgColor="FFC7CE"), "yyyy-mm-dd"
        money.number_format, money.quotePrefix, money.font = '"$"#,##0.00', True, Font(bold=True)
        return wrap, fill, money

    spec = [  # (value, style) per row and column
        [(texts[i % 8], None) for i in rows],
        [(texts[i % 8], "wrap") for i in rows],
        [(numbers[i % 8], None) for i in rows],
        [(numbers[i % 8], "money" if i % 3 else None) for i in rows],
        [(dates[i % 8], None) for i in rows],
        [(dates[i % 8], "fill" if i % 2 else None) for i in rows],
        [(None, "fill" if i % 5 == 0 else None) for i in rows],
        [(None if i % 6 == 0 else i * 37 - 5000, "money" if i % 4 == 0 else None) for i in rows],  # whole numbers
        [(texts[i % 8] if i % 7 else None, None) for i in rows],
    ]
    linked = {i: f"'Claims'!A{i + 9}" for i in rows if i % 4 == 0}
    tip = 'say "hi" & <bye>\tnow'
    external = {1: "https://example.invalid/a?b=1&c=2"}  # a link out of the workbook, in the second column
    header = ["One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]

    wb = Workbook(write_only=True)
    ref, fast = wb.create_sheet("ref"), wb.create_sheet("fast")
    for ws in (ref, fast):
        ws.freeze_panes = "B2"
    ref_protos = dict(zip(("wrap", "fill", "money"), protos(ref), strict=True))
    for i in [None, *rows]:
        if i is None:
            ref.append(header)
            continue
        out = []
        for j, col in enumerate(spec):
            value, style = col[i]
            if style is None:
                out.append(WriteOnlyCell(ref, value=value) if isinstance(value, str) else value)
                if isinstance(value, str):
                    out[-1].data_type = "s"
            else:
                cell = WriteOnlyCell(ref, value=value)
                cell._style = copy(ref_protos[style]._style)
                if isinstance(value, str):
                    cell.data_type = "s"
                out.append(cell)
            if j == 0 and i in linked:
                if not isinstance(out[0], Cell):
                    out[0] = WriteOnlyCell(ref, value=out[0])
                out[0].hyperlink = Hyperlink(ref="", location=linked[i], tooltip=tip if i % 8 else "go")
            if j == 1 and i in external:
                out[1].hyperlink = Hyperlink(ref="", target=external[i], tooltip="out")
        ref.append(out)
    fast_protos = dict(zip(("wrap", "fill", "money"), protos(fast), strict=True))
    columns = [Column([v for v, _ in col], [fast_protos.get(s) for _, s in col]) for col in spec]
    columns[0].links = {i: Link(loc, tip) if i % 8 else Hyperlink(ref="", location=loc, tooltip="go")
                        for i, loc in linked.items()}
    columns[1].links = {i: Hyperlink(ref="", target=url, tooltip="out") for i, url in external.items()}
    stream_rows(fast, header, columns)
    wb.save(tmp_path / "both.xlsx")

    back = load_workbook(tmp_path / "both.xlsx")
    a, b = back["ref"], back["fast"]
    assert (a.max_row, a.max_column) == (b.max_row, b.max_column) == (n + 1, len(spec))
    assert b.freeze_panes == "B2"
    for ra, rb in zip(a.iter_rows(), b.iter_rows(), strict=True):
        for ca, cb in zip(ra, rb, strict=True):
            assert _props(ca) == _props(cb), ca.coordinate
    assert [b[f"A{r}"].value for r in (3, 4, 5, 6)] == [" lead", "trail ", "a & b <c> \"d\" 'e'", "cr\rlf\r\nnl\ttab"]
    assert b["C4"].value == 1.234567890123457e16  # 16 significant digits, as openpyxl writes numbers
    assert b["A2"].hyperlink.location == "'Claims'!A9"
    assert b["A6"].hyperlink.tooltip == tip and b["B3"].hyperlink.target == external[1]
    with zipfile.ZipFile(tmp_path / "both.xlsx") as z:  # Excel keeps edge spaces only when told to
        xml = z.read("xl/worksheets/sheet2.xml").decode()
    assert '<c r="A3" t="inlineStr"><is><t xml:space="preserve"> lead</t></is></c>' in xml
    assert '<c r="A2" t="inlineStr"><is><t>plain</t></is></c>' in xml


def test_streamed_rows_replace_characters_xml_cannot_hold(tmp_path):
    """It writes a text with a control character, U+FFFE/U+FFFF or a lone surrogate (a damaged legacy
    file) as U+FFFD in its place, and the workbook still opens; the other cells are untouched."""
    from openpyxl import Workbook

    from pipeline.xlsxrows import Column, stream_rows

    wb = Workbook(write_only=True)
    odd = ["a\x01b", "end\uffff", "\ufffestart", "lone \ud800 half"]  # the last: not valid Unicode
    for k, text in enumerate(odd):  # a sheet each: one such character must be enough
        stream_rows(wb.create_sheet(f"s{k}"), ["text", "n"], [Column([text, "tab\tok", None]), Column([1, 2, 3])])
    wb.save(tmp_path / "odd.xlsx")
    back = load_workbook(tmp_path / "odd.xlsx")
    got = [[[c.value for c in row] for row in back[f"s{k}"].iter_rows(min_row=2)] for k in range(len(odd))]
    assert [g[0][0] for g in got] == ["a\ufffdb", "end\ufffd", "\ufffdstart", "lone \ufffd half"]
    assert all(g[1:] == [["tab\tok", 2], [None, 3]] and g[0][1] == 1 for g in got)


def test_streamed_rows_take_arrow_arrays(tmp_path):
    """It writes columns given as pyarrow arrays as it writes Python values: texts (a null is no cell,
    large or plain strings), whole numbers, and any other type through its Python values."""
    import pyarrow as pa
    from openpyxl import Workbook

    from pipeline.xlsxrows import Column, stream_rows

    wb = Workbook(write_only=True)
    texts = pa.chunked_array([pa.array(["a & b", None], pa.large_string()), pa.array([" c"], pa.large_string())])
    stream_rows(wb.create_sheet("s"), ["t", "n", "f", "u"], [
        Column(texts), Column(pa.array([1, None, 3])), Column(pa.array([1.5, None, 2.0])),
        Column(pa.array(["x", None, "z"]))])
    wb.save(tmp_path / "arrow.xlsx")
    got = [[c.value for c in row] for row in load_workbook(tmp_path / "arrow.xlsx")["s"].iter_rows(min_row=2)]
    assert got == [["a & b", 1, 1.5, "x"], [None, None, None, None], [" c", 3, 2, "z"]]


def test_float_arrays_are_written_as_python_floats_are():
    """A float array's cell text is what ``%.16g`` gives each value (whole cents vectorised, noisy floats
    such as 8192.03's, huge, tiny, negative zero, infinities and NaN one at a time)."""
    import numpy as np
    import pyarrow as pa

    from pipeline.xlsxrows import _float_text, _number

    rng = np.random.default_rng(7)
    values = np.concatenate([
        rng.integers(-10**15, 10**15, 20000) / 100, rng.integers(-10**6, 10**6, 20000) / 100,
        np.arange(819200, 830000) / 100, rng.standard_normal(5000) * 10.0 ** rng.integers(-20, 20, 5000),
        [0.0, -0.0, 0.01, 0.05, 0.1 + 0.2, 999.9999999999999, 1e13, 9999999999999.99, 0.006, 1e-20, 5e-324,
         2.0**53, 1e16, float("inf"), float("-inf"), float("nan")]])
    missing = np.arange(len(values)) % 13 == 0
    got = _float_text(pa.array(values, mask=missing)).to_pylist()
    assert got == [None if m else _number(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]


def test_streamed_sheet_is_closed_after(tmp_path):
    """It refuses a second write of rows to a streamed sheet instead of writing a broken one."""
    from openpyxl import Workbook

    from pipeline.xlsxrows import Column, stream_rows

    ws = Workbook(write_only=True).create_sheet("s")
    stream_rows(ws, ["h"], [Column(["v"])])
    with pytest.raises(RuntimeError):
        stream_rows(ws, ["h"], [Column(["v"])])
    with pytest.raises(Exception, match="saved"):
        ws.append(["late"])


def test_ingest_and_rules_sheets_keep_their_layout(tmp_path):
    """It keeps the Ingest Issues panes and numeric rows; every sheet's columns are as wide as their text
    (up to a cap, past which the text wraps in a row tall enough for it), with a filter on the header."""
    o = scrub_file(SAMPLES / "messy.xlsx", tmp_path, None, AS_OF)
    wb = load_workbook(o.workbook)
    ws = wb["Ingest Issues"]
    assert ws.freeze_panes == "A2"
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert rows and all(isinstance(r[2], int) for r in rows if r[2] is not None)
    assert any(r[2] == 11 for r in rows)  # the row the ingest command names for messy.xlsx
    for name in ("Worklist", "Exceptions", "Claims", "Ingest Issues", "Rules"):
        sheet = wb[name]
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A1:"), name
        assert sheet.print_title_rows == "$1:$1" and sheet.page_setup.orientation == "landscape", name
        assert sheet.page_setup.fitToWidth == 1 and sheet.sheet_properties.pageSetUpPr.fitToPage, name
        for col in sheet.iter_cols():
            width = sheet.column_dimensions[col[0].column_letter].width
            header = str(col[0].value or "")
            assert width >= len(header), (name, header)
            for cell in col[1:]:
                text = str(cell.value) if cell.value is not None else ""
                if cell.is_date:
                    text = "yyyy-mm-dd"
                if len(text) + 1 > width and header not in ("Status", "Reviewer", "Notes"):
                    assert cell.alignment.wrap_text, (name, header, text)
                    lines = -(-len(text) // (width - 1.5))
                    assert (sheet.row_dimensions[cell.row].height or 15) >= 15 * lines, (name, header, text)


def test_workbook_and_csv_carry_the_same_exception_ids(mixed):
    """It writes each finding's stable id, row for row, to the Exceptions sheet and the findings CSV."""
    import pandas as pd

    from pipeline.report import exception_id

    sheet = [r[0] for r in load_workbook(mixed.workbook)["Exceptions"].iter_rows(min_row=2, values_only=True)]
    csv = pd.read_csv(mixed.findings_csv, dtype=str, keep_default_na=False)
    assert sheet == csv["exception_id"].tolist() and len(set(sheet)) == len(sheet)
    # A value a spreadsheet would evaluate carries an apostrophe in the CSV (see neutralize_csv).
    csv["value"] = csv["value"].map(lambda v: v[1:] if v[:1] == "'" and v[1:2] in ("=", "+", "-", "@") else v)
    line = csv[C.LINE_NO].map(lambda v: int(float(v)) if v else None)
    assert csv["exception_id"].tolist() == [exception_id(c or None, ln, r, v or None) for c, ln, r, v in zip(
        csv[C.CLAIM_ID], line, csv["rule"], csv["value"], strict=True)]


@pytest.mark.parametrize("id_dtype", ["str", object])
def test_summary_counts_claims_as_set_arithmetic_does(id_dtype):
    """It counts claims, G51.33 claims, clean ones and the charges of claims with errors as plain sets of
    claim ids give them, whether the ids are Arrow text or Python objects."""
    import pandas as pd

    from pipeline.report import summarize

    lines = pd.DataFrame({C.CLAIM_ID: pd.Series(["A", "A", "B", "C", None, "D", "E"], dtype=id_dtype),
                          C.CHARGE: [10.0, 5.0, 7.0, 1.0, 100.0, 2.0, float("nan")]})
    findings = pd.DataFrame({"rule": ["HFS-007", "HFS-025", "HFS-011", "HFS-023", "FILE-003", "HFS-011"],
                             "severity": ["error", "warning", "error", "warning", "warning", "error"],
                             C.CLAIM_ID: pd.Series(["A", "B", "C", "A", None, "E"], dtype="str"),
                             C.PAYER: ["Aetna", "Aetna", None, "Aetna", None, "Cigna"]})
    claims = pd.DataFrame({C.CLAIM_ID: pd.Series(["A", "B", "C", "D", "E"], dtype=id_dtype),
                           "in_scope": [True, True, False, True, True]})
    s = summarize("f.csv", "0" * 64, 7, lines, findings, claims, {}, "2024-06-30", "r", "v")
    err, warn, scope, every = {"A", "C", "E"}, {"B"}, {"A", "B", "D", "E"}, {"A", "B", "C", "D", "E"}
    assert (s.claims, s.g5133_claims, s.clean_claims) == (5, len(scope), len(every - err - warn))
    assert (s.claims_with_errors, s.claims_with_warnings) == (3, 1)
    assert s.clean_claims + s.claims_checked_in_part + s.claims_with_errors + s.claims_with_warnings == s.claims
    assert s.exceptions == len(findings)
    partly = summarize("f.csv", "0" * 64, 7, lines, findings, claims, {"HFS-018": "column(s) absent from the file: "
                       "Muscles"}, "2024-06-30", "r", "v")
    assert (partly.clean_claims, partly.claims_checked_in_part) == (0, 1)  # D: not all rules ran on it
    assert s.at_risk == 10.0 + 5.0 + 1.0  # E's charge is missing
    assert s.by_payer == {"Aetna": 2, "(none)": 1, "Cigna": 1}
    no_facts = summarize("f.csv", "0" * 64, 7, lines, findings, None, {}, "2024-06-30", "r", "v")
    assert (no_facts.claims, no_facts.g5133_claims, no_facts.at_risk) == (5, 0, 16.0)


@pytest.mark.parametrize("keys", [set(), {"A"}, {"A", None}, {"B", float("nan")}, {"A", 3}, {"zz"}])
@pytest.mark.parametrize("id_dtype", ["str", object])
def test_in_set_is_series_isin(keys, id_dtype):
    """It flags the same rows as pandas' isin, missing keys and values and non-text keys included."""
    import pandas as pd

    from pipeline.report import in_set

    values = pd.Series(["A", None, "B", "A", "C", None], dtype=id_dtype)
    assert in_set(values, keys).tolist() == values.isin(keys).tolist()


def _drop_column(path, header):
    """The CSV at ``path`` without its column ``header`` (an export that lacks it)."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[h for h in rows[0] if h != header])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k != header})
    return path


def _summary_rows(workbook) -> list[tuple]:
    return list(load_workbook(workbook)["Summary"].iter_rows(values_only=True))


def test_missing_modifiers_column_is_not_checked_never_an_error(tmp_path):
    """It reports the rules that read modifiers as not checked, names the missing column, raises none of
    their findings, and counts the claims as checked in part, never clean."""
    lines = clean_claim("A-1") + clean_claim("B-2", patient_id="MBR-000002")
    o = scrub_file(_drop_column(write_csv(lines, tmp_path / "nomods.csv"), "Modifiers"), tmp_path, None, AS_OF)
    needs_mods = {"HFS-007", "HFS-008", "HFS-009", "HFS-014", "STR-007"}
    assert needs_mods <= set(o.summary.not_checked)
    assert "Modifiers" in o.summary.not_checked["HFS-014"]
    assert not set(o.findings["rule"]) & needs_mods
    s = o.summary
    assert (s.clean_claims, s.claims_checked_in_part, s.claims) == (0, 2, 2)
    rows = _summary_rows(o.workbook)
    at = next(i for i, r in enumerate(rows) if r[0] == "Not checked, and why")
    listed = {r[0]: r[2] for r in rows[at + 2: at + 2 + len(s.not_checked)]}
    assert needs_mods <= set(listed) and all("Modifiers" in listed[r] for r in needs_mods)
    assert any(r[0] == "Checked in part" and r[3] == 2 for r in rows)


def test_summary_counts_add_up_and_rules_with_findings_come_first(mixed):
    """It counts errors + warnings only + checked in part + clean = total claims, gives the total number
    of exceptions, and lists only the rules with findings, errors first, most findings first."""
    rows = _summary_rows(mixed.workbook)
    count = {r[0]: r[3] for r in rows if r and r[0] and len(r) > 3 and isinstance(r[3], int | float)}
    parts = ("With errors", "With warnings only", "Checked in part", "Clean")
    assert sum(count[p] for p in parts) == count["Total claims"] == mixed.summary.claims
    assert count["Exceptions"] == len(mixed.findings)
    at = next(i for i, r in enumerate(rows) if r[0] == "Findings by rule") + 2
    listed = []
    for r in rows[at:]:
        if not r[0]:
            break
        listed.append(r)
    assert [r[0] for r in listed] == [r for r in sorted(
        mixed.summary.by_rule, key=lambda r: ({"error": 0, "warning": 1, "info": 2}[
            next(x[2] for x in listed if x[0] == r)], -mixed.summary.by_rule[r], r))]
    assert all(r[3] > 0 for r in listed)
    assert load_workbook(mixed.workbook)["Summary"]["D10"].number_format in ("#,##0", "General")


def test_worklist_has_one_row_per_flagged_claim_worst_first(mixed):
    """It lists each flagged claim once, errors before warnings, each linked to its first exception."""
    wb = load_workbook(mixed.workbook)
    ws = wb["Worklist"]
    header = [c.value for c in ws[1]]
    rows = list(ws.iter_rows(min_row=2))
    claims = [r[header.index("Claim ID")].value for r in rows]
    flagged = set(mixed.findings["claim_id"].dropna())
    assert len(claims) == len(set(claims)) and set(claims) == flagged
    severities = [r[header.index("Worst Severity")].value for r in rows]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    exceptions = {r[1].value: r[1].row for r in reversed(list(wb["Exceptions"].iter_rows(min_row=2)))}
    for r in rows:
        link = r[header.index("Claim ID")].hyperlink
        assert link.location == f"'Exceptions'!A{exceptions[r[header.index('Claim ID')].value]}"
    errors = [r for r in rows if r[header.index("Worst Severity")].value == "error"]
    risk = [r[header.index("Charges at Risk")].value for r in errors]
    assert risk == sorted(risk, reverse=True)


def test_findings_speak_the_files_words_one_finding_per_cause(tmp_path):
    """It names columns as the file does (no internal names, no NaT), reports an unreadable date once
    (ING-001, which says what was not checked on its line) and a claim-wide problem once per claim."""
    lines = clean_claim("A-1")
    lines[1][C.SERVICE_DATE] = "not a date"
    late = clean_claim("B-2", patient_id="MBR-000002", dos="2022-01-10")
    o = scrub_file(write_csv(lines + late, tmp_path / "words.csv"), tmp_path, None, AS_OF)
    csv_text = o.findings_csv.read_text().split("\n", 1)[1]  # the body (the header names the data's columns)
    sheet = list(load_workbook(o.workbook)["Exceptions"].iter_rows(values_only=True))
    shown = " ".join(str(v) for row in sheet for v in row if v is not None)
    for internal in ("NaT", "__modifiers__", "service_date", "dx_1", "modifier_1", "doc_surgical_notes", "nan"):
        assert internal not in shown.split() and f",{internal}," not in csv_text, internal
    a = o.findings[o.findings["claim_id"] == "A-1"]
    assert "ING-001" in set(a["rule"]) and "STR-002" not in set(a["rule"])
    assert "not checked on this line: STR-002" in a.loc[a["rule"] == "ING-001", "message"].iloc[0]
    header = sheet[0]
    fields = {r[header.index("Rule")]: r[header.index("Field")] for r in sheet[1:]}
    assert fields["ING-001"] == "DOS" and fields["STR-012"] == "DOS"
    b = o.findings[(o.findings["claim_id"] == "B-2") & (o.findings["rule"] == "STR-012")]
    assert len(b) == 1 and "Also on line(s) 2" in b["message"].iloc[0]


def test_findings_csv_is_safe_to_open_in_a_spreadsheet(tmp_path):
    """It neutralises every text field a spreadsheet would evaluate (=, +, -, @, tab, CR), a DDE payload
    in a claim id included, with a leading apostrophe (OWASP CSV injection)."""
    import csv

    lines = clean_claim("=cmd|' /C calc'!A0") + clean_claim("+1-2", patient_id="@SUM(A1)", dos="2022-01-10")
    lines[0][C.PAYER] = "-Medicare"
    lines[1][C.NDC] = "\t=1+1"
    o = scrub_file(write_csv(lines, tmp_path / "inj.csv"), tmp_path, None, AS_OF)
    with open(o.findings_csv, newline="", encoding="utf-8") as fh:
        fields = [v for row in csv.reader(fh) for v in row]
    assert any(v.startswith("'=cmd") for v in fields) and any(v == "'+1-2" for v in fields)
    risky = [v for v in fields if v[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert not risky
    ws = load_workbook(o.workbook)["Exceptions"]
    ids = [c.value for (c,) in ws.iter_rows(min_row=2, min_col=2, max_col=2) if c.value]
    assert "=cmd|' /C calc'!A0" in ids  # the workbook keeps the text as it was, as text


def test_outputs_are_group_readable_by_default_and_the_mode_is_configurable(tmp_path):
    """It writes the workbook and the CSV 0640 by default (a billing team's group reads the outbox), and
    the mode the configuration gives; a mode the owner cannot write is refused."""
    import stat

    from pipeline.config import ConfigError, ScrubConfig

    src = write_csv(clean_claim(), tmp_path / "m.csv")
    o = scrub_file(src, tmp_path / "default", None, AS_OF)
    for path in (o.workbook, o.findings_csv):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    cfg = tmp_path / "c.toml"
    cfg.write_text('output_mode = "0600"\n')
    o = scrub_file(src, tmp_path / "private", load_config(cfg), AS_OF)
    assert stat.S_IMODE(o.workbook.stat().st_mode) == stat.S_IMODE(o.findings_csv.stat().st_mode) == 0o600
    assert ScrubConfig(output_mode=0o644).output_mode == 0o644
    cfg.write_text("output_mode = 0o444\n")
    with pytest.raises(ConfigError, match="output_mode"):
        load_config(cfg)


def test_scrub_file_reports_each_stage(tmp_path):
    """It tells its progress callback each stage as it ends, in order (the CLI's bar moves with them)."""
    seen = []
    scrub_file(write_csv(clean_claim(), tmp_path / "p.csv"), tmp_path, None, AS_OF, progress=seen.append)
    assert seen == ["read", "check", "write"]


def test_summary_names_the_profile_each_payer_matched(tmp_path):
    """It lists on the Summary sheet each payer name with the profile it reached, and names that reached none."""
    lines = (clean_claim("A1", "MBR-1", payer="Medicare Part B") + clean_claim("A2", "MBR-2", payer="NOVITAS SOLUTIONS")
             + clean_claim("A3", "MBR-3", payer="Acme Health") + clean_claim("A4", "MBR-4", payer="Medicare Part B"))
    src = write_csv(lines, tmp_path / "payers.csv")
    done = scrub_file(src, tmp_path / "out", load_config(None), AS_OF, run_id="test-run")
    rows = [r[:2] for r in load_workbook(done.workbook)["Summary"].iter_rows(values_only=True)]
    at = rows.index(("Payer profiles matched", None))
    assert rows[at + 1] == ("Payer", "Profile")
    assert rows[at + 2:at + 5] == [("Medicare Part B", "Medicare"), ("NOVITAS SOLUTIONS", "Medicare Novitas"),
                                   ("Acme Health", "none matched: default profile")]
    assert done.summary.payer_profiles == {"Medicare Part B": "Medicare", "NOVITAS SOLUTIONS": "Medicare Novitas",
                                           "Acme Health": ""}


def _steps(workbook) -> list[str]:
    return [r[1] for r in _summary_rows(workbook) if r[0] and str(r[0]).startswith("Step ")]


def test_summary_steps_name_each_cause_of_rules_not_checked(tmp_path):
    """It tells the reviewer, one step per cause, what to do about rules that could not run: columns missing from
    the export (add them), dates of service outside the reference tables (import the release for those dates),
    a payer profile lacking its LCD date (set it); never "missing column(s)" for a cause that is not one."""
    nomods = _drop_column(write_csv(clean_claim("A-1"), tmp_path / "nomods.csv"), "Modifiers")
    steps = _steps(scrub_file(nomods, tmp_path / "a", None, AS_OF).workbook)
    assert any("the file lacks the column(s) Modifiers" in s and "add them to the export" in s for s in steps)
    assert not any("reference tables cover" in s or "payer profile" in s for s in steps)

    late = write_csv(clean_claim("B-1", dos="2027-03-10") + clean_claim("B-2", "MBR-2", dos="2027-03-11"),
                     tmp_path / "late.csv")
    steps = _steps(scrub_file(late, tmp_path / "b", None, dt.date(2027, 6, 30)).workbook)
    dated = [s for s in steps if "date of service is outside what the reference tables cover" in s]
    assert len(dated) == 1 and "CODE-001" in dated[0] and "ICD-10-CM" in dated[0]
    assert "import the release that covers those dates" in dated[0]
    assert not any("column" in s for s in steps) and not any("((" in s or "))" in s for s in steps)
    profile = [s for s in steps if "payer profile lacks a setting" in s]  # 2027 Medicare claims: HFS-033
    assert len(profile) == 1 and "HFS-033" in profile[0]

    noscale = write_csv(clean_claim("C-1", dos="2026-03-10", payer="Noridian JE"), tmp_path / "noscale.csv")
    steps = _steps(scrub_file(noscale, tmp_path / "c", None, dt.date(2026, 4, 15)).workbook)
    assert "(HFS-033) could not be checked because the file lacks the column(s) Severity Scale" in steps[0]
    ok = write_csv(clean_claim("D-1"), tmp_path / "ok.csv")
    steps = _steps(scrub_file(ok, tmp_path / "d", None, AS_OF).workbook)
    assert steps[0].startswith("Nothing to fix: every rule was checked")
