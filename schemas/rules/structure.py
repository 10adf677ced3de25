"""Structure rules: checked on every claim line, whatever its diagnosis."""

import numpy as np
import pandas as pd

from schemas import columns as C
from schemas.checks import (
    CPT_PATTERN,
    ICD10_PATTERN,
    MODIFIER_PATTERN,
    POINTER_PATTERN,
    group_codes,
    npi_is_valid,
    repeated_keys,
    several_per_group,
    text_matches,
)
from schemas.rules.core import Severity, add, every, examples, line_rule, on

E, W = Severity.ERROR, Severity.WARNING
M1, M2 = C.MODIFIERS[0], C.MODIFIERS[1]
_ITEMS = "CMS Pub. 100-04 (Medicare Claims Processing Manual) Ch. 26, Sec. 10.2-10.4, Form CMS-1500 item"


@line_rule(
    "STR-001", E, field=C.CLAIM_ID, title="Blank claim id",
    checks="Every line that has data carries a claim id.",
    message="This line has data but no claim id.",
    fix="Enter the claim id on every line.",
    source=f"{_ITEMS} 26 (patient account / claim number)",
    examples=examples(fires=[on(1, claim_id=None)], quiet=[], sampled=False))  # would split a sample claim
def claim_id_present(df: pd.DataFrame) -> pd.Series:
    return df[C.CLAIM_ID].notna()


@line_rule(
    "STR-002", E, field=C.SERVICE_DATE, title="Date of service missing, unreadable or in the future",
    checks="Every line has a readable date of service on or before the as-of date of the run.",
    message="Date of service {value} is missing, unreadable or after the as-of date.",
    fix="Enter the actual date the service was performed.",
    source=f"{_ITEMS} 24A (dates of service)",
    examples=examples(fires=[every(service_date="2031-01-01")], quiet=[every(service_date="2024-06-30")],
                      value="2031-01-01", sampled=False))  # a sample file's as-of date is the run's
def service_date_valid(df: pd.DataFrame) -> pd.Series:
    return df[C.SERVICE_DATE].notna() & (df[C.SERVICE_DATE] <= df["as_of"])


@line_rule(
    "STR-003", E, field=C.PROCEDURE_CODE, title="Malformed procedure code",
    checks="The procedure code is a 5-digit CPT code, a HCPCS Level II code (a letter and 4 digits) or a "
           "CPT Category II/III code (4 digits and F or T).",
    message="Procedure code {value} is not a valid CPT or HCPCS code.",
    fix="Use a 5-digit CPT, a letter + 4-digit HCPCS, or a CPT II/III code.",
    source=f"{_ITEMS} 24D; CMS HCPCS Level II code set; AMA CPT code structure",
    examples=examples(fires=[on(0, procedure_code="6461")],
                      quiet=[add(line_no=3, procedure_code="1125F", muscles=None)], value="6461"))
def procedure_code_valid(df: pd.DataFrame) -> pd.Series:
    return text_matches(df[C.PROCEDURE_CODE], CPT_PATTERN)


@line_rule(
    "STR-004", E, field=C.UNITS, title="Units missing, fractional or below 1",
    checks="Units are a whole number of at least 1.",
    message="Units {value} must be a whole number of at least 1.",
    fix="Bill whole units; round drug doses up to the next billing unit.",
    source=f"{_ITEMS} 24G (days or units); CMS Pub. 100-04 Ch. 17, Sec. 70 (drug billing units)",
    examples=examples(fires=[on(1, units=0)], quiet=[on(0, units=1.0)], value="0"))
def units_whole_positive(df: pd.DataFrame) -> pd.Series:
    u = df[C.UNITS]
    return u.notna() & (u >= 1) & (u % 1 == 0)


@line_rule(
    "STR-005", E, field="dx", title="Malformed ICD-10-CM code",
    checks="Every diagnosis is shaped like an ICD-10-CM code (a letter, a digit, a character, then optionally a "
           "dot and up to four more), after normalising case and dots.",
    message="Diagnosis {value} is not a valid ICD-10-CM code.",
    fix="Correct the diagnosis code (letter, two characters, optional dot and up to four more).",
    source="ICD-10-CM Official Guidelines for Coding and Reporting, Sec. I.A (conventions, code structure); "
           f"{_ITEMS} 21",
    examples=examples(fires=[every(dx_2="G5")], quiet=[every(dx_2="Z79.899")], value="G5"))
def dx_is_icd10(df: pd.DataFrame) -> pd.Series:
    ok = pd.Series(True, index=df.index)
    for col in C.DX:
        if col in df:
            ok &= df[col].isna() | text_matches(df[col], ICD10_PATTERN)
    return ok


