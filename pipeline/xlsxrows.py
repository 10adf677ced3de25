"""Rows of a large sheet streamed into an openpyxl write-only worksheet, a column at a time.

openpyxl's write-only worksheet spends 5-10 us per cell in its own Python: a cell object per styled
value, binding each value, looking up its style, one lxml call per tag. The two large sheets
(Exceptions, Claims) are built as columns here instead. Each column's cells become their XML text in
one pass, with style ids taken from the workbook's own style table once per style; the rows go to a
temporary file. openpyxl writes the sheet's top and tail (columns, panes, filter, data validation,
hyperlinks) around a marker, which is then replaced by the rows, and it writes the rest of the
workbook (styles, shared parts, the zip) as usual.

The cells are the ones ``ws.append`` would write for the same values and styles: inline strings,
numbers as ``%.16g``, dates as serial numbers with their number format, the same style ids. One
difference, on purpose: a str is always written as text here, never as a formula or an error value
(callers quote-prefix such text as well). A test compares both ways cell by cell.
"""

import datetime as dt
import math
import re
import shutil
import tempfile
from pathlib import Path

from lxml import etree
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel

CHUNK_ROWS = 4000  # rows built and written at once
_MARK = "claimscrub-rows"
# Not allowed in XML 1.0 (libxml2 refuses them): replaced, as control characters are, by U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Column:
    """One column of a sheet's body.

    ``values``: per row None (no cell), a str (always text), an int, a float, a date, or a cell object.
    ``styles``: None, or per row None (the value's own style) or a prototype cell whose style the
    cell takes. ``links``: row position -> a Hyperlink for that cell.
    """

    __slots__ = ("values", "styles", "links")

    def __init__(self, values: list, styles: list | None = None, links: dict | None = None):
        if styles is not None and len(styles) != len(values):
            raise ValueError("one style per value")
        self.values, self.styles, self.links = values, styles, links

    def __len__(self) -> int:
        return len(self.values)


def _escape(text: str) -> str:
    """Text content as XML. A bare CR would be folded into LF by the parser: it goes as a reference."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    return text


def _inline(ref: str, style: str, text: str) -> str:
    space = ' xml:space="preserve"' if text != text.strip() else ""
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{_escape(text)}</t></is></c>'


def _number(value) -> str:
    """A number as openpyxl writes it (``%.16g``; NaN and infinity as an empty value)."""
    return "" if math.isnan(value) or math.isinf(value) else f"{value:.16g}"


class _Cells:
    """The XML of single cells, with the workbook's style ids and date serials looked up once each."""

    def __init__(self, ws):
        self.ws = ws
        self.epoch = ws.parent.epoch
        self.by_array: dict[bytes, str] = {}
        self.by_proto: dict[int, str] = {}
        self.date_style: dict[type, str] = {}
        self.serial: dict = {}

    def style(self, cell: Cell) -> str:
        """`` s="id"`` for a cell's style, or "" when it has none."""
        if not cell.has_style:
            return ""
        key = cell._style.tobytes()
        found = self.by_array.get(key)
        if found is None:
            found = self.by_array[key] = f' s="{cell.style_id}"'
        return found

    def proto(self, proto: Cell) -> str:
        found = self.by_proto.get(id(proto))
        if found is None:
            found = self.by_proto[id(proto)] = self.style(proto)
        return found

    def date(self, ref: str, style: str, value) -> str:
        serial = self.serial.get(value)
        if serial is None:
            serial = self.serial[value] = _number(to_excel(value, self.epoch))
        return f'<c r="{ref}"{style} t="n"><v>{serial}</v></c>'

    def value(self, ref: str, value, style: str | None = None) -> str:
        """A value, with the style given or else the one openpyxl gives it (dates: their format)."""
        cls = value.__class__
        if cls is str:
            return _inline(ref, style or "", value)
        if cls is int or cls is float:
            return f'<c r="{ref}"{style or ""} t="n"><v>{_number(value)}</v></c>'
        if cls is dt.date or cls is dt.datetime:
            if style is None:
                style = self.date_style.get(cls)
                if style is None:
                    style = self.date_style[cls] = self.style(WriteOnlyCell(self.ws, value=value))
            return self.date(ref, style, value)
        cell = value if isinstance(value, Cell) else WriteOnlyCell(self.ws, value=value)  # as openpyxl binds it
        return self.cell(ref, cell, style)

    def cell(self, ref: str, cell: Cell, style: str | None = None) -> str:
        """A cell object: its value and data type, and its style unless one is given."""
        value, kind = cell._value, cell.data_type
        style = self.style(cell) if style is None else style
        if cell.hyperlink is not None:
            self.link(ref, cell.hyperlink)
        if value is None or value == "":
            return f'<c r="{ref}"{style} t="{"inlineStr" if kind == "s" else kind}"/>' if style else ""
        if kind in ("s", "f", "e"):  # never a formula or an error value: text
            return _inline(ref, style, str(value))
        if kind == "d":
            return self.date(ref, style, value)
        if kind == "b":
            return f'<c r="{ref}"{style} t="b"><v>{int(bool(value))}</v></c>'
        return f'<c r="{ref}"{style} t="n"><v>{_number(value)}</v></c>'

    def link(self, ref: str, hyperlink) -> None:
        hyperlink.ref = ref
        self.ws._hyperlinks.append(hyperlink)


