"""The flagged-exceptions workbook (openpyxl, write-only streaming) and the findings CSV.

All output I/O lives here. Text from the input is always written as text (never a formula),
control characters are replaced, and the file is written to a temporary name in the target folder
and moved into place, so a reviewer never opens a half-written workbook.
"""

import datetime as dt
import errno
import hashlib
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from copy import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree
from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from pipeline.errors import OutputError
from pipeline.xlsxrows import Column, Link, stream_rows
from schemas import columns as C
from schemas.rules import CATALOG_VERSION, RULES, SEVERITY_RANK, Severity

SHEETS = ("Summary", "Exceptions", "Claims", "Ingest Issues", "Rules")
EXCEPTION_HEADERS = (
    "Exception ID", "Claim ID", "Line", "Source Row", "Patient ID", "Service Date", "Payer", "Rule",
    "Severity", "Field", "Value", "Message", "Suggested Fix", "Status", "Reviewer", "Notes",
)
STATUSES = ("Open", "Fixed", "Not an issue", "Payer confirmed", "Appealed")
FILLS = {
    "error": PatternFill("solid", fgColor="F8CBAD"),
    "warning": PatternFill("solid", fgColor="FFE699"),
    "info": PatternFill("solid", fgColor="DDEBF7"),
}
HIGHLIGHT = PatternFill("solid", fgColor="FFC7CE")
HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
HEADER_FONT = Font(bold=True, color="FFFFFF")
DATE_FORMAT = "yyyy-mm-dd"
MONEY_FORMAT = '"$"#,##0.00'
MAX_CELL = 32767
# Not allowed in an XML 1.0 text (lxml refuses them): control characters and U+FFFE/U+FFFF. Literal
# characters for the last two, so that Arrow's regex engine (no \u escapes) reads the pattern too.
_ILLEGAL = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\ufffe\uffff]")
_ERROR_VALUES = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")  # text starting so is written with a quote prefix
_FORMULA_START_RE = "[" + re.escape("".join(_FORMULA_START)) + "]"
WIDTHS = {"Exception ID": 14, "Claim ID": 14, "Line": 6, "Source Row": 10, "Patient ID": 14,
          "Service Date": 12, "Payer": 14, "Rule": 10, "Severity": 9, "Field": 16, "Value": 30,
          "Message": 70, "Suggested Fix": 50, "Status": 16, "Reviewer": 14, "Notes": 30}
FIELD_TO_COLUMN = {"dx": C.DX[0], "modifiers": C.MODIFIERS[0], "documentation": C.DOC_ONSET}


@dataclass
class ScrubSummary:
    """What the Summary sheet and the console show for one file (no PHI)."""

    file: str
    sha256: str
    rows_read: int
    claims: int
    g5133_claims: int
    clean_claims: int
    claims_with_errors: int
    claims_with_warnings: int
    at_risk: float
    by_rule: dict[str, int]
    by_payer: dict[str, int]
    not_checked: dict[str, str]
    as_of: str
    run_id: str
    version: str
    payer_profiles: dict[str, str] = field(default_factory=dict)  # payer name -> profile ("" = none matched)


def exception_id(claim: object, line: object, rule: str, value: object) -> str:
    """Stable id of one problem: the same claim, line, rule and value give the same id in every run."""
    key = "\x1f".join("" if pd.isna(x) else str(x) for x in (claim, line, rule, value))
    return hashlib.sha256(key.encode()).hexdigest()[:12].upper()


