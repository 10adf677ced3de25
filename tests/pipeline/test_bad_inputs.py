"""Every row of BAD_INPUTS.md as a fixture generated at test time, with its documented outcome.

Row numbers in the test names refer to the table in BAD_INPUTS.md.
"""

import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import zipfile
import zlib

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from pipeline import nightly
from pipeline.config import ScrubConfig
from pipeline.errors import IngestError
from pipeline.ingest import read_claims
from pipeline.ledger import Ledger
from pipeline.sample import clean_claim, write_csv
from schemas import columns as C
from tests.conftest import AS_OF, ROOT, SAMPLES

HEADER = ["Claim ID", "Line", "Member ID", "DOS", "CPT", "Units", "Charge", "Dx 1"]
ROW = ["C1", 1, "M1", "2024-05-01", "64612", 1, 10, "G51.33"]


def _xlsx(path, rows, title="Claims", extra=None):
    wb = Workbook()
    ws = wb.active
    ws.title = title
    for r in rows:
        ws.append(r)
    if extra:
        extra(wb)
    wb.save(path)
    return path


def _code(path):
    with pytest.raises(IngestError) as err:
        read_claims(path)
    assert err.value.file == path.name and path.name not in str(err.value)  # no names in log text
    return err.value.code


def _rewrite_zip(src, dst, change=None, drop=(), add=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename in drop:
                continue
            data = zin.read(item.filename)
            if change and item.filename in change:
                data = change[item.filename](data)
            zout.writestr(item.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def test_row01_empty_files(tmp_path):
    for name in ("e.xlsx", "e.csv"):
        (tmp_path / name).write_bytes(b"")
        assert _code(tmp_path / name) == "E_EMPTY"


def test_row02_header_only(tmp_path):
    csv = tmp_path / "h.csv"
    csv.write_text(",".join(HEADER) + "\n")
    for path in (csv, _xlsx(tmp_path / "h.xlsx", [HEADER])):
        r = read_claims(path)
        assert r.rows_read == 0 and "the file has a header but 0 data rows" in r.notes


def test_row03_truncated_xlsx(tmp_path):
    good = _xlsx(tmp_path / "g.xlsx", [HEADER, ROW]).read_bytes()
    (tmp_path / "t.xlsx").write_bytes(good[: len(good) // 2])
    assert _code(tmp_path / "t.xlsx") == "E_CORRUPT_ZIP"


def test_row04_row05_wrong_extensions(tmp_path):
    xlsx_bytes = _xlsx(tmp_path / "g.xlsx", [HEADER, ROW]).read_bytes()
    (tmp_path / "really-xlsx.csv").write_bytes(xlsx_bytes)
    r = read_claims(tmp_path / "really-xlsx.csv")
    assert r.rows_read == 1 and any("holds a workbook" in n for n in r.notes)
    (tmp_path / "really-csv.xlsx").write_text(",".join(HEADER) + "\n" + ",".join(map(str, ROW)) + "\n")
    r = read_claims(tmp_path / "really-csv.xlsx")
    assert r.rows_read == 1 and any("holds text" in n for n in r.notes)


def test_row06_encrypted(tmp_path):
    import msoffcrypto.format.ooxml as ooxml

    out = io.BytesIO()
    ooxml.OOXMLFile(io.BytesIO(_xlsx(tmp_path / "g.xlsx", [HEADER, ROW]).read_bytes())).encrypt("pw", out)
    (tmp_path / "enc.xlsx").write_bytes(out.getvalue())
    with pytest.raises(IngestError) as err:
        read_claims(tmp_path / "enc.xlsx")
    assert err.value.code == "E_ENCRYPTED" and "remove the password" in err.value.reason


def test_row07_legacy_xls_is_data_not_encrypted(tmp_path):
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Claims")
    for r, row in enumerate([HEADER, ROW]):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    book.save(str(tmp_path / "legacy.xls"))
    line = read_claims(tmp_path / "legacy.xls").lines.iloc[0]
    assert (line[C.CLAIM_ID], line[C.PROCEDURE_CODE], line[C.DX[0]]) == ("C1", "64612", "G51.33")


def test_row08_xlsm_with_macros_read_as_data(tmp_path):
    src = _xlsx(tmp_path / "g.xlsx", [HEADER, ROW])
    macro = _rewrite_zip(src, tmp_path / "m.xlsm", add={"xl/vbaProject.bin": b"\x00VBA macro bytes"})
    assert read_claims(macro).rows_read == 1


@pytest.mark.parametrize("missing", ["[Content_Types].xml", "xl/workbook.xml"])
def test_row09_zip_missing_parts(tmp_path, missing):
    src = _xlsx(tmp_path / "g.xlsx", [HEADER, ROW])
    assert _code(_rewrite_zip(src, tmp_path / "p.xlsx", drop=(missing,))) == "E_CORRUPT_ZIP"


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
                     for i in range(1, 10)) + b"]>")


@pytest.mark.parametrize("size", ["small", "large"])
def test_row10_billion_laughs(tmp_path, size):
    src = _xlsx(tmp_path / "g.xlsx", [HEADER, ROW])
    extra = b" " * (200_000 if size == "large" else 0)

    def bomb(data):
        body = data.split(b"?>", 1)[1] if data.startswith(b"<?xml") else data
        return LAUGHS + extra + body.replace(b"<sheetData>", b"<sheetData>&lol9;", 1)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = _rewrite_zip(src, tmp_path / "b.xlsx", change={"xl/worksheets/sheet1.xml": bomb})
    assert _code(path) == "E_UNSAFE_XML"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB: RSS stays flat
    import openpyxl

    assert openpyxl.DEFUSEDXML


def test_row11_xxe(tmp_path):
    src = _xlsx(tmp_path / "g.xlsx", [HEADER, ROW])
    xxe = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties">'
           b"<cp:keywords>&x;</cp:keywords></cp:coreProperties>")
    path = _rewrite_zip(src, tmp_path / "x.xlsx", change={"docProps/core.xml": lambda _: xxe})
    assert _code(path) == "E_UNSAFE_XML"


def test_row12_zip_bomb_refused_before_parsing(tmp_path):
    src = _xlsx(tmp_path / "g.xlsx", [HEADER, ROW])
    bomb = tmp_path / "bomb.xlsx"
    shutil.copy(src, bomb)
    row = b'<row><c t="inlineStr"><is><t>AAAAAAAAAAAAAAAAAAAAAAAA</t></is></c></row>' * 20_000
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as z, z.open("xl/worksheets/sheet2.xml", "w",
                                                                        force_zip64=True) as part:
        for _ in range(1_100_000_000 // len(row)):
            part.write(row)
    assert bomb.stat().st_size < 10_000_000
    assert _code(bomb) == "E_TOO_LARGE"


def test_row14_row15_lock_and_unsettled_files_are_left(tmp_path):
    (tmp_path / "~$claims.xlsx").write_bytes(b"owner")
    (tmp_path / "claims.csv").write_text("x")
    ready, skipped = nightly.scan_inbox(tmp_path, settle_seconds=60)
    assert ready == [] and sorted(r for _, r in skipped) == ["office lock file", "still being written"]


def test_row16_same_name_corrected_bytes(tmp_path):
    paths = nightly.resolve_paths(ScrubConfig(), tmp_path)
    ledger = Ledger(paths.ledger)
    statuses = []
    for charge in (10, 11, 11):
        lines = clean_claim()
        lines[0][C.CHARGE] = charge
        f = write_csv(lines, paths.inbox / "claims.csv")
        statuses.append(nightly.process_file(f, nightly.ingest.file_sha256(f), paths, ledger, ScrubConfig(),
                                             AS_OF, "d", "r", isolate=False).status)
    assert statuses == ["scrubbed", "scrubbed", "duplicate"]
    assert len(list((paths.archive / "d").iterdir())) == 3  # nothing overwritten, nothing lost


def test_row17_sheet_policy(tmp_path):
    def hidden_first(wb):
        h = wb.create_sheet("Secret", 0)
        h.append(HEADER)
        h.append(["HIDDEN", 1, "M9", "2024-05-01", "64612", 1, 10, "G51.33"])
        h.sheet_state = "hidden"
        v = wb.create_sheet("VeryHidden")
        v.append(HEADER)
        v.sheet_state = "veryHidden"

    r = read_claims(_xlsx(tmp_path / "h.xlsx", [HEADER, ROW], extra=hidden_first))
    assert list(r.lines[C.CLAIM_ID]) == ["C1"]

    def two_visible(wb):
        s = wb.create_sheet("Claims 2")
        s.append(HEADER)
        s.append(ROW)

    assert _code(_xlsx(tmp_path / "two.xlsx", [HEADER, ROW], extra=two_visible)) == "E_SHEET_AMBIGUOUS"


def test_row18_merged_title_cells_above_header(tmp_path):
    def merge(wb):
        wb.active.merge_cells("A1:H1")

    path = _xlsx(tmp_path / "m.xlsx", [["Claims export, merged title"], [], HEADER, ROW], extra=merge)
    r = read_claims(path)
    assert r.rows_read == 1 and r.lines.iloc[0][C.SOURCE_ROW] == 4
    assert not any(str(c).startswith("Unnamed") for c in r.lines.columns)
    (tmp_path / "nohead.csv").write_text("a,b,c\n1,2,3\n")
    assert _code(tmp_path / "nohead.csv") == "E_HEADER"


def test_row19_duplicate_columns(tmp_path):
    path = _xlsx(tmp_path / "d.xlsx", [HEADER + ["Units"], ROW + [2]])
    with pytest.raises(IngestError) as err:
        read_claims(path)
    assert err.value.code == "E_DUP_COLUMN" and err.value.reason.count("'Units'") == 2


def test_row20_missing_extra_and_odd_headers(tmp_path):
    (tmp_path / "m.csv").write_text("Claim ID,Payer,Member ID\nC1,X,M1\n")
    with pytest.raises(IngestError) as err:
        read_claims(tmp_path / "m.csv")
    assert err.value.code in ("E_HEADER", "E_MISSING_COLUMN")
    (tmp_path / "m2.csv").write_text("Claim ID,CPT,Payer\nC1,64612,X\n")
    with pytest.raises(IngestError) as err:
        read_claims(tmp_path / "m2.csv")
    assert err.value.code == "E_MISSING_COLUMN"
    for col in ("Service Date", "Units", "Diagnos"):  # in words, never internal column names
        assert col in err.value.reason
    odd = ["CLAIM ID", "Line", "Member ID\u00a0", "dos", "cpt", "UNITS", "Charge", "Dx 1", "Favourite Colour"]
    r = read_claims(_xlsx(tmp_path / "o.xlsx", [odd, ROW + ["blue"]]))
    assert r.lines.iloc[0][C.PATIENT_ID] == "M1"
    assert any("'Favourite Colour'" in n for n in r.notes)


def test_row21_blank_rows_keep_excel_row_numbers(tmp_path):
    r = read_claims(_xlsx(tmp_path / "b.xlsx", [HEADER, ROW, [None] * 8, ROW[:1] + [2] + ROW[2:], [], []]))
    assert list(r.lines[C.SOURCE_ROW]) == [2, 4]


@pytest.mark.parametrize("body", [
    "C1,1,M1,2024-05-01,64612,1,10,G51.33,EXTRA\n",
    "C1,1,M1,2024-05-01,64612,1\n",
])
def test_row22_ragged_csv(tmp_path, body):
    p = tmp_path / "r.csv"
    p.write_text(",".join(HEADER) + "\n" + ",".join(map(str, ROW)) + "\n" + body)
    with pytest.raises(IngestError) as err:
        read_claims(p)
    assert err.value.code == "E_CSV_SHAPE" and "row 3" in err.value.reason


def test_row22_quoted_newline_and_semicolons_are_fine(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text(";".join(HEADER + ["Muscles"]) + "\n" + ";".join(map(str, ROW)) + ';"R OO 5u\nL OO 5u"\n'
                 + ";".join(map(str, ["C2"] + ROW[1:])) + ";\n")
    r = read_claims(p)
    assert list(r.lines[C.CLAIM_ID]) == ["C1", "C2"] and list(r.lines[C.SOURCE_ROW]) == [2, 3]


def test_row23_dates(tmp_path):
    rows = [HEADER + ["DOB"]]
    for dos, dob in [(45427, "1960-01-01"), (60, "1960-01-01"), ("2024-13-01", "1960-01-01"),
                     ("03/04/2024", "1960-01-01"), ("2024-05-01", "2024-06-01")]:
        rows.append(["C1", len(rows), "M1", dos, "64612", 1, 10, "G51.33", dob])
    r = read_claims(_xlsx(tmp_path / "d.xlsx", rows))
    dates = list(r.lines[C.SERVICE_DATE])
    assert dates[0] == pd.Timestamp("2024-05-15") and dates[3] == pd.Timestamp("2024-03-04")
    assert pd.isna(dates[1]) and pd.isna(dates[2])
    reasons = dict(zip(r.issues.row, r.issues.reason, strict=False))
    assert "1900-02-29" in reasons[3] and "no such calendar date" in reasons[4]
    assert "after the date of service" in reasons[6]


def test_row24_amounts(tmp_path):
    p = tmp_path / "a.csv"
    rows = [",".join(HEADER)] + [f'C{i},1,M1,2024-05-01,64612,1,"{amt}",G51.33' for i, amt in
                                 enumerate(["1,200.50", "$1,200", "(100.00)", "1.200,50", " 12 "])]
    p.write_text("\n".join(rows) + "\n")
    r = read_claims(p)
    charges = list(r.lines[C.CHARGE])
    assert charges[:3] == [1200.5, 1200.0, -100.0] and charges[4] == 12.0 and pd.isna(charges[3])
    assert r.issues[r.issues.rule == "ING-001"].value.tolist() == ["1.200,50"]


def test_row25_codes_normalised_and_bad_ones_shown_as_written(tmp_path):
    from pipeline.validate import find_violations

    p = tmp_path / "c.csv"
    p.write_text("Claim ID,DOS,CPT,Units,Charge,Dx 1,Dx 2,Dx 3,Rendering NPI\n"
                 'C1,2024-05-01,64612,1,1,e11.9, E119 ,"E11,9X",1234567890\n')
    r = read_claims(p)
    line = r.lines.iloc[0]
    assert (line[C.DX[0]], line[C.DX[1]]) == ("E11.9", "E11.9")
    f = find_violations(r.lines, AS_OF, present=r.present).findings
    assert f.loc[f.rule == "STR-005", "value"].tolist() == ["E11,9X"]
    assert f.loc[f.rule == "STR-006", "value"].tolist() == ["1234567890"]


def test_row26_na_names_stay(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text(",".join(HEADER + ["Patient Name"]) + "\n" + ",".join(map(str, ROW)) + ",NA\n"
                 + ",".join(map(str, ROW[:1] + [2] + ROW[2:])) + ",N/A\n")
    assert list(read_claims(p).lines[C.PATIENT_NAME]) == ["NA", "N/A"]


def test_row27_row30_formulas_and_error_cells_are_flagged(tmp_path):
    src = _xlsx(tmp_path / "f.xlsx", [HEADER, ["C1", 1, "M1", "2024-05-01", "64612", "=1+0", "=B2*10", "G51.33"]])

    def cached(data):
        return data.replace(b"<f>1+0</f><v></v>", b"<f>1+0</f><v>1</v>").replace(
            b'<c r="G2"><f>B2*10</f><v></v></c>', b'<c r="G2" t="e"><f>B2*10</f><v>#REF!</v></c>')

    r = read_claims(_rewrite_zip(src, tmp_path / "f2.xlsx", change={"xl/worksheets/sheet1.xml": cached}))
    assert r.lines.iloc[0][C.UNITS] == 1  # cached value used
    reasons = " ".join(r.issues.reason)
    assert "E_CELL_ERROR" in reasons and "#REF!" in reasons
    r = read_claims(src)  # openpyxl saved the formulas without values
    assert "E_FORMULA_NO_VALUE" in " ".join(r.issues.reason)


def test_row28_row29_hostile_and_long_text_in_output(tmp_path):
    from pipeline.scrub import scrub_file

    lines = clean_claim()
    lines[1][C.NDC] = None
    lines[1][C.PAYER] = "=HYPERLINK(\"http://x\",\"y\")"
    lines[0][C.PAYER] = lines[1][C.PAYER]
    lines[0][C.MUSCLES] = "R OO 10u\x07; " + "x" * 40_000
    path = write_csv(lines, tmp_path / "h.csv")  # openpyxl itself refuses \x07 in an input fixture
    out = scrub_file(path, tmp_path / "out", None, AS_OF)
    wb = load_workbook(out.workbook)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f"
    with zipfile.ZipFile(out.workbook) as z:
        assert not any(b"<f>" in z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/"))
    issues = [r for r in wb["Ingest Issues"].iter_rows(values_only=True) if r[6] == "TRUNCATED"]
    assert issues and "longer than an Excel cell holds" in issues[0][5]


def _run_with_fsize_limit(root, limit):
    code = (
        "import resource, signal, datetime as dt; from pathlib import Path;"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "from pipeline import nightly, ingest; from pipeline.config import ScrubConfig;"
        "from pipeline.ledger import Ledger;"
        f"p = nightly.resolve_paths(ScrubConfig(), Path({str(root)!r})); led = Ledger(p.ledger);"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}));"
        "f = p.inbox / 'big.csv';"
        "o = nightly.process_file(f, ingest.file_sha256(f), p, led, ScrubConfig(), dt.date(2024, 6, 30),"
        " 'd', 'r', isolate=False); print(o.status, o.reason_code)"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def test_row31_row32_unwritable_output_and_disk_full(tmp_path):
    paths = nightly.resolve_paths(ScrubConfig(), tmp_path)
    from pipeline.sample import generate

    write_csv(generate(30_000), paths.inbox / "big.csv")  # its workbook is larger than the 200 kB limit
    proc = _run_with_fsize_limit(tmp_path, 200_000)
    assert proc.stdout.split() == ["failed", "E_DISK_FULL"], proc.stderr
    assert (paths.inbox / "big.csv").exists()
    day = paths.outbox / "d"
    assert not list(day.glob("*.xlsx")) and not list(day.glob(".claimscrub-tmp-*"))
    assert list(Ledger(paths.ledger).files().status) == ["failed"]
    (paths.outbox / "d").rmdir()
    (paths.outbox / "d").write_text("a file where the day folder should be")
    f = paths.inbox / "big.csv"
    for isolate in (False, True):  # in-process, and in the child process the nightly run scrubs files in
        o = nightly.process_file(f, nightly.ingest.file_sha256(f), paths, Ledger(paths.ledger), ScrubConfig(),
                                 AS_OF, "d", "r", isolate=isolate)
        assert (o.status, o.reason_code) == ("failed", "E_OUTPUT_UNWRITABLE") and f.exists()


def test_disk_full_at_the_ledger_keeps_the_file_for_the_next_run(tmp_path):
    """Outputs fit under the limit, the ledger's injection history does not: failed, file kept, then converges."""
    paths = nightly.resolve_paths(ScrubConfig(), tmp_path)
    from pipeline.sample import generate

    write_csv(generate(3000), paths.inbox / "big.csv")  # ~40 kB workbook; ~1,300 sessions to record
    proc = _run_with_fsize_limit(tmp_path, 200_000)
    assert proc.stdout.split() == ["failed", "E_LEDGER_UNWRITABLE"], proc.stderr
    assert (paths.inbox / "big.csv").exists() and Ledger(paths.ledger).files().empty
    f = paths.inbox / "big.csv"
    o = nightly.process_file(f, nightly.ingest.file_sha256(f), paths, Ledger(paths.ledger), ScrubConfig(), AS_OF,
                             "d", "r", isolate=False)
    assert o.status == "scrubbed" and not f.exists()
    assert list(Ledger(paths.ledger).files().status) == ["scrubbed"]
    assert len(list((paths.outbox / "d").glob("*.xlsx"))) == 1


@pytest.mark.parametrize("stage", ["claimed", "after_outputs", "after_ledger"])
def test_row34_kill_at_each_stage_then_converge(tmp_path, stage):
    paths = nightly.resolve_paths(ScrubConfig(), tmp_path)
    write_csv(clean_claim(), paths.inbox / "k.csv")
    code = ("import datetime as dt; from pathlib import Path; from pipeline import nightly, ingest;"
            "from pipeline.config import ScrubConfig; from pipeline.ledger import Ledger;"
            f"p = nightly.resolve_paths(ScrubConfig(), Path({str(tmp_path)!r})); f = p.inbox / 'k.csv';"
            "nightly.process_file(f, ingest.file_sha256(f), p, Ledger(p.ledger), ScrubConfig(),"
            " dt.date(2024, 6, 30), 'd', 'r1', isolate=False)")
    env = dict(os.environ, **{nightly.FAULT_ENV: stage})
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT).returncode == 137
    f = paths.inbox / "k.csv"
    assert f.exists()
    again = nightly.process_file(f, nightly.ingest.file_sha256(f), paths, Ledger(paths.ledger), ScrubConfig(),
                                 AS_OF, "d", "r2", isolate=False)
    assert again.status == "scrubbed" and not f.exists()
    assert len(list((paths.outbox / "d").glob("*.exceptions.xlsx"))) == 1
    assert [p.name for p in (paths.archive / "d").iterdir()] == ["k.csv"]
    assert list(Ledger(paths.ledger).files().status) == ["scrubbed"]


def test_workbook_near_the_memory_limit_fails_fast_not_by_timeout():
    """It quarantines a workbook whose child has almost no memory left with a reason at once: no
    helper thread is started that could die while starting and leave the read waiting until the time
    limit."""
    from pipeline import isolate

    with pytest.raises(IngestError) as err:
        isolate.read_isolated(SAMPLES / "messy.xlsx", memory_mb=64, timeout_s=30)
    assert err.value.code in ("E_TOO_LARGE", "E_READER", "E_READER_CRASH")


def test_isolated_reader_survives_a_crashing_child(tmp_path, monkeypatch):
    """It quarantines a file whose reader dies (a native abort) and keeps the parent alive."""
    from pipeline import isolate

    good = write_csv(clean_claim(), tmp_path / "g.csv")
    assert isolate.read_isolated(good).rows_read == 2
    with pytest.raises(IngestError) as err:
        isolate.read_isolated(good, memory_mb=64)  # too little memory even to start reading
    assert err.value.code in ("E_TOO_LARGE", "E_READER", "E_READER_CRASH")
    bad = tmp_path / "abort.csv"
    bad.write_text("x")
    monkeypatch.setattr(isolate, "_child", _aborting_child)
    with pytest.raises(IngestError) as err:
        isolate.read_isolated(bad)
    assert err.value.code == "E_READER_CRASH"


def _aborting_child(conn, path, column_map, memory_mb):
    os.kill(os.getpid(), signal.SIGABRT)


BYTE_PREFIXES = st.sampled_from([b"", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"Claim ID,DOS,CPT\n",
                                 b"\xef\xbb\xbf", b"<?xml"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=BYTE_PREFIXES, body=st.binary(max_size=2048), suffix=st.sampled_from([".xlsx", ".csv", ".xls", ".ods"]))
def test_any_bytes_get_a_classified_outcome(tmp_path, prefix, body, suffix):
    """It returns lines or a reason code for any bytes, never another exception."""
    path = tmp_path / f"any{suffix}"
    path.write_bytes(prefix + body)
    try:
        result = read_claims(path)
        assert result.rows_read == len(result.lines)
    except IngestError as exc:
        assert exc.code.startswith("E_")


def test_zlib_available_for_fixtures():
    assert zlib.compress(b"x")
