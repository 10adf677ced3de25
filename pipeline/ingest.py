"""Read a claim export (xlsx, xlsm, xls, ods, csv, tsv) into canonical, typed claim lines.

All input I/O lives here. Headers are matched to canonical columns through ``HEADER_ALIASES``
(case, spaces, punctuation and ``#``/``No``/``Number`` ignored) plus an optional user map.
A cell that cannot be coerced becomes an ingest issue (ING-001), never a crash or a silent drop.
A file that cannot be read at all raises ``IngestError`` with a reason code.
"""

import csv
import ctypes
import functools
import hashlib
import io
import itertools
import re
import stat
import tomllib
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import normalize as N
from pipeline.errors import IngestError
from pipeline.gate import cfb_is_encrypted, classify
from pipeline.threads import beside, room_for_threads
from schemas import columns as C
from schemas.rules.file import UNREADABLE

WORKBOOK_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"}
TEXT_SUFFIXES = {".csv", ".tsv", ".txt"}
SUFFIXES = WORKBOOK_SUFFIXES | TEXT_SUFFIXES
HEADER_SCAN_ROWS = 30
MAX_CELL_TEXT = 32767  # Excel's cell limit: longer text is truncated in the workbook, and flagged
PARALLEL_ROWS = 50_000  # columns normalised on two threads from this many rows
MAX_ROWS = 2_000_000
MAX_COLUMNS = 1_000

# Raw-header -> canonical map, keyed by ``header_key`` of the export header.
HEADER_ALIASES: dict[str, str] = {}
COMBINED_MODIFIERS = "__modifiers__"
COMBINED_DX = "__dx__"
SITE_SIDE = "__site_side__"
SITE_MUSCLE = "__site_muscle__"
SITE_UNITS = "__site_units__"


def _alias(canonical: str, *headers: str) -> None:
    for h in headers:
        HEADER_ALIASES[header_key(h)] = canonical


def header_key(header: Any) -> str:
    """A header reduced for matching: NFKC, case-folded, ``#``/No/Number dropped, alphanumerics only."""
    return _header_key(header) if header.__class__ is str else _header_key(str(header))


@functools.lru_cache(maxsize=8192)
def _header_key(header: str) -> str:
    text = unicodedata.normalize("NFKC", header).casefold().replace("#", " number ")
    tokens = re.findall(r"[a-z0-9]+", text)
    kept = [t for t in tokens if t not in {"no", "number", "num", "nbr"}] or tokens
    return "".join(kept)


_alias(C.CLAIM_ID, "Claim ID", "Claim #", "Claim Number", "Claim", "Encounter ID", "Encounter",
       "Invoice #", "Invoice", "Claim No")
_alias(C.LINE_NO, "Line", "Line #", "Charge Line", "Seq", "Sequence", "Line Item", "Svc Line")
_alias(C.PATIENT_ID, "Patient ID", "Member ID", "MRN", "Patient Acct", "Patient Account",
       "Subscriber ID", "Account #", "Acct")
_alias(C.PATIENT_NAME, "Patient Name", "Patient", "Member Name", "Name", "Subscriber Name")
_alias(C.DOB, "DOB", "Date of Birth", "Birth Date", "Patient DOB", "Birthdate")
_alias(C.SERVICE_DATE, "DOS", "Date of Service", "Service Date", "From Date", "Svc Date",
       "DOS From", "Service From Date", "From DOS")
_alias(C.PAYER, "Payer", "Insurance", "Primary Insurance", "Plan", "Payer Name", "Primary Payer",
       "Insurance Name", "Carrier")
_alias(C.RENDERING_NPI, "Rendering NPI", "NPI", "Rendering Provider NPI", "Provider NPI")
_alias(C.PLACE_OF_SERVICE, "POS", "Place of Service")
_alias(C.PROCEDURE_CODE, "CPT", "HCPCS", "CPT/HCPCS", "CPT Code", "Proc Code", "Procedure",
       "Procedure Code", "HCPCS Code", "CPT HCPCS Code", "Service Code")
for _i in range(1, 5):
    _alias(C.MODIFIERS[_i - 1], f"Mod {_i}", f"Modifier {_i}", f"Mod{_i}", f"M{_i}")
_alias(COMBINED_MODIFIERS, "Modifiers", "Mods", "Modifier", "Mod")
_alias(C.UNITS, "Units", "Qty", "Quantity", "Service Units", "Days/Units", "Unit", "Days or Units")
_alias(C.CHARGE, "Charge", "Charges", "Charge Amt", "Charge Amount", "Billed Amount", "Billed",
       "Amount", "Total Charge", "Line Charge")
for _i in range(1, 13):
    _alias(C.DX[_i - 1], f"Dx {_i}", f"ICD-10 {_i}", f"ICD10 {_i}", f"Diagnosis {_i}", f"Diag {_i}",
           f"Dx Code {_i}", f"Diagnosis Code {_i}", f"ICD {_i}")
_alias(C.DX[0], "Primary Dx", "Primary Diagnosis", "ICD-10", "Dx", "Diagnosis", "ICD-10-CM")
_alias(COMBINED_DX, "Diagnosis Codes", "Diagnoses", "Dx Codes", "ICD-10 Codes", "ICD Codes",
       "All Diagnoses")
_alias(C.DX_POINTER, "Dx Pointer", "Dx Ptr", "Diagnosis Pointer", "Pointer", "Diag Pointer")
_alias(C.NDC, "NDC", "NDC Code", "NDC 11", "National Drug Code")
_alias(C.DRUG_SOURCE, "Drug Source", "Drug Supplied By", "Supplied By", "Drug Supply")
_alias(C.PRIOR_AUTH, "Prior Auth", "Prior Authorization", "Auth #", "Authorization", "UTN",
       "Prior Auth #")
_alias(C.MUSCLES, "Muscles", "Muscles Injected", "Injection Sites", "Sites", "Muscle")
_DOC_WORDS = {
    C.DOC_ONSET: ("Onset", "Spasm Onset"),
    C.DOC_DURATION: ("Duration", "Spasm Duration"),
    C.DOC_FREQUENCY: ("Frequency", "Spasm Frequency", "Frequency of Spasms"),
    C.DOC_NEURO_EXAM: ("Neuro Exam", "Neurological Exam", "Neurological Examination", "Neuro"),
    C.DOC_FACIAL_NERVE: ("Facial Nerve", "Facial Nerve Function", "Facial Nerve Assessment",
                         "Facial Nerve Exam"),
    C.DOC_IMAGING: ("Imaging", "MRI", "Imaging MRI", "MRI/Imaging"),
    C.DOC_SURGICAL_NOTES: ("Surgical Notes", "Operative Notes", "Op Note", "Operative Report"),
    C.DOC_SEVERITY_SCALE: ("Severity Scale", "Objective Severity Scale", "Severity Score", "HFS Severity Scale",
                           "Jankovic Scale", "HFS-7", "HFS7"),
}
for _col, _words in _DOC_WORDS.items():
    for _w in _words:
        _alias(_col, _w, f"{_w} Documented", f"{_w} Doc", f"Doc {_w}", f"{_w} (Y/N)", f"{_w} Done")
    _alias(_col, _col)
