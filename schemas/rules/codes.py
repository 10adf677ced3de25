"""Code sets on the date of service, every claim: ICD-10-CM, procedure codes, modifiers, place of service.

Each rule is decided against the reference table in force on the line's date (pipeline/reference.py); a date no
shipped or imported table covers is *not checked* for that rule, and the Summary says so. Malformed values are
the structure rules' (STR-003, STR-005, STR-007); G51.3 is the header rule's (HFS-002).
"""

import numpy as np
import pandas as pd

from schemas import columns as C
from schemas.rules.core import Severity, claim_rule, every, examples, on

E = Severity.ERROR
_FY = "2023-03-01"  # a date the shipped ICD-10-CM releases cover (FY2023), before the examples' as-of date


def _texts(mask: np.ndarray, make) -> tuple[np.ndarray, np.ndarray]:
    """The positions where ``mask`` holds and ``make(positions)``, their texts (built for those lines only)."""
    pos = np.flatnonzero(mask)
    return pos, (np.asarray(make(pos), dtype=object) if len(pos) else np.empty(0, dtype=object))


def _codes_at(lines: pd.DataFrame, col: str, pos: np.ndarray) -> np.ndarray:
    return lines[col].iloc[pos].astype(object).fillna("").astype(str).str.strip().to_numpy(object)


@claim_rule(
    "CODE-001", E, field="dx", reads=("dx_not_billable",), value="dx_not_billable", anchor="dx_not_billable_at",
    tables=("icd10cm",),
    title="Diagnosis not billable on the date of service",
    checks="Every well-formed diagnosis code is a billable ICD-10-CM code in the fiscal-year release in force on "
           "the line's date of service (releases run October 1 to September 30; an April update is part of its "
           "year): a code that does not exist (G51.34), a header that needs more characters, or a code deleted or "
           "not yet added on that date. A date between two shipped releases (a release not shipped: FY2022, "
           "FY2024) is judged from both: a code billable in both passes, one billable in neither (nor in any "
           "release) is the error, any other is not checked on that claim.",
    message="Diagnosis code not billable on the date of service: {value}.",
    fix="Code the diagnosis to the billable code of the release in force on the date of service.",
    source="CDC NCHS / CMS ICD-10-CM code files for the fiscal year (order file: billable flag); ICD-10-CM Official "
           "Guidelines Sec. I.B.2 (codes to the highest number of characters); HIPAA code-set rule, 45 CFR 162.1002 "
           "(the code set valid on the date of service)",
    examples=examples(fires=[every(dx_2="G51.34", dx_pointer="A", service_date=_FY)],
                      quiet=[every(dx_2="G24.5", dx_pointer="A", service_date=_FY)],
                      value="G51.34 (not in ICD-10-CM FY2023)"))
def dx_billable(df: pd.DataFrame) -> pd.Series:
    return ~df["dx_not_billable"]


