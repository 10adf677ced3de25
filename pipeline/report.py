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
from openpyxl.worksheet.page import PageMargins
from openpyxl.worksheet.properties import PageSetupProperties

from pipeline import review
from pipeline.errors import OutputError
from pipeline.review import STATUSES
from pipeline.xlsxrows import Column, Links, holds_odd_text, prototypes, stream_rows, text_layout
from schemas import columns as C
from schemas.rules import CATALOG_VERSION, RULES, RULES_BY_ID, SEVERITY_RANK, Severity

SHEETS = ("Summary", "Worklist", "Exceptions", "Claims", "Ingest Issues", "Rules")
EXCEPTION_HEADERS = (
    "Exception ID", "Claim ID", "Line", "Row in File", "Patient ID", "Service Date", "Payer", "Rule",
    "Severity", "Field", "Value", "Message", "Suggested Fix", "Status", "Reviewer", "Notes",
)
WORKLIST_HEADERS = (
    "Priority", "Claim ID", "Worst Severity", "Rules", "Exceptions", "First Problem", "Charges at Risk", "Payer",
    "Service Date", "Days Since Service", "Status",
)
FILLS = {
    "error": PatternFill("solid", fgColor="F8CBAD"),
    "warning": PatternFill("solid", fgColor="FFE699"),
    "info": PatternFill("solid", fgColor="DDEBF7"),
}
HIGHLIGHT = PatternFill("solid", fgColor="FFC7CE")
HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
FONT = "Calibri"  # the workbook's default font: bold and link cells keep it (LibreOffice draws Carlito)
HEADER_FONT = Font(name=FONT, size=11, bold=True, color="FFFFFF")
DATE_FORMAT = "yyyy-mm-dd"
MONEY_FORMAT = '"$"#,##0.00'
COUNT_FORMAT = "#,##0"
DEFAULT_MODE = 0o640  # outputs: the owner writes, the billing team's group reads (config output_mode)
LINE_POINTS = 15.0  # one line of 11-pt text (Excel's default row height; LibreOffice draws 11-pt Carlito in less)
WRAP = Alignment(wrap_text=True)
MAX_CELL = 32767
# Not allowed in an XML 1.0 text (lxml refuses them): control characters and U+FFFE/U+FFFF. Literal
# characters for the last two, so that Arrow's regex engine (no \u escapes) reads the pattern too.
_ILLEGAL = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\ufffe\uffff]")
_ERROR_VALUES = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")  # text starting so is written with a quote prefix
_FORMULA_START_RE = "[" + re.escape("".join(_FORMULA_START)) + "]"
# Widest a column grows (characters) before its text wraps; columns not named here: MAX_WIDTH.
CAPS = {"Message": 60, "Suggested Fix": 45, "Value": 28, "First Problem": 50, "Rules": 24, "Title": 40,
        "What it checks": 60, "Suggested fix": 45, "Source (public)": 40, "Reason": 50, "Raw Value": 24,
        "Why": 60, "What to do": 70}
FIXED = {"Status": 16, "Reviewer": 14, "Notes": 30}  # reviewer's columns: room to type
MAX_WIDTH = 30
MIN_WIDTH = 6
# The Claims sheet's columns: several modifier or diagnosis columns read as one.
MODIFIER_GROUP, DX_GROUP = (*C.MODIFIERS, C.MODIFIER_EXTRA), C.DX
_GROUP_OF = {**{m: "modifiers" for m in MODIFIER_GROUP}, **{d: "dx" for d in DX_GROUP}, "documentation": C.DOC_ONSET}


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
    claims_checked_in_part: int = 0  # no errors or warnings, but some rules could not run on them
    exceptions: int = 0  # findings in the workbook, all severities
    by_status: dict[str, int] = field(default_factory=dict)  # exceptions by reviewer status (carried forward)
    carried: dict[str, int] = field(default_factory=dict)  # dispositions carried, re-opened, not an issue
    reference: dict = field(default_factory=dict)  # reference tables used; coverage notes (validate.reference_use)
    payer_profiles: dict[str, str] = field(default_factory=dict)  # payer name -> profile ("" = none matched)


def exception_id(claim: object, line: object, rule: str, value: object) -> str:
    """Stable id of one problem: the same claim, line, rule and value give the same id in every run."""
    key = "\x1f".join("" if pd.isna(x) else str(x) for x in (claim, line, rule, value))
    return hashlib.sha256(key.encode()).hexdigest()[:12].upper()


def summarize(file: str, sha256: str, rows_read: int, lines: pd.DataFrame, findings: pd.DataFrame,
              claims: pd.DataFrame | None, not_checked: dict[str, str], as_of: str, run_id: str,
              version: str, reference: dict | None = None) -> ScrubSummary:
    """Counts for one scrubbed file. The claim facts (``claims``) hold one row per claim id of ``lines``."""
    err = flagged_claims(findings[(findings["severity"] == "error").to_numpy(bool)])
    warn = flagged_claims(findings[(findings["severity"] == "warning").to_numpy(bool)]) - err
    if claims is not None and len(claims):
        g5133 = int(claims["in_scope"].to_numpy(bool).sum())
    else:
        g5133 = 0
    total = len(claims) if claims is not None else lines[C.CLAIM_ID].nunique()
    rest = max(total - len(err) - len(warn), 0)  # claims with no error and no warning
    partly = rest if any(not why.startswith("disabled") for why in not_checked.values()) else 0
    if not partly and claims is not None:  # rules not checked on some claims (validate: CODE-001, HFS-033)
        flags = [claims[c].to_numpy(bool) for c in ("dx_not_judged", "lcd_unknown") if c in claims]
        if flags:
            not_judged = flagged_claims(claims[np.logical_or.reduce(flags)])
            partly = len(not_judged - err - warn)
    charges = lines[C.CHARGE][in_set(lines[C.CLAIM_ID], err)].sum()  # one column, not every line's
    by_payer = findings.dropna(subset=[C.CLAIM_ID]).drop_duplicates(C.CLAIM_ID)[C.PAYER].fillna(
        "(none)").value_counts().to_dict()
    profiles = {}
    if claims is not None and "profile_name" in claims:  # one row per distinct payer name
        pairs = claims[[C.PAYER, "profile_name"]].dropna(subset=[C.PAYER]).drop_duplicates(C.PAYER)
        profiles = dict(zip(pairs[C.PAYER].astype(str), pairs["profile_name"].astype(str), strict=True))
    return ScrubSummary(
        file=file, sha256=sha256, rows_read=rows_read, claims=total,
        g5133_claims=g5133, clean_claims=rest - partly,
        claims_with_errors=len(err), claims_with_warnings=len(warn - err), at_risk=float(charges),
        by_rule=findings["rule"].value_counts().sort_index().to_dict(), by_payer=by_payer,
        not_checked=dict(not_checked), as_of=as_of, run_id=run_id, version=version,
        claims_checked_in_part=partly, exceptions=len(findings), reference=dict(reference or {}),
        payer_profiles=profiles,
    )