# Columns claimscrub adds itself: never read from an export (a "Source Row" header is reported and ignored).
INTERNAL_COLUMNS = (C.SOURCE_ROW, C.SOURCE_SHEET, "source_file", "patient_key")
_INTERNAL_KEYS = {header_key(c): c for c in INTERNAL_COLUMNS}
for _col in C.CANONICAL:
    if _col not in INTERNAL_COLUMNS:
        _alias(_col, _col)
_SITE_ALIASES = {
    header_key("Side"): SITE_SIDE, header_key("Laterality"): SITE_SIDE,
    header_key("Muscle"): SITE_MUSCLE, header_key("Muscle Injected"): SITE_MUSCLE,
    header_key("Site"): SITE_MUSCLE,
    header_key("Units"): SITE_UNITS, header_key("Dose"): SITE_UNITS, header_key("Units Injected"): SITE_UNITS,
}

_TOTALS = re.compile(r"^\s*(grand[\s-]*|sub[\s-]*|page[\s-]*|report[\s-]*|claim[\s-]*)?totals?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Layout:
    """A published export layout recognised by its headers, with no mapping file."""

    name: str
    headers: dict[str, str]  # header_key -> canonical
    signature: frozenset[str]  # header keys that all appear in the layout's header row

    def matches(self, keys: set[str]) -> bool:
        return self.signature <= keys


def _layout(name: str, signature: tuple[str, ...], headers: dict[str, str]) -> Layout:
    return Layout(name, {header_key(h): c for h, c in headers.items()}, frozenset(header_key(h) for h in signature))


# The CMS CCW research identifiable file (RIF) of carrier (Part B physician/supplier) claims, line file:
# variable names as the CCW codebook and ResDAC's Carrier RIF page spell them (long and short SAS names).
# One service date per line: LINE_1ST_EXPNS_DT (the claim's CLM_FROM_DT is left unmapped); the line's own
# LINE_ICD_DGNS_CD is left unmapped beside the claim's ICD_DGNS_CD1..12.
CCW_CARRIER = _layout(
    "CMS CCW RIF carrier claim lines", ("CLM_ID", "HCPCS_CD", "LINE_1ST_EXPNS_DT"),
    {"CLM_ID": C.CLAIM_ID, "LINE_NUM": C.LINE_NO, "BENE_ID": C.PATIENT_ID,
     "LINE_1ST_EXPNS_DT": C.SERVICE_DATE, "EXPNSDT1": C.SERVICE_DATE, "HCPCS_CD": C.PROCEDURE_CODE,
     "HCPCS_1ST_MDFR_CD": C.MODIFIERS[0], "MDFR_CD1": C.MODIFIERS[0],
     "HCPCS_2ND_MDFR_CD": C.MODIFIERS[1], "MDFR_CD2": C.MODIFIERS[1],
     "HCPCS_3RD_MDFR_CD": C.MODIFIERS[2], "MDFR_CD3": C.MODIFIERS[2],
     "PRF_PHYSN_NPI": C.RENDERING_NPI, "PRFNPI": C.RENDERING_NPI,
     "LINE_SRVC_CNT": C.UNITS, "SRVC_CNT": C.UNITS,
     "LINE_SBMTD_CHRG_AMT": C.CHARGE, "SBMTCHRG": C.CHARGE,
     "LINE_PLACE_OF_SRVC_CD": C.PLACE_OF_SERVICE, "PLCSRVC": C.PLACE_OF_SERVICE,
     "LINE_NDC_CD": C.NDC, "DOB_DT": C.DOB, "CLM_DOB_DT": C.DOB,
     **{f"ICD_DGNS_CD{i}": C.DX[i - 1] for i in range(1, 13)},
     "CLM_FROM_DT": None, "FROM_DT": None, "LINE_ICD_DGNS_CD": None, "PRNCPAL_DGNS_CD": None})
LAYOUTS = (CCW_CARRIER,)


def layout_of(cells: list[Any], keys: set[str] | None = None) -> Layout | None:
    """The built-in layout whose signature headers a header row holds (``keys``: their header keys, if known)."""
    if keys is None:
        keys = {header_key(c) for c in cells if not N.is_blank(c)}
    return next((lay for lay in LAYOUTS if lay.matches(keys)), None)


@dataclass
class IngestResult:
    """What was read from one file: canonical lines plus everything a reviewer must know about it."""

    file: str
    sha256: str
    sheet: str
    lines: pd.DataFrame
    issues: pd.DataFrame  # cell- and file-level ingest issues
    mapped: dict[str, str] = field(default_factory=dict)  # export header -> canonical
    unmapped: list[str] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # canonical columns the file has
    rows_read: int = 0
    notes: list[str] = field(default_factory=list)
    layout: str = ""  # the built-in layout recognised by its headers, if any


ISSUE_COLUMNS = ["file", "sheet", "row", "column", "value", "reason", "rule"]


class ColumnMap(dict):
    """header_key -> canonical column, remembering each header as the map file spells it (``headers``)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.headers: dict[str, str] = {}


class ColumnMapError(ValueError):
    """A ``--columns`` file that cannot be used; the message is one line ending in a reason code."""


def load_column_map(path: Path | None) -> dict[str, str]:
    """A user mapping file (TOML ``[columns]`` table: "Export Header" = "canonical_column")."""
    if path is None:
        return {}
    path = Path(path)

    def refuse(reason: str, code: str = "E_COLUMN_MAP"):
        raise ColumnMapError(f"{path}: {reason} [{code}]")

    if not path.exists():
        refuse("the column map does not exist", "E_MISSING")
    if not path.is_file():
        refuse("the column map is not a regular file", "E_NOT_FILE")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        refuse(f"cannot read the column map ({exc.strerror})")
    except UnicodeDecodeError:
        refuse("the column map is not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        refuse(f"the column map is not valid TOML ({exc})")
    table = data.get("columns", data)
    if not isinstance(table, dict) or not table or not all(isinstance(v, str) for v in table.values()):
        looks_like_config = bool({"inbox", "outbox", "payers", "default", "severity", "ledger"} & set(data))
        refuse("this looks like a claimscrub config file (use --config), not a column map" if looks_like_config
               else 'a column map is a [columns] table of "Export Header" = "canonical_column" lines')
    out = ColumnMap()
    for header, canonical in table.items():
        out.headers[header_key(header)] = str(header)
        if canonical in INTERNAL_COLUMNS or header_key(header) in _INTERNAL_KEYS:
            refuse(f"column map key {header!r}: {canonical!r} is a column claimscrub adds itself")
        if canonical not in C.CANONICAL and canonical not in {COMBINED_DX, COMBINED_MODIFIERS}:
            refuse(f"column map key {header!r}: {canonical!r} is not a canonical column")
        out[header_key(header)] = canonical
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_and_nul(path: Path) -> tuple[str, bool]:
    """The file's SHA-256, and whether it holds a NUL byte (found in the same pass)."""
    digest, nul = hashlib.sha256(), False
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            nul = nul or b"\x00" in block
    return digest.hexdigest(), nul


# --- raw readers -----------------------------------------------------------------------------

_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32"), (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32"),
         (b"\xfe\xff", "utf-16-be", "UTF-16"), (b"\xff\xfe", "utf-16-le", "UTF-16"))
