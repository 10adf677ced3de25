"""Reference tables behind the payer edits and code sets: versioned, dated, compact, with their provenance.

Each table has a kind (``mue``, ``ptp``, ``icd10cm``, ``procedures``, ``modifiers``, ``pos``, ``ndc``), a version, a source
and the dates of service it covers. The package ships one set (``pipeline/reference_data/manifest.json``); a user
loads newer official CMS files with ``claimscrub reference import KIND FILE`` into the configured
``reference_dir``. For a date of service the table used is the one whose coverage holds the date, an imported
table before a shipped one and the newest version first. A code-set date between two tables (a release not
shipped) is judged from the two around it (``bracket_per_date``). Importers parse and check a file's shape and refuse
one that is not what it claims (``RefDataError``, one line); an MUE or PTP table far smaller than the official one
is refused unless ``partial``; an imported HCPCS file or ASP NDC-HCPCS crosswalk is merged with the shipped entries
it does not carry (CPT codes, modifiers and deletions; cosmetic-only toxin products). Nothing here names a rule.
"""

import csv
import datetime as dt
import functools
import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from schemas import ndc

SHIPPED_DIR = Path(__file__).with_name("reference_data")
MANIFEST = "manifest.json"
CODE = re.compile(r"[A-Z0-9]{4}[A-Z0-9]")  # CPT / HCPCS procedure code
ICD = re.compile(r"[A-Z][0-9][0-9A-Z]{1,5}")  # ICD-10-CM without the dot
DATE_MAX = pd.Timestamp("2262-04-11")


class RefDataError(ValueError):
    """A reference file that cannot be used: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class Table:
    """One reference table: what it is, where it came from and the dates of service it covers."""

    kind: str
    version: str
    source: str
    covers_from: str  # ISO date, inclusive
    covers_to: str  # ISO date, inclusive
    file: str  # Arrow IPC file (zstd) in its folder
    rows: int
    origin: str = "shipped"  # or "imported"
    sha256: str = ""  # of the file it was built from
    note: str = ""
    folder: str = ""  # where the file lives (filled on load)

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.covers_from)

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.covers_to)

    def label(self) -> str:
        return f"{self.kind} {self.version} ({self.origin}; covers {self.covers_from} to {self.covers_to})"

    def load(self) -> pd.DataFrame:
        return _read(str(Path(self.folder) / self.file))


@functools.lru_cache(maxsize=32)
def _read(path: str) -> pd.DataFrame:
    return _ipc(path).to_pandas()


def _manifest(folder: Path, origin: str) -> list[Table]:
    path = folder / MANIFEST
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["tables"]
    except (OSError, ValueError, KeyError) as exc:
        raise RefDataError(f"{path}: unreadable reference manifest ({exc})") from None
    fields = set(Table.__dataclass_fields__)
    return [Table(**{**{k: v for k, v in e.items() if k in fields}, "origin": origin, "folder": str(folder)})
            for e in entries]


def _ndc_table() -> list[Table]:
    """The botulinum-toxin NDC table NDC-001 reads (``schemas/data/toxin_ndc.csv``, schemas/ndc.py), listed like
    the others: its version, source and dates of service come from the file's own header."""
    t = ndc.toxin_ndc_table()
    if not (t.covers_from and t.covers_to):
        return []
    return [Table("ndc", t.version, t.source, t.covers_from, t.covers_to, ndc.TABLE, len(t.products), "shipped",
                  t.sha256, "botulinum-toxin products only: an NDC not listed is not judged", str(ndc.data_folder()))]


def tables(user_dir: Path | None = None) -> list[Table]:
    """Every table, in precedence order per kind: imported before shipped, newest coverage first."""
    found = _manifest(SHIPPED_DIR, "shipped") + _ndc_table()
    if user_dir is not None and Path(user_dir).is_dir():
        found += _manifest(Path(user_dir), "imported")
    return sorted(found, key=lambda t: (t.kind, t.origin != "imported", -t.start.value, t.version))


def of_kind(kind: str, user_dir: Path | None = None) -> list[Table]:
    return [t for t in tables(user_dir) if t.kind == kind]


def table_per_date(dates: pd.Series, candidates: list[Table], nearest: bool = False) -> np.ndarray:
    """Per date, the position in ``candidates`` of the table covering it (-1: none). With ``nearest``, a date no
    table covers takes the newest table that starts before it, else the oldest (the NCCI edits: the quarter in
    force is the best knowledge there is; the Summary says so)."""
    at, distinct = pd.factorize(pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]"))  # NaT: -1
    per_date = _table_per_distinct_date(np.asarray(distinct, dtype="datetime64[ns]"), candidates, nearest)
    return np.append(per_date, np.int64(-1))[at]  # each distinct date decided once (a file has a few hundred)