def labels_for(mapped: dict[str, str] | None) -> dict[str, str]:
    """Canonical column -> the header a reviewer reads: the input file's own header where the file had
    one (``mapped``: file header -> canonical, as ingest read it), else the column's display name."""
    from pipeline.ingest import COMBINED_DX, COMBINED_MODIFIERS

    labels = dict(C.LABELS)
    for header, canonical in (mapped or {}).items():
        group = {COMBINED_DX: DX_GROUP, COMBINED_MODIFIERS: MODIFIER_GROUP}.get(canonical, (canonical,))
        for col in group:
            labels[col] = header
    return labels


def show_fields(fields: pd.Series, labels: dict[str, str] | None = None) -> pd.Series:
    """The Field column in the reviewer's words: column names as the input file spelled them."""
    labels = labels or C.LABELS
    pseudo = {"modifiers": labels[C.MODIFIERS[0]], "dx": labels[C.DX[0]], "documentation": "Documentation"}

    def one(text: str) -> str:
        if not text:
            return text
        parts = [labels.get(p, pseudo.get(p, p)) for p in text.split(", ")]
        return ", ".join(dict.fromkeys(parts))

    values = fields.astype(object).where(fields.notna(), "").astype(str)
    return values.map({v: one(v) for v in values.unique()})


def flagged_claims(findings: pd.DataFrame) -> set:
    """The claim ids the findings name (no missing one): a set built from the distinct ids, not from every
    finding's (a Python object per row)."""
    return set(findings[C.CLAIM_ID].dropna().unique().tolist())


def flagged_lines(lines: pd.DataFrame, findings: pd.DataFrame) -> pd.DataFrame:
    """The lines of the claims the findings name: all that the workbook and the claim hashes read of
    ``lines``, taken once (a filter of every column costs tens of ms at 500k lines)."""
    return lines[in_set(lines[C.CLAIM_ID], flagged_claims(findings))]


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
                   ids: list[str] | None = None, labels: dict[str, str] | None = None, mode: int = DEFAULT_MODE,
                   sections: list["Section"] | None = None, carried: review.Carried | None = None) -> Path:
    """Write the exceptions workbook atomically; returns the final path. ``ids``: the findings'
    exception ids in sheet order, when the caller has them already (see exception_ids); ``labels``: the
    reviewer's name of each column (``labels_for``); ``sections``: the Summary's sections, when the
    caller adds its own to ``summary_sections``; ``mode``: the file's permission bits; ``carried``: the
    exceptions' dispositions (see review.carry_forward), else every one Open. ``lines``: the file's lines,
    or only the flagged claims' (``flagged_lines``): the workbook shows no others."""
    path = Path(path)
    labels = labels or C.LABELS
    if carried is None:
        ids = exception_ids(in_sheet_order(findings)) if ids is None else ids
        carried = review.carry_forward(ids, review.finding_claim_hashes(in_sheet_order(findings), lines), None,
                                       dt.date.today())

    def build() -> Workbook:
        wb = Workbook(write_only=True)
        f = in_sheet_order(findings)
        _summary_sheet(wb, sections if sections is not None else summary_sections(summary, generated_at))
        flagged = in_set(lines[C.CLAIM_ID], flagged_claims(f))
        sub = lines if flagged.all() else lines[flagged]  # the flagged claims' lines, taken once for every sheet
        codes = _line_codes(sub, f)
        claim_rows = _claims_rows(*codes)
        _worklist_sheet(wb, f.assign(status=carried.status), sub, summary.as_of, source_file_column)
        _exceptions_sheet(wb, f, claim_rows, source_file_column, ids, labels, carried)
        _claims_sheet(wb, sub, f, codes, source_file_column, labels)
        _ingest_sheet(wb, ingest_issues)
        _rules_sheet(wb)
        _review_state_sheet(wb, ids, carried)
        return wb

    return _atomic_save(build, path, mode)


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


def _atomic_save(build, path: Path, mode: int = DEFAULT_MODE) -> Path:
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
            os.chmod(tmp, mode)
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


@dataclass
class Section:
    """One block of the Summary sheet: a title, an optional header row, and rows of up to four values.

    A value is text, a whole number (shown with thousands separators), or a ``(number, format)`` pair.
    Other parts of claimscrub add their own rows or sections (see ``summary_sections``)."""

    title: str
    header: tuple[str, ...] | None = None
    rows: list[tuple] = field(default_factory=list)


def _n(count: int) -> str:
    return f"{count:,}"


