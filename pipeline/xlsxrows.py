"""Rows of a large sheet streamed into an openpyxl write-only worksheet, a column at a time.

openpyxl's write-only worksheet spends 5-10 us per cell in its own Python: a cell object per styled
value, binding each value, looking up its style, one lxml call per tag. The two large sheets
(Exceptions, Claims) are built as columns here instead. A column of text or of whole numbers becomes
its cells' XML text in a few pyarrow passes (escaping, then joining the parts of each cell), any other
column cell by cell; style ids are taken from the workbook's own style table once per style. Rows of
4k-16k at a time are joined the same way. openpyxl writes the sheet's top and tail (columns, panes,
filter, data validation, hyperlinks) around a marker; the top, the rows' bytes and the tail go, in
that order, to a ``sheetzip.Deflater``, which compresses them on a helper thread while the next rows
are built, and the workbook's save copies them into the zip. openpyxl writes the rest of the
workbook (styles, shared parts) as usual.

The cells are the ones ``ws.append`` would write for the same values and styles: inline strings,
numbers as ``%.16g``, dates as serial numbers with their number format, the same style ids. One
difference, on purpose: a str is always written as text here, never as a formula or an error value
(callers quote-prefix such text as well). A test compares both ways cell by cell.
"""

import datetime as dt
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import WINDOWS_EPOCH, to_excel
from openpyxl.worksheet.hyperlink import Hyperlink

from pipeline.sheetzip import Deflater, attach

CHUNK_ROWS = 16384  # at most, rows built and written at once
MIN_CHUNK_ROWS = 4096  # a sheet comes in about 8 chunks at least, so that compressing it keeps up (sheetzip)
_MARK = "claimscrub-rows"
# Not allowed in XML 1.0 (libxml2 refuses them): replaced, as control characters are, by U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Link(NamedTuple):
    """A link from a cell to a place in the workbook (no relationship needed)."""

    location: str
    tooltip: str | None = None


class Links(NamedTuple):
    """Links within the workbook from many cells of one column, as arrays (no Python object per link):
    ``rows`` the row positions, each once; ``locations`` each one's place (a text array, no nulls);
    ``tooltip`` the tooltip of them all."""

    rows: np.ndarray
    locations: pa.Array
    tooltip: str | None = None


class Column:
    """One column of a sheet's body.

    ``values``: per row None (no cell), a str (always text), an int, a float, a date, or a cell object;
    or a pyarrow array (a null is no cell; a text array is written without a Python object per row).
    ``styles``: None, or per row None (the value's own style) or a prototype cell whose style the
    cell takes. ``links``: row position -> a ``Link`` for that cell (or an openpyxl Hyperlink; one with
    an external target is written by openpyxl, with its relationship), or ``Links``. ``longest``: the most characters
    a cell of the column shows, when the caller knows it (for the column's width).
    """

    __slots__ = ("values", "styles", "links", "longest")

    def __init__(self, values: list, styles: list | None = None, links: "dict | Links | None" = None):
        if styles is not None and len(styles) != len(values):
            raise ValueError("one style per value")
        self.values, self.styles, self.links = values, styles, links
        self.longest: int | None = None  # the most characters a cell shows, when the caller knows it

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
    """The cells of rows ``start:stop`` of one column, as XML text ("" for no cell), one at a time."""
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
    return out


_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"))
_CONTROL_BYTES = np.zeros(256, dtype=bool)  # the ASCII part of _NOT_XML
_CONTROL_BYTES[[c for c in range(32) if c not in (9, 10, 13)]] = True
# The ASCII bytes Arrow's utf8_trim_whitespace trims (asked of Arrow itself); a byte beyond ASCII is asked per text.
_TRIMMED = np.zeros(256, dtype=bool)
_TRIMMED[[c for c in range(1, 128) if pc.utf8_trim_whitespace(pa.array([chr(c)]))[0].as_py() == ""]] = True
_PRESERVE = (' t="inlineStr"><is><t>', ' t="inlineStr"><is><t xml:space="preserve">')


