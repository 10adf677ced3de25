"""Read one large OOXML worksheet on every core: calamine parses row pieces of it in threads.

calamine releases the GIL while it parses a sheet, but it parses one sheet on one core, and that parse
is most of the time a large xlsx export takes to read. ``read_split`` cuts the sheet's XML on row
boundaries into pieces, wraps each in a small uncompressed copy of the workbook (its styles, shared
strings and date system, every other worksheet left empty) and parses the pieces in a thread pool.
Each piece's rows are put back at the row and column where calamine placed them, so the result equals
``get_sheet_by_name(name).to_python(skip_empty_area=False)`` of the whole sheet (tests compare the two).

Anything unexpected returns ``None`` and the caller reads the sheet whole: no ``<sheetData>`` or
``</row>`` tags as written (a namespace prefix, say), a piece whose first row has no ``r`` number
(calamine would count it from the top of the piece), a damaged stream or a piece calamine refuses.
At most ``workers + 1`` pieces are held in memory at a time. While it inflates the sheet the reader
also looks for error cells and formulas (see ``pipeline.cells``), so that sheet need not be inflated twice.
"""

import logging
import os
import re
import tempfile
import threading
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.cells import may_hold_special

log = logging.getLogger(__name__)

MIN_SPLIT_BYTES = 8 << 20  # inflated sheet XML; about 6,000 lines of a typical export
PIECE_BYTES = 16 << 20  # at most; a smaller sheet is cut into two pieces per worker, of at least MIN_PIECE_BYTES
MIN_PIECE_BYTES = 2 << 20
MAX_SHARED_REPARSE = 0.25  # shared strings parsed again per piece, at most this share of the sheet's XML
MAX_WORKERS = 4  # each piece in flight holds its XML and calamine's cells

_BLOCK = 4 << 20
_MAX_HEAD = 32 << 20  # sheet XML before <sheetData> (columns, views, formats), and the longest row
_EMPTY_SHEET = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                b"<sheetData/></worksheet>")
_NEEDED = ("workbook.xml", "styles.xml", "sharedStrings.xml", ".rels", "[Content_Types].xml")
_SMALL_PART = 64 << 10
_SHEET_DATA = re.compile(rb"<sheetData(\s[^>]*)?>")
_ROOT = re.compile(rb"<([A-Za-z_][\w.:-]*)[\s>]")
_DIMENSION = re.compile(rb"<dimension\b[^>]*/>")
_FIRST_ROW = re.compile(rb"\s*<row\b([^>]*)>")
_ROW_NUMBER = re.compile(rb'\sr="\d+"')
_FD_DIR = "/proc/self/fd"  # calamine opens each piece's unnamed temporary file through it (Linux)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Plan:
    """Split this sheet (its part in the zip) into pieces of about ``piece_bytes`` on ``workers`` threads."""

    sheet: str
    part: str
    workers: int
    piece_bytes: int
    shaped: bool = True  # small first and last pieces (not when each piece re-parses shared strings)


@dataclass
class SplitRead:
    rows: list[list[Any]]
    special_suspected: bool  # the sheet's XML holds an error cell or a formula: run ``cells.special_cells``
    pieces: int