@dx_is_icd10.detail(columns=C.DX)
def _(rows: pd.DataFrame, lines: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Every malformed diagnosis of the line, by column."""
    filled = [c for c in C.DX if rows[c].notna().any()]  # most of dx_3..dx_12 are empty
    bad = {c: (rows[c].notna() & ~text_matches(rows[c], ICD10_PATTERN)).to_numpy(bool) for c in filled}
    raw = {c: rows[c].astype(object).tolist() for c in filled}
    hits = [[c for c in filled if bad[c][i]] for i in range(len(rows))]
    value = [", ".join(str(raw[c][i]) for c in cols) for i, cols in enumerate(hits)]
    return pd.Series([", ".join(cols) for cols in hits], index=rows.index), pd.Series(value, index=rows.index)


@line_rule(
    "STR-006", E, field=C.RENDERING_NPI, needs=(C.RENDERING_NPI,), title="Invalid rendering NPI",
    checks="The rendering NPI has 10 digits, starts with 1 or 2, and its last digit is the Luhn check digit "
           "computed over 80840 and the first nine digits.",
    message="Rendering NPI {value} is not a valid NPI (10 digits, starts with 1 or 2, check digit).",
    fix="Use the rendering provider's NPI from NPPES.",
    source="45 CFR 162.406 (NPI standard); CMS \"Requirements for the NPI check digit\" (Luhn over 80840); "
           f"{_ITEMS} 24J",
    examples=examples(fires=[every(rendering_npi="1993999997")], quiet=[every(rendering_npi="1558598797")],
                      value="1993999997"))
def npi_valid(df: pd.DataFrame) -> pd.Series:
    return npi_is_valid(df[C.RENDERING_NPI])


@line_rule(
    "STR-007", E, field="modifiers", needs=(M1,), title="Malformed modifier or too many modifiers",
    checks="Every modifier is two letters or digits, and a line has at most four.",
    message="Modifier {value} is not a two-character modifier, or the line has more than four.",
    fix="Use at most four two-character modifiers per line.",
    source=f"{_ITEMS} 24D (up to four modifiers)",
    examples=examples(fires=[on(0, modifier_2="5")], quiet=[on(1, modifier_2="KX", modifier_3="GA", modifier_4="59")],
                      value="50, 5"))
def modifiers_valid(df: pd.DataFrame) -> pd.Series:
    ok = df[C.MODIFIER_EXTRA].isna()
    for col in C.MODIFIERS:
        ok &= df[col].isna() | text_matches(df[col], MODIFIER_PATTERN)
    return ok


@modifiers_valid.detail(columns=(*C.MODIFIERS, C.MODIFIER_EXTRA))
def _(rows: pd.DataFrame, lines: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Every modifier of the line, as written."""
    mods = rows[list(C.MODIFIERS) + [C.MODIFIER_EXTRA]].astype(object)
    value = [", ".join(str(v) for v in row if pd.notna(v)) for row in mods.itertuples(index=False)]
    return pd.Series("modifiers", index=rows.index), pd.Series(value, index=rows.index)


@line_rule(
    "STR-008", E, field=C.LINE_NO, title="Duplicate line number",
    checks="No claim has the same line number twice.",
    message="Line number {value} appears more than once on this claim.",
    fix="Remove the duplicate line or renumber it.",
    source=f"{_ITEMS} 24 (one service per line); ASC X12 837P LX segment (line counter)",
    examples=examples(fires=[on(1, line_no=1)], quiet=[], value="1"))
def line_unique(df: pd.DataFrame) -> pd.Series:
    keyed = (df[C.CLAIM_ID].notna() & df[C.LINE_NO].notna()).to_numpy(bool)
    if keyed.all():  # the usual file: no copy of the key columns
        return pd.Series(~repeated_keys(group_codes(df[C.CLAIM_ID]), group_codes(df[C.LINE_NO])), index=df.index)
    repeated = np.zeros(len(df), dtype=bool)
    repeated[keyed] = repeated_keys(group_codes(df[C.CLAIM_ID][keyed]), group_codes(df[C.LINE_NO][keyed]))
    return pd.Series(~repeated, index=df.index)


@line_rule(
    "STR-009", E, field=C.CHARGE, needs=(C.CHARGE,), title="Charge missing or negative",
    checks="Every line has a charge that is a number of at least 0.",
    message="Charge {value} is missing, not a number, or negative.",
    fix="Enter the billed charge for the line.",
    source=f"{_ITEMS} 24F (charges)",
    examples=examples(fires=[on(0, charge=-5)], quiet=[on(0, charge=0)], value="-5"))
def charge_valid(df: pd.DataFrame) -> pd.Series:
    return df[C.CHARGE].notna() & (df[C.CHARGE] >= 0)


@line_rule(
    "STR-010", E, field=C.DX_POINTER, needs=(C.DX_POINTER,), title="Diagnosis pointer names an empty position",
    checks="Each diagnosis pointer is 1 to 4 letters A-L, and every letter names a filled diagnosis position.",
    message="Diagnosis pointer {value} names a diagnosis position that is empty or invalid.",
    fix="Point each line at 1-4 filled diagnosis positions (A-L).",
    source=f"{_ITEMS} 24E (diagnosis pointer, up to four of items 21A-L)",
    examples=examples(fires=[on(0, dx_pointer="AB")], quiet=[every(dx_2="G24.5", dx_pointer="AB")], value="AB"))
def pointer_names_filled_dx(df: pd.DataFrame) -> pd.Series:
    ptr = df[C.DX_POINTER]
    ok = (ptr.isna() | text_matches(ptr, POINTER_PATTERN)).to_numpy(bool, copy=True)
    codes, uniques = pd.factorize(ptr)  # a handful of distinct pointer texts: the letters read once each
    texts = [str(u) for u in uniques.tolist()]
    for k, col in enumerate(C.DX):
        names_k = np.array([chr(65 + k) in t for t in texts] + [False], dtype=bool)[codes]  # -1 (blank): none
        if names_k.any():
            ok &= ~(names_k & df[col].isna().to_numpy(bool))
    return pd.Series(ok, index=df.index)


@line_rule(
    "STR-011", W, field=C.PATIENT_ID, needs=(C.PATIENT_ID,), title="Different patient ids on one claim",
    checks="All lines of a claim carry the same patient id.",
    message="The lines of this claim carry different patient ids ({value}).",
    fix="Make sure every line belongs to the same patient, or split the claim.",
    source=f"{_ITEMS} 1a (one insured's id per claim)",
    examples=examples(fires=[on(1, patient_id="MBR-999999")], quiet=[]))
def one_patient_per_claim(df: pd.DataFrame) -> pd.Series:
    return pd.Series(~several_per_group(group_codes(df[C.CLAIM_ID]), df[C.PATIENT_ID]), index=df.index)


@one_patient_per_claim.detail(columns=(C.PATIENT_ID,))
def _(rows: pd.DataFrame, lines: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The claim's distinct patient ids."""
    mine = lines[C.CLAIM_ID].isin(set(rows[C.CLAIM_ID])).to_numpy(bool)
    sub = lines.loc[mine, [C.CLAIM_ID, C.PATIENT_ID]].dropna(subset=[C.PATIENT_ID])  # two columns, not every one
    ids = sub.drop_duplicates([C.CLAIM_ID, C.PATIENT_ID]).groupby(C.CLAIM_ID)[C.PATIENT_ID].agg(", ".join)
    return pd.Series(C.PATIENT_ID, index=rows.index), rows[C.CLAIM_ID].map(ids).fillna("")


@line_rule(
    "STR-012", W, field=C.SERVICE_DATE, title="Past timely filing",
    checks="The date of service is no more than the payer profile's timely-filing days before the as-of date "
           "(Medicare and the default profile: 365 days, Medicare's 12 months; a commercial contract's days are set "
           "on its profile).",
    message="Date of service {value} is more than the payer's timely-filing days before the as-of date.",
    fix="Check whether the claim can still be filed; attach proof of timely filing if so.",
    source="42 CFR 424.44; CMS Pub. 100-04 Ch. 1, Sec. 70 (time limitation for filing claims); the payer's "
           "provider agreement (commercial filing limits)",
    examples=examples(fires=[every(service_date="2023-06-30")], quiet=[every(service_date="2023-07-01")],
                      value="2023-06-30"))
def within_timely_filing(df: pd.DataFrame) -> pd.Series:
    # The value shown stays the date alone: it is part of the exception id, which must not change run to run.
    limit = df["as_of"] - pd.to_timedelta(df["timely_filing_days"], unit="D")
    return df[C.SERVICE_DATE].isna() | (df[C.SERVICE_DATE] >= limit)


@within_timely_filing.note(columns=("timely_filing_days", "payer_profile"))
def _(rows: pd.DataFrame) -> pd.Series:
    """The limit applied and whose it is (the value stays the date alone)."""
    days = rows["timely_filing_days"].astype("int64").astype(str)
    return days + " days: the " + rows["payer_profile"].fillna("default").astype(str) + " profile's limit"