def _data_bytes(arr: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string array's values, as one numpy view (no copy)."""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width, count=len(arr) + 1,
                            offset=arr.offset * np.dtype(width).itemsize)
    data = arr.buffers()[2]
    if data is None:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]


def _text_cells(head: str, numbers: pa.Array, text: pa.Array, style) -> pa.Array:
    """A column of text cells as XML, vectorised with pyarrow: the text ``_column_xml`` writes cell by
    cell. ``head``: '<c r="' and the column letter; ``numbers``: the row numbers, each with its closing
    quote; ``style``: "" or one style attribute per row; a null text is no cell, or an empty styled one."""
    body = text
    data = _data_bytes(text).tobytes()
    for raw, ref in _ESCAPES:  # only the characters present (bytes.__contains__: a fast scan each)
        if raw.encode() in data:
            body = pc.replace_substring(body, raw, ref)
    open_t = pc.if_else(pa.array(_padded(text)), _PRESERVE[1], _PRESERVE[0])
    cell = pc.binary_join_element_wise(head, numbers, style, open_t, body, "</t></is></c>", "")
    return _or_blank(cell, text, head, numbers, style)


def _padded(text: pa.Array) -> np.ndarray:
    """Which texts start or end with whitespace (``text != text.strip()``, as Arrow's utf8_trim_whitespace
    tells): from their first and last bytes, asking Arrow only of texts that start or end beyond ASCII."""
    lengths, first, last = text_layout(text)
    padded = _TRIMMED[first] | _TRIMMED[last]
    unsure = np.flatnonzero((first >= 0x80) | (last >= 0x80))
    if len(unsure):
        some = text.take(pa.array(unsure))
        padded[unsure] = pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(some), some), False).to_numpy(
            zero_copy_only=False)
    return padded


def _int_cells(head: str, numbers: pa.Array, values: pa.Array, style) -> pa.Array:
    """A column of whole numbers (below 1e16 in size: ``%.16g`` is their decimal text) as XML."""
    cell = pc.binary_join_element_wise(head, numbers, style, ' t="n"><v>', pc.cast(values, pa.string()), "</v></c>",
                                       "")
    return _or_blank(cell, values, head, numbers, style)


def _or_blank(cell: pa.Array, values: pa.Array, head: str, numbers: pa.Array, style) -> pa.Array:
    """The cells, and where a value is null: no cell, or an empty cell that carries its row's style."""
    if isinstance(style, str) or not values.null_count:
        return pc.fill_null(cell, "")
    if not pc.any(pc.and_(pc.is_null(values), pc.not_equal(style, ""))).as_py():  # no blank carries a style
        return pc.fill_null(cell, "")
    empty = pc.if_else(pc.equal(style, ""), "", pc.binary_join_element_wise(head, numbers, style, ' t="n"/>', ""))
    return pc.if_else(pc.is_null(values), empty, cell)


