"""Toxin drug-line rules for G51.33 claims: the J-code, its units, waste modifiers, vials, dose and NDC."""

import numpy as np
import pandas as pd

from schemas import codesets as K
from schemas import columns as C
from schemas.checks import combined_groups, group_codes, vial_totals
from schemas.rules.core import Severity, add, claim_rule, every, examples, keep, on, passes_unless
from schemas.text import join_texts, numbers, put

E, W = Severity.ERROR, Severity.WARNING
M1 = C.MODIFIERS[0]
_BOTOX_NDC = "00023-1145-01"
_DOSE = ("site_units", "billing_unit", "admin_units", "toxin_code")


def expected_units(df: pd.DataFrame) -> pd.Series:
    """The documented toxin units in the code's billing units, rounded up (after rounding away float noise)."""
    return np.ceil(np.round(df["site_units"] / df["billing_unit"], 6))


_VIAL_LIMIT = {code: 40000 if code == "J0587" else 4000 for code in K.TOXIN_CODES}
VIAL_TOTALS = {code: np.fromiter(vial_totals(v, _VIAL_LIMIT[code]), dtype=np.int64)
               for code, v in K.TOXIN_VIALS.items()}
_VIALS = ("admin_units", "waste_units", "billing_unit", "toxin_code", "uses_jz")
_DOSES = ("r_units", "l_units", "site_units", "admin_units", "billing_unit", "botox_divisor", "toxin_code",
          "side_min_units", "side_max_units", "session_cap_units")


def _total_toxin(df: pd.DataFrame) -> pd.Series:
    """Administered plus discarded units, in toxin units."""
    return (df["admin_units"] + df["waste_units"]) * df["billing_unit"]


def _not_whole_vials(df: pd.DataFrame) -> np.ndarray:
    """Claims with waste (or JZ) whose total no whole number of the product's vials makes (within its limit)."""
    total = _total_toxin(df).to_numpy()
    checked = (df["toxin_code"].notna() & ((df["waste_units"] > 0) | df["uses_jz"])).to_numpy(bool)
    code = df["toxin_code"].to_numpy(dtype=object)
    bad = np.zeros(len(df), dtype=bool)
    for c, totals in VIAL_TOTALS.items():
        rows = checked & (code == c)
        tt = total[rows]
        whole = np.isfinite(tt) & (np.mod(tt, 1) == 0)
        made = np.zeros(len(tt), dtype=bool)
        made[whole] = np.isin(tt[whole].astype(np.int64), totals)
        bad[rows] = ~(np.isnan(tt) | made | (tt > _VIAL_LIMIT[c]))
    return bad


def _dose_parts(df: pd.DataFrame) -> list[tuple[pd.Series, pd.Series, str]]:
    """(faulty, Botox-equivalent units, what) for each side too low or too high, and the session over its cap."""
    div = df["botox_divisor"]
    parts = []
    for side, col in (("right", "r_units"), ("left", "l_units")):
        eq = df[col] / div
        parts.append(((eq > 0) & (eq < df["side_min_units"]), eq, f"{side} side {{}} U below", "side_min_units"))
        parts.append((eq > df["side_max_units"], eq, f"{side} side {{}} U above", "side_max_units"))
    session = df["site_units"].fillna(df["admin_units"] * df["billing_unit"]) / div
    parts.append((session > df["session_cap_units"], session, "session {} U above cap", "session_cap_units"))
    return parts


_JWJZ = ("CMS Pub. 100-04 Ch. 17, Sec. 40 (discarded drugs: JW and JZ modifiers, JZ required from 2023-07-01); "
         "Billing and Coding article A53024 (Noridian, JW/JZ)")


@claim_rule(
    "HFS-011", E, field=C.PROCEDURE_CODE, reads=("in_scope", "is_64612", "is_toxin", "drug_supplied"),
    anchor="idx_64612",
    title="64612 without a toxin drug line",
    checks="A G51.33 claim billing 64612 also bills the toxin drug line (J0585-J0589), unless the drug-source "
           "column says the drug was supplied by a pharmacy or the patient.",
    message="64612 is billed without a toxin drug line (J0585-J0589).",
    fix="Add the toxin line (J-code with units), or mark the drug as pharmacy or patient supplied.",
    source="Billing and Coding article A58423 (drug billed with its administration); CMS Pub. 100-02 Ch. 15, "
           "Sec. 50.3 (incident-to drugs: the physician must incur the cost)",
    examples=examples(fires=[keep(0)], quiet=[every(drug_source="Pharmacy supplied"), keep(0)]))
def toxin_line_present(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["is_64612"] & ~df["is_toxin"] & ~df["drug_supplied"])


