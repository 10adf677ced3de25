"""Cells calamine cannot show: error values (#REF!) and formulas saved without a value.

calamine returns both as blanks; for OOXML workbooks this scans the claims sheet's XML (only when
its raw bytes contain an error or formula cell) and returns them so ingest can flag each one.
The format gate has already refused XML with DTDs, and entities are never resolved here.
"""

import posixpath
import re
import zipfile
from pathlib import Path

import numpy as np
from lxml import etree

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_REF = re.compile(r"([A-Z]+)(\d+)")


def _sheet_part(z: zipfile.ZipFile, sheet: str) -> str | None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    book = etree.fromstring(z.read("xl/workbook.xml"), parser)
    rid = None
    for node in book.iter(f"{_NS}sheet"):
        if node.get("name") == sheet:
            rid = node.get(f"{_REL_NS}id")
    if rid is None:
        return None
    rels = etree.fromstring(z.read("xl/_rels/workbook.xml.rels"), parser)
    for rel in rels:
        if rel.get("Id") == rid:
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else posixpath.normpath(
                posixpath.join("xl", target))
    return None


def _column_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def may_hold_special(buf: bytes, start: int = 0, end: int | None = None) -> bool:
    """True when ``buf[start:end]`` holds an error cell (t="e") or a formula (<f): the cheap pre-check on
    raw sheet XML before ``special_cells`` parses it. "<f" is found through its rarer second byte with
    numpy, three times faster than ``bytes.find``."""
    end = len(buf) if end is None else end
    if buf.find(b't="e"', start, end) >= 0:
        return True
    data = np.frombuffer(buf, np.uint8, count=end - start, offset=start)
    f = np.flatnonzero(data[1:] == ord("f"))
    return bool((data[f] == ord("<")).any())


def uses_1904_dates(path: Path) -> bool:
    """True when an OOXML workbook counts date serials from 1904 (old Mac Excel)."""
    try:
        with zipfile.ZipFile(path) as z:
            head = z.read("xl/workbook.xml")[:4096]
    except (zipfile.BadZipFile, KeyError, OSError):
        return False
    return re.search(rb'date1904="(1|true)"', head) is not None


def special_cells(path: Path, sheet: str) -> list[tuple[int, int, str, str]]:
    """(Excel row, 0-based column, kind, text) of error cells ("error") and formulas with no value."""
    try:
        with zipfile.ZipFile(path) as z:
            if "xl/workbook.xml" not in z.namelist():
                return []
            part = _sheet_part(z, sheet)
            if part is None or part not in z.namelist():
                return []
            with z.open(part) as fh:  # cheap pre-check on the raw bytes
                found = False
                tail = b""
                for block in iter(lambda: fh.read(1 << 20), b""):
                    chunk = tail + block
                    if may_hold_special(chunk):
                        found = True
                        break
                    tail = chunk[-8:]
            if not found:
                return []
            out = []
            with z.open(part) as fh:
                for _, cell in etree.iterparse(fh, tag=f"{_NS}c", resolve_entities=False, no_network=True):
                    ref = _REF.match(cell.get("r", ""))
                    f = cell.find(f"{_NS}f")
                    v = cell.find(f"{_NS}v")
                    value = v.text if v is not None else None
                    if ref:
                        row, col = int(ref.group(2)), _column_index(ref.group(1))
                        if cell.get("t") == "e":
                            out.append((row, col, "error", value or "#ERROR"))
                        elif f is not None and not value:
                            out.append((row, col, "formula", f.text or ""))
                    cell.clear()
            return out
    except (zipfile.BadZipFile, KeyError, etree.XMLSyntaxError, OSError):
        return []


def sheet_names(path: Path, visible_only: bool = False) -> list[str]:
    """The sheet names ``xl/workbook.xml`` lists, in order ([] when it cannot be read); ``visible_only``
    leaves out hidden and very hidden sheets, which ingest never reads."""
    try:
        with zipfile.ZipFile(path) as z:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
            book = etree.fromstring(z.read("xl/workbook.xml"), parser)
    except (zipfile.BadZipFile, KeyError, etree.XMLSyntaxError, OSError):
        return []
    return [node.get("name") for node in book.iter(f"{_NS}sheet") if node.get("name")
            and not (visible_only and node.get("state") in ("hidden", "veryHidden"))]


