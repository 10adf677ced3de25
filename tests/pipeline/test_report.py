"""The exceptions workbook, checked cell by cell through openpyxl and read back with calamine."""

import datetime as dt

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
                                  "#N/A", "bell\x07char"])
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
    assert cell.value == evil.strip().replace("\x07", "\ufffd")  # ingest trims outer white space


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