def summarize(file: str, sha256: str, rows_read: int, lines: pd.DataFrame, findings: pd.DataFrame,
              claims: pd.DataFrame | None, not_checked: dict[str, str], as_of: str, run_id: str,
              version: str) -> ScrubSummary:
    """Counts for one scrubbed file. The claim facts (``claims``) hold one row per claim id of ``lines``."""
    err = set(findings.loc[findings["severity"] == "error", C.CLAIM_ID].dropna())
    warn = set(findings.loc[findings["severity"] == "warning", C.CLAIM_ID].dropna()) - err
    if claims is not None and len(claims):
        scope = claims["in_scope"].to_numpy(bool)
        g5133, clean = int(scope.sum()), int((scope & ~in_set(claims[C.CLAIM_ID], err)).sum())
    else:
        g5133 = clean = 0
    charges = lines[C.CHARGE][in_set(lines[C.CLAIM_ID], err)].sum()  # one column, not every line's
    by_payer = findings.dropna(subset=[C.CLAIM_ID]).drop_duplicates(C.CLAIM_ID)[C.PAYER].fillna(
        "(none)").value_counts().to_dict()
    profiles = {}
    if claims is not None and "profile_name" in claims:  # one row per distinct payer name
        pairs = claims[[C.PAYER, "profile_name"]].dropna(subset=[C.PAYER]).drop_duplicates(C.PAYER)
        profiles = dict(zip(pairs[C.PAYER].astype(str), pairs["profile_name"].astype(str), strict=True))
    return ScrubSummary(
        file=file, sha256=sha256, rows_read=rows_read,
        claims=len(claims) if claims is not None else lines[C.CLAIM_ID].nunique(),
        g5133_claims=g5133, clean_claims=clean,
        claims_with_errors=len(err), claims_with_warnings=len(warn - err), at_risk=float(charges),
        by_rule=findings["rule"].value_counts().sort_index().to_dict(), by_payer=by_payer,
        not_checked=dict(not_checked), as_of=as_of, run_id=run_id, version=version, payer_profiles=profiles,
    )


def in_set(values: pd.Series, keys: set) -> np.ndarray:
    """``values.isin(keys)`` as a bool array (a missing key matches a missing value, as there). For Arrow
    text and text keys, one Arrow lookup: pandas converts each key on its own, which for thousands of
    keys costs several times more."""
    data = values.array
    if isinstance(values.dtype, pd.StringDtype) and hasattr(data, "__arrow_array__") and keys:
        arrow = data.__arrow_array__()
        try:
            found = pc.is_in(arrow, value_set=pa.array(list(keys), type=arrow.type, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # keys that are not text: pandas compares them
            pass
        else:
            return found.to_numpy(zero_copy_only=False).astype(bool)
    return values.isin(keys).to_numpy(bool)


def _text(ws, value, **style):
    """A cell that is always text: never a formula, no control characters, never over-long.

    A blank without a style is no cell at all (None), which keeps large sheets small and fast.
    """
    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    if not text and not style:
        return None
    text = _ILLEGAL.sub("\ufffd", text)
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 20] + " [truncated]"
    cell = WriteOnlyCell(ws, value=text)
    cell.data_type = "s"
    if text[:1] in _FORMULA_START:
        cell.style = "Normal"
        cell.quotePrefix = True
    for k, v in style.items():
        setattr(cell, k, v)
    return cell


def _value(ws, value, number_format: str | None = None, **style):
    blank = value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)) or (
        isinstance(value, pd.Timestamp) and pd.isna(value))
    if blank:
        return WriteOnlyCell(ws, value=None) if style else None
    if isinstance(value, pd.Timestamp):
        cell = WriteOnlyCell(ws, value=value.to_pydatetime().date())
        cell.number_format = number_format or DATE_FORMAT
    elif isinstance(value, bool | np.bool_):
        if not value and not style:
            return None
        cell = WriteOnlyCell(ws, value="Y" if value else "")
        cell.data_type = "s"
    elif isinstance(value, int | float):
        cell = WriteOnlyCell(ws, value=int(value) if float(value).is_integer() and not number_format else value)
        if number_format:
            cell.number_format = number_format
    else:
        return _text(ws, value, **style)
    for k, v in style.items():
        setattr(cell, k, v)
    return cell


def _header_cells(ws, names) -> list:
    return [_text(ws, n, font=HEADER_FONT, fill=HEADER_FILL) for n in names]


def _header(ws, names) -> None:
    ws.append(_header_cells(ws, names))


def build_workbook(path: Path, summary: ScrubSummary, lines: pd.DataFrame, findings: pd.DataFrame,
                   ingest_issues: pd.DataFrame, generated_at: str, source_file_column: bool = False,
                   ids: list[str] | None = None) -> Path:
    """Write the exceptions workbook atomically; returns the final path. ``ids``: the findings'
    exception ids in sheet order, when the caller has them already (see exception_ids)."""
    path = Path(path)

    def build() -> Workbook:
        wb = Workbook(write_only=True)
        _summary_sheet(wb, summary, generated_at)
        flagged = in_set(lines[C.CLAIM_ID], set(findings[C.CLAIM_ID].dropna()))  # flagged claims' lines
        claim_rows = _claims_row_map(lines, flagged)
        _exceptions_sheet(wb, findings, claim_rows, source_file_column, ids)
        _claims_sheet(wb, lines, flagged, findings, claim_rows, source_file_column)
        _ingest_sheet(wb, ingest_issues)
        _rules_sheet(wb)
        return wb

    return _atomic_save(build, path)