def summary_sections(s: ScrubSummary, generated_at: str) -> list[Section]:
    """The Summary sheet as sections: what to do first, the claims (counts that add up), what was not
    checked and why, findings by rule (rules with findings only), flagged claims by payer, the run."""
    steps = []
    if s.claims_with_errors:
        steps.append(f"Fix the {_n(s.claims_with_errors)} claim(s) with errors first: the Worklist sheet lists "
                     f"them at the top, the charges at risk largest first (${s.at_risk:,.2f} in all).")
    if s.claims_with_warnings:
        steps.append(f"Then review the {_n(s.claims_with_warnings)} claim(s) with warnings only (further down "
                     "the Worklist).")
    steps += _not_checked_steps(s)
    if not steps:
        steps.append("Nothing to fix: every rule was checked and no claim has an error or a warning.")
    steps.append("Set each exception's Status on the Exceptions sheet as you work it (the Claim ID links "
                 "go to the claim's lines).")
    start = Section("Start here", None, [(f"Step {i}", text) for i, text in enumerate(steps, start=1)])

    partly_why = "no errors or warnings, but some rules could not run on them (see Not checked)"
    claims = Section("Claims", ("Claims", "What it means", "", "Count"), [
        ("With errors", "fix before the claim goes to the payer", "", s.claims_with_errors),
        ("With warnings only", "review: may be right, may need a fix", "", s.claims_with_warnings),
        ("Checked in part", partly_why, "", s.claims_checked_in_part),
        ("Clean", "every rule ran; no errors or warnings", "", s.clean_claims),
        ("Total claims", "the four lines above add up to this", "", s.claims),
        ("G51.33 claims (in scope)", "claims the G51.33 rules apply to (part of the total)", "", s.g5133_claims),
        ("Exceptions", "rows on the Exceptions sheet, all severities", "", s.exceptions),
        ("Charges at risk", "billed charges of the claims with errors", "", (s.at_risk, MONEY_FORMAT)),
        ("Rows read", "claim lines read from the file", "", s.rows_read),
    ])
    night = "files" in (s.reference or {})  # the nightly review: the night's files together
    part = "on part of the night's claims only: " if night else "on part of the file only: "
    in_part = {r: part + why for r, why in (s.reference or {}).get("partly", {}).items() if r not in s.not_checked}
    if s.not_checked or in_part:
        rows = [(r, RULES_BY_ID[r].title if r in RULES_BY_ID else "", {**s.not_checked, **in_part}[r], "")
                for r in sorted({**s.not_checked, **in_part})]
    elif s.claims_checked_in_part:  # never "all checked" beside claims counted as checked in part
        rows = [(f"Some rules could not run on {_n(s.claims_checked_in_part)} claim(s) (checked in part): each "
                 "file's own workbook says which and why.",)]
    else:
        rows = [("All rules were checked.",)]
    not_checked = Section("Not checked, and why", ("Rule", "Title", "Why", ""), rows)

    order = sorted((r for r in RULES if s.by_rule.get(r.id)),
                   key=lambda r: (SEVERITY_RANK[r.severity], -int(s.by_rule[r.id]), r.id))
    rows = [(r.id, r.title, r.severity.value, int(s.by_rule[r.id])) for r in order]
    quiet = sum(1 for r in RULES if not s.by_rule.get(r.id) and r.id not in s.not_checked)
    rows.append(("", f"{_n(quiet)} other rule(s) checked: no findings (see the Rules sheet)", "", ""))
    by_rule = Section("Findings by rule", ("Rule", "Title", "Severity", "Findings"), rows)

    payers = sorted(s.by_payer.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    by_payer = Section("Flagged claims by payer", ("Payer", "", "", "Claims"),
                       [(str(p), "", "", int(n)) for p, n in payers] or [("No flagged claims.",)])
    about = Section("About this run", None, [
        ("Input file", s.file), ("SHA-256", s.sha256), ("Rule catalog version", CATALOG_VERSION),
        ("claimscrub version", s.version), ("As-of date", s.as_of), ("Run id", s.run_id),
        ("Generated at", generated_at),
    ])
    return [start, claims, not_checked, by_rule, by_payer, *_profile_sections(s.payer_profiles), *_status_sections(s),
            *_reference_sections(s.reference), about]


_ABSENT = re.compile(r"column\(s\) absent from the file: ([^;]+)")
_OUTSIDE = re.compile(r"outside the (\w+) tables|no (\w+) reference table|between (ICD-10-CM) releases")
_KIND_NAMES = {"mue": "MUE", "ptp": "NCCI pairs (PTP)", "icd10cm": "ICD-10-CM", "ICD-10-CM": "ICD-10-CM", "ndc": "NDC",
               "procedures": "procedure codes", "modifiers": "modifiers", "pos": "places of service"}


def _rule_list(rules: set[str]) -> str:
    return f"{_n(len(rules))} rule(s) ({', '.join(sorted(rules))})"


def _not_checked_steps(s: ScrubSummary) -> list[str]:
    """What to do about the rules that could not run, one step per cause, in plain words: columns missing from
    the export, dates of service outside what the reference tables cover, a payer profile lacking a setting."""
    night = "files" in (s.reference or {})
    why_of: dict[str, list[str]] = {}
    for r, why in {**(s.reference or {}).get("partly", {}), **s.not_checked}.items():
        if not why.startswith("disabled"):
            why_of.setdefault(r, []).append(why)
    columns, absent, dated, kinds, profile, other = set(), set(), set(), [], set(), set()
    for rule, whys in why_of.items():
        text = "; ".join(whys)
        found = False
        if cols := _ABSENT.findall(text):
            absent.add(rule)
            columns |= {c.strip() for group in cols for c in group.split(", ")}
            found = True
        if hits := _OUTSIDE.findall(text):
            dated.add(rule)
            kinds += [_KIND_NAMES.get(k, k) for hit in hits for k in hit if k]
            found = True
        if "lcd_effective" in text:
            profile.add(rule)
            found = True
        if not found:
            other.add(rule)
    steps = []
    if absent:
        where = "some of the night's files lack" if night else "the file lacks"
        steps.append(f"{_rule_list(absent)} could not be checked because {where} the column(s) "
                     f"{', '.join(sorted(columns))}: add them to the export and scrub it again. Until then no claim "
                     f"of {'those files' if night else 'this file'} is clean.")
    if dated:
        steps.append(f"{_rule_list(dated)} could not be checked on the claims whose date of service is outside "
                     f"what the reference tables cover ({', '.join(dict.fromkeys(kinds))}): import the release that "
                     "covers those dates (claimscrub reference import) and scrub again. Until then those claims count "
                     "as checked in part, not clean.")
    if profile:
        steps.append(f"{_rule_list(profile)} could not be checked on some claims because their payer profile lacks "
                     "a setting (the date its LCD took effect): set it in claimscrub.toml as \"Not checked, and "
                     "why\" below shows, and scrub again. Until then those claims count as checked in part.")
    if other:
        steps.append(f"{_rule_list(other)} could not be checked: \"Not checked, and why\" below says why. Until "
                     "then the claims they concern count as checked in part, not clean.")
    return steps


def _profile_sections(payer_profiles: dict[str, str]) -> list[Section]:
    """Each payer name of the file (of the night's files, for the nightly review) with the payer profile it
    reached."""
    if not payer_profiles:
        return []
    rows = [(payer, profile or "none matched: default profile", "", "")
            for payer, profile in sorted(payer_profiles.items(), key=lambda kv: (kv[1] == "", kv[0].casefold()))]
    return [Section("Payer profiles matched", ("Payer", "Profile", "", ""), rows)]


def _reference_sections(reference: dict) -> list[Section]:
    """The reference tables the run used (kind, version, source, lines), then the coverage warnings and the
    rules checked on part of the lines only."""
    if not reference:
        return []
    def files(t: dict) -> str:  # the nightly review: how many of the night's files used it
        return f"; in {_n(t['files'])} file(s)" if "files" in t else ""

    rows = [(use["kind"], f"{t['version']} ({t['origin']}; {t['covers']}{files(t)})", t["source"], int(t["lines"]))
            for use in reference.get("tables", []) for t in use["tables"]]
    rows += [(use["kind"], f"{b['between'][0]} and {b['between'][1]} (dates {b['dates']}: no release shipped"
                           f"{files(b)})",
              f"judged from the {b['between'][0]} and {b['between'][1]} releases", int(b["lines"]))
             for use in reference.get("tables", []) for b in use.get("bracketed", [])]
    night = "files" in reference
    notes = list(reference.get("warnings", [])) + [
        f"{rule} not checked on part of the night's claims: {why}" if night
        else f"{rule} {why}" if why.startswith("not checked") else f"{rule} checked on part of the lines only: {why}"
        for rule, why in sorted(reference.get("partly", {}).items())]
    rows += [("Warning", note) for note in notes]
    if not rows:
        return []
    return [Section("Reference tables used", ("Table", "Version (covers)", "Source", "Lines"), rows)]


def _status_sections(s: ScrubSummary) -> list[Section]:
    """Exceptions by reviewer status: dispositions carried from earlier reviews count as what they say."""
    if not s.by_status:
        return []
    rows = [(status, "", "", int(s.by_status[status])) for status in STATUSES if s.by_status.get(status)]
    if s.by_status.get(review.OTHER_STATUS):  # text a reviewer typed outside the list (carried as is)
        rows.append((review.OTHER_STATUS, "", "", int(s.by_status[review.OTHER_STATUS])))
    return [Section("Exceptions by review status", ("Status", "", "", "Exceptions"), rows)]


SUMMARY_WIDTHS = (24, 58, 46, 12)


def _summary_sheet(wb, sections: list[Section]) -> None:
    ws = wb.create_sheet("Summary")
    for i, w in enumerate(SUMMARY_WIDTHS, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w
    _print_setup(ws, landscape=False, title_rows=False)
    bold, title = Font(name=FONT, size=11, bold=True), Font(name=FONT, bold=True, size=13)
    rows, heights = [], []

    def add(cells: list, texts: list) -> None:
        rows.append(cells + [None] * (len(SUMMARY_WIDTHS) - len(cells)))
        lines = max([_lines(len(t), SUMMARY_WIDTHS[i]) for i, t in enumerate(texts) if t] or [1])
        heights.append(LINE_POINTS * lines + 2 if lines > 1 else None)

    for section in sections:
        add([], [])
        add([_text(ws, section.title, font=title)], [])
        heights[-1] = LINE_POINTS + 5
        if section.header:
            add([_text(ws, h, font=HEADER_FONT, fill=HEADER_FILL) if h else _value(ws, "", fill=HEADER_FILL)
                 for h in section.header], list(section.header))
        for row in section.rows:
            cells, texts = [], []
            for i, v in enumerate(row):
                if isinstance(v, tuple):
                    cells.append(_value(ws, v[0], v[1]))
                    texts.append("")
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    cells.append(_value(ws, v, COUNT_FORMAT))
                    texts.append("")
                elif i == 0 and len(row) > 1:
                    cells.append(_text(ws, v, font=bold, alignment=WRAP) if v else None)
                    texts.append(str(v))
                else:
                    cells.append(_text(ws, v, alignment=WRAP) if v else None)
                    texts.append(str(v))
            add(cells, texts)
    columns = [Column([r[j] for r in rows[1:]]) for j in range(len(SUMMARY_WIDTHS))]
    stream_rows(ws, [_text(ws, "claimscrub: exceptions summary", font=Font(name=FONT, bold=True, size=15))], columns,
                heights[1:], header_height=24)


def _lines(chars: int, width: float) -> int:
    """Lines a text of ``chars`` characters takes wrapped in a column ``width`` characters wide (words
    do not break: a line holds somewhat less than the width)."""
    per_line = max(width - 1.5, 1)
    return max(1, int(np.ceil(chars / per_line)))


def _print_setup(ws, landscape: bool = True, title_rows: bool = True) -> None:
    """Printed: fitted to one page wide (as many pages down as it takes), the header row on every page."""
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.page_margins = PageMargins(left=0.4, right=0.4, top=0.5, bottom=0.5, header=0.3, footer=0.3)
    ws.print_options.gridLines = True
    if title_rows:
        ws.print_title_rows = "1:1"


def _text_lengths(col: Column) -> np.ndarray:
    """Characters each cell of a column shows (0 for none): dates as yyyy-mm-dd, money with its cents."""
    values = col.values
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        values = values.to_pylist()
    out = np.zeros(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, Cell):
            v = v.value
            if v is None:
                continue
        if isinstance(v, dt.date):
            out[i] = 10
        elif isinstance(v, float):
            out[i] = len(f"{v:,.2f}") + 1
        else:
            out[i] = len(str(v))
    return out


def _longest(col: Column) -> int:
    """The most characters a cell of the column shows: numbers and dates from their extremes (a pass in
    Arrow), text by its lengths."""
    if col.longest is not None:
        return col.longest
    values = col.values
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        try:
            values = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError, UnicodeEncodeError, OverflowError):
            values = None
    if values is not None and not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        if pa.types.is_date(values.type) or pa.types.is_timestamp(values.type):
            return 10
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            lo, hi = pc.min_max(values).values()
            if lo.as_py() is None:
                return 0
            money = pa.types.is_floating(values.type)
            return max(len(f"{v:,.2f}") + 1 if money else len(str(v)) for v in (lo.as_py(), hi.as_py()))
        if pa.types.is_null(values.type):
            return 0
    lengths = _text_lengths(col)
    return int(lengths.max()) if len(lengths) else 0


def _fit_columns(ws, headers, columns: list[Column], start: int = 1) -> tuple[list[float], list[int]]:
    """Each column's width from its longest text (header included), capped (CAPS, MAX_WIDTH; the
    reviewer's columns FIXED); returns the widths and the positions of columns whose text goes past
    the cap (to wrap). Set before the rows are written."""
    widths, wrapped = [], []
    for j, (h, col) in enumerate(zip(headers, columns, strict=True)):
        longest = _longest(col) if len(col) else 0
        if h in FIXED:
            width = FIXED[h]
        else:
            cap = CAPS.get(h, MAX_WIDTH)
            width = min(int(max(longest * 1.1, len(h) * 1.1, MIN_WIDTH - 2)) + 2, cap)
            if longest + 2 > cap:
                wrapped.append(j)
        widths.append(width)
        ws.column_dimensions[get_column_letter(start + j)].width = width
    return widths, wrapped


def _row_heights(columns: list[Column], widths: list[float], wrapped: list[int]) -> np.ndarray | None:
    """Each row's height in points: enough lines for its longest wrapped text (None: all one line)."""
    if not wrapped or not len(columns[0]):
        return None
    lines = np.ones(len(columns[0]), dtype=np.int64)
    for j in wrapped:
        per_line = max(widths[j] - 1.5, 1)
        lines = np.maximum(lines, np.ceil(_text_lengths(columns[j]) / per_line).astype(np.int64))
    return np.where(lines > 1, lines * LINE_POINTS + 2, 0.0)


def _wrap_styles(ws, col: Column, proto) -> Column:
    """``col`` with its non-blank cells wrapped; cells with a style of their own keep it, wrapped."""
    values = col.values
    present = (pc.is_valid(values).to_numpy(zero_copy_only=False) if isinstance(values, pa.Array)
               else np.array([v is not None for v in values], dtype=bool))
    out = np.full(len(col), None, dtype=object)  # set a style at a time: no Python pass per row
    if not col.styles:
        out[present] = proto
        return Column(values, out.tolist(), col.links)
    codes, first = prototypes(col.styles)
    for k, i in enumerate(first):
        st, rows = col.styles[i], codes == k
        if st is None:
            out[rows & present] = proto
        else:
            cell = WriteOnlyCell(ws)
            cell._style = copy(st._style)
            cell.alignment = WRAP
            out[rows] = cell
    return Column(values, out.tolist(), col.links)


_RANK_OF = {s.value: rank for s, rank in SEVERITY_RANK.items()}


_SEVERITY_NAMES = pd.Index(list(_RANK_OF), dtype=object)
_SEVERITY_RANKS = np.array(list(_RANK_OF.values()), dtype=np.int64)


def _severity_rank(findings: pd.DataFrame) -> pd.Series:
    """Each finding's severity rank (error first); a value that is no severity raises ValueError. One hash
    lookup of the column (a mapping calls Python per value)."""
    at = _SEVERITY_NAMES.get_indexer(findings["severity"].astype(object))
    if (at < 0).any():
        Severity(findings["severity"][at < 0].iloc[0])  # raises, naming the value
        return findings["severity"].map(_RANK_OF)
    return pd.Series(_SEVERITY_RANKS[at], index=findings.index, name="severity")


def sort_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """Severity, then claim, then line: the order of the Exceptions sheet (a new, sorted frame)."""
    order = _severity_rank(findings)
    return findings.assign(_o=order).sort_values(
        ["_o", C.CLAIM_ID, C.LINE_NO, "rule"], na_position="first", kind="stable").drop(columns="_o")


def in_sheet_order(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings as given when already in sheet order (validate's contract), so no copy is made."""
    rank = _severity_rank(findings)
    return findings if rank.is_monotonic_increasing else sort_findings(findings)


def _line_codes(sub: pd.DataFrame, findings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A code for the (source file, source row) of each flagged line ``sub`` and of each finding: the same
    code, the same line; -1 for a finding on none of them. One index lookup each, no key object per line."""
    def key(frame: pd.DataFrame) -> pd.MultiIndex:
        files = frame["source_file"].astype(object) if "source_file" in frame else pd.Series("", index=frame.index)
        return pd.MultiIndex.from_arrays([files.to_numpy(object), frame[C.SOURCE_ROW].astype(object).to_numpy()])

    if not len(sub) or not len(findings):
        return np.full(len(sub), -1, dtype=np.int64), np.full(len(findings), -1, dtype=np.int64)
    lines = key(sub)
    distinct = lines.unique()
    return distinct.get_indexer(lines), distinct.get_indexer(key(findings))


def _claims_rows(line_codes: np.ndarray, finding_codes: np.ndarray) -> np.ndarray:
    """Each finding's row on the Claims sheet (its line among the flagged lines; the last where two are
    alike), 0 for none (codes: see _line_codes)."""
    last = np.full(int(line_codes.max(initial=-1)) + 1, -1, dtype=np.int64)
    np.maximum.at(last, line_codes, np.arange(len(line_codes)))
    found = finding_codes >= 0
    return np.where(found, last[np.where(found, finding_codes, 0)] + 2, 0) if len(last) else np.zeros(
        len(finding_codes), dtype=np.int64)


def exception_ids(findings: pd.DataFrame) -> list[str]:
    """The stable id of every finding, in the frame's order (``exception_id`` of each: the keys joined in
    Arrow, only the hash one at a time)."""
    if not len(findings):
        return []
    keys = pc.binary_join_element_wise(*(_id_text(findings[col]) for col in (C.CLAIM_ID, C.LINE_NO, "rule", "value")),
                                       "\x1f")
    sha = hashlib.sha256
    return [sha(k.encode()).hexdigest()[:12].upper() for k in keys.to_pylist()]


def _id_text(values: pd.Series) -> pa.Array:
    """A column's values as ``exception_id`` writes them into its key: the text, "" for a missing one."""
    if pd.api.types.is_string_dtype(values.dtype) and hasattr(values.array, "__arrow_array__"):
        text = pa.array(values.array)
    elif pd.api.types.is_integer_dtype(values.dtype):  # str(int) is the decimal text Arrow writes
        text = pc.cast(pa.array(values.array, from_pandas=True), pa.string())
    else:
        text = pa.array(["" if pd.isna(x) else str(x) for x in values.tolist()], type=pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return pc.fill_null(text.cast(pa.string()), "")


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


_FORMULA_BYTES = np.frombuffer("".join(_FORMULA_START).encode(), dtype=np.uint8)


def _risky(t: pd.Series, first: np.ndarray | None = None) -> np.ndarray:
    """Text a spreadsheet would read as a formula or an error value. ``first``: each text's first byte,
    when known (see xlsxrows.text_layout): the characters looked for are ASCII, and every error value
    starts with '#'."""
    if first is None:
        return (t.str.match(_FORMULA_START_RE).fillna(False).to_numpy(bool)
                | t.isin(_ERROR_VALUES).to_numpy(bool))
    risky = np.isin(first, _FORMULA_BYTES)
    if (first == ord("#")).any():
        risky |= t.isin(_ERROR_VALUES).to_numpy(bool)
    return risky


def _arrow_text(t: pd.Series) -> pa.Array | None:
    """The text of a str Series as one Arrow string array, or None when it is not Arrow-backed."""
    if not hasattr(t.array, "__arrow_array__"):
        return None
    arr = pa.array(t.array)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else None


def _text_values(ws, values, proto=None) -> Column:
    """One column of cells that are always text (vectorised `_text`), as an Arrow array of texts.

    Blank -> no cell; control characters replaced; over-long text truncated; text that a spreadsheet
    would take for a formula or an error value gets a quote prefix; with ``proto`` every non-blank
    value carries that cell's style. The regex passes run only where a pass over the bytes finds
    something for them.
    """
    s = pd.Series(values, copy=False)
    if not len(s):
        return Column([])
    t = s.astype("str")
    arrow = _arrow_text(t)
    if arrow is None or holds_odd_text(arrow):
        t = t.str.replace(_ILLEGAL.pattern, "\ufffd", regex=True)
        arrow = _arrow_text(t)
    lengths, first, _ = text_layout(arrow) if arrow is not None else (None, None, None)
    if lengths is None or (len(lengths) and lengths.max() > MAX_CELL):  # bytes >= characters
        long = (t.str.len() > MAX_CELL).fillna(False).to_numpy(bool)
        if long.any():
            t = t.where(~long, t.str.slice(0, MAX_CELL - 20) + " [truncated]")
            first = None
    blank = (t.isna() | (t == "")).to_numpy(bool)
    text = pa.array(t.array)  # as pandas holds it (chunked or not: _wrap_styles reads the two apart)
    if blank.any():
        text = pc.if_else(pa.array(blank), pa.scalar(None, text.type), text)
    styles = None if proto is None else [None if b else proto for b in blank.tolist()]
    risky = np.flatnonzero(_risky(t, first) & ~blank)
    if len(risky):
        quoted = _quoted(ws, proto)
        styles = styles or [None] * len(blank)
        for i in risky:
            styles[i] = quoted
    return Column(text, styles)


def _other_values(ws, values: pd.Series, money: bool = False, proto_money=None) -> Column:
    """One non-text column: dates as dates, whole numbers as ints, flags as Y, money in its format (each
    with the most characters a cell shows, from the column's extremes)."""
    s = pd.Series(values, copy=False)
    if pd.api.types.is_datetime64_any_dtype(s):
        col = Column([None if d is None or d != d else d for d in s.dt.date.astype(object).tolist()])
        col.longest = 10 if s.notna().any() else 0
        return col
    if pd.api.types.is_bool_dtype(s):  # "Y" where true: a text array, no object per row
        col = Column(pc.if_else(pa.array(s.to_numpy(dtype=bool, na_value=False)), "Y", pa.scalar(None, pa.string())))
        col.longest = 1
        return col
    if pd.api.types.is_numeric_dtype(s):
        f = s.astype(float).to_numpy()
        missing = np.isnan(f)
        extremes = [v for v in (np.nanmin(f), np.nanmax(f)) if v == v] if len(f) and not missing.all() else []
        if money:  # an Arrow array of the amounts (xlsxrows writes whole cents without a Python float each)
            styles = np.full(len(f), proto_money, dtype=object)
            styles[missing] = None
            col = Column(pa.array(f, mask=missing), styles.tolist())
            col.longest = max((len(f"{v:,.2f}") + 1 for v in extremes), default=0)
            return col
        whole = np.where(missing, 0.0, f)
        if (np.abs(whole) < 2.0**53).all() and (whole == np.round(whole)).all():  # whole numbers: an int64 array
            col = Column(pa.array(whole.astype(np.int64), mask=missing))
        else:
            col = Column([None if x != x else (int(x) if x.is_integer() else float(x)) for x in f])
        col.longest = max((len(str(int(v)) if float(v).is_integer() else str(v)) for v in extremes), default=0)
        return col
    return Column([_value(ws, v) for v in s.tolist()])


def _claim_key(frame: pd.DataFrame, by_file: bool) -> pd.Series:
    """One text key per row naming its claim (and its file, in a nightly review)."""
    claim = frame[C.CLAIM_ID].astype("str")
    if not by_file:
        return claim
    files = frame["source_file"].astype("str") if "source_file" in frame else pd.Series("", index=frame.index)
    return files + "\x1f" + claim


def _joined_sets(groups: np.ndarray, values: pd.Series, n: int) -> list[str]:
    """For each of ``n`` groups, its distinct ``values`` sorted and joined with ", " (the codes ``groups``
    say each value's group). Each group's set is a row of bits, and only the distinct rows are joined: a
    few hundred, where a set per group (thousands) costs a Python object each."""
    codes, names = pd.factorize(values, sort=True)
    if (codes < 0).any():  # a missing value: sets as they are
        sets: list[set] = [set() for _ in range(n)]
        for g, v in zip(groups.tolist(), values.tolist(), strict=True):
            sets[g].add(v)
        return [", ".join(sorted(x)) for x in sets]
    names = np.asarray(names.astype(object))
    bits = np.zeros((n, -(-len(names) // 64) * 8), dtype=np.uint8)
    np.bitwise_or.at(bits, (groups, codes // 8), (1 << (codes % 8)).astype(np.uint8))
    if bits.shape[1] == 8:  # up to 64 values: a row is one word, hashed (sorting rows costs more)
        inverse, first = pd.factorize(bits.view(np.uint64).reshape(-1))
        distinct = first.astype(np.uint64).reshape(-1, 1).view(np.uint8)
    else:
        distinct, inverse = np.unique(bits, axis=0, return_inverse=True)
    texts = [", ".join(names[np.flatnonzero(np.unpackbits(row, bitorder="little"))]) for row in distinct]
    return [texts[i] for i in inverse.reshape(-1).tolist()]


def worklist(findings: pd.DataFrame, lines: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """One row per flagged claim, in the order to work them: worst severity, then the largest charges at
    risk, then the oldest date of service. ``findings`` in sheet order; ``first_row``: the position of
    the claim's first exception."""
    by_file = "source_file" in findings
    keys = ["source_file", C.CLAIM_ID] if by_file else [C.CLAIM_ID]
    has_claim = findings[C.CLAIM_ID].notna().to_numpy(bool)
    f = findings[has_claim]
    if f.empty:
        return pd.DataFrame(columns=[*keys, "rank", "severity", "rules", "exceptions", "first_problem", "at_risk",
                                     C.PAYER, C.SERVICE_DATE, "days", "status", "first_row"])
    codes, uniques = pd.factorize(_claim_key(f, by_file))  # integer groups: far cheaper than text keys
    status = f["status"].fillna("Open") if "status" in f else pd.Series("Open", index=f.index)
    work = pd.DataFrame({"c": codes, "rank": _severity_rank(f).to_numpy(), "pos": np.flatnonzero(has_claim),
                         "open": (~status.isin(review.CLOSED)).to_numpy(bool)})
    g = work.groupby("c", sort=True)
    out = pd.DataFrame({"rank": g["rank"].min(), "exceptions": g.size(), "first_row": g["pos"].min(),
                        "open": g["open"].sum()})
    first = out["first_row"].to_numpy()
    for k in keys:
        out[k] = findings[k].to_numpy()[first]
    out[C.PAYER] = findings[C.PAYER].to_numpy()[first]
    out["first_problem"] = findings["message"].to_numpy()[first]
    out["rules"] = _joined_sets(codes, f["rule"], len(uniques))
    at = pd.Index(uniques).get_indexer(_claim_key(lines, by_file))
    mine = at >= 0
    per_claim = pd.DataFrame({"c": at[mine], "charge": lines[C.CHARGE].to_numpy()[mine],
                              "dos": lines[C.SERVICE_DATE].to_numpy()[mine]}).groupby("c")
    out["charges"] = per_claim["charge"].sum().reindex(out.index)
    out[C.SERVICE_DATE] = per_claim["dos"].min().reindex(out.index)
    severity = {rank: s.value for s, rank in SEVERITY_RANK.items()}
    out["severity"] = out["rank"].map(severity)
    out["at_risk"] = out["charges"].where(out["severity"] == "error")
    days = (pd.Timestamp(as_of) - pd.to_datetime(out[C.SERVICE_DATE])).dt.days
    out["days"] = days.where(days >= 0)  # a date of service after the as-of date has no age yet
    out["status"] = np.where(out["open"] > 0, "Open", "Worked")
    out = out.sort_values(["rank", "at_risk", C.SERVICE_DATE, C.CLAIM_ID], ascending=[True, False, True, True],
                          na_position="last", kind="stable").reset_index(drop=True)
    return out


def _worklist_sheet(wb, findings: pd.DataFrame, lines: pd.DataFrame, as_of: str, source_file_column: bool) -> None:
    """``lines``: the flagged claims' lines."""
    ws = wb.create_sheet("Worklist")
    headers = (("Source File",) if source_file_column else ()) + WORKLIST_HEADERS
    wanted = [c for c in ("source_file", C.CLAIM_ID, C.CHARGE, C.SERVICE_DATE) if c in lines]
    w = worklist(findings, lines[wanted], as_of)
    n = len(w)
    link = _proto(ws, font=Font(name=FONT, size=11, color="0563C1", underline="single"))
    sev_protos = {k: _proto(ws, fill=v) for k, v in FILLS.items()}
    money = _proto(ws, number_format=MONEY_FORMAT)
    severity = w["severity"].astype(str).tolist()
    rows = pc.cast(pa.array(w["first_row"].to_numpy(np.int64) + 2), pa.string())
    columns = [
        Column(list(range(1, n + 1))),
        Column(_text_values(ws, w[C.CLAIM_ID]).values, [link] * n,
               Links(np.arange(n), pc.binary_join_element_wise("'Exceptions'!A", rows, ""),
                     "Go to the claim's first exception")),
        Column(severity, [sev_protos.get(v) for v in severity]), _text_values(ws, w["rules"]),
        _other_values(ws, w["exceptions"]), _text_values(ws, w["first_problem"]),
        _other_values(ws, w["at_risk"], True, money), _text_values(ws, w[C.PAYER]),
        _other_values(ws, w[C.SERVICE_DATE]), _other_values(ws, w["days"]), _text_values(ws, w["status"]),
    ]
    if source_file_column:
        columns.insert(0, _text_values(ws, w["source_file"]))
    _stream_fitted(ws, headers, columns)


def _stream_fitted(ws, headers, columns: list[Column], freeze: str = "A2") -> None:
    """Widths fitted to the text, long text wrapped in rows tall enough, filter, frozen header, print setup;
    then the rows."""
    widths, wrapped = _fit_columns(ws, headers, columns) if columns else ([], [])
    if columns and len(columns[0]):
        wrap = _proto(ws, alignment=WRAP)
        for j in wrapped:
            columns[j] = _wrap_styles(ws, columns[j], wrap)
    ws.freeze_panes = freeze
    ws.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{max(len(columns[0]) + 1 if columns else 1, 2)}"
    _print_setup(ws)
    heights = _row_heights(columns, widths, wrapped) if columns else None
    stream_rows(ws, _header_cells(ws, headers), columns if columns and len(columns[0]) else [], heights)


def _exceptions_sheet(wb, findings: pd.DataFrame, claim_rows: np.ndarray, source_file_column: bool,
                      ids: list[str] | None = None, labels: dict[str, str] | None = None,
                      carried: review.Carried | None = None) -> None:
    """``findings`` in sheet order; ``claim_rows``: each one's row on the Claims sheet (see _claims_rows)."""
    ws = wb.create_sheet("Exceptions")
    headers = (("Source File",) if source_file_column else ()) + EXCEPTION_HEADERS
    n = len(findings)
    status_col = get_column_letter(headers.index("Status") + 1)
    # A stop error on the whole column: Excel and LibreOffice refuse typed text that is not on the list.
    dv = DataValidation(type="list", formula1='"' + ",".join(STATUSES) + '"', allow_blank=True,
                        showDropDown=False, showErrorMessage=True, errorStyle="stop")
    dv.error, dv.errorTitle = "Pick a status from the list: " + ", ".join(STATUSES), "Status"
    dv.add(f"{status_col}2:{status_col}1048576")
    ws.data_validations.append(dv)
    if not n:
        _stream_fitted(ws, headers, [Column([]) for _ in headers])
        return
    link = _proto(ws, font=Font(name=FONT, size=11, color="0563C1", underline="single"))
    f = findings
    ids = exception_ids(f) if ids is None else ids
    linked = claim_rows > 0
    id_styles = np.full(n, None, dtype=object)
    id_styles[linked] = link
    links = Links(np.flatnonzero(linked), pc.binary_join_element_wise(
        "'Claims'!A", pc.cast(pa.array(claim_rows[linked]), pa.string()), ""), "Go to the claim's lines")
    sev_protos = {k: _proto(ws, fill=v) for k, v in FILLS.items()}
    severity = f["severity"].tolist()
    columns = [
        Column(ids, id_styles.tolist(), links), _text_values(ws, f[C.CLAIM_ID]), _other_values(ws, f[C.LINE_NO]),
        _other_values(ws, f[C.SOURCE_ROW]), _text_values(ws, f[C.PATIENT_ID]),
        _other_values(ws, f[C.SERVICE_DATE]), _text_values(ws, f[C.PAYER]), _text_values(ws, f["rule"]),
        Column(severity, [sev_protos.get(v) for v in severity]), _text_values(ws, show_fields(f["field"], labels)),
        _text_values(ws, f["value"]), _text_values(ws, f["message"]), _text_values(ws, f["fix"]),
        *_disposition_columns(ws, carried, n),
    ]
    if source_file_column:
        columns.insert(0, _text_values(ws, pd.Series(f["source_file"].tolist() if "source_file" in f else [""] * n)))
    _stream_fitted(ws, headers, columns)


def _disposition_columns(ws, carried: review.Carried | None, n: int) -> list[Column]:
    """Status, Reviewer and Notes: carried from earlier reviews (see review.carry_forward), else Open."""
    if carried is None:
        return [Column(["Open"] * n), Column([None] * n), Column([None] * n)]
    return [_text_values(ws, pd.Series(carried.status, dtype=object)),
            _text_values(ws, pd.Series(carried.reviewer, dtype=object)),
            _text_values(ws, pd.Series(carried.notes, dtype=object))]


def _review_state_sheet(wb, ids: list[str] | None, carried: review.Carried | None) -> None:
    """Hidden: each exception's claim hash and the status written with its date, so the next run can tell a
    reviewer's change from what claimscrub wrote, and whether the claim changed since."""
    ws = wb.create_sheet(review.STATE_SHEET)
    ws.sheet_state = "hidden"
    if not ids or carried is None:
        stream_rows(ws, _header_cells(ws, review.STATE_HEADERS), [])
        return
    gone = carried.gone if carried.gone is not None else pd.DataFrame(columns=review.COLUMNS)
    n = len(ids)
    if not len(gone):  # only what this run made: hex ids and hashes, listed statuses, ISO dates (no cleaning)
        own = lambda values: Column(pa.array([v or None for v in values], type=pa.string()))  # noqa: E731
        stream_rows(ws, _header_cells(ws, review.STATE_HEADERS), [
            own(ids), own(carried.claim_hash), _text_values(ws, pd.Series(carried.status, dtype=object)),
            own(carried.since), Column(["yes"] * n), Column(pa.nulls(n, pa.string())), Column(pa.nulls(n, pa.string()))])
        return
    stream_rows(ws, _header_cells(ws, review.STATE_HEADERS), [
        _text_values(ws, pd.Series([*ids, *gone["exception_id"]], dtype=object)),
        _text_values(ws, pd.Series([*carried.claim_hash, *gone["claim_hash"]], dtype=object)),
        _text_values(ws, pd.Series([*carried.status, *gone["status"]], dtype=object)),
        _text_values(ws, pd.Series([*carried.since, *gone["since"]], dtype=object)),
        Column(["yes"] * n + ["no"] * len(gone)),
        _text_values(ws, pd.Series([""] * n + gone["reviewer"].tolist(), dtype=object)),
        _text_values(ws, pd.Series([""] * n + gone["notes"].tolist(), dtype=object))])


def _claims_sheet(wb, sub: pd.DataFrame, findings, codes: tuple[np.ndarray, np.ndarray], source_file_column: bool,
                  labels: dict[str, str] | None = None) -> None:
    """The flagged claims' lines (``sub``), one column per thing a reviewer reads (modifiers and diagnoses each
    in one column), headed as the input file headed them; the cells a finding points at highlighted (``codes``:
    the lines' and the findings' codes, see _line_codes)."""
    ws = wb.create_sheet("Claims")
    labels = labels or C.LABELS
    keys = (["source_file"] if source_file_column else []) + [C.SOURCE_ROW] + [
        c for c in C.CANONICAL if c not in (C.SOURCE_ROW, C.SOURCE_SHEET, *MODIFIER_GROUP[1:], *DX_GROUP[1:])]
    keys = ["modifiers" if k == MODIFIER_GROUP[0] else "dx" if k == DX_GROUP[0] else k for k in keys]

    def header(k: str) -> str:
        if k == "source_file":
            return "Source File"
        group = {"modifiers": MODIFIER_GROUP, "dx": DX_GROUP}.get(k)
        if group:
            names = {labels.get(c, c) for c in group}
            return names.pop() if len(names) == 1 else C.LABELS[group[0]]
        return labels.get(k, k)

    headers = list(dict.fromkeys(header(k) for k in keys))
    if len(headers) < len(keys):  # two columns the file headed alike: the display names instead
        headers = [C.LABELS.get(k, "Source File" if k == "source_file" else
                                C.LABELS[MODIFIER_GROUP[0]] if k == "modifiers" else C.LABELS[DX_GROUP[0]]) for k in keys]
    if sub.empty:
        _stream_fitted(ws, headers, [Column([]) for _ in headers], freeze="C2")
        return
    hot = _hot_lines(findings, codes[1])
    money_proto = _proto(ws, number_format=MONEY_FORMAT)
    hot_protos = {}
    columns = []
    for col in keys:
        if col in ("modifiers", "dx"):
            out = _text_values(ws, _joined(sub, MODIFIER_GROUP if col == "modifiers" else DX_GROUP))
        else:
            values = sub[col] if col in sub else pd.Series(None, index=sub.index, dtype=object)
            if col in C.TEXT_COLUMNS or col == "source_file":
                out = _text_values(ws, values)
            else:
                out = _other_values(ws, values, col == C.CHARGE, money_proto)
        if col in hot:
            styles = out.styles or [None] * len(out)
            arrow = isinstance(out.values, pa.Array | pa.ChunkedArray)  # never a date or a cell: no value needed
            for i in np.flatnonzero(np.isin(codes[0], hot[col])).tolist():
                styles[i] = _highlight(ws, None if arrow else out.values[i], styles[i], hot_protos)
            out.styles = styles
        columns.append(out)
    _stream_fitted(ws, headers, columns, freeze=f"{get_column_letter(3 if source_file_column else 2)}2")


def _hot_lines(findings: pd.DataFrame, finding_codes: np.ndarray) -> dict[str, np.ndarray]:
    """Claims sheet column -> the codes of the lines (see _line_codes) where a finding points at it: each
    finding's Field names split in Arrow (no list per finding), a modifier or diagnosis as its group's column."""
    fields = pa.array(findings["field"].astype(str).array, type=pa.string(), from_pandas=True)
    parts = pc.split_pattern(fields, ", ")
    names = pd.Series(pc.list_flatten(parts).to_numpy(zero_copy_only=False), dtype=object)
    line = finding_codes[pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)]
    names, line = names[line >= 0], line[line >= 0]
    cols, distinct = pd.factorize(names.map({n: _GROUP_OF.get(n, n) for n in names.unique()}))
    return {name: line[cols == k] for k, name in enumerate(distinct)}


def _joined(frame: pd.DataFrame, group) -> pd.Series:
    """Several text columns as one (``"50, JZ"``), blanks left out; None where all are blank."""
    arrays = [pa.array(frame[c].array if c in frame else pd.Series(None, index=frame.index, dtype="str").array,
                       type=pa.string(), from_pandas=True) for c in group]
    joined = pc.binary_join_element_wise(*arrays, ", ", null_handling="replace", null_replacement="")
    joined = pc.utf8_trim(pc.replace_substring_regex(joined, "(, )+", ", "), ", ")  # blanks left out
    joined = pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), joined)
    return pd.Series(pd.array(joined, dtype="str"), index=frame.index)


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
    columns = [_other_values(ws, issues[c]) if c == "row" else _text_values(ws, issues[c])
               for c in ("file", "sheet", "row", "column", "value", "reason", "rule")]
    _stream_fitted(ws, headers, columns if len(issues) else [Column([]) for _ in headers])


def _rules_sheet(wb) -> None:
    """The catalog in plain language: what each rule checks, how to fix it, and a public source."""
    ws = wb.create_sheet("Rules")
    headers = ("Rule", "Severity", "Title", "What it checks", "Suggested fix", "Source (public)")
    columns = [Column([r.id for r in RULES]), Column([r.severity.value for r in RULES]),
               _text_values(ws, pd.Series([r.title for r in RULES], dtype="str")),
               _text_values(ws, pd.Series([r.checks for r in RULES], dtype="str")),
               _text_values(ws, pd.Series([r.fix for r in RULES], dtype="str")),
               _text_values(ws, pd.Series([r.source for r in RULES], dtype="str"))]
    _stream_fitted(ws, headers, columns)


_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: a cell a spreadsheet would evaluate
_CSV_FORMULA_RE = "[" + re.escape("".join(_CSV_FORMULA)) + "]"


def neutralize_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """Text fields a spreadsheet would evaluate (starting with =, +, -, @, tab or CR) get a leading
    apostrophe, as OWASP's CSV injection guidance says; numbers and dates are left as they are."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        text = values.astype("str")
        risky = text.str.match(_CSV_FORMULA_RE).fillna(False).to_numpy(bool)
        if risky.any():
            out[col] = values.astype(object).where(~risky, "'" + text)
    return out


def write_findings_csv(findings: pd.DataFrame, path: Path, ids: list[str] | None = None,
                       labels: dict[str, str] | None = None, mode: int = DEFAULT_MODE) -> Path:
    """The same findings as plain data, with their exception ids (``ids``: already computed, in sheet
    order), the Field column in the reviewer's words, safe to open in a spreadsheet; written atomically."""
    path = Path(path)
    out = in_sheet_order(findings).copy()
    out.insert(0, "exception_id", exception_ids(out) if ids is None else ids)
    out["field"] = show_fields(out["field"], labels)
    out = neutralize_csv(out)
    fd, tmp = tempfile.mkstemp(prefix=".~" + path.stem, suffix=".tmp", dir=path.parent)  # mode 0600
    os.close(fd)
    try:
        out.to_csv(tmp, index=False, date_format="%Y-%m-%d")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _output_error(exc, "the findings CSV") from None
    return path