DELIMITERS = (",", ";", "|", "\t")
MAX_NUL_BYTES = 8  # NUL bytes in the first 4 KiB of a text file without a UTF-16/32 mark: more is binary


def _unicode_bom(head: bytes) -> tuple[bytes, str, str] | None:
    """The UTF-16/UTF-32 byte-order mark ``head`` starts with (Excel's "Unicode Text" is UTF-16LE)."""
    return next((b for b in _BOMS if head.startswith(b[0])), None)


def _decode(data: bytes, name: str, notes: list[str]) -> str:
    bom = _unicode_bom(data[:4])
    if bom is not None:
        mark, codec, label = bom
        try:
            text = data[len(mark):].decode(codec)
        except UnicodeDecodeError:
            raise IngestError("E_ENCODING", UNREADABLE.id, f"the file starts with a {label} byte-order mark "
                              f"but is not valid {label}", name) from None
        notes.append(f"the file is {label} text ({codec.upper()}, with a byte-order mark)")
        return text
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        notes.append("file is not UTF-8; read as Windows-1252 (cp1252)")
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _delimiter(path: Path, first_line: str) -> str:
    """The delimiter the header line uses most (a ``.tsv`` file: tab)."""
    if path.suffix.lower() == ".tsv" and "\t" in first_line:
        return "\t"
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties: the earlier of , ; | tab
    return best if counts[best] else ","


def _sniff_delimiter(path: Path, text: str, user_map: dict[str, str]) -> str:
    """The delimiter the header line uses most, if the claims header is found under it; else the delimiter
    under which the first rows hold the best claims header; else the header line's own."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    likely = _delimiter(path, first)
    if _find_header(list(itertools.islice(csv.reader(io.StringIO(text, newline=""), delimiter=likely),
                                          HEADER_SCAN_ROWS)), user_map):
        return likely
    best, best_score = None, 0
    for d in DELIMITERS:
        rows = list(itertools.islice(csv.reader(io.StringIO(text, newline=""), delimiter=d), HEADER_SCAN_ROWS))
        found = _find_header(rows, user_map)
        score = len(set(found[1].values())) if found else 0
        if score > best_score:
            best, best_score = d, score
    return likely if best is None else best


def _read_text(path: Path, notes: list[str], user_map: dict[str, str] | None = None
               ) -> tuple[list[tuple[str, list[list[Any]]]], list[tuple[int, int, str, str]]]:
    """The rows of a CSV/TSV and its NUL cells ((row, column, "nul", text), each an ING-001 issue)."""
    data = path.read_bytes()
    if _unicode_bom(data[:4]) is None and data[:4096].count(b"\x00") > MAX_NUL_BYTES:
        raise IngestError("E_FORMAT", UNREADABLE.id, "the file is binary, not a spreadsheet or CSV", path.name)
    text = _decode(data, path.name, notes)
    del data
    delimiter = _sniff_delimiter(path, text[:1 << 16], user_map or {})
    rows = [list(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]
    nuls = []
    if "\x00" in text:  # a stray NUL: that cell's issue, the rest of the file is read
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                if "\x00" in cell:
                    row[j] = cell.replace("\x00", "")
                    nuls.append((i + 1, j, "nul", row[j]))
    return [(path.name, rows)], nuls


def _read_csv_fast(path: Path, user_map: dict[str, str]) -> tuple[list[str], dict[int, str], pd.DataFrame] | None:
    """The common case of a CSV, read by pyarrow's C parser into Arrow strings: UTF-8, the header on
    the first line, every row as wide as the header. Returns (header, mapping, data frame of text
    columns 0..n-1), or None for anything else, which the exact reader (``_read_text``) then reads
    and explains (title rows, ragged rows, other encodings). Both give the same lines.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head or b"\x00" in head[:4096]:
        return None
    text = head.decode("utf-8-sig", errors="replace")
    first = text.split("\n", 1)[0].rstrip("\r")
    if not first.strip() or '"' in first:
        return None
    delimiter = _sniff_delimiter(path, text, user_map)
    rows = list(itertools.islice(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), HEADER_SCAN_ROWS))
    found = _find_header(rows, user_map)
    if found is None or found[0] != 0:
        return None
    header = rows[0]
    if len(header) > MAX_COLUMNS:
        return None
    names = [str(i) for i in range(len(header))]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # ragged rows, not UTF-8: the exact reader explains
        return None
    frame = table.to_pandas(self_destruct=True, split_blocks=True)  # the table's buffers are freed as converted
    del table
    frame.columns = range(len(header))
    return header, found[1], frame


def _read_workbook(path: Path, kind: str, notes: list[str], plan=None, trimmed: dict | None = None
                   ) -> tuple[list[tuple[str, list[list[Any]]]], Any]:
    """Every visible worksheet's rows; with a ``xlsxsplit.Plan``, also its split read (None if not split).
    ``trimmed``: sheet -> (part, XML without its empty cells), read in place of the sheet."""
    from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

    from pipeline import xlsxsplit

    trimmed = trimmed or {}

    if kind == "cfb" and cfb_is_encrypted(path):
        raise IngestError("E_ENCRYPTED", UNREADABLE.id,
                          "the workbook is password-protected; remove the password and drop it again",
                          path.name)
    try:
        wb = CalamineWorkbook.from_path(str(path))
    except BaseException as exc:  # calamine raises several types; a Rust panic is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        code = "E_CORRUPT_ZIP" if kind == "zip" else "E_FORMAT"
        raise IngestError(code, UNREADABLE.id,
                          f"the workbook is damaged or not a spreadsheet ({type(exc).__name__})",
                          path.name) from None
    sheets, split = [], None
    try:
        for meta in wb.sheets_metadata:
            if meta.visible != SheetVisibleEnum.Visible:
                notes.append(f"hidden sheet {meta.name!r} ignored")
                continue
            if meta.typ != SheetTypeEnum.WorkSheet:
                continue
            rows = None
            if meta.name in trimmed:
                rows = xlsxsplit.read_with_sheet(path, *trimmed[meta.name][:1], meta.name, trimmed[meta.name][1])
                notes.append(f"sheet {meta.name!r}: empty formatted cells far outside the data ignored")
            elif plan is not None and meta.name == plan.sheet:
                split = xlsxsplit.read_split(path, plan)
                rows = split.rows if split is not None else None
            if rows is None:
                rows = wb.get_sheet_by_name(meta.name).to_python(skip_empty_area=False)
            sheets.append((meta.name, rows))
    except BaseException as exc:  # including a Rust panic inside calamine
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise IngestError("E_CORRUPT_ZIP" if kind == "zip" else "E_FORMAT", UNREADABLE.id,
                          f"a sheet could not be read ({type(exc).__name__})", path.name) from None
    finally:
        wb.close()
    return sheets, split


