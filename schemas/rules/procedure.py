"""Procedure and bilateral-billing rules for G51.33 claims (64612 and the other chemodenervation codes)."""

import numpy as np
import pandas as pd

from schemas import columns as C
from schemas.checks import combined_groups, group_codes
from schemas.rules.core import Severity, add, claim_rule, examples, keep, on, passes_unless
from schemas.text import choose, numbers, put

E, W = Severity.ERROR, Severity.WARNING
M1 = C.MODIFIERS[0]
_BILATERAL = "CMS Pub. 100-04 Ch. 12, Sec. 40.7 (bilateral procedures: one line, modifier 50, 1 unit)"
_SITES = "R OO 2.5u x4; R ZM 5u; R OOr 5u; R FR 5u; L OO 2.5u x4; L ZM 5u; L OOr 5u; L FR 5u"
_SIDES = ("is_64612", "m50", "m_rt", "m_lt", "n_unmod_multi")
_STYLE = ("profile_style", "m50", "m_rt", "m_lt", "over_mue_64612")
_BOTH_SIDES = (on(0, modifier_1="RT"), add(line_no=3, procedure_code="64612", modifier_1="LT", muscles=_SITES))


@claim_rule(
    "HFS-005", E, field=C.PROCEDURE_CODE, reads=("in_scope", "is_toxin", "n_sites", "is_64612"),
    value="toxin_code", anchor="idx_toxin",
    title="Toxin or sites without 64612",
    checks="A G51.33 claim that bills a toxin drug line (J0585-J0589) or documents injection sites also bills "
           "the 64612 administration: drug and administration belong on the same claim.",
    message="The claim bills a toxin or documents injection sites ({value}) but has no 64612.",
    fix="Add the 64612 administration line to the same claim as the drug.",
    source="Billing and Coding article A58423 (Botulinum Toxins: drug and administration on one claim)",
    examples=examples(fires=[keep(1)], quiet=[on(0, procedure_code="99214", modifier_1=None, muscles=None),
                                             keep(0)], value="J0585"))
def drug_with_administration(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, (df["is_toxin"] | (df["n_sites"] > 0)) & ~df["is_64612"])


@claim_rule(
    "HFS-006", E, field=C.PROCEDURE_CODE, reads=("in_scope", "other_chemo_for_g5133"), value="other_chemo_for_g5133",
    anchor="other_chemo_for_g5133_at",
    title="Other chemodenervation supported only by G51.33",
    checks="No other chemodenervation code (64615-64617, 64642-64647, 64650, 64653, 67345) is supported only by "
           "G51.33: by its pointer, or, without pointers, because G51.33 is the claim's only diagnosis.",
    message="Chemodenervation code {value} is supported only by G51.33; hemifacial spasm is treated with "
            "64612.",
    fix="Bill 64612 for facial muscles, or add the diagnosis that supports this code.",
    source="AMA CPT descriptors 64612-64617, 64642-64647; LCD L33458 (Palmetto GBA, Chemodenervation: facial-nerve "
           "muscles for hemifacial spasm)",
    examples=examples(fires=[on(0, procedure_code="64615", modifier_1=None),
                             add(procedure_code="64612", modifier_1="50", muscles=_SITES, units=1)],
                      quiet=[add(line_no=3, procedure_code="64615", dx_2="G43.709", dx_pointer="B")],
                      value="64615"))
def other_chemo_supported(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["other_chemo_for_g5133"])


@other_chemo_supported.lines(fact="other_chemo_for_g5133", shows=C.PROCEDURE_CODE)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> np.ndarray:
    """Other chemodenervation lines whose pointer names only G51.33, or, without a pointer, on a claim whose
    only diagnosis is G51.33."""
    only_g5133_claim = (groups.max(f["dx_count"].to_numpy()) == 1) & claims["g5133"].to_numpy()
    return (f["is_other_chemo"] & (f["points_only_g5133"] | (~f["has_pointer"] & only_g5133_claim[groups.codes]))
            ).to_numpy(bool)