def _column_cells(cells: _Cells, letter: str, col: Column, start: int, stop: int, numbers: pa.Array) -> pa.Array:
    """The cells of rows ``start:stop`` of one column as XML ("" for no cell): a column of text or of
    whole numbers is built vectorised, any other one cell at a time."""
    values = col.values[start:stop]
    if isinstance(values, pa.ChunkedArray):
        arr = values.combine_chunks()
    elif isinstance(values, pa.Array):
        arr = values
    else:
        try:
            arr = pa.array(values)  # str/None -> string, int/None -> int64; anything else another type or fails
        except (pa.ArrowException, UnicodeEncodeError, OverflowError):  # mixed values, objects, a lone surrogate
            arr = None
    if (arr is not None and pa.types.is_date32(arr.type)
            and not isinstance(values, pa.Array | pa.ChunkedArray)
            and not set(map(type, values)) - {dt.date, type(None)}):  # a datetime too: pyarrow drops its time
        return _date_cells(cells, letter, values, col.styles[start:stop] if col.styles is not None else None, arr,
                           numbers)
    if arr is not None and pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())  # one offset width for the joins (a chunk is far below 2 GB)
    if arr is not None and (pa.types.is_string(arr.type) or (pa.types.is_int64(arr.type) and _below_1e16(arr))):
        style = ""
        if col.styles is not None:
            style = _style_attrs(cells, col.styles[start:stop])
        build = _text_cells if pa.types.is_string(arr.type) else _int_cells
        return build(f'<c r="{letter}', numbers, arr, style)
    if arr is not None and pa.types.is_float64(arr.type) and isinstance(values, pa.Array | pa.ChunkedArray):
        style = _style_attrs(cells, col.styles[start:stop]) if col.styles is not None else ""
        return _int_cells(f'<c r="{letter}', numbers, _float_text(arr), style)  # a float array: no object per row
    if isinstance(values, pa.Array | pa.ChunkedArray):  # not text or whole numbers: their Python values
        col, start, stop = Column(values.to_pylist(), col.styles[start:stop] if col.styles else None), 0, stop - start
    xml = _column_xml(cells, letter, col, start, stop, start + 2)
    try:
        return pa.array(xml, type=pa.string())
    except UnicodeEncodeError:  # a lone surrogate (a damaged legacy file), replaced as _write would
        return pa.array([_NOT_XML.sub("\ufffd", x) for x in xml], type=pa.string())


_POW10 = np.array([10.0**n for n in range(-2, 14)])  # 0.01 .. 1e13 (as doubles: each the first at or above)
# The unit of the 16th significant digit in cents, for a value with 10**e as its leading digit (e = -3 .. 12).
_UNIT = np.array([np.longdouble(10) ** (e - 13) for e in range(-3, 13)], dtype=np.longdouble)


def _float_text(arr: pa.Array) -> pa.Array:
    """Each float as ``_number`` writes it (``%.16g``), vectorised for amounts of whole cents: where the float
    is within half a unit of its 16th digit of the cents it is nearest (the error found exactly, in extended
    precision), ``%.16g`` prints those cents; any other value is formatted one at a time."""
    v = arr.to_numpy(zero_copy_only=False)  # a null is NaN
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    size = np.abs(np.where(valid & np.isfinite(v), v, 0.0))
    fast = valid & np.isfinite(v) & (size < 1e13)
    if np.finfo(np.longdouble).nmant >= 63:  # 53 bits times 100's 7 bits: exact
        scaled = size.astype(np.longdouble) * 100
        cents = np.round(scaled)
        err = np.abs(scaled - cents)  # |v - cents/100| * 100, exact
        unit = _UNIT[np.minimum(np.searchsorted(_POW10, size, side="right"), len(_UNIT) - 1)]  # at floor(log10 |v|): the 16th digit's, in cents
        fast &= np.where(cents == 0, (err == 0) & (v == 0) & ~np.signbit(v), (size >= 0.01) & (err * 2 < unit * 0.99))
    else:
        fast[:] = False
        cents = np.zeros(len(v))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.where(fast, cents, 0).astype(np.int64)), pa.string()), 3, "0")
    text = pc.binary_join_element_wise(pc.utf8_slice_codeunits(digits, 0, -2), pc.utf8_slice_codeunits(digits, -2),
                                       ".")  # "1234.50", "0.05"
    text = pc.utf8_rtrim(pc.utf8_rtrim(text, "0"), ".")  # "1234.5", "1000"
    if (v < 0).any():
        text = pc.if_else(pa.array(v < 0), pc.binary_join_element_wise("-", text, ""), text)
    slow = np.flatnonzero(valid & ~fast)
    if len(slow):
        others = pa.array([_number(x) for x in v[slow].tolist()], type=pa.string())
        at = np.full(len(v), -1, dtype=np.int64)
        at[slow] = np.arange(len(slow))
        text = pc.if_else(pa.array(fast), text, others.take(pa.array(np.maximum(at, 0))))
    return pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))


