"""Validate canonical claim lines against the rule catalog and return findings (pure, never raises).

``find_violations`` runs the pandera models lazily, maps their failure cases to one finding per
(line or claim, rule), adds ingest findings (the unreadable cells, and FILE-003), and lists the rules that could not
be evaluated for this file as *not checked*.
"""

import datetime as dt
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

from pipeline import lookups, reference
from pipeline.config import ScrubConfig
from pipeline.derive import derive_claims
from pipeline.ingest import COMBINED_DX, COMBINED_MODIFIERS, release_memory, to_canonical
from pipeline.threads import beside
from schemas import columns as C
from schemas.claims import CLAIM_SCHEMA, FACT_COLUMNS, LINE_SCHEMA
from schemas.rules import RULES, RULES_BY_ID, SEVERITY_RANK, Level, Rule

log = logging.getLogger(__name__)

FINDING_COLUMNS = [
    "rule", "severity", "claim_id", "line_no", "source_row", "field", "value", "message", "fix",
    "patient_id", "service_date", "payer", "charge",
]

def _facts_for_checks(claims: pd.DataFrame) -> pd.DataFrame:
    """The claim facts the rules read (``FACT_COLUMNS``), reviewer texts as the flags ``ClaimFacts``
    declares (``text != ""``): pandera post-processes a failing dataframe check over every column of the
    frame, so it gets a narrow frame of cheap values."""
    keep = {}
    for col in FACT_COLUMNS:
        values = claims[col]
        if col in _FLAGS and values.dtype != bool:
            values = (values != "") if isinstance(values.dtype, pd.StringDtype) else values.astype(bool)  # = bool(text)
        keep[col] = values
    return pd.DataFrame(keep, index=claims.index, copy=False)  # no consolidating copy (``Columns.frame``)


_FLAGS = {name for name, column in CLAIM_SCHEMA.columns.items() if str(column.dtype) == "bool"}


@dataclass
class Validation:
    """Findings for one file, the rules not checked (rule -> reason) and the claim facts."""

    findings: pd.DataFrame
    not_checked: dict[str, str] = field(default_factory=dict)
    claims: pd.DataFrame | None = None
    reference: dict = field(default_factory=dict)  # tables used, and the rules checked on part of the lines