# --- header and sheet detection ---------------------------------------------------------------

def _map_header(cells: list[Any], user_map: dict[str, str]) -> dict[int, str]:
    mapping: dict[int, str] = {}
    keys = {pos: header_key(cell) for pos, cell in enumerate(cells) if not N.is_blank(cell)}
    layout = layout_of(cells, set(keys.values())) if len(keys) >= len(CCW_CARRIER.signature) else None
    for pos, key in keys.items():
        if key in user_map:
            canonical = user_map[key]
        elif layout is not None and key in layout.headers:
            canonical = layout.headers[key]
        else:
            canonical = HEADER_ALIASES.get(key)
        if canonical:
            mapping[pos] = canonical
    return mapping


def _find_header(rows: list[list[Any]], user_map: dict[str, str]) -> tuple[int, dict[int, str]] | None:
    best = None
    for idx, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        mapping = _map_header(row, user_map)
        found = set(mapping.values())
        score = len(found)
        if score >= 3 and C.PROCEDURE_CODE in found:
            if best is None or score > best[2]:
                best = (idx, mapping, score)
    return None if best is None else (best[0], best[1])


def _find_sites_header(rows: list[list[Any]]) -> tuple[int, dict[int, str]] | None:
    for idx, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        mapping: dict[int, str] = {}
        for pos, cell in enumerate(row):
            if N.is_blank(cell):
                continue
            key = header_key(cell)
            target = _SITE_ALIASES.get(key) or HEADER_ALIASES.get(key)
            if target in {C.UNITS}:
                target = SITE_UNITS
            if target in {C.MUSCLES}:
                target = SITE_MUSCLE
            if target in {C.CLAIM_ID, C.LINE_NO, SITE_SIDE, SITE_MUSCLE, SITE_UNITS}:
                mapping[pos] = target
        found = set(mapping.values())
        if {C.CLAIM_ID, SITE_MUSCLE} <= found and (SITE_UNITS in found or SITE_SIDE in found):
            return idx, mapping
    return None


# --- the frame ---------------------------------------------------------------------------------

_NORMALISERS = {
    C.CLAIM_ID: N.norm_text, C.PATIENT_ID: N.norm_text, C.PATIENT_NAME: N.norm_text,
    C.PAYER: N.norm_text, C.RENDERING_NPI: N.norm_code, C.PLACE_OF_SERVICE: N.norm_pos,
    C.PROCEDURE_CODE: N.norm_code, C.MODIFIER_EXTRA: N.norm_code, C.DX_POINTER: N.norm_pointer,
    C.NDC: N.norm_text, C.DRUG_SOURCE: N.norm_text, C.PRIOR_AUTH: N.norm_text, C.MUSCLES: N.norm_text,
    C.DOB: N.norm_date, C.SERVICE_DATE: N.norm_date, C.UNITS: N.norm_number, C.CHARGE: N.norm_number,
    C.LINE_NO: N.norm_int,
    **{m: N.norm_code for m in C.MODIFIERS},
    **{d: N.norm_icd10 for d in C.DX},
    **{f: N.norm_flag for f in C.FLAG_COLUMNS},
}


