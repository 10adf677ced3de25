"""Guidance and bundled-code rules for G51.33 claims (95873/95874 guidance, 96372)."""

import numpy as np
import pandas as pd

from schemas import columns as C
from schemas.checks import combined_groups, group_codes
from schemas.rules.core import Severity, add, claim_rule, examples, keep, on, passes_unless
from schemas.text import choose

E, W = Severity.ERROR, Severity.WARNING
_BOTH = "95873 and 95874 billed together"
_WITH_64612 = "guidance billed with 64612 for facial muscles"
_GUIDE = ("is_95873", "is_95874", "is_64612", "ncci_applies")
_GUIDANCE = "AMA CPT 95873/95874 (add-on codes: report with a chemodenervation code, 1 unit per session)"


@claim_rule(
    "HFS-022", E, field=C.PROCEDURE_CODE, reads=("in_scope", "guidance_faults", "is_95874", "is_64617"),
    title="Guidance billed incorrectly",
    checks="Guidance (95873/95874) is billed only with a chemodenervation code on the same date, at most 1 unit "
           "per date, and 95874 never with 64617 (which includes it). For a payer that applies NCCI, units above 1 "
           "are the unit-limit error (MUE-001) instead.",
    message="Guidance: {value}.",
    fix="Bill at most 1 unit of 95873 or 95874 per date, only with a chemodenervation code, never "
        "95874 with 64617.",
    source=f"{_GUIDANCE}; CMS NCCI add-on code edits; NCCI Policy Manual for Medicare Services Ch. XI",
    examples=examples(fires=[add(procedure_code="95874", units=2)],
                      quiet=[add(line_no=3, procedure_code="95874")],
                      value="more than 1 unit of guidance on one date", fires_profile={"ncci_applies": False}))
def guidance_valid(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["guidance_faults"] | (df["is_95874"] & df["is_64617"]))


_LARYNX = "95874 with 64617 (guidance included)"


@guidance_valid.texts(fact="guidance_faults")
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per guidance line: no chemodenervation code on its date, or more than 1 unit of guidance that date."""
    pos = np.flatnonzero((f["is_95873"] | f["is_95874"] | f["is_chemo"]).to_numpy())
    cc = groups.codes[pos]
    day = combined_groups(cc, group_codes(lines[C.SERVICE_DATE].iloc[pos]))  # claim and date (none: one date)
    guide = (f["is_95873"].to_numpy() | f["is_95874"].to_numpy())[pos]
    chemo_same_day = (np.bincount(day, weights=f["is_chemo"].to_numpy()[pos]) > 0)[day]
    units = np.nan_to_num(np.asarray(lines[C.UNITS].to_numpy()[pos], dtype=float))  # a missing unit counts 0
    guide_units = np.bincount(day, weights=np.where(guide, units, 0.0))[day]
    why = np.full(len(pos), "", dtype=object)
    why[guide & ~chemo_same_day] = "guidance without a chemodenervation code on the same date"
    ncci = claims["ncci_applies"].to_numpy(bool)[cc]  # else MUE-001 (MAI 2) says it
    why[guide & (guide_units > 1) & ~ncci] = "more than 1 unit of guidance on one date"
    return pos, why


@guidance_valid.detail(columns=("guidance_faults", "is_95874", "is_64617"))
def _(rows: pd.DataFrame) -> pd.Series:
    """The guidance lines' faults, then 95874 with 64617 where both are billed."""
    text = rows["guidance_faults"].astype(object)
    larynx = (rows["is_95874"] & rows["is_64617"]).to_numpy(bool)
    return text.where(~larynx, (text + "; " + _LARYNX).where(text != "", _LARYNX))


@claim_rule(
    "HFS-023", W, field=C.PROCEDURE_CODE, reads=("in_scope", *_GUIDE),
    title="Guidance needs justification",
    checks="Guidance is not billed as both 95873 and 95874 (for a payer that applies NCCI, that pair is PTP-001), "
           "and guidance with 64612 (facial muscles are easily targeted) has its medical necessity documented.",
    message="Guidance: {value}.",
    fix="Document why guidance was medically necessary for easily targeted facial muscles, or remove it.",
    source=f"{_GUIDANCE}; LCD L38809 (guidance for easily targeted muscles not covered); Billing and Coding article "
           "A57474 (EMG guidance only when needed to identify injection sites)",
    examples=examples(fires=[add(procedure_code="95874", units=1)], quiet=[],
                      value=_WITH_64612))
def guidance_justified(df: pd.DataFrame) -> pd.Series:
    emg, estim = df["is_95874"], df["is_95873"]
    return passes_unless(df, (emg & estim & ~df["ncci_applies"]) | ((emg | estim) & df["is_64612"]))


@guidance_justified.detail(columns=_GUIDE)
def _(rows: pd.DataFrame) -> pd.Series:
    both = rows["is_95873"] & rows["is_95874"] & ~rows["ncci_applies"]
    return choose([(both, _BOTH), (np.ones(len(rows), dtype=bool), _WITH_64612)], len(rows), rows.index)


_INJECTION = ("is_96372", "is_64612", "ncci_applies", "m96372_distinct")


@claim_rule(
    "HFS-024", E, field=C.PROCEDURE_CODE, reads=("in_scope", *_INJECTION), anchor="idx_64612",
    title="96372 billed with 64612",
    checks="96372 (therapeutic injection) is not billed with 64612: the chemodenervation code includes the "
           "injection. With 59/XS (or XE, XP, XU) on the 96372 it is a warning (a separate injection must be "
           "documented); without, for a payer that applies NCCI, it is the pair error PTP-002 instead.",
    message="96372 is billed with 64612; the chemodenervation code includes the injection.",
    fix="Remove the 96372 line, unless a separate injection (another drug, another site) is documented.",
    source="NCCI Policy Manual for Medicare Services Ch. XI (injection included in the procedure); CMS NCCI "
           "procedure-to-procedure edits 64612/96372 (modifier indicator 1)",
    examples=examples(fires=[add(procedure_code="96372", units=1)],
                      quiet=[on(0, procedure_code="99214", modifier_1=None, muscles=None), keep(0),
                             add(line_no=2, procedure_code="96372", charge=180.0)],
                      fires_profile={"ncci_applies": False}))
def no_96372_with_64612(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["is_96372"] & df["is_64612"] & (~df["ncci_applies"] | df["m96372_distinct"]))


@no_96372_with_64612.severity(columns=("m96372_distinct",))
def _(rows: pd.DataFrame) -> pd.Series:
    """A warning when the 96372 carries a distinct-service modifier (the payer may pay it with records)."""
    return pd.Series(np.where(rows["m96372_distinct"].to_numpy(bool), "warning", "error"), index=rows.index)