def _style_attrs(cells: _Cells, protos: list) -> pa.Array:
    """Each row's style attribute ("" for None) as a string array: a few prototype cells, repeated, are
    told apart by identity (hashed, not sorted) and looked up once each, in the order they first appear
    (a new style gets the next id: by address, the ids would change with where the cells sit in memory)."""
    codes, first = prototypes(protos)
    attrs = ["" if protos[i] is None else cells.proto(protos[i]) for i in first]
    return pa.array(attrs, type=pa.string()).take(pa.array(codes))


def prototypes(protos: list) -> tuple[np.ndarray, list[int]]:
    """The distinct objects of a list of prototype cells (None among them), told apart by identity: each
    row's code, and where each code first appears (codes count up in that order)."""
    codes, _ = pd.factorize(np.fromiter(map(id, protos), dtype=np.uint64, count=len(protos)))
    seen = np.maximum.accumulate(codes)  # where the running code grows: a first appearance
    first = np.flatnonzero(np.concatenate([[True], seen[1:] > seen[:-1]])) if len(codes) else codes
    return codes, first.tolist()


def _date_cells(cells: _Cells, letter: str, values: list, protos: list | None, arr: pa.Array,
                numbers: pa.Array) -> pa.Array:
    """A column of dates (Python ``date`` values only) as XML: their serials as whole numbers, each with
    its prototype's style or else the date format openpyxl gives a date; the cells ``_column_xml`` writes."""
    days = pc.fill_null(arr.cast(pa.int32()), 0).to_numpy().astype(np.int64)  # days since 1970-01-01
    valid = ~arr.is_null().to_numpy(zero_copy_only=False)
    days = days + (dt.date(1970, 1, 1) - cells.epoch.date()).days
    if cells.epoch == WINDOWS_EPOCH:
        days = np.where((days > 0) & (days <= 60), days - 1, days)  # as to_excel: Excel's 1900 leap year
    serials = pa.array(days, mask=~valid)
    first = next((v for v in values if v is not None), None)
    date_style = ""
    if first is not None:
        date_style = cells.date_style.get(dt.date)
        if date_style is None:
            date_style = cells.date_style[dt.date] = cells.style(WriteOnlyCell(cells.ws, value=first))
    if protos is None:
        style = pc.if_else(pa.array(valid), date_style, "") if first is not None else ""
    else:
        attrs = {id(p): cells.proto(p) for p in protos if p is not None}
        style = pa.array([attrs[id(p)] if p is not None else date_style if ok else ""
                          for p, ok in zip(protos, valid.tolist(), strict=True)], type=pa.string())
    return _int_cells(f'<c r="{letter}', numbers, serials, style)


def _below_1e16(arr: pa.Array) -> bool:
    """Every integer's size is below 1e16 (``%.16g`` writes them in full)."""
    lo, hi = pc.min_max(arr).values()
    return lo.as_py() is None or (-(10**16) < lo.as_py() and hi.as_py() < 10**16)


def _odd_bytes(data: np.ndarray) -> bool:
    """UTF-8 bytes hold a character XML 1.0 does not allow: a control character, U+FFFE or U+FFFF."""
    lead = np.flatnonzero(data == 0xEF)  # U+FFFE / U+FFFF are EF BF BE / EF BF BF in UTF-8
    lead = lead[lead + 2 < len(data)]
    low = data[data < 32]
    return bool(_CONTROL_BYTES[low].any() or (
        (data[lead + 1] == 0xBF) & ((data[lead + 2] == 0xBE) | (data[lead + 2] == 0xBF))).any())


def holds_odd_text(text: pa.Array) -> bool:
    """A string array holds a character XML 1.0 does not allow (one numpy pass over its bytes)."""
    return _odd_bytes(_data_bytes(text))


