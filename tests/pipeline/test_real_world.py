"""Exports as the real world writes them (issue 21): any delimiter, any common date, the CMS CCW RIF
carrier layout, report-style exports, Unicode text, stray NULs, internal column names, misuse of the
command line, and sheets whose used range is far larger than their data. Every fixture is synthetic
and written here, at test time."""

import datetime as dt
import os
import zipfile

import pytest
from openpyxl import Workbook
from typer.testing import CliRunner

from pipeline import isolate
from pipeline.cli import app
from pipeline.config import ScrubConfig
from pipeline.errors import IngestError
from pipeline.ingest import load_column_map, read_claims
from schemas import columns as C
from schemas.rules import RULES

runner = CliRunner()
AS_OF = "2026-11-30"
HEADER = ["Claim ID", "Line", "Patient", "DOS", "CPT", "Units", "Charge", "Dx 1"]
RIF_HEADER = ("CLM_ID|LINE_NUM|BENE_ID|CLM_FROM_DT|LINE_1ST_EXPNS_DT|HCPCS_CD|HCPCS_1ST_MDFR_CD|HCPCS_2ND_MDFR_CD|"
              "LINE_ICD_DGNS_CD|ICD_DGNS_CD1|ICD_DGNS_CD2|PRF_PHYSN_NPI|LINE_SRVC_CNT|LINE_SBMTD_CHRG_AMT|"
              "LINE_PLACE_OF_SRVC_CD")


# --- fixtures: small synthetic files ------------------------------------------------------------------

def rif_file(path, dates=("27-OCT-2026", "27-OCT-2026")):
    """A CMS CCW RIF carrier line file: pipe-delimited, DD-MON-YYYY dates, no names, sites or doc flags."""
    rows = [RIF_HEADER,
            f"90001|1|BENE1|{dates[0]}|{dates[0]}|64612|50||G5133|G5133||1234567893|1|450.00|11",
            f"90001|2|BENE1|{dates[0]}|{dates[1]}|J0585|JZ||G5133|G5133||1234567893|50|900.00|11"]
    path.write_text("\n".join(rows) + "\n")
    return path


def report_export(path):
    """A report-style export: a subtotal per claim, a header repeated on each printed page, a grand total."""
    rows = [",".join(HEADER),
            "C1,1,Ann Test,05/14/2026,64612,1,500,G51.33",
            "C1,2,Ann Test,05/14/2026,J0585,50,900,G51.33",
            "Subtotal,,,,,,1400,",
            ",".join(HEADER),
            "C2,1,Bob Test,05/15/2026,64612,1,500,G51.33",
            ",,Total for Bob Test,,,,500,",
            "Grand Total,,,,,,1900,"]
    path.write_text("\n".join(rows) + "\n")
    return path


def unicode_text(path, codec="utf-16-le", bom=b"\xff\xfe"):
    """Excel's "Unicode Text": UTF-16LE with a byte-order mark, tab-delimited, CRLF."""
    rows = ["\t".join(HEADER), "\t".join(["C1", "1", "Zoë Test", "2026-05-14", "64612", "1", "500", "G51.33"])]
    path.write_bytes(bom + "\r\n".join(rows).encode(codec) + "\r\n".encode(codec))
    return path


def nul_file(path):
    rows = [",".join(HEADER), "C1,1,Ann Test,2026-05-14,64612,1,500,G51.33", "C2,1,Bo\x00b Test,2026-05-14,64612,1,500,G51.33"]
    path.write_bytes(("\n".join(rows) + "\n").encode())
    return path


def internal_names(path):
    rows = [",".join([*HEADER, "Source Row", "source_sheet"]), "C1,1,Ann Test,2026-05-14,64612,1,500,G51.33,7,x"]
    path.write_text("\n".join(rows) + "\n")
    return path