def _table_per_distinct_date(d: np.ndarray, candidates: list[Table], nearest: bool) -> np.ndarray:
    out = np.full(len(d), -1, dtype=np.int64)
    for k in range(len(candidates) - 1, -1, -1):  # the first candidate wins: assign it last
        t = candidates[k]
        out[(d >= t.start.to_datetime64()) & (d <= t.end.to_datetime64())] = k
    if nearest and candidates:
        free = (out < 0) & ~np.isnat(d)
        if free.any():
            by_start = sorted(range(len(candidates)), key=lambda k: candidates[k].start)
            pick = np.full(free.sum(), by_start[0], dtype=np.int64)
            for k in by_start:  # later starts overwrite: the newest table that starts on or before the date
                pick[d[free] >= candidates[k].start.to_datetime64()] = k
            out[free] = pick
    return out


def bracket_per_date(dates: pd.Series, candidates: list[Table]) -> tuple[np.ndarray, np.ndarray]:
    """Per date that no table covers but that lies between two of them (a release not shipped, say ICD-10-CM
    FY2024 between FY2023 and FY2025): the positions in ``candidates`` of the table that ends last before it and
    of the one that starts first after it; -1 and -1 for every other date (covered, before or after them all,
    NaT). On a tie the first candidate (an imported table before a shipped one) is taken."""
    at, distinct = pd.factorize(pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]"))
    d = np.asarray(distinct, dtype="datetime64[ns]")
    before, after = _bracket_distinct_dates(d, candidates, _table_per_distinct_date(d, candidates, False))
    return np.append(before, np.int64(-1))[at], np.append(after, np.int64(-1))[at]


def _bracket_distinct_dates(d: np.ndarray, candidates: list[Table], covered: np.ndarray) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    before, after = np.full(len(d), -1, dtype=np.int64), np.full(len(d), -1, dtype=np.int64)
    best_end = np.full(len(d), np.datetime64("NaT", "ns"))
    best_start = np.full(len(d), np.datetime64("NaT", "ns"))
    for k, t in enumerate(candidates):
        end, start = t.end.to_datetime64(), t.start.to_datetime64()
        later = (end < d) & (np.isnat(best_end) | (end > best_end))
        before[later], best_end[later] = k, end
        sooner = (start > d) & (np.isnat(best_start) | (start < best_start))
        after[sooner], best_start[sooner] = k, start
    gap = (covered < 0) & (before >= 0) & (after >= 0)
    return np.where(gap, before, -1), np.where(gap, after, -1)


def gap_dates(earlier: Table, later: Table) -> str:
    """The dates of service between two tables, as the Summary shows them."""
    first = (earlier.end + pd.Timedelta(days=1)).date().isoformat()
    last = (later.start - pd.Timedelta(days=1)).date().isoformat()
    return f"{first} to {last}"


# --- importers: parse an official file into the table's columns, refusing a file that is not what it claims ----

@dataclass(frozen=True)
class Importer:
    """How one kind of file is read: ``parse(path) -> frame`` and the coverage a version spans by default."""

    kind: str
    what: str  # the official file, as a user knows it
    parse: Callable[[Path], pd.DataFrame]
    span: str  # "quarter", "fiscal_year", "year" or "open"
    source: str


IMPORTERS: dict[str, Importer] = {}


def register_importer(kind: str, what: str, parse: Callable[[Path], pd.DataFrame], span: str, source: str) -> None:
    """Add an importer (a kind of official file): ``parse`` returns the table or raises RefDataError."""
    IMPORTERS[kind] = Importer(kind, what, parse, span, source)