@dx_billable.texts(fact="dx_not_billable", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per line: its codes not billable in the release of its date, and the release."""
    bad, release = f["dx_not_billable"].to_numpy(object), f["dx_release"].to_numpy(object)
    return _texts(bad != "", lambda p: bad[p] + " (not in ICD-10-CM " + release[p] + ")")


@claim_rule(
    "CODE-002", E, field=C.PROCEDURE_CODE, reads=("proc_inactive",), value="proc_inactive",
    anchor="proc_inactive_at", tables=("procedures",),
    title="Procedure code not active on the date of service",
    checks="A procedure code the shipped or imported code tables know (the HCPCS Level II file; the CPT codes of "
           "the NCCI tables and the listed CPT deletions, e.g. 64613 and 64614 deleted 2014-01-01) is active on the "
           "line's date of service. A code the tables do not know is not judged.",
    message="Procedure code not active on the date of service: {value}.",
    fix="Bill the code in force on the date of service (64613 became 64616 for neck muscles, 64614 became "
        "64642-64647).",
    source="AMA CPT 2014 code changes (64613, 64614 deleted; AAPC 'Clinch Chemodenervation Coding', 2014); CMS "
           "Alpha-Numeric HCPCS File (ADD_DT, TERM_DT); HIPAA code-set rule, 45 CFR 162.1002",
    examples=examples(fires=[on(0, procedure_code="64613", modifier_1=None)],
                      quiet=[on(0, procedure_code="64616", modifier_1=None)],
                      value="64613 ended 2013-12-31"))
def procedure_active(df: pd.DataFrame) -> pd.Series:
    return ~df["proc_inactive"]


@procedure_active.texts(fact="proc_inactive", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per line: the code and when it ended (or starts)."""
    why = f["proc_inactive"].to_numpy(object)
    return _texts(why != "", lambda p: _codes_at(lines, C.PROCEDURE_CODE, p) + " " + why[p])


@claim_rule(
    "CODE-003", E, field="modifiers", reads=("mod_invalid",), value="mod_invalid", anchor="mod_invalid_at",
    tables=("modifiers",),
    title="Modifier that does not exist",
    checks="Every well-formed modifier (two letters or digits) is a CPT or HCPCS Level II modifier on the valid "
           "list in force on the date of service (e.g. ZZ is not one).",
    message="Not a valid modifier: {value}.",
    fix="Use the CPT or HCPCS Level II modifier meant, or remove it.",
    source="AMA CPT Appendix A (modifiers); CMS Alpha-Numeric HCPCS File (Level II modifiers); CMS Pub. 100-04 "
           "Ch. 26, Sec. 10.2 item 24D",
    examples=examples(fires=[on(0, modifier_2="ZZ")], quiet=[on(0, modifier_2="KX")], value="ZZ on 64612"))
def modifiers_exist(df: pd.DataFrame) -> pd.Series:
    return ~df["mod_invalid"]


@modifiers_exist.texts(fact="mod_invalid", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per line: the modifiers not on the list, and the code they are on."""
    bad = f["mod_invalid"].to_numpy(object)
    return _texts(bad != "", lambda p: bad[p] + " on " + _codes_at(lines, C.PROCEDURE_CODE, p))


@claim_rule(
    "CODE-004", E, field=C.PLACE_OF_SERVICE, needs=(C.PLACE_OF_SERVICE,), reads=("pos_faults",), value="pos_faults",
    anchor="pos_faults_at", tables=("pos",),
    title="Place of service not valid",
    checks="Every line's place of service is a code of the CMS Place of Service code set in force on its date, "
           "and a 64612 line is not billed with a telehealth place of service (02, 10): chemodenervation is "
           "performed in person.",
    message="Place of service not valid: {value}.",
    fix="Bill the place where the patient was treated in person (e.g. 11 office, 19/22 outpatient hospital).",
    source="CMS Place of Service Code Set (POS 02 and 10: telehealth); CMS Medicare Telehealth Services List "
           "(64612 not on it); CMS Pub. 100-04 Ch. 26, Sec. 10.5",
    examples=examples(fires=[on(0, place_of_service="02")], quiet=[every(place_of_service="22")],
                      value="telehealth POS 02 on 64612"))
def place_of_service_valid(df: pd.DataFrame) -> pd.Series:
    return ~df["pos_faults"]


@place_of_service_valid.texts(fact="pos_faults", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per line: a POS not in the code set, or telehealth on 64612."""
    invalid = f["pos_invalid"].to_numpy(bool)
    tele = f["pos_telehealth"].to_numpy(bool) & f["is_64612"].to_numpy(bool)

    def make(p):
        pos = _codes_at(lines, C.PLACE_OF_SERVICE, p)
        return np.where(invalid[p], "POS " + pos + " is not a CMS place-of-service code",
                        "telehealth POS " + pos + " on 64612")
    return _texts(invalid | tele, make)
