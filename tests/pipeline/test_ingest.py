"""Reading real files: samples, aliases, title rows, encodings, combined columns, broken files."""

import datetime as dt
import io
import zipfile

import pandas as pd
import pytest
from openpyxl import Workbook

from pipeline.ingest import IngestError, load_column_map, read_claims
from schemas import columns as C
from tests.conftest import SAMPLES

HEADER = "Claim #,Line #,Member ID,DOS,CPT,Modifiers,Qty,Charge Amt,Diagnosis Codes,Dx Ptr,Injection Sites\n"


def test_clean_sample_value_by_value():
    """It reads the clean sample into the canonical frame with typed values."""
    r = read_claims(SAMPLES / "clean.csv")
    first = r.lines.iloc[0]
    assert r.rows_read == 11 and r.lines[C.CLAIM_ID].nunique() == 6
    assert first[C.CLAIM_ID] == "CLN-001" and first[C.LINE_NO] == 1
    assert first[C.SERVICE_DATE] == pd.Timestamp("2024-05-11")
    assert (first[C.PROCEDURE_CODE], first[C.MODIFIERS[0]], first[C.UNITS]) == ("64612", "50", 1.0)
    assert first[C.DX[0]] == "G51.33" and first[C.RENDERING_NPI] == "1993999998"
    assert bool(first[C.DOC_ONSET]) and not bool(first[C.DOC_SURGICAL_NOTES])
    assert first[C.SOURCE_ROW] == 2
    assert r.issues[r.issues.rule == "ING-001"].empty


def test_messy_sample_title_rows_aliases_serials_sites_sheet():
    """It finds the header under title rows, maps aliases, reads serial dates and merges the sites sheet."""
    r = read_claims(SAMPLES / "messy.xlsx")
    lines = r.lines
    assert r.sheet == "Export" and r.rows_read == 6
    assert list(lines[C.SOURCE_ROW]) == [5, 6, 7, 9, 10, 11]  # blank row 8 and totals row 12 skipped
    m1 = lines.iloc[0]
    assert m1[C.SERVICE_DATE] == pd.Timestamp("2024-05-15")  # serial 45427 in a General cell
    assert m1[C.DOB] == pd.Timestamp("1961-05-15")
    assert (m1[C.PROCEDURE_CODE], m1[C.MODIFIERS[0]], m1[C.DX[0]]) == ("64612", "RT", "G51.33")
    assert lines.iloc[2][C.PROCEDURE_CODE] == "J0585" and lines.iloc[2][C.UNITS] == 50
    assert lines.iloc[3][C.DX[1]] == "G24.5" and lines.iloc[3][C.DX_POINTER] == "A"
    assert lines.iloc[3][C.CHARGE] == 1040.0
    assert "R orbicularis oculi 15u" in m1[C.MUSCLES]
    assert pd.isna(lines.iloc[1][C.MUSCLES])  # sites belong to the claim: merged once
    bad = r.issues[r.issues.rule == "ING-001"].iloc[0]
    assert (bad.file, bad.sheet, bad.row, bad.column, bad.value) == (
        "messy.xlsx", "Export", 11, "Svc Date", "not a date")
    assert any("hidden sheet 'lookup'" in n for n in r.notes)


def test_combined_columns_bom_and_aliases(tmp_path):
    """It splits combined modifier and diagnosis cells and ignores a UTF-8 BOM."""
    p = tmp_path / "x.csv"
    p.write_bytes(("\ufeff" + HEADER + 'A1,1,M1,2024-05-01,64612,"50, JZ, KX, GA, 59",1,"$1,234.50",'
                   '"g5133; G24.5",1,R OO 5u\n').encode("utf-8"))
    line = read_claims(p).lines.iloc[0]
    assert [line[m] for m in C.MODIFIERS] == ["50", "JZ", "KX", "GA"] and line[C.MODIFIER_EXTRA] == "59"
    assert (line[C.DX[0]], line[C.DX[1]], line[C.CHARGE]) == ("G51.33", "G24.5", 1234.5)