def _xlsx_with(path, extra: bytes):
    """A one-claim workbook whose sheet XML gets ``extra`` rows at its end."""
    plain = path.with_suffix(".plain.xlsx")
    wb = Workbook()
    ws = wb.active
    ws.title = "Claims"
    ws.append(HEADER)
    ws.append(["C1", 1, "Ann Test", "2026-05-14", "64612", 1, 500, "G51.33"])
    wb.save(plain)
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</sheetData>", extra + b"</sheetData>")
            zout.writestr(item.filename, data)
    plain.unlink()
    return path


def far_cell(path):
    """A stray value at XFD1048576: calamine would allocate 2^20 x 2^14 cells (512 GiB)."""
    return _xlsx_with(path, b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>')


def far_empty(path):
    """Formatted cells holding an empty string a million rows down, 24 columns wide: read densely, about
    1.5 GB of Python lists for a 5 KB file."""
    cells = b"".join(b'<c r="%s1000000" t="str"><v></v></c>' % bytes([65 + i]) for i in range(24))
    return _xlsx_with(path, b'<row r="1000000">' + cells + b"</row>")


def _notes(result):
    return "\n".join(result.notes)


# --- point 2: any delimiter, any common date --------------------------------------------------------

@pytest.mark.parametrize("delimiter", [",", ";", "|", "\t"])
def test_read_claims_sniffs_the_delimiter(tmp_path, delimiter):
    """It finds the claims header under , ; | or tab, whatever the file is named, even when a field holds
    another delimiter."""
    rows = [HEADER, ["C1", "1", "Test, Ann; A|B", "2026-05-14", "64612", "1", "500", "G51.33"]]
    path = tmp_path / "claims.txt"
    path.write_text("\n".join(delimiter.join(f'"{c}"' if delimiter in c else c for c in r) for r in rows) + "\n")
    result = read_claims(path)
    assert result.rows_read == 1 and result.lines[C.PATIENT_NAME].iloc[0] == "Test, Ann; A|B"
    assert result.lines[C.PROCEDURE_CODE].iloc[0] == "64612"


@pytest.mark.parametrize("text", ["27-OCT-2026", "27-Oct-26", "27OCT2026", "20261027", "2026-10-27", "10/27/2026",
                                  "46322"])
def test_read_claims_reads_common_date_forms(tmp_path, text):
    """It reads DD-MON-YYYY, DD-MON-YY, DDMONYYYY, YYYYMMDD, ISO, US slash dates and Excel serials."""
    path = tmp_path / "d.csv"
    path.write_text(",".join(HEADER) + f"\nC1,1,Ann Test,{text},64612,1,500,G51.33\n")
    result = read_claims(path)
    assert result.lines[C.SERVICE_DATE].iloc[0] == dt.datetime(2026, 10, 27)
    assert not (result.issues["rule"] == "ING-001").any()


def _dates_file(path, values):
    path.write_text(",".join(HEADER) + "\n" + "".join(
        f"C{i},1,Ann Test,{v},64612,1,500,G51.33\n" for i, v in enumerate(values)))
    return path


def test_read_claims_reads_a_day_first_column_as_a_whole(tmp_path):
    """It reads every slash date of a column day first when one of them cannot be month first, and says so once."""
    result = read_claims(_dates_file(tmp_path / "d.csv", ["07/03/2024", "13/03/2024", "01/02/2024"]))
    assert list(result.lines[C.SERVICE_DATE]) == [dt.datetime(2024, 3, 7), dt.datetime(2024, 3, 13),
                                                  dt.datetime(2024, 2, 1)]
    assert _notes(result).count("day first") == 1 and not (result.issues["rule"] == "ING-001").any()


def test_read_claims_reads_an_ambiguous_column_by_the_configured_order(tmp_path):
    """It reads a column that is ambiguous throughout by the configured order (month first by default), with
    one note for the column, not one per row."""
    path = _dates_file(tmp_path / "d.csv", ["07/03/2024", "03/04/2024", "05/06/2024"])
    us = read_claims(path)
    assert us.lines[C.SERVICE_DATE].iloc[0] == dt.datetime(2024, 7, 3)
    assert _notes(us).count("could be month or day first") == 1
    assert (us.issues["rule"] == "NOTE").sum() == len(us.notes)
    eu = read_claims(path, date_order="DMY")
    assert eu.lines[C.SERVICE_DATE].iloc[0] == dt.datetime(2024, 3, 7) and "date_order = DMY" in _notes(eu)
    clear = read_claims(_dates_file(tmp_path / "c.csv", ["01/01/2024", "2024-03-04"]))
    assert "month or day first" not in _notes(clear)


# --- point 3: built-in layouts -------------------------------------------------------------------------

def test_read_claims_recognises_the_ccw_rif_carrier_layout(tmp_path):
    """It reads a CCW RIF carrier line file (pipe-delimited, DD-MON-YYYY) with no mapping file; the columns it
    lacks leave their rules not checked; the claim's own CLM_FROM_DT is not taken for the line's date."""
    result = read_claims(rif_file(tmp_path / "rif.txt", dates=("20-OCT-2026", "27-OCT-2026")))
    assert result.layout == "CMS CCW RIF carrier claim lines" and result.rows_read == 2
    lines = result.lines
    assert list(lines[C.CLAIM_ID]) == ["90001", "90001"] and list(lines[C.LINE_NO]) == [1, 2]
    assert list(lines[C.SERVICE_DATE]) == [dt.datetime(2026, 10, 20), dt.datetime(2026, 10, 27)]
    assert list(lines[C.DX[0]]) == ["G51.33", "G51.33"] and list(lines[C.MODIFIERS[0]]) == ["50", "JZ"]
    assert list(lines[C.UNITS]) == [1, 50] and list(lines[C.CHARGE]) == [450, 900]
    assert C.PATIENT_NAME not in result.present and C.MUSCLES not in result.present
    assert "CLM_FROM_DT" in result.unmapped


def test_ingest_command_shows_the_layout_and_what_absent_columns_disable(tmp_path):
    """It prints the layout matched and, per absent column, the rules it leaves not checked."""
    out = runner.invoke(app, ["ingest", str(rif_file(tmp_path / "rif.txt"))])
    assert out.exit_code == 0, out.output
    assert "layout: CMS CCW RIF carrier claim lines" in out.output
    needing_muscles = [r.id for r in RULES if C.MUSCLES in r.needs]
    assert needing_muscles and f"  {C.MUSCLES}: {', '.join(needing_muscles)}" in out.output


def test_a_column_map_header_missing_from_the_file_is_reported(tmp_path):
    """It names the --columns header the file does not have, rather than ignoring it."""
    mapping = tmp_path / "map.toml"
    mapping.write_text('[columns]\n"Svc Dt" = "service_date"\n')
    result = read_claims(report_export(tmp_path / "r.csv"), load_column_map(mapping))
    assert "the column map's header 'Svc Dt' (for service_date) is not in the file's header row" in result.notes


# --- point 4: report-style exports -----------------------------------------------------------------

def test_scrub_skips_total_and_repeated_header_rows(tmp_path):
    """It skips subtotal, total and grand-total rows and a repeated header, one note each with the rows, and
    never counts their amounts as charges at risk."""
    path = report_export(tmp_path / "report.csv")
    result = read_claims(path)
    assert result.rows_read == 3 and sorted(set(result.lines[C.CLAIM_ID])) == ["C1", "C2"]
    assert "3 total or subtotal rows skipped (not claims): row(s) 4, 7, 8" in result.notes
    assert "1 repeated header row skipped (not claims): row(s) 5" in result.notes
    res = runner.invoke(app, ["scrub", str(path), "--out", str(tmp_path / "out"), "--as-of", AS_OF])
    assert res.exit_code == 0, res.output
    at_risk = float(res.output.split("$")[1].split(" at risk")[0].replace(",", ""))
    assert at_risk <= 1900  # the claims' own 1,400 + 500, never the totals' 1,400 + 500 + 1,900 on top


@pytest.mark.parametrize(("codec", "bom"), [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
                                            ("utf-32-le", b"\xff\xfe\x00\x00")])
def test_read_claims_reads_unicode_text_with_a_bom(tmp_path, codec, bom):
    """It reads UTF-16 and UTF-32 text with a byte-order mark (Excel's "Unicode Text" is UTF-16LE, tabs)."""
    result = read_claims(unicode_text(tmp_path / "unicode.txt", codec, bom))
    assert result.rows_read == 1 and result.lines[C.PATIENT_NAME].iloc[0] == "Zoë Test"


def test_a_nul_byte_is_an_issue_of_its_cell(tmp_path):
    """It reads a file with one NUL byte, naming the file, row and column of that cell (ING-001)."""
    result = read_claims(nul_file(tmp_path / "nul.csv"))
    assert result.rows_read == 2 and result.lines[C.PATIENT_NAME].iloc[1] == "Bob Test"
    hit = result.issues[result.issues["rule"] == "ING-001"]
    assert len(hit) == 1 and hit.iloc[0]["row"] == 3 and hit.iloc[0]["column"] == "Patient"
    assert hit.iloc[0]["file"] == "nul.csv" and "NUL" in hit.iloc[0]["reason"]
    late = tmp_path / "late.csv"  # past the first 4 KiB, where the fast CSV reader would take it as text
    rows = [",".join(HEADER)] + [f"C{i},1,Ann Test,2026-05-14,64612,1,500,G51.33" for i in range(300)]
    rows[250] = rows[250].replace("Ann", "An\x00n")
    late.write_text("\n".join(rows) + "\n")
    result = read_claims(late)
    hit = result.issues[result.issues["rule"] == "ING-001"]
    assert result.rows_read == 300 and list(hit["row"]) == [251] and result.lines[C.PATIENT_NAME].iloc[249] == "Ann Test"
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"Claim ID,CPT\n" + bytes(range(256)) * 16)
    with pytest.raises(IngestError) as err:
        read_claims(binary)
    assert err.value.code == "E_FORMAT"