def _text_rows(path: Path) -> list[list[str]]:
    """Rows of a CSV, tab-separated text or spreadsheet, every cell as stripped text. A file that is none of these
    (a PDF, an image, random bytes, a damaged spreadsheet) is refused in one line; old-Mac CR-only line ends and
    Windows-1252 / Latin-1 text (CMS's ASP files) are read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RefDataError(f"{path.name}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            _refuse(path, "a damaged gzip file")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xls", ".xlsm") or raw[:4] in (b"PK\x03\x04", b"\xd0\xcf\x11\xe0"):
        if raw[:2] == b"PK" and b"xl/" not in raw[:65536] and suffix not in (".xlsx", ".xlsm"):
            _refuse(path, "a zip archive; unzip it and import the file inside")
        try:
            frame = pd.read_excel(io.BytesIO(raw), header=None, dtype=str, engine="calamine")
        except Exception as exc:  # noqa: BLE001 - any reader failure is "not a readable spreadsheet"
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RefDataError(f"{path.name}: not a readable spreadsheet ({why})") from None
        return [["" if pd.isna(v) else str(v).strip() for v in row] for row in frame.itertuples(index=False)]
    if raw[:5] == b"%PDF-":
        _refuse(path, "a PDF document, not a data file: download the table as CSV, TXT or XLSX")
    if not raw.strip():
        _refuse(path, "an empty file")
    head = raw[:65536]
    control = sum(head.count(bytes([b])) for b in range(32) if b not in (9, 10, 13))
    if b"\x00" in head or control > len(head) / 100:
        _refuse(path, "not a text file or spreadsheet (binary content)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # CMS's ASP crosswalk is Windows-1252 / Latin-1
    if "\r" in text:  # Windows CRLF, or old-Mac CR-only line ends
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    sample = text[:20000]
    delim = "\t" if sample.count("\t") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    try:
        return [[c.strip() for c in row] for row in reader]
    except csv.Error as exc:
        raise RefDataError(f"{path.name}: not a readable CSV or text table (line {reader.line_num}: {exc})") from None


def _refuse(path: Path, message: str) -> None:
    raise RefDataError(f"{path.name}: {message}")


def _header_at(rows: list[list[str]], *needles: str, limit: int = 40) -> int:
    """The first row (of the first ``limit``) whose cells contain every needle (case-insensitive), or -1."""
    for i, row in enumerate(rows[:limit]):
        joined = " | ".join(row).lower()
        if all(n in joined for n in needles):
            return i
    return -1


def _header(rows: list[list[str]], locate: Callable[[list[str]], tuple[int, ...] | None],
            limit: int = 40) -> tuple[int, tuple[int, ...]]:
    """The first row (of the first ``limit``) in which ``locate`` finds every column it needs, and those columns'
    positions; (-1, ()) if none. A title or notice line above the header that names the table is passed over."""
    for i, row in enumerate(rows[:limit]):
        found = locate(row)
        if found is not None and min(found) >= 0:
            return i, found
    return -1, ()


def _column(header: list[str], *needles: str) -> int:
    for i, cell in enumerate(header):
        if all(n in cell.lower() for n in needles):
            return i
    return -1


def _first_bad(path: Path, what: str, rows: list[int], header: list[str],
               checks: list[tuple[int, np.ndarray, str]], values: dict[int, list[str]]) -> None:
    """Refuse ``path`` at its first bad cell: the file row, the column (as the header names it), the value and
    what it should be. ``checks``: (column, bad per body row, what the column holds); ``rows``: the file row
    (1-based) of each body row."""
    firsts = [(int(np.flatnonzero(bad)[0]), k) for k, (_, bad, _) in enumerate(checks) if bad.any()]
    if not firsts:
        return
    at, k = min(firsts)
    col, _, wants = checks[k]
    _refuse(path, f"not {what} (row {rows[at]}, column {header[col]!r}: {values[col][at]!r} is not {wants})")


MUE_MIN_ROWS = 5_000  # the practitioner table holds about 15,000 codes (2026 Q2: 15,095)


def _mue_columns(header: list[str]) -> tuple[int, int, int] | None:
    low = [c.lower() for c in header]
    code = next((i for i, c in enumerate(low) if "code" in c), -1)
    value = _column(header, "mue", "value")
    value = value if value >= 0 else next((i for i, c in enumerate(low) if c == "mue"), -1)
    mai = _column(header, "adjudication")
    mai = mai if mai >= 0 else next((i for i, c in enumerate(low) if c == "mai"), -1)
    return code, value, mai


def _rows_below_header(path: Path, find_columns, what: str, needs: str, whole: bool) -> tuple[list, tuple, list]:
    """The header row a table's ``find_columns`` recognises (refused as not ``what`` when none in the first 40
    rows), its columns, and the (sheet row number, row) of each row below it with a code in its first column
    found; ``whole``: only rows that reach every column (else the missing cells read as blank)."""
    rows = _text_rows(path)
    at, cols = _header(rows, find_columns)
    if at < 0:
        _refuse(path, f"not {what} (needs {needs} in a header row within its first 40 rows)")
    code, width = cols[0], max(cols) if whole else cols[0]
    picked = [(at + 2 + i, r) for i, r in enumerate(rows[at + 1:]) if len(r) > width and r[code]]
    if not picked:
        _refuse(path, f"not {what} (no rows below the header)")
    return rows[at], cols, picked


def parse_mue(path: Path) -> pd.DataFrame:
    """CMS "Practitioner Services MUE Table" (CSV or spreadsheet; header "HCPCS/CPT Code", "... MUE Values",
    "MUE Adjudication Indicator", below any title and notice lines), or the shipped form code,mue,mai."""
    header, cols, picked = _rows_below_header(path, _mue_columns, "an NCCI MUE table", "the code, MUE value and MUE "
                                              "adjudication indicator columns", whole=False)
    code, value, mai = cols
    cell = {c: [r[c] if len(r) > c else "" for _, r in picked] for c in (code, value, mai)}
    frame = pd.DataFrame({"code": [v.upper() for v in cell[code]], "mue": cell[value],
                          "mai": [v[:1] for v in cell[mai]]})
    _first_bad(path, "an NCCI MUE table", [n for n, _ in picked], header, [
        (code, ~frame["code"].str.fullmatch(CODE.pattern).to_numpy(bool), "a 5-character HCPCS/CPT code"),
        (value, ~frame["mue"].str.fullmatch(r"\d+").to_numpy(bool), "a whole number of units"),
        (mai, ~frame["mai"].isin(["1", "2", "3"]).to_numpy(bool), "an adjudication indicator 1, 2 or 3"),
    ], cell)
    frame = frame.drop_duplicates("code", keep="last")
    return pd.DataFrame({"code": frame["code"].to_numpy(), "mue": frame["mue"].astype("int32").to_numpy(),
                         "mai": frame["mai"].astype("int8").to_numpy()})


_YMD = re.compile(r"\d{8}")


def _ymd(value: str) -> int:
    """YYYYMMDD as an int; "*" or blank (no deletion) as 99991231."""
    value = value.strip()
    return int(value) if _YMD.fullmatch(value) else 99991231


def parse_ptp(path: Path) -> pd.DataFrame:
    """One CMS "Practitioner PTP Edits" file (tab-separated text, CSV or spreadsheet: column 1, column 2, prior-to-1996
    flag, effective date, deletion date, modifier indicator, rationale), or the form column1,column2,
    modifier_indicator of the shipped extract (no dates)."""
    rows = _text_rows(path)
    numbered = [(n, r) for n, r in enumerate(rows, 1) if len(r) >= 3 and CODE.fullmatch(r[0].upper() or "-")
                and CODE.fullmatch(r[1].upper() or "-")]
    data = [r for _, r in numbered]
    if not data or len(data) < 0.5 * sum(1 for r in rows if any(r)) - 20:
        _refuse(path, "not an NCCI PTP edit file (rows must start with two procedure codes)")
    dated = sum(1 for r in data[:200] if len(r) >= 6 and _YMD.fullmatch(r[3])) > len(data[:200]) / 2
    at = 5 if dated else 2  # the official layout: c1, c2, prior flag, effective, deletion, modifier, rationale
    bad = next(((n, r) for n, r in numbered if len(r) <= at or r[at] not in ("0", "1", "9")), None)
    if bad is not None:
        n, r = bad
        _refuse(path, f"not an NCCI PTP edit file (row {n}, column {at + 1} (modifier indicator): "
                      f"{r[at] if len(r) > at else ''!r} is not 0, 1 or 9)")
    ok = data
    if dated:
        eff = [int(r[3]) if _YMD.fullmatch(r[3]) else 0 for r in ok]
        dele = [_ymd(r[4]) for r in ok]
        ind = [r[5] for r in ok]
    else:
        eff, dele, ind = [0] * len(data), [99991231] * len(data), [r[2] for r in data]
    frame = pd.DataFrame({"column1": [r[0].upper() for r in ok], "column2": [r[1].upper() for r in ok],
                          "indicator": np.array(ind, dtype=np.int8), "effective": np.array(eff, dtype=np.int32),
                          "deleted": np.array(dele, dtype=np.int32)})
    return frame[frame["indicator"] != 9].reset_index(drop=True)  # 9: the edit does not apply


def parse_icd10cm(path: Path) -> pd.DataFrame:
    """CDC/CMS ICD-10-CM order file (``icd10cm-order-*.txt``: order number, code, billable flag 0/1, titles in
    fixed columns): the billable codes, without the dot."""
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                code, flag = line[6:13].strip(), line[14:15]
                if not (line[:5].isdigit() and ICD.fullmatch(code) and flag in ("0", "1")):
                    _refuse(path, f"not an ICD-10-CM order file (line {n}: expected order number, code, 0/1 flag)")
                if flag == "1":
                    rows.append(code)
    except OSError as exc:
        raise RefDataError(f"{path.name}: cannot read ({exc.strerror})") from None
    if len(rows) < 1000:
        _refuse(path, f"not a full ICD-10-CM order file ({len(rows)} billable codes)")
    return pd.DataFrame({"code": sorted(set(rows))})


def _date_cell(value: str) -> pd.Timestamp:
    value = value.strip()
    if not value:
        return pd.NaT
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y"):
        try:
            return pd.Timestamp(dt.datetime.strptime(value, fmt))
        except ValueError:
            continue
    return pd.NaT


def parse_hcpcs(path: Path) -> pd.DataFrame:
    """CMS alpha-numeric HCPCS annual file (``HCPC20xx_CONTR_ANWEB`` as CSV or spreadsheet; columns HCPC,
    ACT_EFF_DT or ADD_DT, TERM_DT): Level II codes with the dates they are active."""
    rows = _text_rows(path)
    at = _header_at(rows, "hcpc", "term_dt")
    if at < 0:
        _refuse(path, "not a CMS HCPCS annual file (no header with HCPC and TERM_DT in its first 40 rows)")
    header = [c.upper() for c in rows[at]]
    code = header.index("HCPC") if "HCPC" in header else -1
    start = header.index("ADD_DT") if "ADD_DT" in header else (
        header.index("ACT_EFF_DT") if "ACT_EFF_DT" in header else -1)
    end = header.index("TERM_DT")
    if code < 0 or start < 0:
        _refuse(path, "not a CMS HCPCS annual file (needs the HCPC, ADD_DT or ACT_EFF_DT, and TERM_DT columns)")
    numbered = [(at + 2 + i, r) for i, r in enumerate(rows[at + 1:]) if len(r) > max(code, start, end) and r[code]]
    body = [r for _, r in numbered]
    codes = [r[code].upper() for r in body]
    if not body:
        _refuse(path, "not a CMS HCPCS annual file (no codes below the header)")
    bad = next((k for k, c in enumerate(codes) if not (CODE.fullmatch(c) or re.fullmatch(r"[A-Z0-9]{2}", c))), None)
    if bad is not None:
        _refuse(path, f"not a CMS HCPCS annual file (row {numbered[bad][0]}, column {rows[at][code]!r}: "
                      f"{body[bad][code]!r} is not a 5-character code or a 2-character modifier)")
    frame = pd.DataFrame({"code": codes, "active_from": [_date_cell(r[start]) for r in body],
                          "active_to": [_date_cell(r[end]) for r in body]})
    return frame.drop_duplicates("code", keep="last").reset_index(drop=True)


_ASP_CODE = re.compile(r"_?(\d{4}_)?(hcpcs[ _]?)?code", re.IGNORECASE)
ASP_MIN_ROWS = 1_000  # the quarterly crosswalk lists several thousand NDCs


def _asp_columns(header: list[str]) -> tuple[int, int, int] | None:
    """The HCPCS code column (``_2026_CODE`` in the CMS file, or "HCPCS Code"), the 11-digit NDC column (``NDC2``
    or "11-Digit NDC ...") and the drug name column."""
    low = [c.strip().lower() for c in header]
    code = next((i for i, c in enumerate(low) if _ASP_CODE.fullmatch(c.replace("/", "_"))), -1)
    ndc_col = next((i for i, c in enumerate(low) if c in ("ndc2", "ndc") or c.startswith("11-digit")), -1)
    drug = next((i for i, c in enumerate(low) if c.startswith("drug name")), -1)
    return code, ndc_col, drug


def parse_asp_crosswalk(path: Path) -> pd.DataFrame:
    """CMS "ASP NDC-HCPCS Crosswalk" (quarterly; CSV or spreadsheet, title lines above the header ``_2026_CODE``,
    Short Description, LABELER NAME, NDC2, Drug Name, HCPCS dosage, PKG SIZE, PKG QTY, BILLUNITS, BILLUNITSPKG):
    one row per labeler-product (``LLLLL-PPPP``) with its drug name and the HCPCS code(s) it is billed on. Rows
    whose ID is not an 11-digit NDC (CMS lists a few alternate IDs) are left out."""
    header, cols, picked = _rows_below_header(path, _asp_columns, "a CMS ASP NDC-HCPCS crosswalk",
                                              "the HCPCS code (_YYYY_CODE), NDC2 and Drug Name columns", whole=True)
    code, ndc_col, drug = cols
    cell = {c: [r[c] for _, r in picked] for c in cols}
    codes = pd.Series([v.upper() for v in cell[code]], dtype=object)
    keys = pd.Series([ndc.labeler_product(v) for v in cell[ndc_col]], dtype=object)
    _first_bad(path, "a CMS ASP NDC-HCPCS crosswalk", [n for n, _ in picked], header, [
        (code, ~codes.str.fullmatch(CODE.pattern).to_numpy(bool), "a 5-character HCPCS code")], cell)
    if keys.notna().sum() < 0.5 * len(keys):
        first = int(np.flatnonzero(keys.isna().to_numpy())[0])
        _refuse(path, f"not a CMS ASP NDC-HCPCS crosswalk (most rows have no 11-digit NDC; row {picked[first][0]}, "
                      f"column {header[ndc_col]!r}: {cell[ndc_col][first]!r})")
    frame = pd.DataFrame({"labeler_product": keys, "hcpcs": codes, "brand": cell[drug]})[keys.notna().to_numpy()]
    grouped = frame.groupby("labeler_product", sort=True)
    return pd.DataFrame({"labeler_product": grouped.size().index.to_numpy(dtype=object),
                         "brand": grouped["brand"].first().to_numpy(dtype=object),
                         "hcpcs": grouped["hcpcs"].agg(lambda c: " ".join(sorted(set(c)))).to_numpy(dtype=object),
                         "cosmetic_only": np.zeros(grouped.ngroups, dtype=bool)})


register_importer("mue", "CMS NCCI Practitioner Services MUE Table (quarterly)", parse_mue, "quarter",
                  "CMS NCCI Medically Unlikely Edits, Practitioner Services MUE Table")
register_importer("ptp", "CMS NCCI Practitioner PTP Edits (quarterly; import the four files together)", parse_ptp,
                  "quarter", "CMS NCCI Procedure-to-Procedure Edits, Practitioner")
register_importer("icd10cm", "CDC/CMS ICD-10-CM order file (icd10cm-order-*.txt)", parse_icd10cm, "fiscal_year",
                  "CDC NCHS / CMS ICD-10-CM code descriptions in tabular order")
register_importer("hcpcs", "CMS alpha-numeric HCPCS annual file (HCPC20xx_CONTR_ANWEB)", parse_hcpcs, "year",
                  "CMS Alpha-Numeric HCPCS File")
register_importer("ndc", "CMS ASP NDC-HCPCS crosswalk (quarterly)", parse_asp_crosswalk, "quarter",
                  "CMS ASP NDC-HCPCS Crosswalk")


def default_span(kind: str, start: dt.date) -> dt.date:
    """The last date a table of ``kind`` starting on ``start`` covers by default."""
    span = IMPORTERS[kind].span
    if span == "quarter":
        first = dt.date(start.year, 3 * ((start.month - 1) // 3) + 1, 1)
        nxt = dt.date(first.year + (first.month > 9), (first.month + 2) % 12 + 1, 1)
        return nxt - dt.timedelta(days=1)
    if span == "fiscal_year":
        return dt.date(start.year + (start.month >= 10), 9, 30)
    if span == "year":
        return dt.date(start.year, 12, 31)
    return dt.date(2099, 12, 31)


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


# A table that stands alone for its dates must be whole: a code it lacks would pass unchecked (silently). Tables
# merged with the shipped ones (hcpcs, ndc) keep the shipped knowledge for what a file lacks, so need no minimum.
MIN_ROWS = {
    "mue": (MUE_MIN_ROWS, "code", "the Practitioner Services MUE Table holds about 15,000"),
    "ptp": (1_000_000, "pair", "a quarter's practitioner PTP files (import all four together) hold about 2 million"),
}
PTP_FILES = 4  # CMS splits a quarter's practitioner PTP edits over ccipra-v<version>-f1 ... -f4


def _too_small(kind: str, files: list[Path], rows: int) -> str:
    least, unit, full = MIN_ROWS[kind]
    names = ", ".join(Path(f).name for f in files)
    return (f"{names}: only {rows:,} {kind.upper()} {unit}{'s' if rows != 1 else ''}, too few for the official "
            f"table ({full}; refused below {least:,}): every {unit} it lacks would pass unchecked. Import the "
            "whole table, or add --partial to load a deliberate extract")


def _missing_ptp_files(files: list[Path]) -> str:
    """A PTP import named like CMS's split files (``ccipra-v323r0-f1.txt``) must hold f1 to f4 of one version."""
    parts = [re.search(r"^(.*)-f(\d+)\.[^.]+$", Path(f).name, re.IGNORECASE) for f in files]
    if not parts or not all(parts):
        return ""
    have = {int(m.group(2)) for m in parts}
    want = set(range(1, max(PTP_FILES, max(have)) + 1))
    if have >= want:
        return ""
    missing = ", ".join(f"f{k}" for k in sorted(want - have))
    return (f"{', '.join(Path(f).name for f in files)}: the quarter's PTP edits come in {len(want)} files and "
            f"{missing} {'is' if len(want - have) == 1 else 'are'} missing (every pair in them would pass unchecked): import them together, or add "
            "--partial")


