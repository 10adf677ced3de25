"""Reference tables behind the payer edits and code sets: versioned, dated, compact, with their provenance.

Each table has a kind (``mue``, ``ptp``, ``icd10cm``, ``procedures``, ``modifiers``, ``pos``, ``ndc``), a version, a source
and the dates of service it covers. The package ships one set (``pipeline/reference_data/manifest.json``); a user
loads newer official CMS files with ``claimscrub reference import KIND FILE`` into the configured
``reference_dir``. For a date of service the table used is the one whose coverage holds the date, an imported
table before a shipped one and the newest version first. A code-set date between two tables (a release not
shipped) is judged from the two around it (``bracket_per_date``). Importers parse and check a file's shape and refuse
one that is not what it claims (``RefDataError``, one line). Nothing here names a rule.
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
    """Add an importer (e.g. the ASP NDC-HCPCS crosswalk): ``parse`` returns the table or raises RefDataError."""
    IMPORTERS[kind] = Importer(kind, what, parse, span, source)


def _text_rows(path: Path) -> list[list[str]]:
    """Rows of a CSV, tab-separated text or spreadsheet, every cell as stripped text."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xls", ".xlsm"):
        try:
            frame = pd.read_excel(path, header=None, dtype=str, engine="calamine")
        except Exception as exc:  # noqa: BLE001 - any reader failure is "not a readable spreadsheet"
            raise RefDataError(f"{path.name}: not a readable spreadsheet ({type(exc).__name__})") from None
        return [["" if pd.isna(v) else str(v).strip() for v in row] for row in frame.itertuples(index=False)]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RefDataError(f"{path.name}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:2] == b"PK":
        raise RefDataError(f"{path.name}: a zip archive; unzip it and import the file inside")
    text = raw.decode("utf-8-sig", errors="replace")
    sample = text[:20000]
    delim = "\t" if sample.count("\t") > sample.count(",") else ","
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text), delimiter=delim)]


def _refuse(path: Path, message: str) -> None:
    raise RefDataError(f"{path.name}: {message}")


def _header_at(rows: list[list[str]], *needles: str, limit: int = 40) -> int:
    """The first row (of the first ``limit``) whose cells contain every needle (case-insensitive), or -1."""
    for i, row in enumerate(rows[:limit]):
        joined = " | ".join(row).lower()
        if all(n in joined for n in needles):
            return i
    return -1


def _column(header: list[str], *needles: str) -> int:
    for i, cell in enumerate(header):
        if all(n in cell.lower() for n in needles):
            return i
    return -1


def parse_mue(path: Path) -> pd.DataFrame:
    """CMS "Practitioner Services MUE Table" (CSV or spreadsheet; header "HCPCS/CPT Code", "... MUE Values",
    "MUE Adjudication Indicator"), or the shipped form code,mue,mai."""
    rows = _text_rows(path)
    at = _header_at(rows, "mue")
    if at < 0:
        _refuse(path, "not an NCCI MUE table (no header naming the MUE values in its first 40 rows)")
    header = rows[at]
    code = next((i for i, c in enumerate(header) if "code" in c.lower()), -1)
    value = _column(header, "mue", "value")
    value = value if value >= 0 else next((i for i, c in enumerate(header) if c.lower() == "mue"), -1)
    mai = _column(header, "adjudication")
    mai = mai if mai >= 0 else next((i for i, c in enumerate(header) if c.lower() == "mai"), -1)
    if min(code, value, mai) < 0:
        _refuse(path, "not an NCCI MUE table (needs the code, MUE value and MUE adjudication indicator columns)")
    body = [r for r in rows[at + 1:] if len(r) > max(code, value, mai) and r[code]]
    frame = pd.DataFrame({"code": [r[code].upper() for r in body], "mue": [r[value] for r in body],
                          "mai": [r[mai][:1] for r in body]})
    bad = ~frame["code"].str.fullmatch(CODE.pattern) | ~frame["mue"].str.fullmatch(r"\d+") | ~frame["mai"].isin(
        ["1", "2", "3"])
    if not len(frame) or bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        _refuse(path, f"not an NCCI MUE table (row {at + 2 + first}: code, MUE value or indicator unreadable)"
                if len(frame) else "no MUE rows below the header")
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
    data = [r for r in rows if len(r) >= 3 and CODE.fullmatch(r[0].upper() or "-") and CODE.fullmatch(
        r[1].upper() or "-")]
    if not data or len(data) < 0.5 * sum(1 for r in rows if any(r)) - 20:
        _refuse(path, "not an NCCI PTP edit file (rows must start with two procedure codes)")
    dated = sum(1 for r in data[:200] if len(r) >= 6 and _YMD.fullmatch(r[3])) > len(data[:200]) / 2
    if dated:  # the official layout: c1, c2, prior flag, effective, deletion, modifier, rationale
        ok = [r for r in data if len(r) >= 6 and r[5] in ("0", "1", "9")]
        if len(ok) < len(data):
            _refuse(path, "not an NCCI PTP edit file (a row lacks its modifier indicator 0, 1 or 9)")
        eff = [int(r[3]) if _YMD.fullmatch(r[3]) else 0 for r in ok]
        dele = [_ymd(r[4]) for r in ok]
        ind = [r[5] for r in ok]
    else:
        if not all(r[2] in ("0", "1", "9") for r in data):
            _refuse(path, "not an NCCI PTP edit file (third column must be the modifier indicator 0, 1 or 9)")
        ok, eff, dele, ind = data, [0] * len(data), [99991231] * len(data), [r[2] for r in data]
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
    body = [r for r in rows[at + 1:] if len(r) > max(code, start, end) and r[code]]
    codes = [r[code].upper() for r in body]
    if not body or not all(CODE.fullmatch(c) or re.fullmatch(r"[A-Z0-9]{2}", c) for c in codes):
        _refuse(path, "not a CMS HCPCS annual file (HCPC values must be 5-character codes or 2-character modifiers)")
    frame = pd.DataFrame({"code": codes, "active_from": [_date_cell(r[start]) for r in body],
                          "active_to": [_date_cell(r[end]) for r in body]})
    return frame.drop_duplicates("code", keep="last").reset_index(drop=True)