@claim_rule(
    "HFS-012", W, field=C.PROCEDURE_CODE, reads=("in_scope", "toxin_code"), value="toxin_code", anchor="idx_toxin",
    title="Toxin not on the usual LCD list for hemifacial spasm",
    checks="The toxin product is on the usual Medicare LCD off-label list for hemifacial spasm "
           "(onabotulinumtoxinA J0585, abobotulinumtoxinA J0586); J0587, J0588 and J0589 need the payer's policy checked.",
    message="{value} is not on the usual LCD off-label list for hemifacial spasm.",
    fix="Check the payer's botulinum toxin policy before submitting.",
    source="LCD L33274 (First Coast, Botulinum Toxins: off-label uses) and L38809 / article A58423",
    examples=examples(fires=[on(1, procedure_code="J0588", ndc="00259-1605-01")],
                      quiet=[on(1, procedure_code="J0586", units=10, ndc="15054-0530-06")], value="J0588"))
def toxin_on_lcd_list(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["toxin_code"].isin(K.TOXIN_OFF_LIST))


@claim_rule(
    "HFS-013", E, field=C.UNITS, needs=(C.MUSCLES,), reads=("in_scope", "sites_unread", *_DOSE), anchor="idx_toxin",
    title="Billed drug units differ from documented dose",
    checks="The administered toxin units billed (not the JW line) equal the units documented per muscle, "
           "converted to the code's billing unit and rounded up (not checked when the sites note could not be fully "
           "read).",
    message="Billed drug units differ from the documented dose: {value}.",
    fix="Bill the documented dose converted to billing units, rounded up.",
    source="HCPCS Level II descriptors J0585-J0589 (billing unit per code); CMS Pub. 100-04 Ch. 17, Sec. 70; "
           "LCD L33274 (dose per muscle documented)",
    examples=examples(fires=[on(1, units=40, modifier_1=None)],
                      quiet=[on(0, muscles="R OO 2.5u x4; R ZM 15u; L OO 2.5u x4; L ZM 15u")],
                      value="billed 40 units of J0585; documented 50 U = 50 billing units"))
def billed_units_match_dose(df: pd.DataFrame) -> pd.Series:
    documented = df["site_units"].notna() & (df["site_units"] > 0) & df["toxin_code"].notna() & ~df["sites_unread"]
    return passes_unless(df, documented & (expected_units(df) != df["admin_units"]))


@billed_units_match_dose.detail(columns=_DOSE)
def _(rows: pd.DataFrame) -> pd.Series:
    return ("billed " + numbers(rows["admin_units"]) + " units of " + rows["toxin_code"].fillna("") + "; documented "
            + numbers(rows["site_units"]) + " U = " + numbers(expected_units(rows)) + " billing units")


@claim_rule(
    "HFS-014", E, field=M1, needs=(M1,), reads=("in_scope", "waste_faults"), value="waste_faults", anchor="idx_toxin",
    title="JW/JZ waste modifier problem",
    checks="From 2023-07-01 an administered toxin line carries JZ or has a JW line for the discarded units; "
           "and always: no line carries both JW and JZ, no drug and date has both a JZ line and a JW line, "
           "no JW line lacks its administered line, and JW is never on a non-drug line.",
    message="Waste modifiers: {value}.",
    fix="Use JZ when nothing was discarded, or a separate JW line for the discarded units; never both.",
    source=_JWJZ,
    examples=examples(fires=[on(1, modifier_1=None)], quiet=[on(1, modifier_1=None), every(service_date="2023-06-30")],
                      value="J0585 needs JZ or a JW line for discarded units (dates from 2023-07-01)"))
def waste_modifiers_valid(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["waste_faults"])


