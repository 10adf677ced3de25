"""The split read of a large sheet gives exactly calamine's whole-sheet rows, or steps aside."""

import datetime as dt
import gc
import re
import warnings
import zipfile

import pandas as pd
import pytest
from openpyxl import Workbook
from python_calamine import CalamineWorkbook

from pipeline import cells, xlsxsplit
from pipeline.ingest import read_claims
from pipeline.sample import generate, write_xlsx
from schemas import columns as C
from tests.conftest import SAMPLES

HEADER = ["Claim ID", "Line", "Member ID", "DOS", "CPT", "Units", "Charge", "Diagnosis Codes"]


def _whole(path, sheet):
    wb = CalamineWorkbook.from_path(str(path))
    try:
        return wb.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    finally:
        wb.close()


def _split(path, sheet, piece_bytes):
    return xlsxsplit.read_split(path, xlsxsplit.Plan(sheet, cells.sheet_parts(path)[sheet], 2, piece_bytes))


def _generated(tmp_path):
    return write_xlsx(generate(400, seed=7), tmp_path / "generated.xlsx", title_rows=2), "Claims"


_INLINE = re.compile(rb'<c ([^>]*?)t="inlineStr"([^>]*)><is><t(?: [^>]*)?>(.*?)</t></is></c>', re.S)
_SST = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
_SST_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def _with_shared_strings(src, dst):
    """The workbook as Excel saves it: text cells point into xl/sharedStrings.xml (openpyxl writes inline text)."""
    table: dict[bytes, int] = {}

    def shared(m):
        index = table.setdefault(m.group(3), len(table))
        return b'<c ' + m.group(1) + b't="s"' + m.group(2) + b"><v>%d</v></c>" % index

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = _INLINE.sub(shared, data)
            elif item.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_SST}"/>'
                                    "</Types>".encode())
            elif item.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", f'<Relationship Id="rIdSST" Type="{_SST_REL}" '
                                    'Target="sharedStrings.xml"/></Relationships>'.encode())
            zout.writestr(item.filename, data)
        items = b"".join(b'<si><t xml:space="preserve">' + text + b"</t></si>" for text in table)
        zout.writestr("xl/sharedStrings.xml", b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
                      b' count="%d" uniqueCount="%d">' % (len(table), len(table)) + items + b"</sst>")
    return dst