def test_cp1252_and_semicolons(tmp_path):
    """It falls back to Windows-1252 with a note and reads ; delimited text."""
    p = tmp_path / "x.csv"
    p.write_bytes(HEADER.replace(",", ";").encode() + "A1;1;M1;05/01/2024;64612;50;1;10;G51.33;A;R OO 5u café\n"
                  .encode("cp1252"))
    r = read_claims(p)
    assert r.lines.iloc[0][C.MUSCLES].endswith("café")
    assert r.lines.iloc[0][C.SERVICE_DATE] == pd.Timestamp("2024-05-01")
    assert any("cp1252" in n for n in r.notes)


def test_user_column_map(tmp_path):
    """It applies a --columns mapping file on top of the built-in aliases."""
    m = tmp_path / "map.toml"
    m.write_text('[columns]\n"Visit Ref" = "claim_id"\n')
    p = tmp_path / "x.csv"
    p.write_text(HEADER.replace("Claim #", "Visit Ref") + "V9,1,M1,2024-05-01,64612,50,1,10,G51.33,A,\n")
    assert read_claims(p, load_column_map(m)).lines.iloc[0][C.CLAIM_ID] == "V9"


def test_names_like_na_stay_text(tmp_path):
    """It keeps NA, None and Null as written."""
    p = tmp_path / "x.csv"
    p.write_text("Claim ID,Patient Name,DOS,CPT,Units,Dx 1\nNA,None,2024-05-01,64612,1,G51.33\nN2,Null,2024-05-01,"
                 "64612,1,G51.33\n")
    lines = read_claims(p).lines
    assert list(lines[C.CLAIM_ID]) == ["NA", "N2"] and list(lines[C.PATIENT_NAME]) == ["None", "Null"]


@pytest.mark.parametrize(("content", "code"), [
    (b"", "E_EMPTY"),
    (b"PK\x03\x04" + b"\x00" * 40, "E_CORRUPT_ZIP"),
    (b"just,some\ntext,here\n", "E_HEADER"),
    (b"Claim ID,CPT,Units,Payer\nA,64612,1,X\n", "E_MISSING_COLUMN"),
])
def test_unreadable_files_raise_one_clear_error(tmp_path, content, code):
    """It raises IngestError naming the file and the reason."""
    p = tmp_path / "bad.xlsx"
    p.write_bytes(content)
    with pytest.raises(IngestError) as err:
        read_claims(p)
    assert err.value.code == code and err.value.file == "bad.xlsx" and "bad.xlsx" not in str(err.value)


def test_truncated_and_encrypted_workbooks(tmp_path):
    """It reports a truncated workbook as corrupt and a password-protected one as encrypted."""
    import msoffcrypto.format.ooxml as ooxml

    good = tmp_path / "good.xlsx"
    wb = Workbook()
    wb.active.append(["Claim ID", "DOS", "CPT", "Units", "Dx 1"])
    wb.save(good)
    data = good.read_bytes()
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError) as err:
        read_claims(cut)
    assert err.value.code == "E_CORRUPT_ZIP"
    enc = tmp_path / "enc.xlsx"
    out = io.BytesIO()
    ooxml.OOXMLFile(io.BytesIO(data)).encrypt("secret", out)
    enc.write_bytes(out.getvalue())
    with pytest.raises(IngestError) as err:
        read_claims(enc)
    assert err.value.code == "E_ENCRYPTED" and "remove the password" in err.value.reason


def test_zip_without_workbook_parts(tmp_path):
    """It turns a zip that is not a workbook into E_CORRUPT_ZIP, not a KeyError."""
    p = tmp_path / "z.xlsx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(IngestError) as err:
        read_claims(p)
    assert err.value.code == "E_CORRUPT_ZIP"


def test_duplicate_mapped_columns_are_refused(tmp_path):
    """It refuses two columns for one canonical field, naming both."""
    p = tmp_path / "d.csv"
    p.write_text("Claim ID,Claim #,DOS,CPT,Units,Dx 1\nA,A,2024-05-01,64612,1,G51.33\n")
    with pytest.raises(IngestError) as err:
        read_claims(p)
    assert err.value.code == "E_DUP_COLUMN" and "'Claim ID'" in err.value.reason and "'Claim #'" in err.value.reason