def test_internal_column_names_are_not_read_as_input(tmp_path):
    """It reads a file with a "Source Row" column (it used to crash with a KeyError), notes it, and keeps its
    own row numbers."""
    result = read_claims(internal_names(tmp_path / "internal.csv"))
    assert result.rows_read == 1 and list(result.lines[C.SOURCE_ROW]) == [2]
    assert any("'Source Row', 'source_sheet' have the name of a column claimscrub adds itself" in n
               for n in result.notes)
    res = runner.invoke(app, ["scrub", str(tmp_path / "internal.csv"), "--out", str(tmp_path / "o"), "--as-of", AS_OF])
    assert res.exit_code == 0, res.output
    bad_map = tmp_path / "map.toml"
    bad_map.write_text('[columns]\n"Row" = "source_row"\n')
    res = runner.invoke(app, ["ingest", str(tmp_path / "internal.csv"), "--columns", str(bad_map)])
    assert res.exit_code == 2 and "adds itself [E_COLUMN_MAP]" in res.output


# --- point 5: misuse gets one line ---------------------------------------------------------------------

def test_misuse_gets_one_line_and_exit_2(tmp_path):
    """It answers a folder, a missing file, a FIFO, a config passed as --columns and bad TOML with one line
    carrying a reason code and exit 2, from scrub and from ingest."""
    good = report_export(tmp_path / "good.csv")
    folder = tmp_path / "afolder"
    folder.mkdir()
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    config = tmp_path / "claimscrub.toml"
    config.write_text('inbox = "in"\n[payers.Acme]\nbilateral_style = "50"\n')
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[columns\n")
    cases = {(str(folder),): "E_NOT_FILE", (str(tmp_path / "missing.csv"),): "E_MISSING", (str(fifo),): "E_NOT_FILE",
             (str(good), "--columns", str(config)): "E_COLUMN_MAP", (str(good), "--columns", str(bad_toml)): "E_COLUMN_MAP"}
    for args, code in cases.items():
        for command in ("scrub", "ingest"):
            extra = ["--out", str(tmp_path / "out")] if command == "scrub" else []
            res = runner.invoke(app, [command, *args, *extra])
            assert res.exit_code == 2, (command, args, res.output)
            assert "Traceback" not in res.output
            assert res.exception is None or isinstance(res.exception, SystemExit), (command, args, res.exception)
            problem = [ln for ln in res.output.splitlines() if code in ln]
            assert len(problem) == 1, (command, args, res.output)


# --- point 6: every read isolated and bounded --------------------------------------------------------------

def test_scrub_goes_on_past_a_sheet_with_a_far_cell(tmp_path):
    """``scrub a.xlsx bad.xlsx c.csv`` scrubs a and c; bad (a stray cell at XFD1048576) costs itself alone,
    with a size reason code naming the cell."""
    a = _xlsx_with(tmp_path / "a.xlsx", b"")
    bad = far_cell(tmp_path / "bad.xlsx")
    c = report_export(tmp_path / "c.csv")
    res = runner.invoke(app, ["scrub", str(a), str(bad), str(c), "--out", str(tmp_path / "out"), "--as-of", AS_OF])
    assert res.exit_code == 2, res.output
    assert (tmp_path / "out" / "a.exceptions.xlsx").exists() and (tmp_path / "out" / "c.exceptions.xlsx").exists()
    assert not (tmp_path / "out" / "bad.exceptions.xlsx").exists()
    line = next(ln for ln in res.output.splitlines() if ln.startswith(str(bad)))
    assert "E_TOO_LARGE" in line and "XFD1048576" in line


def test_empty_cells_far_away_cost_no_memory(tmp_path):
    """It reads a 5 KB workbook with empty-string cells a million rows down within 1 GiB of address space
    (read densely it needs about 1.5 GB), and says what it ignored."""
    path = far_empty(tmp_path / "far.xlsx")
    assert path.stat().st_size < 10_000
    result = isolate.read_isolated(path, memory_mb=1024)
    assert result.rows_read == 1 and "empty formatted cells far outside the data ignored" in _notes(result)


# --- the nightly: several of these files in one night ------------------------------------------------------

@pytest.mark.e2e
def test_nightly_reads_real_world_exports(tmp_path, prefect_harness):
    """One night over a RIF file, a report export, Unicode text, a NUL byte, internal names and a far cell:
    the far cell is quarantined as a size problem, every other file is scrubbed."""
    from pipeline.flows import run_nightly
    from pipeline.ingest import file_sha256
    from pipeline.nightly import file_id

    root = tmp_path / "night"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    made = [rif_file(inbox / "rif.txt"), report_export(inbox / "report.csv"), unicode_text(inbox / "unicode.txt"),
            nul_file(inbox / "nul.csv"), internal_names(inbox / "internal.csv"), far_cell(inbox / "far.xlsx"),
            far_empty(inbox / "farempty.xlsx")]
    past = dt.datetime.now().timestamp() - 3600
    for p in made:
        os.utime(p, (past, past))
    names = {file_id(file_sha256(p)): p.name for p in made}
    summary = run_nightly(root=root, settle_seconds=0, as_of=dt.date.fromisoformat(AS_OF))
    status = {names[f["file_id"]]: (f["status"], f["reason_code"]) for f in summary["files"]}
    assert status.pop("far.xlsx") == ("quarantined", "E_TOO_LARGE")
    assert {s for s, _ in status.values()} == {"scrubbed"}, status
    sidecar = next((root / "quarantine").glob("*.error.txt")).read_text()
    assert "E_TOO_LARGE" in sidecar and "XFD1048576" in sidecar
    assert ScrubConfig().date_order == "MDY"