_TEMP_LOCK = threading.Lock()


def _output_error(exc: OSError, what: str) -> OutputError:
    """An OS error while writing an output, as a reason code (a full disk, or anything else)."""
    code = "E_DISK_FULL" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else "E_OUTPUT_UNWRITABLE"
    return OutputError(code, f"{what} could not be written ({errno.errorcode.get(exc.errno, 'error')})")


def check_environment() -> None:
    """Start-up assertions: openpyxl must parse XML through defusedxml and write it through lxml."""
    import openpyxl
    from openpyxl.xml import LXML

    if not getattr(openpyxl, "DEFUSEDXML", False):
        raise RuntimeError("openpyxl is not using defusedxml; install claimscrub's dependencies")
    if not LXML:
        raise RuntimeError("openpyxl is not writing through lxml; install claimscrub's dependencies "
                           "and leave OPENPYXL_LXML unset")


@contextmanager
def private_tempdir(folder: Path):
    """openpyxl spools sheets to temporary files: keep them in a private folder beside the output."""
    with _TEMP_LOCK:
        previous = tempfile.tempdir
        private = tempfile.mkdtemp(prefix=".claimscrub-tmp-", dir=folder)  # mode 0700
        tempfile.tempdir = private
        try:
            yield Path(private)
        finally:
            tempfile.tempdir = previous
            shutil.rmtree(private, ignore_errors=True)


def _atomic_save(build, path: Path) -> Path:
    """Build and save the workbook to a private temporary name, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise OutputError("E_OUTPUT_UNWRITABLE", "the output folder is not writable")
    tmp = None
    try:
        with private_tempdir(path.parent) as private:
            wb = build()
            tmp = private / "workbook.xlsx"
            wb.save(tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
    except OutputError:
        raise
    except OSError as exc:
        raise _output_error(exc, "the workbook") from None
    except etree.SerialisationError as exc:  # lxml reports a full disk as IO_ENOSPC / IO_EFBIG
        full = any(k in str(exc) for k in ("ENOSPC", "EFBIG", "EDQUOT"))
        raise OutputError("E_DISK_FULL" if full else "E_OUTPUT_UNWRITABLE", "the workbook could not be written"
                          ) from None
    return path


def _summary_sheet(wb, s: ScrubSummary, generated_at: str) -> None:
    ws = wb.create_sheet("Summary")
    ws.column_dimensions["A"].width = 34
    ws.column_dimensions["B"].width = 70
    ws.column_dimensions["C"].width = 50
    ws.column_dimensions["D"].width = 10
    bold = Font(bold=True)
    rows = [
        ("Input file", s.file), ("SHA-256", s.sha256), ("Rows read", s.rows_read), ("Claims", s.claims),
        ("G51.33 claims", s.g5133_claims), ("Clean G51.33 claims", s.clean_claims),
        ("Claims with errors", s.claims_with_errors), ("Claims with warnings only", s.claims_with_warnings),
        ("Charges at risk (claims with errors)", s.at_risk), ("Rule catalog version", CATALOG_VERSION),
        ("claimscrub version", s.version), ("As-of date", s.as_of), ("Run id", s.run_id),
        ("Generated at", generated_at),
    ]
    ws.append([_text(ws, "claimscrub exceptions summary", font=Font(bold=True, size=14))])
    for label, value in rows:
        fmt = MONEY_FORMAT if label.startswith("Charges") else None
        ws.append([_text(ws, label, font=bold), _value(ws, value, fmt) if not isinstance(value, str)
                   else _text(ws, value)])
    ws.append([])
    ws.append([_text(ws, "Findings by rule", font=bold)])
    _header(ws, ("Rule", "Title", "Severity", "Count"))
    for rule in RULES:
        if rule.id in s.not_checked:
            ws.append([_text(ws, rule.id), _text(ws, rule.title), _text(ws, rule.severity.value),
                       _text(ws, "not checked: " + s.not_checked[rule.id])])
        else:
            ws.append([_text(ws, rule.id), _text(ws, rule.title), _text(ws, rule.severity.value),
                       _value(ws, int(s.by_rule.get(rule.id, 0)))])
    ws.append([])
    ws.append([_text(ws, "Flagged claims by payer", font=bold)])
    _header(ws, ("Payer", "Flagged claims"))
    for payer, count in sorted(s.by_payer.items()):
        ws.append([_text(ws, payer), _value(ws, int(count))])
    if s.payer_profiles:  # one file's payer names (the nightly review workbook lists none)
        ws.append([])
        ws.append([_text(ws, "Payer profiles matched", font=bold)])
        _header(ws, ("Payer", "Profile"))
        for payer, profile in sorted(s.payer_profiles.items(), key=lambda kv: (kv[1] == "", kv[0].casefold())):
            ws.append([_text(ws, payer), _text(ws, profile or "none matched: default profile")])


_RANK_OF = {s.value: rank for s, rank in SEVERITY_RANK.items()}


def _severity_rank(findings: pd.DataFrame) -> pd.Series:
    """Each finding's severity rank (error first); a value that is no severity raises ValueError."""
    rank = findings["severity"].map(_RANK_OF)
    if rank.isna().any():
        Severity(findings["severity"][rank.isna()].iloc[0])  # raises, naming the value
    return rank