def text_layout(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A string array's byte lengths, first bytes and last bytes (0 for an empty or null text), without a
    Python str each."""
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(text.buffers()[1], dtype=width, count=len(text) + 1,
                            offset=text.offset * np.dtype(width).itemsize).astype(np.int64)
    lengths = np.diff(offsets)
    if text.null_count:
        lengths[~text.is_valid().to_numpy(zero_copy_only=False)] = 0
    first, last = np.zeros(len(text), dtype=np.uint8), np.zeros(len(text), dtype=np.uint8)
    some = lengths > 0
    data = _data_bytes(text)
    first[some] = data[offsets[:-1][some] - offsets[0]]
    last[some] = data[offsets[1:][some] - 1 - offsets[0]]
    return lengths, first, last


def _write_chunk(out, rows: pa.Array) -> None:
    """A chunk of rows' XML (a string array) to ``out``; characters XML 1.0 does not allow become U+FFFD
    (markup never holds them; text values may)."""
    data = _data_bytes(rows)
    if _odd_bytes(data):
        _write(out, [data.tobytes().decode()])
    else:
        out.write(memoryview(data))


def stream_rows(ws, header: list, columns: list[Column], heights=None, header_height: float | None = None) -> None:
    """Write a header row (values or cells), then the body given as columns of equal length, and close the sheet.

    ``heights``: None, or one row height in points per body row (None or 0: the default height), for
    rows whose wrapped text needs more than one line; ``header_height`` the same for the header row.

    It must be the only write of rows to the write-only sheet ``ws``, and its last change: set the
    sheet's columns, panes, filter and validations before. openpyxl writes the sheet's top and tail
    around a marker; the top, the rows and the tail are compressed as they come (``sheetzip``), and the
    workbook's ``save`` becomes ``sheetzip.save_workbook``, which copies them into the zip.
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
    xf.flush()  # lxml's writer (et_xmlfile's could not write the marker: openpyxl must use lxml)
    fed = _head(Path(ws._writer.out))
    deflater = Deflater()  # the sheet's XML is compressed as it comes (see sheetzip)
    deflater.write(fed)
    head_cells = "".join("" if v is None else cells.value(f"{letters[i]}1", v) for i, v in enumerate(header))
    head_ht = f' ht="{header_height:g}" customHeight="1"' if header_height else ""
    _write(deflater, [f'<row r="1"{head_ht}>{head_cells}</row>'])
    row_attrs = _row_attrs(heights, n)
    step = min(CHUNK_ROWS, max(MIN_CHUNK_ROWS, -(-n // 8)))
    for start in range(0, n, step):
        stop = min(start + step, n)
        numbers = pc.cast(pa.array(np.arange(start + 2, stop + 2)), pa.string())
        quoted = pc.binary_join_element_wise(numbers, '"', "")
        parts = [_column_cells(cells, letters[j], col, start, stop, quoted) for j, col in enumerate(columns)]
        attrs = "" if row_attrs is None else row_attrs[start:stop]
        _write_chunk(deflater, pc.binary_join_element_wise('<row r="', numbers, '"', attrs, ">", *parts, "</row>", ""))
    internal = []  # links within the workbook, column by column: their XML is written here, not by openpyxl
    for j, col in enumerate(columns):
        if isinstance(col.links, Links):
            if len(col.links.rows):
                internal.append(_many_links_xml(letters[j], col.links))
            continue
        mine = []
        for i in sorted(col.links or ()):
            link = col.links[i]
            if getattr(link, "target", None):  # an external link: openpyxl adds its relationship
                cells.link(f"{letters[j]}{i + 2}", link)
            else:
                mine.append((f"{letters[j]}{i + 2}", link.location, link.tooltip))
        if mine:
            internal.append(_links_xml(mine))
    if internal:
        ws._hyperlinks.append(Hyperlink(ref="A1", location=_MARK))  # where the list goes among the links
    ws._rows = _Closed(ws)  # closing must not write a second sheetData; a later append raises
    ws.close()  # openpyxl writes the tail, with the hyperlinks registered above
    head, tail = _parts(Path(ws._writer.out), b"".join(internal) if internal else None)
    if head != fed:
        raise RuntimeError("the sheet's top changed while its rows were written")
    deflater.write(tail)
    attach(ws, deflater)


def _row_attrs(heights, n: int) -> pa.Array | None:
    """Each body row's height attributes (``ht``, ``customHeight``) as a string array, or None for none."""
    if heights is None:
        return None
    h = np.nan_to_num(np.asarray(heights, dtype=float), nan=0.0)
    if len(h) != n:
        raise ValueError("one height per row")
    if not (h > 0).any():
        return None
    text = pc.cast(pa.array(np.round(h, 1)), pa.string())
    attrs = pc.binary_join_element_wise(' ht="', text, '" customHeight="1"', "")
    return pc.if_else(pa.array(h > 0), attrs, "")


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


def _attr(text: str) -> str:
    """An attribute value as XML (quoted with double quotes; whitespace kept as references)."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))


def _links_xml(links: list[tuple[str, str, str | None]]) -> bytes:
    """``<hyperlink>`` elements of (cell, location, tooltip): as openpyxl writes a Hyperlink without a target."""
    try:
        refs, locations, tooltips = (pa.array(part, type=pa.string()) for part in zip(*links, strict=True))
    except UnicodeEncodeError:  # a lone surrogate: one at a time, replaced below
        parts = []
        for ref, location, tooltip in links:
            tip = f' tooltip="{_attr(tooltip)}"' if tooltip is not None else ""
            parts.append(f'<hyperlink ref="{ref}" location="{_attr(location)}"{tip}/>')
        return _NOT_XML.sub("\ufffd", "".join(parts)).encode()
    tips = pc.binary_join_element_wise(' tooltip="', _attrs(tooltips), '"', "")
    parts = pc.binary_join_element_wise('<hyperlink ref="', refs, '" location="', _attrs(locations),
                                        '"', pc.fill_null(tips, ""), "/>", "")
    return _NOT_XML.sub("\ufffd", "".join(parts.to_pylist())).encode()


def _many_links_xml(letter: str, links: Links) -> bytes:
    """``_links_xml`` of a column's ``Links``, in row order, vectorised."""
    order = np.argsort(links.rows, kind="stable")
    refs = pc.binary_join_element_wise(letter, pc.cast(pa.array(np.asarray(links.rows)[order] + 2), pa.string()), "")
    locations = links.locations.take(pa.array(order))
    tip = "" if links.tooltip is None else f' tooltip="{_attr(links.tooltip)}"'
    parts = pc.binary_join_element_wise('<hyperlink ref="', refs, '" location="', _attrs(locations), '"', tip,
                                        "/>", "")
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.combine_chunks()
    return _NOT_XML.sub("\ufffd", _data_bytes(parts).tobytes().decode()).encode()


def _attrs(texts: pa.Array) -> pa.Array:
    """``_attr`` of each text (nulls stay null), vectorised."""
    for raw, ref in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("\t", "&#9;"),
                     ("\n", "&#10;"), ("\r", "&#13;")):
        texts = pc.replace_substring(texts, raw, ref)
    return texts


def _head(sheet: Path) -> bytes:
    """The sheet's XML before the row marker (as written so far)."""
    head, mark, _ = sheet.read_bytes().partition(f"<!--{_MARK}-->".encode())
    if not mark:
        raise RuntimeError("the sheet's row marker was not found")
    return head


def _parts(sheet: Path, links: bytes | None = None) -> tuple[bytes, bytes]:
    """The sheet's XML before and after the row marker, with ``links`` in place of the placeholder
    hyperlink in the part after."""
    head, mark, tail = sheet.read_bytes().partition(f"<!--{_MARK}-->".encode())
    if not mark or _MARK.encode() in tail.replace(f'location="{_MARK}"'.encode(), b"", 1):
        raise RuntimeError("the sheet's row marker was not found exactly once")
    if links is not None:
        tail, count = re.subn(rb'<hyperlink ref="A1" location="' + _MARK.encode() + rb'"\s*/>',
                              lambda _: links, tail)
        if count != 1:
            raise RuntimeError("the sheet's hyperlink placeholder was not found exactly once")
    return head, tail