def plan(path: Path, sheet_parts: dict[str, str], min_bytes: int | None = None) -> Plan | None:
    """The largest worksheet, when it is worth splitting on this machine; ``sheet_parts`` maps name -> part."""
    workers = min(usable_cores(), MAX_WORKERS)
    if workers < 2 or not sheet_parts or not os.path.isdir(_FD_DIR):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            sizes = {name: z.getinfo(part).file_size for name, part in sheet_parts.items()
                     if part in z.NameToInfo}
            shared = sum(i.file_size for i in z.infolist() if i.filename.endswith("sharedStrings.xml"))
    except (zipfile.BadZipFile, OSError):
        return None
    if not sizes:
        return None
    sheet = max(sizes, key=sizes.get)
    size = sizes[sheet]
    if size < (MIN_SPLIT_BYTES if min_bytes is None else min_bytes):
        return None
    piece = max(MIN_PIECE_BYTES, min(PIECE_BYTES, size // (2 * workers)))
    if shared:  # every piece parses the shared strings again: fewer, larger pieces, or none
        most = int(size * MAX_SHARED_REPARSE / shared)
        if most < 2:
            return None
        piece = max(piece, -(-size // most))
    return Plan(sheet, sheet_parts[sheet], workers, piece, shaped=not shared)


def read_split(path: Path, p: Plan) -> SplitRead | None:
    """The rows of ``p.sheet`` as calamine's ``to_python(skip_empty_area=False)`` gives them, or None."""
    try:
        return _read_split(path, p)
    except _Unsplittable:
        log.info("the sheet's XML cannot be cut on rows here; it is read whole")
        return None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        log.info("split read stopped (%s); the sheet is read whole", type(exc).__name__)
        return None  # the whole read reports any damage with the usual reason
    except BaseException as exc:  # a calamine error or a Rust panic in one piece: read the sheet whole
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        log.warning("split read failed (%s); the sheet is read whole", type(exc).__name__)
        return None


class _Unsplittable(Exception):
    pass


def _read_split(path: Path, p: Plan) -> SplitRead:
    with zipfile.ZipFile(path) as z:
        rest = _other_parts(z, p.part)
        slots = threading.BoundedSemaphore(p.workers + 1)
        futures, files = [], []
        special = False
        try:
            with ThreadPoolExecutor(p.workers, thread_name_prefix="claimscrub-split") as pool:
                try:
                    for xml, suspect in _pieces(z, p.part, p.piece_bytes, p.workers if p.shaped else 0):
                        special = special or suspect
                        slots.acquire()
                        files.append(_piece_zip(rest, p.part, xml))
                        futures.append(pool.submit(_parse_piece, files[-1], p.sheet, slots))
                        del xml
                    results = [f.result() for f in futures]
                finally:
                    for f in futures:
                        f.cancel()
        finally:
            for fh in files:  # the pieces a stopped read never parsed
                fh.close()
    return SplitRead(_assemble(results), special, len(results))


def _other_parts(z: zipfile.ZipFile, part: str) -> list[tuple[str, bytes]]:
    """The parts a piece's workbook needs: the workbook, its relations, styles and shared strings, and the
    other small parts; other worksheets are left empty, and large extras (media, macros, pivot caches) out."""
    out = []
    for info in z.infolist():
        name = info.filename
        if name == part or name.endswith("/"):
            continue
        if name.startswith("xl/worksheets/") and name.endswith(".xml"):
            out.append((name, _EMPTY_SHEET))
        elif name.endswith(_NEEDED) or info.file_size <= _SMALL_PART:
            out.append((name, z.read(name)))
    return out


def _target(piece_bytes: int, index: int, done: int, total: int, workers: int) -> int:
    """The size of the next piece: small for the first one per worker, so that every worker starts at
    once, then ``piece_bytes``, shrinking near the end so that the workers finish together
    (``workers`` 0: always ``piece_bytes``)."""
    if not workers:
        return piece_bytes
    if index < workers:
        return max(1, piece_bytes // 4)
    return max(min(piece_bytes, (total - done) // (2 * workers)), min(piece_bytes, MIN_PIECE_BYTES))


def _pieces(z: zipfile.ZipFile, part: str, piece_bytes: int, workers: int):
    """((head, rows, tail), holds an error cell or formula) for runs of whole rows of the sheet, in order."""
    total = z.getinfo(part).file_size
    with z.open(part) as fh:
        data = fh.read(_BLOCK)
        while True:  # the head must hold <sheetData>
            found = _SHEET_DATA.search(data)
            if found or len(data) > _MAX_HEAD:
                break
            block = fh.read(_BLOCK)
            if not block:
                break
            data += block
        if not found:
            raise _Unsplittable
        root = _ROOT.search(data)  # the root element: skips <?xml ...?> and comments
        if root is None:
            raise _Unsplittable
        head = _DIMENSION.sub(b"", data[:found.end()])  # the whole sheet's size would only mislead a piece
        close = b"</sheetData></" + root.group(1) + b">"
        chunks = [data[found.end():]]
        have, eof, more, index, offset = len(chunks[0]), False, False, 0, found.end()
        del data
        while True:
            while not eof and (more or have < piece_bytes + _BLOCK):  # a piece and room to end its last row
                block = fh.read(_BLOCK)
                if block:
                    chunks.append(block)
                    have += len(block)
                else:
                    eof = True
                more = False
            buf = b"".join(chunks) if len(chunks) > 1 else chunks[0]
            end = buf.find(b"</sheetData>") if eof else len(buf)
            if end < 0:
                raise _Unsplittable
            pos = 0
            while True:
                if not eof and end - pos < piece_bytes + _BLOCK:
                    break
                cut = -1
                target = _target(piece_bytes, index, offset + pos, total, workers)
                if end - pos > target:
                    cut = buf.rfind(b"</row>", pos, pos + target)
                    if cut < 0:
                        cut = buf.find(b"</row>", pos + target, end)
                if cut < 0 and not eof:
                    more = True  # a very long row: read on
                    break
                last = cut < 0
                cut = end if last else cut + len(b"</row>")
                if index:
                    row = _FIRST_ROW.match(buf, pos)
                    if cut > pos and (row is None or not _ROW_NUMBER.search(row.group(1))):
                        raise _Unsplittable
                suspect = may_hold_special(buf, pos, cut)
                yield (head, memoryview(buf)[pos:cut], buf[end:] if last else close), suspect
                index, pos = index + 1, cut
                if last:
                    return
            offset += pos
            chunks = [buf[pos:]]
            have = len(chunks[0])
            del buf
            if have > piece_bytes + _BLOCK + _MAX_HEAD:
                raise _Unsplittable  # no row ends: this is not the sheet data it looks like


def _piece_zip(rest: list[tuple[str, bytes]], part: str, xml: tuple) -> IO[bytes]:
    """An unnamed, uncompressed workbook file holding the piece (it goes when closed, or if the process dies)."""
    fh = tempfile.TemporaryFile()
    try:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as out:
            for name, data in rest:
                out.writestr(name, data)
            with out.open(part, "w", force_zip64=True) as w:
                for chunk in xml:
                    w.write(chunk)
        fh.flush()
    except BaseException:
        fh.close()
        raise
    return fh


def _parse_piece(fh: IO[bytes], name: str, slots: threading.BoundedSemaphore):
    from python_calamine import CalamineWorkbook

    try:
        wb = CalamineWorkbook.from_path(f"{_FD_DIR}/{fh.fileno()}")
        try:
            sheet = wb.get_sheet_by_name(name)
            if sheet.height == 0 or sheet.start is None:
                return None, None, []
            return sheet.start, sheet.end, sheet.to_python(skip_empty_area=True)
        finally:
            wb.close()
    finally:
        fh.close()
        slots.release()


def _assemble(results: list) -> list[list[Any]]:
    """Rows from (0, 0) to the last cell, each as wide as the widest piece, like the whole sheet's read."""
    filled = [r for r in results if r[0] is not None]
    if not filled:
        return []
    width = max(end[1] for _, end, _ in filled) + 1
    rows: list[list[Any]] = []
    for (r0, c0), _, piece in filled:
        if r0 < len(rows):
            raise _Unsplittable  # pieces overlap: rows out of order in the XML
        rows.extend([""] * width for _ in range(r0 - len(rows)))
        w = len(piece[0]) if piece else 0
        if c0 or w < width:  # widened in place: new lists for every row cost seconds at 500k lines
            left, right = [""] * c0, [""] * (width - c0 - w)
            for r in piece:
                if c0:
                    r[:0] = left
                r += right
        rows.extend(piece)
    return rows


def read_with_sheet(path: Path, part: str, sheet: str, xml: bytes) -> list[list[Any]]:
    """The rows of ``sheet`` as calamine reads them (``to_python(skip_empty_area=False)``) from a copy of the
    workbook whose sheet part is ``xml`` (a trimmed copy of its own: see ``cells.trimmed_sheets``)."""
    from python_calamine import CalamineWorkbook

    with zipfile.ZipFile(path) as z:
        rest = _other_parts(z, part)
    fh = _piece_zip(rest, part, (xml,))
    try:
        if os.path.isdir(_FD_DIR):
            wb = CalamineWorkbook.from_path(f"{_FD_DIR}/{fh.fileno()}")
        else:  # no /proc: a named copy
            with tempfile.NamedTemporaryFile(suffix=".xlsx", delete=False) as named:
                fh.seek(0)
                named.write(fh.read())
            try:
                wb = CalamineWorkbook.from_path(named.name)
            finally:
                os.unlink(named.name)
        try:
            return wb.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
        finally:
            wb.close()
    finally:
        fh.close()
