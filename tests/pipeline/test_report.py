"""The exceptions workbook, checked cell by cell through openpyxl and read back with calamine."""

import datetime as dt
import re
import zipfile
from copy import copy

import pytest
from openpyxl import load_workbook

from pipeline.config import load_config
from pipeline.report import EXCEPTION_HEADERS, SHEETS, STATUSES
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
    """It writes the five sheets in order, the exact header, and one row per finding."""
    wb = load_workbook(mixed.workbook)
    assert wb.sheetnames == list(SHEETS)
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
    by_row = {r[0].value: r for r in claims.iter_rows(min_row=2)}
    hdfs17 = mixed.findings.query("rule == 'HFS-017'").iloc[0]
    ndc_cell = by_row[hdfs17.source_row][header.index(C.NDC)]
    assert ndc_cell.fill.fgColor.rgb == "00FFC7CE"
    unflagged = by_row[hdfs17.source_row][header.index(C.PAYER)]
    assert unflagged.fill.fill_type is None
    charge = by_row[hdfs17.source_row][header.index(C.CHARGE)]
    assert charge.number_format == '"$"#,##0.00' and isinstance(charge.value, float | int)
    date = by_row[hdfs17.source_row][header.index(C.SERVICE_DATE)]
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
    """It keeps the Ingest Issues panes, widths and numeric rows, and the Rules widths."""
    o = scrub_file(SAMPLES / "messy.xlsx", tmp_path, None, AS_OF)
    wb = load_workbook(o.workbook)
    ws = wb["Ingest Issues"]
    assert ws.freeze_panes == "A2" and ws.column_dimensions["A"].width == 28
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert rows and all(isinstance(r[2], int) for r in rows if r[2] is not None)
    assert any(r[2] == 11 for r in rows)  # the row the ingest command names for messy.xlsx
    assert wb["Rules"].column_dimensions["D"].width == 70


def test_workbook_and_csv_carry_the_same_exception_ids(mixed):
    """It writes each finding's stable id, row for row, to the Exceptions sheet and the findings CSV."""
    import pandas as pd

    from pipeline.report import exception_id

    sheet = [r[0] for r in load_workbook(mixed.workbook)["Exceptions"].iter_rows(min_row=2, values_only=True)]
    csv = pd.read_csv(mixed.findings_csv, dtype=str, keep_default_na=False)
    assert sheet == csv["exception_id"].tolist() and len(set(sheet)) == len(sheet)
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
    err, scope = {"A", "C", "E"}, {"A", "B", "D", "E"}
    assert (s.claims, s.g5133_claims, s.clean_claims) == (5, len(scope), len(scope - err))
    assert (s.claims_with_errors, s.claims_with_warnings) == (3, 1)
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