def test_every_sample_reads():
    """It reads every bundled sample without losing rows."""
    for path in sorted(SAMPLES.glob("*.csv")) + sorted(SAMPLES.glob("*.xlsx")):
        r = read_claims(path)
        assert r.rows_read == len(r.lines) > 0


def test_tsv_and_ods(tmp_path):
    """It reads tab-separated text and OpenDocument spreadsheets."""
    tsv = tmp_path / "x.tsv"
    tsv.write_text("Claim ID\tDOS\tCPT\tUnits\tDx 1\nT1\t2024-05-01\t64612\t1\tG51.33\n")
    assert read_claims(tsv).lines.iloc[0][C.CLAIM_ID] == "T1"
    cells = "".join(
        "<table:table-row>" + "".join(
            f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>' for v in row)
        + "</table:table-row>"
        for row in (["Claim ID", "DOS", "CPT", "Units", "Dx 1"], ["O1", "2024-05-01", "64612", "1", "G51.33"]))
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body>'
        f'<office:spreadsheet><table:table table:name="Claims">{cells}</table:table></office:spreadsheet>'
        "</office:body></office:document-content>")
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>")
    ods = tmp_path / "x.ods"
    with zipfile.ZipFile(ods, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", content)
    line = read_claims(ods).lines.iloc[0]
    assert (line[C.CLAIM_ID], line[C.PROCEDURE_CODE], line[C.SERVICE_DATE]) == (
        "O1", "64612", pd.Timestamp("2024-05-01"))


def test_1904_date_system(tmp_path):
    """It reads date serial numbers of a 1904-system workbook from 1904-01-01."""
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    wb = Workbook()
    wb.epoch = CALENDAR_MAC_1904
    wb.active.append(["Claim ID", "DOS", "CPT", "Units", "Dx 1"])
    wb.active.append(["D1", 43965, "64612", 1, "G51.33"])  # a number in a General cell
    wb.save(tmp_path / "mac.xlsx")
    r = read_claims(tmp_path / "mac.xlsx")
    assert r.lines.iloc[0][C.SERVICE_DATE] == pd.Timestamp("2024-05-15")
    assert any("1904" in n for n in r.notes)


ODD_CSVS = {
    "quoted_newline_bom": '\ufeffClaim ID,DOS,CPT,Units,Dx 1,Payer\nC1,2024-05-01,64612,1,G51.33,"Medi\r\ncare"\n'
                          'C1,05/01/2024,J0585,50,G51.33, spaced \n',
    "blank_lines_and_totals": "Claim ID,DOS,CPT,Units,Dx 1\n\nC1,2024-05-01,64612,1,G51.33\n,,,,\n   ,,,,\n"
                              "C2,2024-05-02,J0585,x,g5133\nTotal,,,51,\n",
    "semicolons_and_money": "Claim ID;DOS;CPT;Units;Dx 1;Charge\nC1;2024-05-01;64612;1;G51.33;$1,200.50\n"
                            "C1;2024-13-01;J0585;50;G51.33;(100.00)\n",
    "ragged_extra_blank": "Claim ID,DOS,CPT,Units,Dx 1\nC1,2024-05-01,64612,1,G51.33,,\n",
    "title_row": "Export of May\nClaim ID,DOS,CPT,Units,Dx 1\nC1,2024-05-01,64612,1,G51.33\n",
    "hostile_text": "Claim ID,DOS,CPT,Units,Dx 1,Payer\nC1,2024-05-01,64612,1,G51.33,=HYPERLINK(1)\n"
                    "C1,2024-05-01,J0585,NA,G51.33,\u00b2\n",
}


@pytest.mark.parametrize("name", [*ODD_CSVS, "clean.csv", "mixed.csv"])
def test_fast_csv_reader_gives_the_exact_readers_lines(tmp_path, monkeypatch, name):
    """It reads a CSV through pyarrow to the same lines, issues and notes as the exact csv-module reader."""
    from pipeline import ingest

    if name in ODD_CSVS:
        path = tmp_path / f"{name}.csv"
        path.write_bytes(ODD_CSVS[name].encode("utf-8"))
    else:
        path = SAMPLES / name
    used = []
    fast_reader = ingest._read_csv_fast
    monkeypatch.setattr(ingest, "_read_csv_fast", lambda *a: used.append(r := fast_reader(*a)) or r)
    fast = read_claims(path)
    monkeypatch.setattr(ingest, "_read_csv_fast", lambda *a: None)
    exact = read_claims(path)
    # The fast path takes the common shapes; a title row or a ragged row goes to the exact reader.
    assert (used[0] is not None) == (name not in ("title_row", "ragged_extra_blank"))
    pd.testing.assert_frame_equal(fast.lines, exact.lines)
    pd.testing.assert_frame_equal(fast.issues, exact.issues)
    assert (fast.rows_read, fast.present, fast.notes) == (exact.rows_read, exact.present, exact.notes)


def test_blank_cells_are_the_same_whether_or_not_a_column_is_factorised():
    """It finds the same blank cells per distinct value (mapped columns) as cell by cell, and hands back the codes."""
    import numpy as np
    import pandas as pd

    from pipeline.ingest import _empty_cells

    col = [None, "", " ", 0, False, True, 1, float("nan"), "x", "", None, dt.datetime(2024, 1, 2)]
    raw = pd.DataFrame({0: pd.Series(col, dtype=object), 1: pd.Series(list(reversed(col)), dtype=object)})
    cell_by_cell, none = _empty_cells(raw)
    per_value, codes = _empty_cells(raw, {0, 1})
    assert none == {} and set(codes) == {0, 1}
    np.testing.assert_array_equal(cell_by_cell, per_value)
    assert per_value[:, 0].tolist() == [True, True, False, False, False, False, False, False, False, True, True, False]
    c, uniques = codes[0]
    assert [None if k < 0 else uniques[k] for k in c][8] == "x"


@pytest.mark.parametrize("name", ["mixed.csv", "messy.xlsx"])
def test_columns_normalised_on_two_threads_give_the_same_lines(name, monkeypatch):
    """It gives the same lines, issues and notes whether a large file's columns are normalised on two
    threads or one after another."""
    from pipeline import ingest

    monkeypatch.setattr(ingest, "PARALLEL_ROWS", 10**9)
    alone = read_claims(SAMPLES / name)
    monkeypatch.setattr(ingest, "PARALLEL_ROWS", 1)
    threaded = read_claims(SAMPLES / name)
    pd.testing.assert_frame_equal(alone.lines, threaded.lines)
    pd.testing.assert_frame_equal(alone.issues, threaded.issues)
    assert alone.notes == threaded.notes


@pytest.mark.parametrize("threads", [True, False], ids=["hashed-beside-the-parse", "one-thread"])
@pytest.mark.parametrize("name", ["mixed.csv", "messy.xlsx"])
def test_the_file_hash_is_the_sha256_of_its_bytes(name, threads, monkeypatch):
    import hashlib

    from pipeline import ingest
    from pipeline import threads as threads_module

    monkeypatch.setattr(ingest, "room_for_threads", lambda: threads)
    monkeypatch.setattr(threads_module, "room_for_threads", lambda: threads)
    assert read_claims(SAMPLES / name).sha256 == hashlib.sha256((SAMPLES / name).read_bytes()).hexdigest()


@pytest.mark.parametrize("threads", [True, False], ids=["helper-thread", "no-room-for-a-thread"])
def test_beside_runs_the_work_on_a_helper_thread_or_when_asked(threads, monkeypatch):
    """``threads.beside``: the work runs on a named helper thread while the block runs; without room for
    a thread it runs on the calling thread when its result is asked for. An error reaches the caller."""
    import threading

    from pipeline import threads as threads_module

    monkeypatch.setattr(threads_module, "room_for_threads", lambda: threads)
    ran_on = []

    def work(x):
        ran_on.append(threading.current_thread().name)
        return x * 2

    with threads_module.beside(work, 21, name="claimscrub-test") as result:
        assert result() == 42
    assert ran_on[0].startswith("claimscrub-test") if threads else ran_on == ["MainThread"]
    with pytest.raises(ZeroDivisionError), threads_module.beside(lambda: 1 / 0) as result:
        result()