def _column_xml(cells: _Cells, letter: str, col: Column, start: int, stop: int, first_row: int) -> list[str]:
    """The cells of rows ``start:stop`` of one column, as XML text ("" for no cell)."""
    out = []
    add = out.append
    values = col.values[start:stop]
    styles = col.styles[start:stop] if col.styles is not None else None
    for k, v in enumerate(values):
        proto = styles[k] if styles is not None else None
        if proto is None:
            if v is None:
                add("")
            elif v.__class__ is str:
                add(_inline(f"{letter}{first_row + k}", "", v))
            else:
                add(cells.value(f"{letter}{first_row + k}", v))
        elif v is None:
            style = cells.proto(proto)
            add(f'<c r="{letter}{first_row + k}"{style} t="n"/>' if style else "")
        else:
            add(cells.value(f"{letter}{first_row + k}", v, cells.proto(proto)))
    if col.links:
        for i in sorted(col.links):
            if start <= i < stop:
                cells.link(f"{letter}{first_row + i - start}", col.links[i])
    return out


def stream_rows(ws, header: list, columns: list[Column]) -> None:
    """Write a header row (values or cells), then the body given as columns of equal length, and close the sheet.

    It must be the only write of rows to the write-only sheet ``ws``, and its last change: set the
    sheet's columns, panes, filter and validations before. The rows go to a temporary file; openpyxl
    writes the sheet's top and tail around a marker, which is then replaced by the rows.
    """
    if ws._rows is not None:
        raise RuntimeError("stream_rows must be the only writer of this sheet's rows")
    n = len(columns[0]) if columns else 0
    if any(len(c) != n for c in columns):
        raise ValueError("columns of unequal length")
    cells = _Cells(ws)
    letters = [get_column_letter(i) for i in range(1, max(len(columns), len(header)) + 1)]
    ws._get_writer()
    xf = ws._writer.xf.send(True)
    with xf.element("sheetData"):
        xf.write(etree.Comment(_MARK))
    ws._writer.xf.send(None)
    with tempfile.TemporaryFile() as rows:  # in the private temporary folder of report.private_tempdir
        head = "".join("" if v is None else cells.value(f"{letters[i]}1", v) for i, v in enumerate(header))
        _write(rows, [f'<row r="1">{head}</row>'])
        for start in range(0, n, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, n)
            parts = [_column_xml(cells, letters[j], col, start, stop, start + 2) for j, col in enumerate(columns)]
            _write(rows, [f'<row r="{r}">{"".join(row)}</row>'
                          for r, row in enumerate(zip(*parts, strict=True), start + 2)])
        ws._rows = _Closed(ws)  # closing must not write a second sheetData; a later append raises
        ws.close()  # openpyxl writes the tail, with the hyperlinks registered above
        _splice(Path(ws._writer.out), rows)


class _Closed:
    """The sheet's row stream once its rows are written: closing is a no-op, any further row is refused."""

    def __init__(self, ws):
        self.ws = ws

    def close(self) -> None:
        pass

    def send(self, row) -> None:
        self.ws._already_saved()


def _write(out, rows: list[str]) -> None:
    out.write(_NOT_XML.sub("\ufffd", "".join(rows)).encode())  # markup never holds these; text values may


def _splice(sheet: Path, rows) -> None:
    """Put the rows in place of the marker in the sheet's XML file."""
    head, mark, tail = sheet.read_bytes().partition(f"<!--{_MARK}-->".encode())
    if not mark or _MARK.encode() in tail:
        raise RuntimeError("the sheet's row marker was not found exactly once")
    rows.seek(0)
    with sheet.open("wb") as out:
        out.write(head)
        shutil.copyfileobj(rows, out, 1 << 20)
        out.write(tail)