@claim_rule(
    "HFS-007", W, field=M1, needs=(M1,), reads=("in_scope", *_SIDES), anchor="idx_64612",
    title="Bilateral diagnosis, one side billed",
    checks="When G51.33 (bilateral) is coded, 64612 is billed for both sides: not only RT, only LT, or one "
           "unmodified line of 1 unit.",
    message="G51.33 is bilateral but 64612 is billed for one side only ({value}).",
    fix="Bill both sides (64612-50 x1, or 64612-RT and 64612-LT) if both were injected; otherwise "
        "check the diagnosis.",
    source=f"{_BILATERAL}; ICD-10-CM Official Guidelines Sec. I.B.13 (laterality)",
    examples=examples(fires=[on(0, modifier_1="RT")], quiet=list(_BOTH_SIDES), value="RT only"))
def both_sides_billed(df: pd.DataFrame) -> pd.Series:
    bilateral = df["m50"] | (df["m_rt"] & df["m_lt"])
    return passes_unless(df, df["is_64612"] & ~bilateral & ~df["n_unmod_multi"])


@both_sides_billed.detail(columns=_SIDES)
def _(rows: pd.DataFrame) -> pd.Series:
    rt, lt = rows["m_rt"].to_numpy(bool), rows["m_lt"].to_numpy(bool)
    return choose([(rt & ~lt, "RT only"), (lt & ~rt, "LT only"), (np.ones(len(rows), dtype=bool), "no side modifier")],
                  len(rows), rows.index)


@claim_rule(
    "HFS-008", E, field=M1, needs=(M1,), reads=("in_scope", "bilateral_faults"), value="bilateral_faults", anchor="idx_64612",
    title="Malformed bilateral billing",
    checks="64612 bilateral billing is well formed: 64612-50 has 1 unit; no line has 50 with RT or LT; no "
           "64612-50 beside a 64612-RT/LT line on the same date; no unmodified 64612 line of 2+ units; no two "
           "64612 lines for the same side and date. For a payer that applies NCCI, units of 64612 above its MUE "
           "on a date (all but 50 with RT/LT on one line) are the unit-limit error (MUE-001) instead.",
    message="64612 bilateral billing is malformed: {value}.",
    fix="Bill one line 64612-50 with 1 unit, or one 64612-RT and one 64612-LT line of 1 unit each.",
    source=f"{_BILATERAL}; CMS Physician Fee Schedule bilateral surgery indicator for 64612",
    examples=examples(fires=[on(0, modifier_1=None, units=2)], quiet=list(_BOTH_SIDES),
                      value="64612 without side modifier billed with 2+ units", fires_profile={"ncci_applies": False}))
def bilateral_well_formed(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["bilateral_faults"])