def _sparse(tmp_path):
    """Shared strings, a <dimension>, data from C3, blank rows, one row wider than the rest, odd values."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Claims"
    ws.append([])
    ws.append([])
    ws.append([None, None, *HEADER])
    for i in range(60):
        if 20 <= i < 25:
            ws.append([])  # five blank rows
            continue
        row = [None, None, f"C{i}", 1, "M1", dt.date(2024, 5, 1 + i % 28), "64612", i * 0.5, 520, "G51.33"]
        if i == 33:
            row += [None, None, None, "far right"]
        if i == 40:
            row[2] = "a</row>b <sheetData> & ünïcødé 𝄞"
        if i == 41:
            row[5] = True
        ws.append(row)
    ws["D30"] = "#N/A"
    ws["D30"].data_type = "e"
    wb.create_sheet("Notes").append(["a note"])
    wb.save(tmp_path / "inline.xlsx")
    path = _with_shared_strings(tmp_path / "inline.xlsx", tmp_path / "sparse.xlsx")
    assert _whole(path, "Claims") == _whole(tmp_path / "inline.xlsx", "Claims")
    return path, "Claims"


@pytest.mark.parametrize("build", [lambda t: (SAMPLES / "messy.xlsx", "Export"), _generated, _sparse],
                         ids=["messy-sample", "generated", "sparse-shared-strings"])
@pytest.mark.parametrize("piece_bytes", [1, 700, 6000])
def test_split_rows_equal_the_whole_sheet(tmp_path, build, piece_bytes):
    path, sheet = build(tmp_path)
    whole = _whole(path, sheet)
    split = _split(path, sheet, piece_bytes)
    assert split is not None and split.pieces > 1
    assert split.rows == whole
    assert [type(v) for r in split.rows for v in r] == [type(v) for r in whole for v in r]


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item.filename, change(data) if item.filename == "xl/worksheets/sheet1.xml" else data)
    return dst


def test_rows_without_numbers_are_never_misplaced(tmp_path):
    """calamine numbers an unnumbered row after the one before it: a piece may not start with one."""
    src, sheet = _sparse(tmp_path)
    path = _rewrite(src, tmp_path / "unnumbered.xlsx", lambda d: re.sub(rb'<row r="\d+"', b"<row", d))
    whole = _whole(path, sheet)
    assert _split(path, sheet, 1) is None
    # numbered rows with unnumbered ones between them: pieces start only at numbered rows, or it steps aside
    path = _rewrite(src, tmp_path / "some.xlsx", lambda d: re.sub(rb'<row r="(\d*[02468])"', b"<row", d))
    whole = _whole(path, sheet)
    split = _split(path, sheet, 1)
    assert split is None or split.rows == whole


def test_prefixed_xml_and_cdata_step_aside(tmp_path):
    """Tags it cannot find, or a cut that lands inside CDATA, mean a whole read; read_claims still reads it."""
    src, sheet = _generated(tmp_path)
    prefixed = _rewrite(src, tmp_path / "prefixed.xlsx", lambda d: re.sub(
        rb"<(/?)(\w+)", rb"<\1x:\2", d).replace(b"<x:worksheet xmlns=", b"<x:worksheet xmlns:x="))
    assert _whole(prefixed, sheet) == _whole(src, sheet)
    assert _split(prefixed, sheet, 1) is None
    cdata = _rewrite(src, tmp_path / "cdata.xlsx", lambda d: d.replace(
        b"<t>CLM-", b"<t><![CDATA[</row></c></row><row>CLM-]]></t><t>", 1).replace(
        b"<t><![CDATA[</row></c></row><row>CLM-]]></t><t>", b"<t><![CDATA[</row>CLM-]]></t><t>", 1))
    whole = _whole(cdata, sheet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = _split(cdata, sheet, 1)
        gc.collect()
    assert split is None or split.rows == whole
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # no piece file left open


@pytest.fixture
def forced_split(monkeypatch):
    """Split every workbook sheet into tiny pieces, and record each split read."""
    reads = []
    real = xlsxsplit.read_split

    def recording(path, p):
        out = real(path, p)
        reads.append(out)
        return out

    monkeypatch.setattr(xlsxsplit, "usable_cores", lambda: 2)
    monkeypatch.setattr(xlsxsplit, "MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(xlsxsplit, "MIN_PIECE_BYTES", 1)
    monkeypatch.setattr(xlsxsplit, "PIECE_BYTES", 900)
    monkeypatch.setattr(xlsxsplit, "MAX_SHARED_REPARSE", 1e9)
    monkeypatch.setattr(xlsxsplit, "read_split", recording)
    return reads


def _formulas(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.title = "Claims"
    ws.append(HEADER)
    for i in range(30):
        ws.append([f"C{i}", 1, "M1", "2024-05-01", "64612", "=1+0" if i == 12 else 1, 520, "G51.33"])
    ws["G20"] = "#REF!"
    ws["G20"].data_type = "e"
    path = tmp_path / "formulas.xlsx"
    wb.save(path)
    return path, "Claims"


@pytest.mark.parametrize("build", [lambda t: (SAMPLES / "messy.xlsx", "Export"), _generated, _sparse, _formulas],
                         ids=["messy-sample", "generated", "sparse-shared-strings", "formulas-and-errors"])
def test_read_claims_is_the_same_with_the_split(tmp_path, monkeypatch, build, forced_split):
    path, sheet = build(tmp_path)
    split = read_claims(path)
    assert [r is not None and r.pieces > 1 for r in forced_split] == [True]
    monkeypatch.setattr(xlsxsplit, "usable_cores", lambda: 1)
    whole = read_claims(path)
    assert len(forced_split) == 1  # not split this time
    pd.testing.assert_frame_equal(split.lines, whole.lines)
    pd.testing.assert_frame_equal(split.issues, whole.issues)
    assert (split.notes, split.sheet, split.rows_read) == (whole.notes, whole.sheet, whole.rows_read)
    if build is _formulas:
        reasons = " ".join(split.issues.reason)
        assert "E_CELL_ERROR" in reasons and "E_FORMULA_NO_VALUE" in reasons


def test_small_sheets_single_core_and_large_shared_strings_are_not_split(tmp_path, monkeypatch):
    path, sheet = _generated(tmp_path)
    parts = cells.sheet_parts(path)
    monkeypatch.setattr(xlsxsplit, "usable_cores", lambda: 2)
    assert xlsxsplit.plan(path, parts) is None  # under MIN_SPLIT_BYTES
    found = xlsxsplit.plan(path, parts, min_bytes=0)
    assert found is not None and (found.sheet, found.workers, found.piece_bytes, found.shaped) == (sheet, 2, 2 << 20, True)
    monkeypatch.setattr(xlsxsplit, "usable_cores", lambda: 1)
    assert xlsxsplit.plan(path, parts, min_bytes=0) is None
    monkeypatch.setattr(xlsxsplit, "usable_cores", lambda: 2)
    wb = Workbook()  # every piece would parse the shared strings again
    for i in range(300):
        wb.active.append([i, f"unique text {i} " * 4])
    wb.save(tmp_path / "inline.xlsx")
    _with_shared_strings(tmp_path / "inline.xlsx", tmp_path / "shared.xlsx")
    parts = cells.sheet_parts(tmp_path / "shared.xlsx")
    assert xlsxsplit.plan(tmp_path / "shared.xlsx", parts, min_bytes=0) is None
    monkeypatch.setattr(xlsxsplit, "MAX_SHARED_REPARSE", 4.0)  # allowed: fewer, larger pieces
    monkeypatch.setattr(xlsxsplit, "MIN_PIECE_BYTES", 1)
    with zipfile.ZipFile(tmp_path / "shared.xlsx") as z:
        sheet_size, shared = (z.getinfo(n).file_size for n in ("xl/worksheets/sheet1.xml", "xl/sharedStrings.xml"))
    found = xlsxsplit.plan(tmp_path / "shared.xlsx", parts, min_bytes=0)
    most = int(sheet_size * 4.0 / shared)
    assert found.piece_bytes == -(-sheet_size // most) > 1 and not found.shaped
    split = xlsxsplit.read_split(tmp_path / "shared.xlsx", found)
    assert split is not None and 2 <= split.pieces <= most  # no extra small pieces to parse the strings again
    assert split.rows == _whole(tmp_path / "shared.xlsx", "Sheet")


def test_lines_keep_their_excel_rows(tmp_path, forced_split):
    path, _ = _sparse(tmp_path)
    lines = read_claims(path).lines
    assert forced_split[0] is not None
    assert list(lines[C.SOURCE_ROW][18:22]) == [22, 23, 29, 30]  # rows 24-28 blank


@pytest.mark.parametrize("xml, expected", [
    (b'<c r="A1"><f>1+0</f><v></v></c>', True), (b'<c r="A1" t="e"><v>#REF!</v></c>', True),
    (b'<c r="A1">\n  <f t="shared" si="0"/></c>', True), (b"<f", True),
    (b'<c r="A1" t="inlineStr"><is><t>f &lt;f of</t></is></c>', False), (b"ff<c/>f", False)])
def test_error_cells_and_formulas_are_noticed_in_a_piece(xml, expected):
    padded = b"<f" + xml + b't="e"'  # outside the piece: not looked at
    assert cells.may_hold_special(padded, 2, 2 + len(xml)) is expected


def test_pieces_carry_what_calamine_needs_and_leave_large_extras_out(tmp_path):
    src, sheet = _sparse(tmp_path)
    path = tmp_path / "extras.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
        zout.writestr("xl/media/image1.png", bytes(range(256)) * 2048)  # 512 KB, referenced by nothing here
    with zipfile.ZipFile(path) as z:
        names = [name for name, _ in xlsxsplit._other_parts(z, "xl/worksheets/sheet1.xml")]
    assert "xl/media/image1.png" not in names and "xl/worksheets/sheet1.xml" not in names
    assert {"xl/workbook.xml", "xl/styles.xml", "xl/sharedStrings.xml", "xl/worksheets/sheet2.xml"} <= set(names)
    split = _split(path, sheet, 700)
    assert split is not None and split.rows == _whole(path, sheet)


def test_a_large_hidden_sheet_is_not_the_one_split(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsxsplit, "usable_cores", lambda: 2)
    wb = Workbook()
    wb.active.title = "Claims"
    wb.active.append(HEADER)
    hidden = wb.create_sheet("Lookup")
    for i in range(500):
        hidden.append([i, "lookup value", i * 2])
    hidden.sheet_state = "hidden"
    wb.save(tmp_path / "hidden.xlsx")
    parts = cells.sheet_parts(tmp_path / "hidden.xlsx")
    assert list(parts) == ["Claims"]
    assert xlsxsplit.plan(tmp_path / "hidden.xlsx", parts, min_bytes=0).sheet == "Claims"