def _col_letter(pos: int) -> str:
    letters = ""
    pos += 1
    while pos:
        pos, rem = divmod(pos - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _is_blank_row(row: list[Any]) -> bool:
    return all(N.is_blank(c) for c in row)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def release_memory() -> None:
    """Give memory freed by a phase back to the system, so the next phase's peak starts lower: Arrow's
    memory pool and glibc's heap both keep freed blocks for reuse otherwise."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def check_input(path: Path) -> None:
    """Refuse what is not a regular file before anything opens it (opening a FIFO would wait forever)."""
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        raise IngestError("E_MISSING", UNREADABLE.id, "the file does not exist", Path(path).name) from None
    except OSError as exc:
        raise IngestError("E_UNREADABLE", UNREADABLE.id, f"the file cannot be opened ({exc.strerror})",
                          Path(path).name) from None
    if stat.S_ISDIR(mode):
        raise IngestError("E_NOT_FILE", UNREADABLE.id, "this is a folder, not a claims file", Path(path).name)
    if not stat.S_ISREG(mode):
        raise IngestError("E_NOT_FILE", UNREADABLE.id, "this is not a regular file (a pipe, socket or device)",
                          Path(path).name)


def read_claims(path: Path | str, column_map: dict[str, str] | None = None, date_order: str = "MDY"
                ) -> IngestResult:
    """Read one claim export into canonical lines; raise ``IngestError`` if it cannot be read.

    ``date_order`` ("MDY" or "DMY"): how slash dates are read in a column whose values do not decide it."""
    try:
        return _read_claims(Path(path), column_map, str(date_order))
    finally:
        release_memory()


def _read_claims(path: Path, column_map: dict[str, str] | None, date_order: str = "MDY") -> IngestResult:
    notes: list[str] = []
    user_map = column_map or {}
    check_input(path)
    kind = classify(path)
    suffix = path.suffix.lower()
    if kind == "text" and suffix in WORKBOOK_SUFFIXES:
        notes.append(f"the file is named {suffix} but holds text; read as CSV")
    if kind != "text" and suffix in TEXT_SUFFIXES:
        notes.append(f"the file is named {suffix} but holds a workbook; read as a workbook")
    if kind == "text":  # the file is hashed on a second thread while pyarrow parses it on one
        with beside(_sha256_and_nul, path, name="claimscrub-hash") as hashed:
            fast = _read_csv_fast(path, user_map)
            sha, has_nul = hashed()
        if fast is not None and not has_nul:  # a NUL anywhere: the exact reader names its cell
            header, mapping, frame = fast
            return _build(path, sha, path.name, header, frame, 2, mapping, None, notes, user_map=user_map,
                          date_order=date_order)
        sheets, nuls = _read_text(path, notes, user_map)
        return _read_sheets(path, kind, sheets, {path.name: nuls}, user_map, notes, sha, date_order)
    from pipeline import cells, xlsxsplit

    # A large sheet is parsed in row pieces on every core (``xlsxsplit``). Error cells and value-less formulas
    # (calamine shows them as blanks) are found in the sheet XML: the split read looks for them in its
    # pieces, a second thread scans the other sheets while calamine reads (zlib releases the GIL).
    # Near a memory limit, no thread (see room_for_threads): no split, and the scan runs after the read.
    parts = cells.sheet_parts(path) if kind == "zip" else {}
    trimmed = _trimmed_sheets(path, parts) if parts else {}
    plan = xlsxsplit.plan(path, parts) if kind == "zip" and room_for_threads() else None
    if plan is not None and plan.sheet in trimmed:
        plan = None
    skip = (plan.sheet,) if plan else ()
    scan = (lambda: cells.special_cells_by_sheet(path, skip)) if kind == "zip" else dict
    with beside(scan, name="claimscrub-cells") as scanned:
        sheets, split = _read_workbook(path, kind, notes, plan, trimmed)
        special = scanned()
    if plan and plan.sheet in (name for name, _ in sheets) and (split is None or split.special_suspected):
        special[plan.sheet] = cells.special_cells(path, plan.sheet)
    return _read_sheets(path, kind, sheets, special, user_map, notes, date_order=date_order)


def _trimmed_sheets(path: Path, parts: dict[str, str]) -> dict[str, tuple[str, bytes]]:
    """Sheets whose used range is far larger than their data (``cells.trimmed_sheets``): name -> (part, XML)."""
    from pipeline import cells

    try:
        trimmed = cells.trimmed_sheets(path, parts)
    except cells.SheetTooSparse as exc:
        raise IngestError("E_TOO_LARGE", UNREADABLE.id,
                          f"sheet {exc.sheet!r} has a cell at {exc.far}, far outside its data: {exc}; "
                          f"delete that stray cell (Ctrl+End in Excel shows it) and save again",
                          path.name, exc.sheet) from None
    return {name: (parts[name], xml) for name, xml in trimmed.items() if name in parts}


def _read_sheets(path: Path, kind: str, sheets: list, special_by_sheet: dict, user_map: dict[str, str],
                 notes: list[str], sha: str | None = None, date_order: str = "MDY") -> IngestResult:
    sha = sha or file_sha256(path)

    claims_sheets, sites_sheet = [], None
    for name, rows in sheets:
        found = _find_header(rows, user_map)
        if found:
            claims_sheets.append((name, rows, *found))
        elif sites_sheet is None:
            sites = _find_sites_header(rows)
            if sites:
                sites_sheet = (name, rows, *sites)
    if not claims_sheets:
        raise IngestError("E_HEADER", "FILE-002",
                          "no claims header found (need columns such as Claim ID, DOS, CPT, Units, Dx)",
                          path.name)
    if len(claims_sheets) > 1:
        claims_sheets.sort(key=lambda s: -len(set(s[3].values())))
        if len(set(claims_sheets[0][3].values())) == len(set(claims_sheets[1][3].values())):
            raise IngestError("E_SHEET_AMBIGUOUS", "FILE-002",
                              "several visible sheets look like claims: "
                              + ", ".join(repr(s[0]) for s in claims_sheets), path.name)
        notes.append("other claim-like sheets ignored: " + ", ".join(repr(s[0]) for s in claims_sheets[1:]))
    sheet, rows, header_idx, mapping = claims_sheets[0]
    special, date1904 = special_by_sheet.get(sheet, []), False
    if kind == "zip":
        from pipeline.cells import uses_1904_dates

        date1904 = uses_1904_dates(path)
        if date1904:
            notes.append("the workbook uses the 1904 date system; date serial numbers read accordingly")
    if len(rows[header_idx]) > MAX_COLUMNS:
        raise IngestError("E_TOO_LARGE", UNREADABLE.id, f"the claims sheet has more than {MAX_COLUMNS} columns",
                          path.name, sheet)
    raw, ragged = _rectangle(rows, header_idx, kind == "text", path.name, sheet)
    return _build(path, sha, sheet, rows[header_idx], raw, header_idx + 2, mapping, sites_sheet, notes,
                  special=special, date1904=date1904, ragged=ragged, user_map=user_map, date_order=date_order)


def _rectangle(rows: list[list[Any]], header_idx: int, strict: bool, filename: str, sheet: str
               ) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The rows under the header as a frame exactly as wide as the header (object columns 0..n-1).

    CSV (``strict``): a row with more or fewer fields than the header is refused, naming the row;
    a workbook row that runs past the header is cut, and returned as (row, message).
    """
    width = len(rows[header_idx])
    ragged: list[tuple[int, str]] = []
    data_rows = rows[header_idx + 1:]
    for i, row in enumerate(data_rows):
        if len(row) == width:
            continue
        if strict and not _is_blank_row(row) and not (len(row) > width and all(N.is_blank(c) for c in row[width:])):
            raise IngestError("E_CSV_SHAPE", UNREADABLE.id,
                              f"row {header_idx + i + 2} has {len(row)} fields but the header (row {header_idx + 1})"
                              f" has {width}; check the delimiter and quoting", filename, sheet)
        if len(row) > width and not all(N.is_blank(c) for c in row[width:]):
            ragged.append((header_idx + i + 2, f"row has {len(row)} fields but the header has {width}"))
        data_rows[i] = (list(row) + [""] * width)[:width]
    arr = np.empty((len(data_rows), width), dtype=object)
    if data_rows:
        arr[:] = data_rows
    return pd.DataFrame(arr, columns=range(width), dtype=object), ragged


def _empty_cells(raw: pd.DataFrame, factorize: set | frozenset = frozenset()) -> tuple[np.ndarray, dict]:
    """rows x columns: True where a cell is blank ("" from the readers, None, or a missing Arrow string).

    Object columns at the positions in ``factorize`` are factorised once here: blank is then decided
    once per distinct value, and the codes are returned (position -> (codes, uniques)) for
    normalize_column to reuse.
    """
    out = np.zeros(raw.shape, dtype=bool)
    factorized = {}
    for j, col in enumerate(raw.columns):
        s = raw[col]
        if isinstance(s.dtype, pd.StringDtype):
            out[:, j] = (s == "").to_numpy(bool, na_value=True)
            continue
        v = s.to_numpy(dtype=object)
        if col in factorize:
            codes, uniques = pd.factorize(v, use_na_sentinel=True)
            uniques = uniques.tolist()
            blank = np.array([u.__class__ is str and u == "" for u in uniques] + [False])[codes]
            missing = np.flatnonzero(codes < 0)  # None, and NaN or NaT (never from the readers: not blank)
            blank[missing] = [x is None for x in v[missing]]
            out[:, j] = blank
            factorized[col] = (codes, uniques)
        else:
            out[:, j] = (v == "") | np.equal(v, None)  # readers give "" or None for a blank, never NaN
    return out, factorized


def _check_mapping(path, sheet, header, mapping) -> tuple[dict, list, set]:
    """Refuse a mapping with two export columns for one canonical column, or without the required columns;
    return the export headers used (header -> canonical), those not used, and the canonical columns present."""
    seen: dict[str, int] = {}
    for pos, canonical in sorted(mapping.items()):
        if canonical in seen and canonical not in {COMBINED_DX, COMBINED_MODIFIERS}:
            a, b = header[seen[canonical]], header[pos]
            raise IngestError("E_DUP_COLUMN", "FILE-002",
                              f"columns {a!r} ({_col_letter(seen[canonical])}) and {b!r} ({_col_letter(pos)}) "
                              f"both map to {C.LABELS.get(canonical, canonical)}", path.name, sheet)
        seen[canonical] = pos
    targets = set(mapping.values())
    missing = [C.LABELS[c] for c in C.REQUIRED if c not in targets]
    if not (targets & (set(C.DX) | {COMBINED_DX})):
        missing.append("Diagnoses (a Diagnosis Codes column, or Dx 1...)")
    if missing:
        raise IngestError("E_MISSING_COLUMN", "FILE-002", "required columns missing: " + ", ".join(missing),
                          path.name, sheet)
    mapped = {str(header[p]).strip(): c for p, c in mapping.items()}
    unmapped = [str(h).strip() for p, h in enumerate(header) if p not in mapping and not N.is_blank(h)]
    present = {c for c in mapping.values() if c in C.CANONICAL}
    if mapping and any(c == COMBINED_DX for c in mapping.values()):
        present.update(C.DX)
    if any(c == COMBINED_MODIFIERS for c in mapping.values()):
        present.update(C.MODIFIERS)
    return mapped, unmapped, present


def _data_rows(raw_all: pd.DataFrame, mapping, first_row: int, notes: list, header=()) -> tuple[np.ndarray, dict]:
    """Positions of the data rows and the plain columns' codes over all rows (``_empty_cells``).

    Left out, vectorised: blank rows; total, subtotal and grand-total rows (a "Total" label in the claim id
    or in the first filled cell of a row without a claim id); header rows repeated under the header (a
    report printed page by page). Each kind gets one note listing its rows; none of them is scrubbed."""
    claim_pos = next((p for p, c in mapping.items() if c == C.CLAIM_ID), None)
    plain = {p for p, c in mapping.items() if c not in {COMBINED_DX, COMBINED_MODIFIERS}}
    empty, factorized = _empty_cells(raw_all, plain)
    keep = ~empty.all(axis=1)
    totals: list[int] = []
    repeated: list[int] = []
    # Exact checks only where they can matter: rows with no claim id (whitespace-only, totals) and rows whose
    # claim id reads like a total or like the header's own claim id cell.
    suspects = keep & (empty[:, claim_pos] if claim_pos is not None else True)
    if claim_pos is not None and len(raw_all):
        suspects |= _label_rows(raw_all[claim_pos], str(header[claim_pos]) if len(header) else None) & keep
    header_keys = {p: header_key(header[p]) for p in mapping} if len(header) else {}
    for i in np.flatnonzero(suspects):
        row = raw_all.iloc[i].tolist()
        first = next((c for c in row if not N.is_blank(c)), None)
        if first is None:
            keep[i] = False
        elif header_keys and sum(header_key(row[p]) == k for p, k in header_keys.items()
                                 if not N.is_blank(row[p])) >= max(2, len(header_keys) // 2):
            repeated.append(first_row + i)
            keep[i] = False
        elif isinstance(first, str) and _TOTALS.match(first):
            totals.append(first_row + i)
            keep[i] = False
    if totals:
        notes.append(f"{_rows_phrase(totals, 'total or subtotal row')} skipped (not claims): row(s) "
                     + _row_list(totals))
    if repeated:
        notes.append(f"{_rows_phrase(repeated, 'repeated header row')} skipped (not claims): row(s) "
                     + _row_list(repeated))
    return np.flatnonzero(keep), factorized


def _label_rows(claim: pd.Series, own_header: str | None) -> np.ndarray:
    """Rows whose claim id reads like a total ("Subtotal", "Grand Total") or is the column's own header, in
    Arrow passes (no Python per cell)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(claim.dtype, pd.StringDtype):
        arr = pa.array(claim.array)
    else:  # a workbook's cells: their text ones
        values = claim.to_numpy(dtype=object)
        arr = pa.array(np.where([v.__class__ is str for v in values], values, None), type=pa.large_string())
    lower = pc.utf8_lower(arr)
    hit = pc.fill_null(pc.match_substring(lower, "total"), False).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(hit):  # few rows: the exact label test (a plain substring needs no regex engine)
        hit[i] = _TOTALS.match(lower[int(i)].as_py()) is not None
    if own_header and own_header.strip():
        own = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(lower), own_header.strip().lower()), False)
        hit |= own.to_numpy(zero_copy_only=False)
    return hit


def _rows_phrase(rows: list[int], what: str) -> str:
    return f"{len(rows)} {what}{'' if len(rows) == 1 else 's'}"


def _row_list(rows: list[int], most: int = 50) -> str:
    shown = ", ".join(str(r) for r in rows[:most])
    return shown + (f" and {len(rows) - most} more" if len(rows) > most else "")


def _date_orders(raw: pd.DataFrame, mapping, header, date_order: str, notes: list[str]) -> dict[int, bool]:
    """Position -> read slash dates day first, per date column: as its own values prove, else as configured
    (``date_order``), with one note per column when the configuration decided."""
    out = {}
    for pos, canonical in mapping.items():
        if canonical not in C.DATE_COLUMNS:
            continue
        order = N.slash_date_order(raw[pos])
        name = str(header[pos]).strip()
        if order in ("DMY", "MDY"):
            if order != date_order:
                notes.append(f"column {name!r}: slash dates read {'day' if order == 'DMY' else 'month'} first, as its "
                             f"values prove (a {'first' if order == 'DMY' else 'second'} field above 12)")
            out[pos] = order == "DMY"
            continue
        if order == "ambiguous":
            notes.append(f"column {name!r}: slash dates such as 03/04/2024 could be month or day first; read "
                         f"{'day' if date_order == 'DMY' else 'month'} first as configured (date_order = {date_order})")
        elif order == "conflict":
            notes.append(f"column {name!r}: slash dates are written both month first and day first; read "
                         f"{'day' if date_order == 'DMY' else 'month'} first as configured (date_order = {date_order}); "
                         "dates that cannot be read so are flagged")
        out[pos] = date_order == "DMY"
    return out


def _normalize_columns(raw: pd.DataFrame, mapping, factorized: dict, header, source_rows: list, date1904: bool,
                       issue, day_first: dict[int, bool] | None = None) -> dict[str, Any]:
    """Each mapped column normalised to its canonical type (problems reported through ``issue``), and the
    combined diagnosis and modifier cells spread over their columns."""
    data: dict[str, Any] = {}
    day_first = day_first or {}
    date_norms = {pos: functools.partial(N.norm_date, date1904=date1904, day_first=first)
                  for pos, first in day_first.items() if date1904 or first}

    def normalized(pos, canonical, column, codes):
        max_text = MAX_CELL_TEXT if canonical in C.TEXT_COLUMNS else None
        norm = date_norms.get(pos, _NORMALISERS[canonical])
        if date1904 and norm is N.norm_date:
            norm = functools.partial(N.norm_date, date1904=True)
        return N.normalize_column(column, norm, max_text, _TYPED.get(canonical), codes)

    plain_columns = [(p, c) for p, c in mapping.items() if c not in {COMBINED_DX, COMBINED_MODIFIERS}]
    args = ([p for p, _ in plain_columns], [c for _, c in plain_columns], [raw[p] for p, _ in plain_columns],
            [factorized.get(p) for p, _ in plain_columns])
    if len(raw) >= PARALLEL_ROWS and room_for_threads():  # two threads: one column's Arrow passes run while
        # another's Python does
        with ThreadPoolExecutor(2, thread_name_prefix="claimscrub-normalize") as pool:
            done = list(pool.map(normalized, *args))
    else:
        done = list(map(normalized, *args))
    del args
    for (pos, canonical), (values, problems, long_pos) in zip(plain_columns, done, strict=True):
        for p in long_pos:
            issue(source_rows[p], str(header[pos]).strip(), "", f"text of {len(raw[pos].iat[p])} characters is "
                  f"longer than an Excel cell holds ({MAX_CELL_TEXT}); it is truncated in the workbook", "TRUNCATED")
        data[canonical] = values
        for p, reason in problems.items():
            issue(source_rows[p], str(header[pos]).strip(), raw[pos].iat[p], reason)
    for pos, canonical in mapping.items():
        if canonical == COMBINED_DX:
            _spread(data, raw[pos], C.DX, N.norm_icd10, len(raw))
        elif canonical == COMBINED_MODIFIERS:
            _spread(data, raw[pos], C.MODIFIERS, N.norm_code, len(raw), overflow=C.MODIFIER_EXTRA)
    return data


def _cell_issues(special, header, source_rows: list, data: dict, dob_pos, dob_raw, issue) -> None:
    """Error values and formulas without a value in kept rows, and dates of birth after the date of service."""
    kept_rows = set(source_rows)
    for row, col, kind, text in special:
        if row in kept_rows and col < len(header):
            column = str(header[col]).strip() or _col_letter(col)
            if kind == "error":
                issue(row, column, text, f"the cell holds the error value {text} [E_CELL_ERROR]")
            elif kind == "nul":
                issue(row, column, text, "the cell holds a NUL byte (removed; the rest of the cell is read) [E_NUL]")
            else:
                issue(row, column, "=" + text, "a formula saved without its value; open the file in Excel, "
                      "save it and drop it again [E_FORMULA_NO_VALUE]")
    if dob_pos is not None and C.SERVICE_DATE in data and C.DOB in data:
        birth = pd.to_datetime(pd.Series(data[C.DOB]), errors="coerce")
        service = pd.to_datetime(pd.Series(data[C.SERVICE_DATE]), errors="coerce")
        for p_ in np.flatnonzero((birth > service).to_numpy(bool)):
            issue(source_rows[p_], str(header[dob_pos]).strip(), dob_raw.iat[p_],
                  "the date of birth is after the date of service")


def _lines_frame(data: dict, idx: np.ndarray, first_row: int, sheet: str) -> pd.DataFrame:
    """The canonical lines frame: every canonical column, typed; a column the file lacks as typed blanks
    (no Python object per row)."""
    n = len(idx)
    frame = {}
    for col in C.CANONICAL:
        if col in data:
            frame[col] = data[col]
        elif col in C.FLAG_COLUMNS:
            frame[col] = np.zeros(n, dtype=bool)
        elif col in C.DATE_COLUMNS:
            frame[col] = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        elif col in C.NUMBER_COLUMNS:
            frame[col] = np.full(n, np.nan)
        elif col == C.LINE_NO:
            frame[col] = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))
        else:
            frame[col] = pd.Series(None, index=pd.RangeIndex(n), dtype="str").array
    frame[C.SOURCE_ROW] = idx + first_row
    frame[C.SOURCE_SHEET] = pd.Series(sheet, index=pd.RangeIndex(n), dtype="str").array
    return _type_lines(pd.DataFrame(frame))


def _build(path, sha, sheet, header, raw_all: pd.DataFrame, first_row: int, mapping, sites_sheet, notes,
           special=(), date1904=False, ragged=(), user_map=None, date_order: str = "MDY") -> IngestResult:
    """Canonical lines from the rows under the header (``first_row``: the Excel row of the first)."""
    issues: list[dict[str, Any]] = []

    def issue(row, column, value, reason, rule="ING-001"):
        issues.append({"file": path.name, "sheet": sheet, "row": row, "column": column,
                       "value": "" if value is None else str(value), "reason": reason, "rule": rule})

    mapped, unmapped, present = _check_mapping(path, sheet, header, mapping)
    layout = layout_of(header)
    if layout is not None:
        notes.append(f"layout recognised: {layout.name}")
    _header_notes(header, user_map or {}, unmapped, notes)
    for row, message in ragged:
        issue(row, "", "", message, "FILE-002")
    idx, factorized = _data_rows(raw_all, mapping, first_row, notes, header)  # keep Excel row numbers
    source_rows = (idx + first_row).tolist()
    rows_read = len(idx)
    if rows_read > MAX_ROWS:
        raise IngestError("E_TOO_LARGE", UNREADABLE.id, f"{rows_read} rows is more than the limit of {MAX_ROWS}",
                          path.name, sheet)
    subset = rows_read < len(raw_all)
    raw = raw_all.iloc[idx].reset_index(drop=True) if subset else raw_all
    if subset:
        factorized = {p: (codes[idx], uniques) for p, (codes, uniques) in factorized.items()}
    del raw_all

    day_first = _date_orders(raw, mapping, header, date_order, notes)
    data = _normalize_columns(raw, mapping, factorized, header, source_rows, date1904, issue, day_first)
    dob_pos = next((p for p, c in mapping.items() if c == C.DOB), None)
    dob_raw = raw[dob_pos] if dob_pos is not None else None
    del raw, factorized
    release_memory()  # the raw text is no longer needed: its memory goes back before the frame is built
    _cell_issues(special, header, source_rows, data, dob_pos, dob_raw, issue)
    if rows_read == 0:
        notes.append("the file has a header but 0 data rows")
    if unmapped:
        notes.append("columns not used by claimscrub: " + ", ".join(repr(h) for h in unmapped))
    lines = _lines_frame(data, idx, first_row, sheet)
    del data
    if C.LINE_NO not in present and rows_read:
        lines[C.LINE_NO] = (lines.groupby(C.CLAIM_ID, dropna=False).cumcount() + 1).astype("Int64")
        notes.append("no line-number column: lines numbered in file order within each claim")
    if sites_sheet is not None:
        _merge_sites(lines, sites_sheet, path.name, issue, notes)
        present.add(C.MUSCLES)
    for note in notes:
        issue(None, "", "", note, "NOTE")
    return IngestResult(
        file=path.name, sha256=sha, sheet=sheet, lines=lines,
        issues=pd.DataFrame(issues, columns=ISSUE_COLUMNS).astype({"row": "Int64"}), mapped=mapped, unmapped=unmapped,
        present=present, rows_read=rows_read, notes=notes, layout=layout.name if layout else "",
    )


def _header_notes(header, user_map: dict[str, str], unmapped: list[str], notes: list[str]) -> None:
    """Headers named like claimscrub's own columns (ignored, never read as them), and ``--columns`` entries
    whose header the file lacks (reported, not silently unused)."""
    internal = [str(h).strip() for h in header if not N.is_blank(h) and header_key(h) in _INTERNAL_KEYS]
    if internal:
        notes.append("column(s) " + ", ".join(repr(h) for h in internal) + " have the name of a column "
                     "claimscrub adds itself; ignored (rename them in the export to keep them apart)")
        unmapped[:] = [h for h in unmapped if h not in internal]
    keys = {header_key(h) for h in header if not N.is_blank(h)}
    originals = getattr(user_map, "headers", {})
    for key, canonical in user_map.items():
        if key not in keys:
            notes.append(f"the column map's header {originals.get(key, key)!r} (for {canonical}) is not in the "
                         "file's header row")


def _spread(data, series, targets, norm, n, overflow=None):
    """A combined cell ("50, JZ") into its target columns (Arrow strings), splitting each distinct value once."""
    codes, uniques = pd.factorize(series if isinstance(series.dtype, pd.StringDtype)
                                  else series.to_numpy(dtype=object), use_na_sentinel=True)
    split = [[norm(v)[0] for v in N.split_list(u)] for u in uniques] + [[]]
    at = np.where(codes < 0, len(split) - 1, codes)  # blank takes the last (empty) entry
    width = max(map(len, split))
    for k, t in enumerate(targets):
        if k >= width:  # no cell has this many items (dx_3..dx_12, mostly): a column of blanks
            data[t] = _no_text(n)
            continue
        data[t] = _as_text([items[k] if k < len(items) else None for items in split]).take(at)
    if overflow:
        data[overflow] = _as_text([",".join(items[len(targets):]) if len(items) > len(targets) else None
                                   for items in split]).take(at)


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Any frame of claim lines -> every canonical column present, with the canonical dtypes."""
    lines = frame.copy()
    n = len(lines)
    for col in C.CANONICAL:
        if col not in lines:
            lines[col] = False if col in C.FLAG_COLUMNS else None
    if C.SOURCE_ROW in frame:
        lines[C.SOURCE_ROW] = lines[C.SOURCE_ROW].fillna(0)
    else:
        lines[C.SOURCE_ROW] = range(2, n + 2)
    return _type_lines(lines)


def _as_text(values: list) -> pd.api.extensions.ExtensionArray:
    return pd.array(values, dtype="str")


def _no_text(n: int) -> pd.api.extensions.ExtensionArray:
    """``n`` missing texts: as ``_as_text`` gives them, built without a Python value per row."""
    dtype = _as_text([]).dtype
    if hasattr(dtype, "__from_arrow__"):
        import pyarrow as pa

        return dtype.__from_arrow__(pa.nulls(n, pa.large_string()))
    return _as_text([None] * n)


def _as_dates(values: list) -> pd.api.extensions.ExtensionArray:
    return pd.to_datetime(pd.Series(values, dtype=object), errors="coerce").astype("datetime64[ns]").array


def _as_numbers(values: list) -> pd.api.extensions.ExtensionArray:
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype("float64").array


def _as_ints(values: list) -> pd.api.extensions.ExtensionArray:
    return pd.array([None if v is pd.NA else v for v in values], dtype="Int64")


def _as_flags(values: list) -> pd.api.extensions.ExtensionArray:
    return pd.Series(values, dtype=object).fillna(False).astype(bool).array


# The canonical dtype of each column (what ``_type_lines`` would make of it), built per distinct value.
_TYPED = {**dict.fromkeys(C.TEXT_COLUMNS, _as_text), **dict.fromkeys(C.DATE_COLUMNS, _as_dates),
          **dict.fromkeys(C.NUMBER_COLUMNS, _as_numbers), **dict.fromkeys(C.FLAG_COLUMNS, _as_flags), C.LINE_NO: _as_ints}


def _type_lines(lines: pd.DataFrame) -> pd.DataFrame:
    for col in C.TEXT_COLUMNS:
        # Arrow-backed strings (pandas "str" with pyarrow): vectorised string work, cheap isna.
        if not isinstance(lines[col].dtype, pd.StringDtype):
            lines[col] = lines[col].astype(object).where(lines[col].notna(), None).astype("str")
    for col in C.DATE_COLUMNS:
        if lines[col].dtype != "datetime64[ns]":
            lines[col] = pd.to_datetime(lines[col], errors="coerce").astype("datetime64[ns]")
    for col in C.NUMBER_COLUMNS:
        if lines[col].dtype != "float64":
            lines[col] = pd.to_numeric(lines[col], errors="coerce").astype("float64")
    if lines[C.LINE_NO].dtype != "Int64":
        lines[C.LINE_NO] = _as_ints([None if N.is_blank(v) or v is pd.NA else int(v) for v in lines[C.LINE_NO]])
    for col in C.FLAG_COLUMNS:
        if lines[col].dtype != bool:
            lines[col] = lines[col].fillna(False).astype(bool)
    lines[C.SOURCE_ROW] = lines[C.SOURCE_ROW].astype("int64")
    return lines


def _merge_sites(lines, sites_sheet, filename, issue, notes) -> None:
    """Render a separate injection-sites sheet into the muscles text of its claim's first line."""
    from schemas.sites import SIDE_WORDS, format_site

    name, rows, header_idx, mapping = sites_sheet
    by_claim: dict[str, list[str]] = {}
    by_line: dict[tuple[str, int], list[str]] = {}
    pos = {v: k for k, v in mapping.items()}
    for idx in range(header_idx + 1, len(rows)):
        row = list(rows[idx]) + [""] * 8
        if _is_blank_row(row):
            continue
        claim, _ = N.norm_text(row[pos[C.CLAIM_ID]])
        muscle, _ = N.norm_text(row[pos[SITE_MUSCLE]])
        if claim is None or muscle is None:
            issue(idx + 1, "", "", f"sites sheet {name!r}: row without claim id or muscle")
            continue
        side_raw, _ = N.norm_text(row[pos[SITE_SIDE]]) if SITE_SIDE in pos else (None, None)
        side = SIDE_WORDS.get((side_raw or "").lower().rstrip("."), side_raw)
        units = None
        if SITE_UNITS in pos:
            units, reason = N.norm_number(row[pos[SITE_UNITS]])
            if reason:
                issue(idx + 1, "units", row[pos[SITE_UNITS]], f"sites sheet {name!r}: {reason}")
            units = None if pd.isna(units) else units
        text = format_site(side, muscle, units)
        line = None
        if C.LINE_NO in pos:
            line, _ = N.norm_int(row[pos[C.LINE_NO]])
        if line is not None and line is not pd.NA:
            by_line.setdefault((claim, int(line)), []).append(text)
        else:
            by_claim.setdefault(claim, []).append(text)
    if not by_claim and not by_line:
        return
    first = ~lines.duplicated(C.CLAIM_ID)
    existing = [None if pd.isna(v) else v for v in lines[C.MUSCLES].tolist()]
    claims = lines[C.CLAIM_ID].tolist()
    line_nos = lines[C.LINE_NO].tolist()
    firsts = first.tolist()
    used = set()
    for i in range(len(lines)):
        parts = []
        key = (claims[i], line_nos[i] if line_nos[i] is not pd.NA else None)
        if key in by_line:
            parts += by_line[key]
            used.add(key)
        if firsts[i] and claims[i] in by_claim:
            parts += by_claim[claims[i]]
            used.add(claims[i])
        if parts:
            existing[i] = "; ".join(([existing[i]] if existing[i] else []) + parts)
    lines[C.MUSCLES] = pd.Series(existing, index=lines.index, dtype="str")
    missing = (set(by_claim) | set(by_line)) - used
    if missing:
        notes.append(f"sites sheet {name!r}: {len(missing)} site group(s) name claims not in the claims sheet")
    notes.append(f"injection sites read from sheet {name!r}")