register_importer("mue", "CMS NCCI Practitioner Services MUE Table (quarterly)", parse_mue, "quarter",
                  "CMS NCCI Medically Unlikely Edits, Practitioner Services MUE Table")
register_importer("ptp", "CMS NCCI Practitioner PTP Edits (quarterly; import the four files together)", parse_ptp,
                  "quarter", "CMS NCCI Procedure-to-Procedure Edits, Practitioner")
register_importer("icd10cm", "CDC/CMS ICD-10-CM order file (icd10cm-order-*.txt)", parse_icd10cm, "fiscal_year",
                  "CDC NCHS / CMS ICD-10-CM code descriptions in tabular order")
register_importer("hcpcs", "CMS alpha-numeric HCPCS annual file (HCPC20xx_CONTR_ANWEB)", parse_hcpcs, "year",
                  "CMS Alpha-Numeric HCPCS File")


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


def build_table(kind: str, files: list[Path], folder: Path, version: str, covers_from: dt.date,
                covers_to: dt.date | None = None, source: str | None = None, note: str = "",
                origin: str = "imported") -> Table:
    """Parse ``files`` as ``kind``, write the compact table into ``folder`` and record it in its manifest."""
    if kind not in IMPORTERS:
        raise RefDataError(f"unknown reference kind {kind!r}: one of {', '.join(sorted(IMPORTERS))}")
    covers_to = covers_to or default_span(kind, covers_from)
    if covers_to < covers_from:
        raise RefDataError(f"coverage ends ({covers_to}) before it starts ({covers_from})")
    parsed = [IMPORTERS[kind].parse(Path(f)) for f in files]
    frame = pd.concat(parsed, ignore_index=True) if len(parsed) > 1 else parsed[0]
    tables_out: list[tuple[str, pd.DataFrame]] = []
    if kind == "hcpcs":  # one official file holds the Level II codes and the modifiers
        two = frame["code"].str.len() == 2
        tables_out = [("procedures", frame[~two].reset_index(drop=True)),
                      ("modifiers", frame[two].reset_index(drop=True))]
    else:
        tables_out = [(kind, frame)]
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", version).strip("-").lower()
    digest = _sha256([Path(f) for f in files])
    made = []
    for table_kind, table in tables_out:
        name = f"{table_kind}-{slug}.arrow"
        _write(table_kind, table, folder / name)
        made.append(Table(table_kind, version, source or IMPORTERS[kind].source, covers_from.isoformat(),
                          covers_to.isoformat(), name, len(table), origin, digest, note, str(folder)))
    _record(folder, made)
    _read.cache_clear()
    _pairs.cache_clear()
    return made[0]


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