def sheet_parts(path: Path) -> dict[str, str]:
    """Visible sheet name -> its part in the zip, for the sheets whose part exists."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            parts = {name: _sheet_part(z, name) for name in sheet_names(path, visible_only=True)}
    except (zipfile.BadZipFile, KeyError, etree.XMLSyntaxError, OSError):
        return {}
    return {name: part for name, part in parts.items() if part in names}


def special_cells_by_sheet(path: Path, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[int, int, str, str]]]:
    """``special_cells`` of every sheet named in the workbook but ``skip`` (ingest runs this beside calamine's
    read, before it knows which sheet holds the claims)."""
    return {name: special_cells(path, name) for name in sheet_names(path) if name not in skip}


# --- the used range: what calamine would allocate, found without allocating it -------------------------

SCAN_BYTES = 8 << 20  # sheets up to this much XML are checked (larger ones are read split, see xlsxsplit)
MAX_SPARSE_CELLS = 4_000_000  # a used range up to this many cells is read as it is
_ROW_TAG = re.compile(rb"""<row\b[^>]*?\sr=["'](\d+)""")
_ROW_FAST = re.compile(rb'<row r="(\d+)"')  # as Excel, LibreOffice and openpyxl write it: r first
_ROW_OTHER = re.compile(rb'<row(?! r=")[\s>/]')  # any row tag written another way
_WIDE_REF = re.compile(rb"""r=["'][A-Z]{3}[0-9]""")  # a cell past column ZZ (a row's r is digits only)
_CELL_REF = re.compile(r"([A-Z]{1,3})(\d{1,7})$")


class SheetTooSparse(Exception):
    """A sheet whose data lies so far apart that its used range cannot be read (``far``: the farthest cell)."""

    def __init__(self, sheet: str, far: str, rows: int, columns: int, cells: int):
        self.sheet, self.far, self.rows, self.columns, self.cells = sheet, far, rows, columns, cells
        super().__init__(f"{cells} cells with data spread over {rows} rows x {columns} columns")


def _ref(row: int, col: int) -> str:
    letters, n = "", col + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return f"{letters}{row}"


def _suspicious(xml: bytes) -> bool:
    """The cheap test: rows numbered far past the rows written, or a column past ZZ (calamine allocates
    rows x columns up to its last cell, empty strings included)."""
    rows = _ROW_FAST.findall(xml)
    if _ROW_OTHER.search(xml):
        rows = _ROW_TAG.findall(xml)
    last = max(map(int, rows), default=0)
    return last > 2 * len(rows) + 1000 or _WIDE_REF.search(xml) is not None


def _has_value(cell) -> bool:
    v = cell.find(f"{_NS}v")
    if v is not None and v.text:
        return True
    inline = cell.find(f"{_NS}is")
    return inline is not None and any(t.text for t in inline.iter(f"{_NS}t"))


def _trim(xml: bytes, sheet: str) -> bytes | None:
    """The sheet's XML without cells that hold nothing (formatted, or an empty string) and rows left empty;
    None when nothing is dropped. Raises ``SheetTooSparse`` when the cells that hold data are themselves
    spread over a range far larger than they are."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_blank_text=False)
    root = etree.fromstring(xml, parser)
    data = root.find(f"{_NS}sheetData")
    if data is None:
        return None
    dropped, cells, max_row, max_col, far = 0, 0, 0, 0, (0, 0)
    for row in list(data):
        for cell in list(row):
            if cell.tag != f"{_NS}c":
                continue
            m = _REF.fullmatch(cell.get("r", ""))
            if not _has_value(cell):
                row.remove(cell)
                dropped += 1
                continue
            cells += 1
            if m:
                r, c = int(m.group(2)), _column_index(m.group(1))
                if r * (c + 1) > far[0] * (far[1] + 1):
                    far = (r, c)
                max_row, max_col = max(max_row, r), max(max_col, c)
        if not len(row):
            data.remove(row)
            dropped += 1
    area = max_row * (max_col + 1)
    if area > MAX_SPARSE_CELLS and area > 20 * max(cells, 1):
        raise SheetTooSparse(sheet, _ref(*far), max_row, max_col + 1, cells)
    if not dropped:
        return None
    for dim in root.findall(f"{_NS}dimension"):
        root.remove(dim)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def trimmed_sheets(path: Path, parts: dict[str, str] | None = None) -> dict[str, bytes]:
    """Sheet name -> its XML without empty cells, for the visible sheets whose used range would otherwise be
    far larger than their data; raises ``SheetTooSparse`` for a sheet whose data itself is spread that far.
    Each sheet is inflated as a stream and checked cheaply first; memory stays proportional to its data."""
    out: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name, part in (sheet_parts(path) if parts is None else parts).items():
                if z.getinfo(part).file_size > SCAN_BYTES:
                    continue
                xml = z.read(part)
                if _suspicious(xml):
                    trimmed = _trim(xml, name)
                    if trimmed is not None:
                        out[name] = trimmed
    except (zipfile.BadZipFile, KeyError, etree.XMLSyntaxError, OSError):
        return {}  # calamine's read reports the damage with the usual reason
    return out