@waste_modifiers_valid.texts(fact="waste_faults")
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per toxin or JW line, what is wrong with its waste modifiers (drug lines grouped by code and date)."""
    pos = np.flatnonzero((f["is_toxin"] | f["jw"]).to_numpy())
    is_toxin, jw, jz, admin, is_drug = (f[c].to_numpy()[pos]
                                        for c in ("is_toxin", "jw", "jz", "admin_toxin", "is_drug"))
    code = pd.Series(lines[C.PROCEDURE_CODE].array.take(pos))
    dates = lines[C.SERVICE_DATE].iloc[pos]
    drug_day = combined_groups(groups.codes[pos], group_codes(code), group_codes(dates))  # claim, code and date

    def anywhere(flags: np.ndarray) -> np.ndarray:
        return (np.bincount(drug_day, weights=flags) > 0)[drug_day]

    has_jw = anywhere(jw) & is_toxin
    has_jz = anywhere(jz) & is_toxin
    has_admin = anywhere(admin)
    dated = (dates >= pd.Timestamp(K.JZ_REQUIRED)).to_numpy(bool)
    why = np.full(len(pos), "", dtype=object)
    put(why, admin & dated & ~jz & ~has_jw,
        lambda m: code[m] + " needs JZ or a JW line for discarded units (dates from 2023-07-01)")
    put(why, jw & jz, lambda m: "JW and JZ on one line")
    put(why, is_toxin & has_jw & has_jz & ~(jw & jz), lambda m: "a JZ line and a JW line for " + code[m])
    put(why, is_toxin & jw & ~has_admin, lambda m: "JW line for " + code[m] + " with no administered line")
    put(why, jw & ~is_drug, lambda m: "JW on a non-drug line (" + code[m].fillna("") + ")")
    return pos, why


@claim_rule(
    "HFS-015", W, field=C.UNITS, reads=("in_scope", *_VIALS), anchor="idx_toxin",
    title="Administered + wasted units are not whole vials",
    checks="Administered plus discarded units (in toxin units) add up to a whole combination of the product's "
           "single-dose vial sizes; a JZ line must itself be such a combination.",
    message="Administered and discarded units do not add up to whole vials: {value}.",
    fix="Check the vials used and the discarded amount documented.",
    source=f"{_JWJZ}; FDA prescribing information (vial sizes per product)",
    examples=examples(fires=[on(1, units=50, modifier_1=None),
                             add(procedure_code="J0585", modifier_1="JW", units=45, ndc=_BOTOX_NDC)],
                      quiet=[on(1, modifier_1=None), add(line_no=3, procedure_code="J0585", modifier_1="JW",
                                                         units=50, ndc=_BOTOX_NDC, dx_pointer="A")],
                      value="50 U given + 45 U discarded = 95 U; vials are 50/100/200 U"))
def whole_vials(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, pd.Series(_not_whole_vials(df), index=df.index))


@whole_vials.detail(columns=_VIALS)
def _(rows: pd.DataFrame) -> pd.Series:
    bu = rows["billing_unit"]
    vials = rows["toxin_code"].map(lambda c: "/".join(str(v) for v in K.TOXIN_VIALS.get(c, ())))
    return (numbers(rows["admin_units"] * bu) + " U given + " + numbers(rows["waste_units"] * bu) + " U discarded = "
            + numbers(_total_toxin(rows)) + " U; vials are " + vials + " U")


@claim_rule(
    "HFS-016", W, field=C.MUSCLES, needs=(C.MUSCLES,), reads=("in_scope", "sites_unread", *_DOSES),
    anchor="idx_64612",
    title="Implausible toxin dose",
    checks="The dose is plausible for hemifacial spasm: per side 5 to 100 Botox-equivalent units (Dysport / 2.5, "
           "Myobloc / 40) and a session under the configured cap (default 200); a payer profile's dose caps apply "
           "from their effective dates; not checked when the sites note could not be fully read.",
    message="Dose outside the plausible range for hemifacial spasm: {value}.",
    fix="Check the documented units per muscle and the product.",
    source="AAN practice guideline update: botulinum neurotoxin (Simpson et al., Neurology 2016); FDA prescribing "
           "information (maximum doses)",
    examples=examples(fires=[on(0, muscles="R OO 150u; L OO 150u")], quiet=[on(0, muscles="R OO 5u; L OO 45u")]))
def dose_plausible(df: pd.DataFrame) -> pd.Series:
    faulty = pd.Series(False, index=df.index)
    for fault, *_ in _dose_parts(df):
        faulty |= fault
    return passes_unless(df, faulty & df["toxin_code"].notna() & ~df["sites_unread"])


@dose_plausible.detail(columns=_DOSES)
def _(rows: pd.DataFrame) -> pd.Series:
    """Each side too low or too high, and the session over its cap, in Botox-equivalent units."""
    texts = []
    for fault, units, what, limit in _dose_parts(rows):
        text = pd.Series("", index=rows.index, dtype=object)
        m = fault.fillna(False).to_numpy(bool)
        if m.any():
            head, tail = what.split("{}")
            text[m] = (head + numbers(units[m]) + tail + " " + numbers(rows[limit][m])).to_numpy(dtype=object)
        texts.append(text)
    sides = [texts[0].where(texts[1] == "", texts[1]), texts[2].where(texts[3] == "", texts[3]), texts[4]]
    return join_texts(sides) + " (Botox-equivalent units)"


@claim_rule(
    "HFS-017", W, field=C.NDC, needs=(C.NDC,), reads=("in_scope", "toxin_ndcs_invalid"), value="toxin_ndcs_invalid",
    anchor="idx_toxin",
    title="Toxin line without a valid NDC",
    checks="Every toxin line carries an NDC of 11 digits, in 5-4-2 form when hyphenated.",
    message="Toxin line NDC {value} is missing or not 11 digits in 5-4-2 form.",
    fix="Enter the 11-digit NDC of the vial used (5-4-2, zero-padded).",
    source="ASC X12 837P loop 2410 LIN03 (NDC in 11-digit 5-4-2 format); FDA National Drug Code Directory",
    examples=examples(fires=[on(1, ndc="0023-1145-01")], quiet=[on(1, ndc="00023114501")], value="0023-1145-01"))
def ndc_present(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["toxin_ndcs_invalid"])


@ndc_present.lines(fact="toxin_ndcs_invalid", shows=C.NDC, blank="(blank)")
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> np.ndarray:
    """Toxin lines whose NDC is missing or malformed (``schemas.checks.ndc_is_valid``, per line)."""
    return (f["is_toxin"] & ~f["ndc_ok"]).to_numpy(bool)