def _shipped_rows(kind: str, known: pd.Series) -> tuple[pd.DataFrame, Table | None]:
    """The rows of the newest shipped table of ``kind`` whose code is not in ``known`` (what an imported file does
    not carry), and that table."""
    shipped = [t for t in tables() if t.kind == kind and t.origin == "shipped"]
    if not shipped:
        return pd.DataFrame(), None
    newest = max(shipped, key=lambda t: (t.end, t.start))
    if kind == "ndc":
        frame = ndc.toxin_ndc_table().products.reset_index()[["labeler_product", "brand", "hcpcs", "cosmetic_only"]]
        key = "labeler_product"
    else:
        frame, key = newest.load(), "code"
    return frame[~frame[key].isin(set(known))].reset_index(drop=True), newest


def _merged(kind: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """An imported HCPCS or NDC table with the shipped entries the official file does not carry, and the note
    saying so. The HCPCS file holds Level II codes and modifiers only: CPT codes, CPT modifiers (25, 50, 59 ...)
    and CPT deletions (64613) stay known from the shipped table. The ASP crosswalk lists billable products only:
    the cosmetic-only toxin products (never billed) stay known from the shipped NDC table."""
    key = "labeler_product" if kind == "ndc" else "code"
    extra, source = _shipped_rows(kind, frame[key])
    if source is None or not len(extra):
        return frame, ""
    merged = pd.concat([frame, extra.astype(frame.dtypes.to_dict())], ignore_index=True)
    what = {"procedures": "CPT codes and deletions", "modifiers": "CPT modifiers and others",
            "ndc": "cosmetic-only and other products"}[kind]
    return merged, (f"merged with the shipped {kind} table {source.version} for the {len(extra):,} entries the "
                    f"file does not carry ({what})")


def would_replace(kind: str, folder: Path, version: str) -> list[Table]:
    """The tables already in ``folder`` that importing ``kind`` as ``version`` would overwrite."""
    names = {f"{k}-{_slug(version)}.arrow" for k in (("procedures", "modifiers") if kind == "hcpcs" else (kind,))}
    return [t for t in _manifest(Path(folder), "imported") if t.file in names]


def _slug(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", version).strip("-").lower()


def _parse(kind: str, path: Path) -> pd.DataFrame:
    """``IMPORTERS[kind].parse``; any reader failure on a user's file is a one-line refusal, never a traceback."""
    try:
        return IMPORTERS[kind].parse(path)
    except RefDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file no check foresaw: still one line naming it
        raise RefDataError(f"{path.name}: not a readable {IMPORTERS[kind].what} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None


def build_table(kind: str, files: list[Path], folder: Path, version: str, covers_from: dt.date,
                covers_to: dt.date | None = None, source: str | None = None, note: str = "",
                origin: str = "imported", partial: bool = False) -> Table:
    """``build_tables``' first table (the procedures table of an HCPCS file)."""
    return build_tables(kind, files, folder, version, covers_from, covers_to, source, note, origin, partial)[0]


def build_tables(kind: str, files: list[Path], folder: Path, version: str, covers_from: dt.date,
                 covers_to: dt.date | None = None, source: str | None = None, note: str = "",
                 origin: str = "imported", partial: bool = False) -> list[Table]:
    """Parse ``files`` as ``kind``, write the compact table(s) into ``folder`` and record them in its manifest (an
    HCPCS file gives two: procedures and modifiers). ``partial``: accept an MUE or PTP table smaller than the
    official one (a test, a deliberate extract)."""
    if kind not in IMPORTERS:
        raise RefDataError(f"unknown reference kind {kind!r}: one of {', '.join(sorted(IMPORTERS))}")
    covers_to = covers_to or default_span(kind, covers_from)
    if covers_to < covers_from:
        raise RefDataError(f"coverage ends ({covers_to}) before it starts ({covers_from})")
    parsed = [_parse(kind, Path(f)) for f in files]
    frame = pd.concat(parsed, ignore_index=True) if len(parsed) > 1 else parsed[0]
    if kind == "ptp" and not partial and (missing := _missing_ptp_files(files)):
        raise RefDataError(missing)
    if kind in MIN_ROWS and not partial and len(frame) < MIN_ROWS[kind][0]:
        raise RefDataError(_too_small(kind, files, len(frame)))
    if partial and kind in MIN_ROWS:
        note = "; ".join(x for x in (note, "partial table (--partial): codes it lacks are not checked for its "
                                           "dates") if x)
    tables_out: list[tuple[str, pd.DataFrame]] = []
    if kind == "hcpcs":  # one official file holds the Level II codes and the modifiers
        two = frame["code"].str.len() == 2
        tables_out = [("procedures", frame[~two].reset_index(drop=True)),
                      ("modifiers", frame[two].reset_index(drop=True))]
    else:
        tables_out = [(kind, frame)]
    folder.mkdir(parents=True, exist_ok=True)
    slug = _slug(version)
    digest = _sha256([Path(f) for f in files])
    made = []
    for table_kind, table in tables_out:
        table_note = note
        if origin == "imported" and table_kind in ("procedures", "modifiers", "ndc"):
            table, merge_note = _merged(table_kind, table)
            table_note = "; ".join(x for x in (note, merge_note) if x)
        name = f"{table_kind}-{slug}.arrow"
        _write(table_kind, table, folder / name)
        made.append(Table(table_kind, version, source or IMPORTERS[kind].source, covers_from.isoformat(),
                          covers_to.isoformat(), name, len(table), origin, digest, table_note, str(folder)))
    _record(folder, made)
    _read.cache_clear()
    _pairs.cache_clear()
    return made


def _write(kind: str, table: pd.DataFrame, path: Path) -> None:
    """A table as an Arrow IPC file, zstd-compressed (read back without the parquet/dataset machinery)."""
    if kind == "ptp":  # 2 million pairs: sorted integer keys over a code vocabulary, stored as their differences
        vocab = pd.Index(sorted(set(table["column1"]) | set(table["column2"])))
        key = vocab.get_indexer(table["column1"]).astype(np.int64) * len(vocab) + vocab.get_indexer(table["column2"])
        order = np.argsort(key, kind="stable")
        frame = pa.table({"key_step": np.diff(key[order], prepend=0).astype(np.uint32),
                          "indicator": table["indicator"].to_numpy()[order],
                          "effective": table["effective"].to_numpy()[order],
                          "deleted": table["deleted"].to_numpy()[order]})
        frame = frame.replace_schema_metadata({"vocabulary": "\n".join(vocab)})
    else:
        frame = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    options = pa.ipc.IpcWriteOptions(compression=pa.Codec("zstd", compression_level=19))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, frame.schema, options=options) as writer:
        writer.write_table(frame)


def _ipc(path: str) -> pa.Table:
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


@functools.lru_cache(maxsize=8)
def _pairs(path: str) -> tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = _ipc(path)
    vocab = pd.Index(t.schema.metadata[b"vocabulary"].decode().split("\n"))
    steps = t.column("key_step").to_numpy()
    # Keys below 2**32 (a vocabulary under 65,536 codes) stay 32-bit: half the memory to build and search.
    key = np.cumsum(steps, dtype=np.uint32 if len(vocab) ** 2 < 2 ** 32 else np.int64)
    return (vocab, key, *(t.column(c).to_numpy() for c in ("indicator", "effective", "deleted")))


def ptp_pairs(table: Table) -> tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A PTP table as (code vocabulary, sorted pair keys column1 * len(vocabulary) + column2 (unsigned 32-bit when
    they fit, else 64-bit: compare with keys of the same type), modifier indicator, effective and deletion dates as
    YYYYMMDD)."""
    return _pairs(str(Path(table.folder) / table.file))


def _record(folder: Path, made: list[Table]) -> None:
    path = folder / MANIFEST
    entries = json.loads(path.read_text(encoding="utf-8"))["tables"] if path.is_file() else []
    names = {t.file for t in made}
    entries = [e for e in entries if e["file"] not in names]
    keep = ("kind", "version", "source", "covers_from", "covers_to", "file", "rows", "sha256", "note")
    entries += [{k: v for k, v in asdict(t).items() if k in keep} for t in made]
    entries.sort(key=lambda e: (e["kind"], e["covers_from"], e["version"]))
    path.write_text(json.dumps({"tables": entries}, indent=1) + "\n", encoding="utf-8")


def used(dates: pd.Series, user_dir: Path | None, kinds: tuple[str, ...]) -> list[dict]:
    """What each kind of table did for these dates of service: the versions used (lines each), lines no table
    covers, and lines dated after the newest table's coverage (for the Summary and the run's record). Each
    distinct date is decided once per kind (a file has a few hundred), weighted by its lines."""
    at, distinct = pd.factorize(pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]"))  # NaT: -1
    d = np.asarray(distinct, dtype="datetime64[ns]")
    lines = np.bincount(at[at >= 0], minlength=len(d))  # lines per distinct date
    out = []
    for kind in kinds:
        candidates = of_kind(kind, user_dir)
        if not candidates:
            continue
        nearest = kind in NEAREST_KINDS
        which = _table_per_distinct_date(d, candidates, nearest)
        strict = _table_per_distinct_date(d, candidates, False) if nearest else which
        latest = max(t.end for t in candidates)
        counts = np.bincount(which[which >= 0], weights=lines[which >= 0], minlength=len(candidates))
        bracketed = []
        if kind in BRACKET_KINDS and (strict < 0).any():
            before, after = _bracket_distinct_dates(d, candidates, strict)
            gap = before >= 0
            pair = before[gap] * len(candidates) + after[gap]
            per_pair = np.bincount(pair, weights=lines[gap], minlength=len(candidates) ** 2)
            bracketed = [{"between": [candidates[p // len(candidates)].version, candidates[p % len(candidates)].version],
                          "dates": gap_dates(candidates[p // len(candidates)], candidates[p % len(candidates)]),
                          "lines": int(per_pair[p])} for p in np.flatnonzero(per_pair).tolist()]
            strict = np.where(gap, len(candidates), strict)  # judged from the two around them
        out.append({
            "kind": kind,
            "tables": [{"version": t.version, "origin": t.origin, "covers": f"{t.covers_from} to {t.covers_to}",
                        "source": t.source, "lines": int(counts[k])} for k, t in enumerate(candidates) if counts[k]],
            "uncovered_lines": int(lines[strict < 0].sum()),
            "after_coverage_lines": int(lines[d > latest.to_datetime64()].sum()),
            "latest_coverage": latest.date().isoformat(),
            "applied_outside_coverage": nearest,
            "bracketed": bracketed,
        })
    return out


# NCCI edits: a date outside every quarter is checked against the nearest one; so is an NDC (a product listing)
NEAREST_KINDS = ("mue", "ptp", "ndc")
# Code sets: a date between two releases (one not shipped) is judged from both (lookups.code_facts): a code billable
# in both was billable on it; one billable in neither and in no release never was; any other is not judged.
BRACKET_KINDS = ("icd10cm",)