@bilateral_well_formed.texts(fact="bilateral_faults", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per 64612 line, what is malformed (one text a line; the line's own faults first, then its date's)."""
    pos = np.flatnonzero(f["is_64612"].to_numpy())
    m50, m_rt, m_lt = (f[c].to_numpy(bool)[pos] for c in ("m50", "m_rt", "m_lt"))
    unmod, pu = ~(m50 | m_rt | m_lt), lines[C.UNITS].to_numpy()[pos]
    # Units above the MUE (a payer that applies NCCI) are MUE-001's to report: one finding for one cause.
    units_ok = ~(f["mue_units"].to_numpy()[pos] > f["mue_limit"].to_numpy()[pos])
    why = np.full(len(pos), "", dtype=object)
    put(why, m50 & (pu != 1) & units_ok, lambda m: "64612-50 billed with " + numbers(pd.Series(pu[m])) + " units")
    put(why, m50 & (m_rt | m_lt), lambda m: "modifier 50 together with RT/LT on one line")
    put(why, unmod & (pu >= 2) & units_ok, lambda m: "64612 without side modifier billed with 2+ units")
    put(why, (m_rt | m_lt) & ~m50 & (pu != 1) & units_ok,
        lambda m: "64612-RT/LT billed with " + numbers(pd.Series(pu[m])) + " units (1 per side)")
    day = combined_groups(groups.codes[pos], group_codes(lines[C.SERVICE_DATE].iloc[pos]))  # claim and date

    def per_day(flags: np.ndarray) -> np.ndarray:  # the lines of the flag on the line's claim and date
        return np.bincount(day, weights=flags)[day] if len(day) else np.zeros(0)

    d50, d_rt, d_lt, d_unmod = per_day(m50), per_day(m_rt), per_day(m_lt), per_day(unmod)
    mixed = (d50 > 0) & ((d_rt > 0) | (d_lt > 0)) & units_ok
    put(why, mixed & (why == ""), lambda m: "64612-50 plus a 64612-RT/LT line on the same date")
    twice = (d_rt > 1) | (d_lt > 1) | (d50 > 1) | (d_unmod > 1)
    put(why, twice & units_ok & (why == ""), lambda m: "two 64612 lines for the same side on the same date")
    return pos, why


@claim_rule(
    "HFS-009", W, field=M1, needs=(M1,), reads=("in_scope", *_STYLE), anchor="idx_64612",
    title="Bilateral style differs from payer profile",
    checks="The bilateral billing style matches the payer profile: '50' expects one 64612-50 line, 'RT_LT' two "
           "lines; the default profile 'any' accepts both. Two 64612 lines on one date for a payer that applies "
           "NCCI are the unit-limit error (MUE-001) instead.",
    message="The payer expects {value}.",
    fix="Re-bill the bilateral service in the style this payer expects.",
    source=f"{_BILATERAL}; the payer's own bilateral billing policy (commercial payers may require RT/LT lines)",
    examples=examples(fires=[on(0, modifier_1="RT"), add(line_no=3, procedure_code="64612", modifier_1="LT")],
                      quiet=list(_BOTH_SIDES), value="one line 64612-50 x1",
                      fires_profile={"bilateral_style": "50", "ncci_applies": False},
                      quiet_profile={"bilateral_style": "RT_LT"}))
def bilateral_style_matches_payer(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, _rt_lt_where_50_expected(df) | _50_where_rt_lt_expected(df))


def _rt_lt_where_50_expected(df: pd.DataFrame) -> pd.Series:
    return (df["profile_style"] == "50") & df["m_rt"] & df["m_lt"] & ~df["m50"] & ~df["over_mue_64612"]


def _50_where_rt_lt_expected(df: pd.DataFrame) -> pd.Series:
    return (df["profile_style"] == "RT_LT") & df["m50"]


@bilateral_style_matches_payer.detail(columns=_STYLE)
def _(rows: pd.DataFrame) -> pd.Series:
    """What the payer expects instead."""
    return choose([(_rt_lt_where_50_expected(rows), "one line 64612-50 x1"),
                   (_50_where_rt_lt_expected(rows), "two lines, 64612-RT and 64612-LT")], len(rows), rows.index)


@claim_rule(
    "HFS-010", E, field=C.DX_POINTER, needs=(C.DX_POINTER,),
    reads=("file_has_pointers", "in_scope", "lines_off_g513x"), value="lines_off_g513x", anchor="lines_off_g513x_at",
    title="64612 or toxin line does not point at G51.3x",
    checks="When the file has diagnosis pointers, the 64612 line and the toxin line point at a G51.3x diagnosis.",
    message="Line with {value} does not point at a G51.3x diagnosis.",
    fix="Point the 64612 and toxin lines at the G51.33 diagnosis.",
    source="CMS Pub. 100-04 Ch. 26, Sec. 10.4 item 24E (diagnosis pointer); Billing and Coding article A58423 "
           "(ICD-10-CM codes that support medical necessity)",
    examples=examples(fires=[on(1, dx_2="G24.5", dx_pointer="B")],
                      quiet=[on(0, dx_pointer=None), on(1, dx_pointer=None)], value="J0585"))
def lines_point_at_g513x(df: pd.DataFrame) -> pd.Series:
    return ~(df["file_has_pointers"] & df["in_scope"] & df["lines_off_g513x"])


@lines_point_at_g513x.lines(fact="lines_off_g513x", shows=C.PROCEDURE_CODE)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> np.ndarray:
    """64612 and toxin lines whose pointer names no G51.3x diagnosis."""
    return ((f["is_64612"] | f["is_toxin"]) & ~f["points_g513x"]).to_numpy(bool)