def _failing(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> dict[str, pd.Index]:
    """Rule id -> index labels of the rows that fail it, read from each failing check's output.

    A rule check that raised, or whose output is not one boolean per row, and any other schema error
    (a column's type, say) is logged as a contract problem by name; no rows are reported for it.
    """
    try:
        schema.validate(frame, lazy=True)
        return {}
    except SchemaErrors as exc:
        errors = exc.schema_errors
    except SchemaError as exc:
        errors = [exc]
    failing, problems = {}, set()
    for err in errors:
        name = getattr(err.check, "name", None) or str(err.check)
        out = err.check_output
        if name not in RULES_BY_ID or not isinstance(out, pd.Series) or not out.index.equals(frame.index):
            problems.add(name)
            continue
        bad = ~out.astype(bool).to_numpy(bool)
        if bad.any():
            failing[name] = frame.index[bad]
    if problems:
        log.warning("schema contract problems in %s: %s", schema.name, sorted(problems))
    return failing


def _line_columns(rule: Rule, lines: pd.DataFrame) -> list[str]:
    """The columns a failing line's detail reads: taking only these is cheaper than taking every column of
    the failing lines."""
    return list(dict.fromkeys([C.CLAIM_ID, C.LINE_NO, C.SOURCE_ROW, *rule.detail_columns]))


def _per_row(values, index: pd.Index) -> np.ndarray:
    """A detail's or note's output (a Series on the failing rows, or one value for all) as an array in
    ``index`` order."""
    if isinstance(values, pd.Series):
        return values.reindex(index).to_numpy(dtype=object)
    return np.full(len(index), values, dtype=object)


def _show(value) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp | dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def find_violations(
    lines: pd.DataFrame,
    as_of: dt.date,
    config: ScrubConfig | None = None,
    present: set[str] | None = None,
    history: pd.DataFrame | None = None,
    salt: str = "",
    ingest_issues: pd.DataFrame | None = None,
    partitions: int = 1,
    mapper: Callable = map,
    headers: dict[str, str] | None = None,
) -> Validation:
    """Findings for canonical claim lines; ``present`` lists the canonical columns the file had;
    ``headers`` maps the file's headers to canonical names (ingest's ``mapped``): a cell ingest could not
    read is reported once, and the rules that needed it are not checked on its line.

    ``partitions`` > 1 checks the lines in parts that keep claims whole and each patient's claims
    together (``partition_lines``), through ``mapper(function, parts)`` (``map``, or a Dask client's);
    the findings are the same as in one piece.
    """
    config = config or ScrubConfig()
    lines = to_canonical(lines)
    present = set(C.CANONICAL) if present is None else set(present)
    not_checked = {
        r.id: "column(s) absent from the file: " + ", ".join(
            dict.fromkeys(C.LABELS.get(c, c) for c in r.needs if c not in present))
        for r in RULES if any(c not in present for c in r.needs)
    }
    for rule in config.disabled:
        not_checked.setdefault(rule, "disabled in the configuration")
    reference = reference_use(lines, config, not_checked)
    work = functools.partial(rule_findings, as_of=as_of, config=config, present=present, history=history,
                             salt=salt)
    if partitions > 1 and len(lines):
        done = list(mapper(work, partition_lines(lines, partitions)))
        findings = pd.concat([d[0] for d in done], ignore_index=True)
        claims = pd.concat([d[1] for d in done], ignore_index=True)
    else:
        findings, claims = work(lines)
    _drop_out_of_reach(not_checked, claims, present)
    _not_judged_claims(reference, claims)
    _lcd_date_unknown(reference, claims, config)
    findings = _once_per_cause(findings[~findings["rule"].isin(not_checked)])
    cells = _ingest_findings(ingest_issues, lines, present)
    findings, cells = _unread_cells_once(findings, cells, headers or {})
    findings = pd.concat([findings, cells], ignore_index=True)
    result = Validation(_finish(findings, config), not_checked, claims, reference)
    release_memory()
    return result


def _drop_out_of_reach(not_checked: dict[str, str], claims: pd.DataFrame, present: set[str]) -> None:
    """A rule whose optional columns are absent is checked after all when no claim of the file is within its
    reach (say, HFS-033 on a file with no claim under a 2026 LCD): nothing it could say was left unsaid."""
    for r in RULES:
        if (r.reach is not None and r.id in not_checked and any(c not in present for c in r.needs)
                and not (len(claims) and r.reach(claims).to_numpy(bool).any())):
            del not_checked[r.id]


def _not_judged_claims(reference: dict, claims: pd.DataFrame) -> None:
    """CODE-001 on claims dated between two ICD-10-CM releases whose codes only one of them has: not checked on
    those claims (``reference["partly"]``; the Summary counts them as checked in part)."""
    if "dx_not_judged" not in claims or not (n := int(claims["dx_not_judged"].to_numpy(bool).sum())):
        return
    between = [f"{b['between'][0]} and {b['between'][1]}" for u in reference.get("tables", [])
               if u["kind"] == "icd10cm" for b in u.get("bracketed", [])]
    reference.setdefault("partly", {})["CODE-001"] = (
        f"not checked on {n} claim(s) dated between ICD-10-CM releases ({'; '.join(between)}) with a diagnosis "
        "code billable in only one of the two: import the ICD-10-CM order file for those dates")


LCD_REWRITE_FROM = pd.Timestamp("2026-01-01")  # the MACs' 2026 botulinum-toxin LCD rewrites (HFS-033)


def _lcd_date_unknown(reference: dict, claims: pd.DataFrame, config: ScrubConfig) -> None:
    """HFS-033 on claims dated in 2026 or later whose payer follows Medicare's LCDs (plain Medicare, a MAC whose
    rewritten LCD is not confirmed, a Medicare Advantage plan: 42 CFR 422.101(b)(3)) and whose profile has no
    ``lcd_effective``: not checked on those claims, never passed (``claims["lcd_unknown"]``;
    ``reference["partly"]`` says how to set the date)."""
    if not len(claims) or "profile_name" not in claims or "HFS-033" in config.disabled:
        return
    recent = (claims["dos_max"] >= LCD_REWRITE_FROM).to_numpy(bool)
    if not recent.any():  # no claim dated in the LCDs' rewrite year or later: nothing to say (and nothing to do)
        return
    names = claims["profile_name"].astype(str)
    follow = {n for n in names.unique().tolist() if n == "Medicare" or (
        n in config.payers and (config.payers[n].mac or config.payers[n].follows_lcds))}
    unknown = (claims["in_scope"].to_numpy(bool) & (claims["is_64612"] | claims["is_toxin"]).to_numpy(bool)
               & claims["lcd_effective"].isna().to_numpy() & recent & names.isin(follow).to_numpy(bool))
    claims["lcd_unknown"] = unknown
    if not unknown.any():
        return
    which = sorted(set(names[unknown]))
    plans = [n for n in which if not (n == "Medicare" or config.payers[n].mac)]  # Medicare Advantage and the like
    macs = [n for n in which if n not in plans]
    how = []
    if macs:
        how.append(f"[payers.{_toml_key(macs[0])}] lcd_effective = YYYY-MM-DD (your MAC's LCD effective date), or "
                   "name the MAC as the payer (Medicare Noridian and Medicare WPS carry their confirmed dates)")
    if plans:
        how.append(f"[payers.{_toml_key(plans[0])}] lcd_effective = YYYY-MM-DD (a Medicare Advantage plan follows "
                   "the LCD of the MAC of its service area: that MAC's date)")
    reference.setdefault("partly", {})["HFS-033"] = (
        f"not checked on {int(unknown.sum())} Medicare claim(s) dated from {LCD_REWRITE_FROM.date()} whose payer "
        f"profile ({', '.join(which)}) has no 2026 LCD date: set it in claimscrub.toml, e.g. " + "; or ".join(how))


def _toml_key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else f'"{name}"'


def reference_use(lines: pd.DataFrame, config: ScrubConfig, not_checked: dict[str, str]) -> dict:
    """The reference tables used for these lines' dates of service, and per rule decided on tables the lines
    no table covers: a rule none of whose lines is covered goes to ``not_checked``; one covered in part is
    listed under "partly" with how many lines were not checked (the Summary and the run's record say both)."""
    kinds = tuple(dict.fromkeys(k for r in RULES for k in r.tables))
    dates = lines[C.SERVICE_DATE]
    try:
        used = reference.used(dates, config.reference_dir, kinds)
    except reference.RefDataError as exc:  # a broken imported manifest: the rules on tables are not checked
        for r in RULES:
            if r.tables:
                not_checked.setdefault(r.id, str(exc))
        return {"tables": [], "partly": {}, "warnings": [str(exc)]}
    by_kind = {u["kind"]: u for u in used}
    dated = int(dates.notna().sum())
    partly, warnings = {}, []
    for r in RULES:
        for kind in r.tables:
            u = by_kind.get(kind)
            if u is None:
                not_checked.setdefault(r.id, f"no {kind} reference table")
            elif u["uncovered_lines"] and not u["applied_outside_coverage"]:
                covered = ", ".join([t["covers"] for t in u["tables"]] + [
                    f"{b['dates']} judged from {b['between'][0]} and {b['between'][1]}"
                    for b in u.get("bracketed", [])])
                why = (f"{u['uncovered_lines']} of {dated} dated lines have a date of service outside the {kind} "
                       "tables" + (f" (covered here: {covered}; import the release for those dates)" if covered
                                   else ": import the release for those dates"))
                if u["uncovered_lines"] >= dated:
                    not_checked.setdefault(r.id, why)
                else:
                    partly[r.id] = why
    for u in used:
        for b in u.get("bracketed", []):
            warnings.append(f"{b['lines']} lines are dated {b['dates']}, between the {u['kind']} releases "
                            f"{b['between'][0]} and {b['between'][1]} (none shipped for those dates): judged from "
                            f"the {b['between'][0]} and {b['between'][1]} releases (a code billable in both passes; "
                            "one billable in neither, nor in any release, is an error; any other is not checked on "
                            "its claim); import the release for those dates to check them fully")
        before = u["uncovered_lines"] - u["after_coverage_lines"]
        if u["applied_outside_coverage"] and before > 0:
            warnings.append(f"{before} lines are dated outside the {u['kind']} tables' coverage (before or between "
                            "them): checked against the nearest table")
        if u["after_coverage_lines"]:
            warnings.append(f"{u['after_coverage_lines']} lines are dated after the newest {u['kind']} table's "
                            f"coverage ({u['latest_coverage']})" + (
                                ": checked against it anyway; import the current quarter's file"
                                if u["applied_outside_coverage"] else ": not checked on those lines"))
    return {"tables": used, "partly": partly, "warnings": warnings}


def combine_reference_use(uses: list[tuple[str, dict]]) -> dict:
    """Several files' ``reference_use`` as one (a night's): each table version with its lines and the number of
    files that used it, each file's coverage warnings and rules checked in part said with ``label`` (a file's
    name in the review workbook, its id where names may not go). Same shape, plus ``files``."""
    kinds: dict[str, dict] = {}
    partly: dict[str, list[str]] = {}
    warnings: list[str] = []
    for label, ref in uses:
        for use in (ref or {}).get("tables", []):
            kind = kinds.setdefault(use["kind"], {"kind": use["kind"], "tables": {}, "bracketed": {}})
            for t in use["tables"]:
                row = kind["tables"].setdefault((t["version"], t["source"]), {**t, "lines": 0, "files": 0})
                row["lines"] += int(t["lines"])
                row["files"] += 1
            for b in use.get("bracketed", []):
                row = kind["bracketed"].setdefault(tuple(b["between"]), {**b, "lines": 0, "files": 0})
                row["lines"] += int(b["lines"])
                row["files"] += 1
        warnings += [f"{label}: {w}" for w in (ref or {}).get("warnings", [])]
        for rule, why in (ref or {}).get("partly", {}).items():
            partly.setdefault(rule, []).append(f"{label}: {why}")
    tables = [{"kind": k["kind"], "tables": list(k["tables"].values()), "bracketed": list(k["bracketed"].values())}
              for k in kinds.values()]
    return {"tables": tables, "partly": {r: "; ".join(w) for r, w in sorted(partly.items())}, "warnings": warnings,
            "files": len(uses)}


_LEADING_COUNT = re.compile(r"^(\d+) lines (.*)$")


def grouped_warnings(uses: list[dict]) -> list[str]:
    """Several files' coverage warnings, each said once: the same warning of several files with their lines
    added up and the files counted ("41 lines in 2 file(s) are dated ..."), for a console line per warning."""
    groups: dict[str, list[int]] = {}
    for ref in uses:
        for w in (ref or {}).get("warnings", []):
            m = _LEADING_COUNT.match(w)
            key, n = (m.group(2), int(m.group(1))) if m else (w, 0)
            groups.setdefault(key, []).append(n)
    return [f"{sum(ns)} lines{f' in {len(ns)} file(s)' if len(ns) > 1 else ''} {key}" if any(ns) else key
            for key, ns in groups.items()]


def partition_lines(lines: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    """``parts`` frames of lines: a claim is never split, and all claims of one patient (the patient of
    the claim's first line, as the repeat-session rule counts them) fall in the same part."""
    claim = lines[C.CLAIM_ID]
    patient = lines[C.PATIENT_ID].groupby(claim, sort=False).transform("first")
    key = patient.astype(object).where(patient.notna(), claim.astype(object)).fillna("")
    part = pd.util.hash_array(key.to_numpy(dtype=object)) % parts
    return [lines[part == k] for k in range(parts)]


PARALLEL_LINES = 50_000  # from this many lines, the line rules run on a helper thread beside derive_claims


def _line_rule_findings(lines: pd.DataFrame, as_of: dt.date, config: ScrubConfig) -> list[pd.DataFrame]:
    """The line rules' findings (ClaimLines), one frame for every failing rule (none: an empty list).

    As for the claim rules (``_claim_rule_findings``), a failing rule's lines are positions: only a rule with
    its own detail or note gets a frame of its failing lines.
    """
    which, names, profiles = config.profiles_of(lines[C.PAYER])  # once per distinct payer name
    days = np.array([p.timely_filing_days for p in profiles], dtype=float)[which]
    ndc = lookups.ndc_facts(lines, config.reference_dir)  # NDC-001: the NDC table in force on each line's date
    checked = lines.assign(as_of=pd.Timestamp(as_of), timely_filing_days=days, **{c: ndc[c] for c in ndc.columns})
    rule_of, pos_of, field_of, value_of, reason_of = [], [], [], [], []
    for rule, idx in _failing(LINE_SCHEMA, checked).items():
        entry = RULES_BY_ID[rule]
        pos = checked.index.get_indexer(idx)
        if entry.detail:  # the rule's own field and value
            fld, value = entry.detail(checked.loc[idx, _line_columns(entry, checked)], lines)
            fld, value = _per_row(fld, idx), _per_row(value, idx)
        else:  # its field, and the line's value there
            fld = np.full(len(pos), entry.field or "", dtype=object)
            value = (np.array([_show(v) for v in checked[entry.field].iloc[pos].tolist()], dtype=object)
                     if (entry.field or "") in checked else np.full(len(pos), "", dtype=object))
        reason = np.full(len(pos), None, dtype=object)
        if entry.note:  # said after the message; never part of the value (nor of the exception id)
            facts = checked.loc[idx, [c for c in entry.note_columns if c in checked]]
            if "payer_profile" in entry.note_columns:
                facts = facts.assign(payer_profile=np.array(names, dtype=object)[which[pos]])
            reason = _per_row(pd.Series(entry.note(facts), index=idx), idx)
        rule_of.append(np.full(len(pos), rule, dtype=object))
        pos_of.append(pos)
        field_of.append(fld)
        value_of.append(value)
        reason_of.append(reason)
    if not rule_of:
        return []
    pos = np.concatenate(pos_of)
    return [pd.DataFrame({
        "rule": np.concatenate(rule_of), C.CLAIM_ID: lines[C.CLAIM_ID].take(pos).to_numpy(),
        C.LINE_NO: lines[C.LINE_NO].take(pos).to_numpy(), C.SOURCE_ROW: lines[C.SOURCE_ROW].take(pos).to_numpy(),
        "field": np.concatenate(field_of), "value": np.concatenate(value_of), "_line": lines.index.take(pos),
        "reason": np.concatenate(reason_of),
    })]


def rule_findings(lines: pd.DataFrame, as_of: dt.date, config: ScrubConfig, present: set[str],
                  history: pd.DataFrame | None, salt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The line and claim rules' findings (before severities and messages) and the claim facts.

    Both only read ``lines``. For a large file the line rules run on a helper thread while the claim
    facts are derived: most of either is numpy and Arrow work, which releases the GIL.
    """
    if len(lines) >= PARALLEL_LINES:
        with beside(_line_rule_findings, lines, as_of, config, name="claimscrub-lines") as line_rows:
            claims = derive_claims(lines, config, present, history, salt)
            rows = line_rows()
    else:
        rows = _line_rule_findings(lines, as_of, config)
        claims = derive_claims(lines, config, present, history, salt)
    if len(claims) and (part := _claim_rule_findings(claims, lines, _failing(CLAIM_SCHEMA, _facts_for_checks(claims)))
                        ) is not None:
        rows.append(part)

    findings = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["rule", C.CLAIM_ID, C.LINE_NO, C.SOURCE_ROW, "field", "value", "_line"])
    if len(findings):
        at = lines[[C.PATIENT_ID, C.SERVICE_DATE, C.PAYER, C.CHARGE]].loc[findings["_line"].astype("int64")]
        for col in (C.PATIENT_ID, C.SERVICE_DATE, C.PAYER, C.CHARGE):
            findings[col] = at[col].to_numpy()
    return findings.drop(columns="_line"), claims


def _claim_rule_findings(claims: pd.DataFrame, lines: pd.DataFrame, failing: dict[str, pd.Index]
                         ) -> pd.DataFrame | None:
    """The claim rules' findings (before severities and messages), one frame for every failing rule (None: none).

    Each rule's failing claims are read as positions into the claim facts: a rule's value, anchor line and
    severity column are numpy takes. Only a rule with its own detail or severity gets a frame of its failing
    rows (``claims.loc``, about 1 ms each); building one per rule cost 2-3 ms a rule, most of the claim
    rules' findings at 100k lines.
    """
    rule_of, pos_of, anchor_of, value_of, field_of, severity_of = [], [], [], [], [], []
    first = claims["first_index"].to_numpy(np.int64)
    for rule, idx in failing.items():
        entry = RULES_BY_ID[rule]
        pos = claims.index.get_indexer(idx)
        anchor = claims[entry.anchor].to_numpy()[pos]
        if anchor.dtype.kind != "i":  # a line label, or missing where the rule names no line: the claim's first
            anchor = np.where(pd.isna(anchor), first[pos], anchor).astype(np.int64)
        sub = None
        if entry.detail or entry.severity_of:
            wanted = [C.CLAIM_ID, "first_index", entry.anchor, entry.value, entry.severity_from, *entry.detail_columns,
                      *entry.severity_columns]
            sub = claims.loc[idx, list(dict.fromkeys(c for c in wanted if c))]
        if entry.detail:  # the rule's own detail, for its failing claims only
            value = _per_row(pd.Series(entry.detail(sub), index=idx), idx)
        elif entry.value:
            value = np.array([_show(v) for v in claims[entry.value].iloc[pos].tolist()], dtype=object)
        else:
            value = np.full(len(pos), "", dtype=object)
        if entry.severity_of:  # the catalog entry says the severity depends on the claim
            severity = _per_row(pd.Series(entry.severity_of(sub), index=idx), idx)
        elif entry.severity_from:
            severity = claims[entry.severity_from].to_numpy(dtype=object)[pos]
        else:
            severity = np.full(len(pos), None, dtype=object)
        rule_of.append(np.full(len(pos), rule, dtype=object))
        field_of.append(np.full(len(pos), entry.field or "", dtype=object))
        pos_of.append(pos)
        anchor_of.append(anchor)
        value_of.append(value)
        severity_of.append(severity)
    if not rule_of:
        return None
    pos, anchor = np.concatenate(pos_of), np.concatenate(anchor_of)
    at = lines.index.get_indexer(anchor)  # the anchor lines' positions: what a claim finding shows of its line
    return pd.DataFrame({
        "rule": np.concatenate(rule_of), C.CLAIM_ID: claims[C.CLAIM_ID].take(pos).to_numpy(),
        C.LINE_NO: lines[C.LINE_NO].take(at).to_numpy(), C.SOURCE_ROW: lines[C.SOURCE_ROW].take(at).to_numpy(),
        "field": np.concatenate(field_of), "value": np.concatenate(value_of), "_line": anchor,
        "severity": np.concatenate(severity_of),
    })


_CELL_RULES = {r.id for r in RULES if r.level == Level.CELL}


def _ingest_findings(issues: pd.DataFrame | None, lines: pd.DataFrame, present: set[str]) -> pd.DataFrame:
    parts = []
    absent = [c for c in C.DOC_FLAGS if c not in present]
    if absent:
        parts.append(pd.DataFrame([{"rule": "FILE-003", "field": "documentation",
                                    "value": ", ".join(C.LABELS.get(c, c) for c in absent)}]))
    if issues is not None and len(issues):
        cells = issues[issues["rule"].isin(_CELL_RULES)]
        if len(cells):
            shown = [C.SOURCE_ROW, C.CLAIM_ID, C.LINE_NO, C.PATIENT_ID, C.SERVICE_DATE, C.PAYER, C.CHARGE]
            rows = cells["row"].astype("int64")
            mine = lines[C.SOURCE_ROW].isin(rows).to_numpy(bool)  # the cells' lines, and only their columns
            by_row = lines.loc[mine, shown].drop_duplicates(C.SOURCE_ROW).set_index(C.SOURCE_ROW)
            hit = by_row.reindex(rows)
            parts.append(pd.DataFrame({
                "rule": cells["rule"].to_numpy(), C.CLAIM_ID: hit[C.CLAIM_ID].to_numpy(), C.LINE_NO: hit[C.LINE_NO].to_numpy(),
                C.SOURCE_ROW: cells["row"].to_numpy(), "field": cells["column"].to_numpy(),
                "value": cells["value"].to_numpy(), "reason": cells["reason"].to_numpy(),
                C.PATIENT_ID: hit[C.PATIENT_ID].to_numpy(), C.SERVICE_DATE: hit[C.SERVICE_DATE].to_numpy(),
                C.PAYER: hit[C.PAYER].to_numpy(), C.CHARGE: hit[C.CHARGE].to_numpy(),
            }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


_LINE_RULES = {r.id for r in RULES if r.level == Level.LINE}


def _once_per_cause(findings: pd.DataFrame) -> pd.DataFrame:
    """A line rule that finds the same non-blank value on several lines of one claim (one patient-id
    mix-up, one late date of service, one bad NPI) is one finding, on its first line, naming the others."""
    if findings.empty:
        return findings
    line = findings["rule"].isin(_LINE_RULES).to_numpy(bool) & (findings["value"].astype(str) != "").to_numpy(bool)
    line &= findings[C.CLAIM_ID].notna().to_numpy(bool)
    if not line.any():
        return findings
    sub = findings[line].sort_values([C.CLAIM_ID, "rule", C.LINE_NO, C.SOURCE_ROW], kind="stable")
    key = [sub[C.CLAIM_ID].astype(str), sub["rule"], sub["value"].astype(str)]
    first = ~sub.duplicated([C.CLAIM_ID, "rule", "value"])
    if first.all():
        return findings
    numbers = sub[C.LINE_NO].astype("Int64").astype(str).to_numpy(object)
    # Each (claim, rule, value) group's later line numbers, joined in Python only for groups of two or more.
    group = pd.MultiIndex.from_arrays(key).factorize()[0] if len(sub) else np.zeros(0, dtype=np.intp)
    several = (np.bincount(group) > 1)[group]
    members: dict[int, list[str]] = {}
    for g, number in zip(group[several].tolist(), numbers[several].tolist(), strict=True):
        members.setdefault(g, []).append(number)
    heads = group[first.to_numpy(bool)]
    also = np.array([", ".join(members[g][1:]) if g in members else "" for g in heads.tolist()], dtype=object)
    kept = sub[first.to_numpy(bool)].assign(also=also)
    return pd.concat([findings[~line], kept], ignore_index=True)


def _unread_cells_once(findings: pd.DataFrame, cells: pd.DataFrame, headers: dict[str, str]
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cell that ingest could not read is one finding (ING-001): a rule's finding on the same line and
    column is dropped, and the cell's finding names those rules as not checked on its line."""
    if findings.empty or cells.empty or "reason" not in cells or not headers:
        return findings, cells
    groups = {COMBINED_DX: C.DX, COMBINED_MODIFIERS: (*C.MODIFIERS, C.MODIFIER_EXTRA)}
    pseudo = {"dx": C.DX, "modifiers": (*C.MODIFIERS, C.MODIFIER_EXTRA)}
    canon = {h: groups.get(c, (c,)) for h, c in headers.items()}
    unread = {(int(r), col) for r, h in zip(cells[C.SOURCE_ROW].tolist(), cells["field"].tolist(), strict=True)
              if r is not None and r == r for col in canon.get(h, ())}
    if not unread:
        return findings, cells
    rows = pd.to_numeric(findings[C.SOURCE_ROW], errors="coerce").tolist()
    fields = findings["field"].astype(str).tolist()
    drop = [r == r and any((int(r), col) in unread for f in fld.split(", ") for col in pseudo.get(f, (f,)))
            for r, fld in zip(rows, fields, strict=True)]
    drop = pd.Series(drop, index=findings.index) & ~findings["rule"].isin(_CELL_RULES)
    if not drop.any():
        return findings, cells
    dropped = findings[drop]
    by_row = dropped.groupby(pd.to_numeric(dropped[C.SOURCE_ROW]).astype("int64"))["rule"].agg(
        lambda r: ", ".join(sorted(set(r))))
    cells = cells.copy()
    extra = pd.to_numeric(cells[C.SOURCE_ROW], errors="coerce").map(by_row)
    has = extra.notna()
    cells.loc[has, "reason"] = cells.loc[has, "reason"].astype(str) + "; not checked on this line: " + extra[has]
    return findings[~drop], cells


def override_for(rule: str, payer: str | None, config: ScrubConfig) -> tuple[bool, str | None]:
    """(disabled, severity override or None) for one rule and payer: the config's global settings, then
    the payer's profile (the [default] profile for payers without one)."""
    if rule in config.disabled:
        return True, None
    profile = config.profile_for(payer)
    if rule in profile.disabled:
        return True, None
    if rule in profile.severity:
        return False, profile.severity[rule].value
    return False, config.severity[rule].value if rule in config.severity else None


def severity_for(rule: str, payer: str | None, config: ScrubConfig) -> str | None:
    """The effective severity of ``rule`` for a payer (None when disabled), as ``_finish`` applies it."""
    disabled, severity = override_for(rule, payer, config)
    return None if disabled else severity or RULES_BY_ID[rule].severity.value


def _finish(findings: pd.DataFrame, config: ScrubConfig) -> pd.DataFrame:
    """Severity (catalog, dynamic, then config and payer overrides), messages, fixes, order."""
    if findings.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    for col in FINDING_COLUMNS + ["reason", "also"]:
        if col not in findings:
            findings[col] = None
    default = findings["rule"].map({r: rule.severity.value for r, rule in RULES_BY_ID.items()})
    findings["severity"] = findings["severity"].astype(object).fillna(default)  # catalog or dynamic
    payer = findings[C.PAYER].astype(object).where(findings[C.PAYER].notna(), None)
    rules, payers = findings["rule"].tolist(), payer.tolist()  # lists: iterating Arrow text is slow
    pairs = {(r, p): override_for(r, p, config) for r, p in set(zip(rules, payers, strict=True))}
    resolved = [pairs[(r, p)] for r, p in zip(rules, payers, strict=True)]
    keep = [not disabled for disabled, _ in resolved]
    override = pd.Series([sev for _, sev in resolved], index=findings.index, dtype=object)
    findings["severity"] = override.fillna(findings["severity"])
    findings = findings[keep]
    findings["value"] = findings["value"].fillna("").astype(str)
    findings["message"] = [
        RULES_BY_ID[r].message.format(value=v if v or RULES_BY_ID[r].blank_ok else "(blank)")
        + (f" ({why})" if isinstance(why, str) and why else "")
        + (f" Also on line(s) {also} of this claim." if isinstance(also, str) and also else "")
        for r, v, why, also in zip(findings["rule"].tolist(), findings["value"].tolist(), findings["reason"].tolist(),
                                   findings["also"].tolist(), strict=True)
    ]
    findings["fix"] = findings["rule"].map({r: rule.fix for r, rule in RULES_BY_ID.items()})
    # One dtype per column, whatever was concatenated: exception ids hash these values.
    for col in (C.LINE_NO, C.SOURCE_ROW):
        findings[col] = pd.to_numeric(findings[col], errors="coerce").astype("Int64")
    for col in ("rule", "severity", C.CLAIM_ID, "field", "value", "message", "fix", C.PATIENT_ID, C.PAYER):
        findings[col] = findings[col].astype("str")
    findings["_sev"] = findings["severity"].map({s.value: rank for s, rank in SEVERITY_RANK.items()})
    findings["_file"] = findings["rule"].map({r: rule.level == Level.FILE for r, rule in RULES_BY_ID.items()})
    findings = findings.sort_values(["_sev", "_file", C.CLAIM_ID, C.LINE_NO, "rule", C.SOURCE_ROW],
                                    na_position="first", kind="stable")
    return findings[FINDING_COLUMNS].reset_index(drop=True)