def sort_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """Severity, then claim, then line: the order of the Exceptions sheet (a new, sorted frame)."""
    order = _severity_rank(findings)
    return findings.assign(_o=order).sort_values(
        ["_o", C.CLAIM_ID, C.LINE_NO, "rule"], na_position="first", kind="stable").drop(columns="_o")


def in_sheet_order(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings as given when already in sheet order (validate's contract), so no copy is made."""
    rank = _severity_rank(findings)
    return findings if rank.is_monotonic_increasing else sort_findings(findings)


def _claims_row_map(lines: pd.DataFrame, flagged: np.ndarray) -> dict:
    """(source file, source row) -> row number on the Claims sheet, for the ``flagged`` lines."""
    rows = lines[C.SOURCE_ROW].to_numpy()[flagged].tolist()  # only the columns it needs, not every line's
    files = lines["source_file"].to_numpy()[flagged].tolist() if "source_file" in lines else [""] * len(rows)
    return {(f, r): i + 2 for i, (f, r) in enumerate(zip(files, rows, strict=True))}


def exception_ids(findings: pd.DataFrame) -> list[str]:
    """The stable id of every finding, in the frame's order."""
    columns = (findings[col].tolist() for col in (C.CLAIM_ID, C.LINE_NO, "rule", "value"))  # lists iterate fast
    return [exception_id(c, ln, r, v) for c, ln, r, v in zip(*columns, strict=True)]


def _proto(ws, **style):
    """A cell carrying one style: the cells of a column take its style (see xlsxrows.Column)."""
    cell = WriteOnlyCell(ws)
    for k, v in style.items():
        setattr(cell, k, v)
    return cell


def _quoted(ws, proto=None):
    """``proto``'s style with a quote prefix (text a spreadsheet would take for a formula or an error)."""
    cell = WriteOnlyCell(ws)
    if proto is None:
        cell.style = "Normal"
    else:
        cell._style = copy(proto._style)
    cell.quotePrefix = True
    return cell


def _risky(t: pd.Series) -> np.ndarray:
    """Text a spreadsheet would read as a formula or an error value."""
    return (t.str.match(_FORMULA_START_RE).fillna(False).to_numpy(bool)
            | t.isin(_ERROR_VALUES).to_numpy(bool))


def _text_values(ws, values, proto=None) -> Column:
    """One column of cells that are always text (vectorised `_text`), as an Arrow array of texts.

    Blank -> no cell; control characters replaced; over-long text truncated; text that a spreadsheet
    would take for a formula or an error value gets a quote prefix; with ``proto`` every non-blank
    value carries that cell's style.
    """
    s = pd.Series(values, copy=False)
    if not len(s):
        return Column([])
    t = s.astype("str")
    t = t.str.replace(_ILLEGAL.pattern, "\ufffd", regex=True)
    long = (t.str.len() > MAX_CELL).fillna(False).to_numpy(bool)
    if long.any():
        t = t.where(~long, t.str.slice(0, MAX_CELL - 20) + " [truncated]")
    blank = (t.isna() | (t == "")).to_numpy(bool)
    text = pa.array(t.array)
    if blank.any():
        text = pc.if_else(pa.array(blank), pa.scalar(None, text.type), text)
    styles = None if proto is None else [None if b else proto for b in blank.tolist()]
    risky = np.flatnonzero(_risky(t) & ~blank)
    if len(risky):
        quoted = _quoted(ws, proto)
        styles = styles or [None] * len(blank)
        for i in risky:
            styles[i] = quoted
    return Column(text, styles)


def _other_values(ws, values: pd.Series, money: bool = False, proto_money=None) -> Column:
    """One non-text column: dates as dates, whole numbers as ints, flags as Y, money in its format."""
    s = pd.Series(values, copy=False)
    if pd.api.types.is_datetime64_any_dtype(s):
        return Column([None if d is None or d != d else d for d in s.dt.date.astype(object).tolist()])
    if pd.api.types.is_bool_dtype(s):
        return Column(["Y" if v is True else None for v in s.astype(object).tolist()])
    if pd.api.types.is_numeric_dtype(s):
        f = s.astype(float).to_numpy()
        if money:
            out = [None if v != v else float(v) for v in f]
            return Column(out, [None if v is None else proto_money for v in out])
        return Column([None if x != x else (int(x) if x.is_integer() else float(x)) for x in f])
    return Column([_value(ws, v) for v in s.tolist()])


def _exceptions_sheet(wb, findings: pd.DataFrame, claim_rows: dict, source_file_column: bool,
                      ids: list[str] | None = None) -> None:
    ws = wb.create_sheet("Exceptions")
    headers = (("Source File",) if source_file_column else ()) + EXCEPTION_HEADERS
    for i, h in enumerate(headers, start=1):
        ws.column_dimensions[get_column_letter(i)].width = WIDTHS.get(h, 24)
    ws.freeze_panes = "A2"
    n = len(findings)
    last = get_column_letter(len(headers))
    ws.auto_filter.ref = f"A1:{last}{max(n + 1, 2)}"
    status_col = get_column_letter(headers.index("Status") + 1)
    dv = DataValidation(type="list", formula1='"' + ",".join(STATUSES) + '"', allow_blank=True,
                        showDropDown=False)
    dv.error, dv.errorTitle = "Pick a status from the list", "Status"
    dv.add(f"{status_col}2:{status_col}{max(n + 1, 2)}")
    ws.data_validations.append(dv)
    if not n:
        stream_rows(ws, _header_cells(ws, headers), [])
        return
    wrap = _proto(ws, alignment=Alignment(wrap_text=True, vertical="top"))
    link = _proto(ws, font=Font(color="0563C1", underline="single"))
    f = in_sheet_order(findings)
    files = f["source_file"].tolist() if "source_file" in f else [""] * n
    ids, id_styles, links = (exception_ids(f) if ids is None else ids), [None] * n, {}
    for i, (src, srow) in enumerate(zip(files, f[C.SOURCE_ROW], strict=True)):
        target = claim_rows.get((src, srow))
        if target:
            id_styles[i] = link
            links[i] = Link(f"'Claims'!A{target}", "Go to the claim's lines")
    sev_protos = {k: _proto(ws, fill=v) for k, v in FILLS.items()}
    severity = f["severity"].tolist()
    columns = [
        Column(ids, id_styles, links), _text_values(ws, f[C.CLAIM_ID]), _other_values(ws, f[C.LINE_NO]),
        _other_values(ws, f[C.SOURCE_ROW]), _text_values(ws, f[C.PATIENT_ID]),
        _other_values(ws, f[C.SERVICE_DATE]), _text_values(ws, f[C.PAYER]), _text_values(ws, f["rule"]),
        Column(severity, [sev_protos.get(v) for v in severity]), _text_values(ws, f["field"]),
        _text_values(ws, f["value"]), _text_values(ws, f["message"], wrap), _text_values(ws, f["fix"], wrap),
        Column(["Open"] * n),
    ]
    if source_file_column:
        columns.insert(0, _text_values(ws, pd.Series(files)))
    stream_rows(ws, _header_cells(ws, headers), columns)


CLAIM_COLUMNS = [c for c in C.CANONICAL if c not in (C.SOURCE_SHEET,)]


def _claims_sheet(wb, lines, flagged: np.ndarray, findings, claim_rows, source_file_column: bool) -> None:
    ws = wb.create_sheet("Claims")
    headers = (["source_file"] if source_file_column else []) + [C.SOURCE_ROW] + [
        c for c in CLAIM_COLUMNS if c != C.SOURCE_ROW]
    ws.freeze_panes = "B2"
    sub = lines[flagged]
    if sub.empty:
        stream_rows(ws, _header_cells(ws, headers), [])
        return
    files = findings["source_file"] if "source_file" in findings else pd.Series("", index=findings.index)
    hot = pd.DataFrame({"src": files.to_numpy(), "row": findings[C.SOURCE_ROW].to_numpy(),
                        "col": findings["field"].astype(str).str.split(", ").to_numpy()}).explode("col")
    hot["col"] = hot["col"].map(lambda c: FIELD_TO_COLUMN.get(c, c))
    sub_files = sub["source_file"] if "source_file" in sub else pd.Series("", index=sub.index)
    keys = pd.MultiIndex.from_arrays([sub_files.to_numpy(), sub[C.SOURCE_ROW].to_numpy()])
    money_proto = _proto(ws, number_format=MONEY_FORMAT)
    hot_protos = {}
    columns = []
    for col in headers:
        values = sub[col] if col in sub else pd.Series(None, index=sub.index, dtype=object)
        if col in C.TEXT_COLUMNS or col == "source_file":
            out = _text_values(ws, values)
        else:
            out = _other_values(ws, values, col == C.CHARGE, money_proto)
        marks = hot[hot["col"] == col]
        if len(marks):
            on = keys.isin(pd.MultiIndex.from_arrays([marks["src"].to_numpy(), marks["row"].to_numpy()]))
            styles = out.styles or [None] * len(out)
            for i in np.flatnonzero(on):
                styles[i] = _highlight(ws, out.values[i], styles[i], hot_protos)
            out.styles = styles
        columns.append(out)
    stream_rows(ws, _header_cells(ws, headers), columns)


def _highlight(ws, value, style, protos: dict):
    """The highlight for a changed cell of a flagged claim, keeping its number format and quote prefix."""
    if style is not None:
        fmt, quote = style.number_format, style.quotePrefix
    elif isinstance(value, Cell):
        fmt, quote = value.number_format, value.quotePrefix
    else:
        fmt, quote = (DATE_FORMAT if isinstance(value, dt.date) else "General"), False
    key = (fmt, bool(quote))
    if key not in protos:
        protos[key] = _proto(ws, fill=HIGHLIGHT, number_format=fmt, quotePrefix=bool(quote))
    return protos[key]


def _ingest_sheet(wb, issues: pd.DataFrame) -> None:
    ws = wb.create_sheet("Ingest Issues")
    headers = ("File", "Sheet", "Row", "Column", "Raw Value", "Reason", "Rule")
    ws.freeze_panes = "A2"  # panes and widths first: a write-only sheet writes them with its first row
    for col, w in zip("ABCDEFG", (28, 16, 8, 22, 24, 60, 10), strict=True):
        ws.column_dimensions[col].width = w
    columns = [_other_values(ws, issues[c]) if c == "row" else _text_values(ws, issues[c])
               for c in ("file", "sheet", "row", "column", "value", "reason", "rule")]
    stream_rows(ws, _header_cells(ws, headers), columns if len(issues) else [])


def _rules_sheet(wb) -> None:
    ws = wb.create_sheet("Rules")
    for col, w in zip("ABCDEF", (10, 9, 40, 70, 60, 40), strict=True):
        ws.column_dimensions[col].width = w
    _header(ws, ("Rule", "Severity", "Title", "What it checks", "Suggested fix", "Source (public)"))
    for r in RULES:  # plain-language text and a document the reviewer can look up
        ws.append([_text(ws, r.id), _text(ws, r.severity.value), _text(ws, r.title),
                   _text(ws, r.checks), _text(ws, r.fix), _text(ws, r.source)])


def write_findings_csv(findings: pd.DataFrame, path: Path, ids: list[str] | None = None) -> Path:
    """The same findings as plain data, with their exception ids (``ids``: already computed, in sheet
    order), written atomically."""
    path = Path(path)
    out = in_sheet_order(findings).copy()
    out.insert(0, "exception_id", exception_ids(out) if ids is None else ids)
    fd, tmp = tempfile.mkstemp(prefix=".~" + path.stem, suffix=".tmp", dir=path.parent)  # mode 0600
    os.close(fd)
    try:
        out.to_csv(tmp, index=False, date_format="%Y-%m-%d")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _output_error(exc, "the findings CSV") from None
    return path
