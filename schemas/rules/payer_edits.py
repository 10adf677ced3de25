"""NCCI payer edits on every claim: unit limits (MUE) and procedure-to-procedure pairs (PTP).

Whether a payer applies NCCI is its profile's ``ncci_applies`` (Medicare yes; others configurable, default yes).
The limits and pairs come from the reference tables in force on the date of service (pipeline/reference.py);
derive joins them to the lines (``mue_limit``, ``mai``, ``mue_units``, ``ptp_col1``, ``ptp_indicator``,
``ptp_bypass``).
"""

import numpy as np
import pandas as pd

from schemas import columns as C
from schemas.rules.core import Severity, add, claim_rule, examples, on
from schemas.text import numbers

E = Severity.ERROR
_NCCI = "CMS NCCI Policy Manual for Medicare Services, Ch. I"
_SIDES = (on(0, modifier_1="RT"), add(line_no=3, procedure_code="64612", modifier_1="LT", units=1))
_MAI = {1: "per line (MAI 1)", 2: "per date of service (MAI 2: absolute, no appeal pays more)",
        3: "per date of service (MAI 3: an appeal with medical records may pay more)"}


def _dates(lines: pd.DataFrame, pos: np.ndarray) -> np.ndarray:
    return pd.to_datetime(lines[C.SERVICE_DATE].iloc[pos]).dt.strftime("%Y-%m-%d").fillna("no date").to_numpy(object)


@claim_rule(
    "MUE-001", E, field=C.UNITS, reads=("mue_faults",), value="mue_faults", anchor="mue_faults_at", tables=("mue",),
    title="Units above the NCCI unit limit (MUE)",
    checks="On every claim of a payer that applies NCCI, the units of each code stay within its practitioner MUE: "
           "per line (MAI 1), or per date of service summed over the lines of the same patient and rendering "
           "provider (MAI 2 and 3). Two 64612 lines (RT and LT) on one date are 2 units against a limit of 1.",
    message="Units above the NCCI unit limit: {value}.",
    fix="Bill no more than the MUE. MAI 2 is absolute: no documentation or appeal pays more (bill a bilateral "
        "64612 as one line 64612-50 with 1 unit). MAI 3: bill up to the MUE; an appeal with medical records may "
        "pay the rest. MAI 1: units per line.",
    source=f"CMS NCCI Medically Unlikely Edits, Practitioner Services MUE Table (quarterly); {_NCCI}, Sec. V "
           "(MUE adjudication indicators); CMS MLN SE1422 (bilateral 64612: one line, modifier 50, 1 unit)",
    examples=examples(fires=list(_SIDES),
                      quiet=[on(0, modifier_1="RT"), add(line_no=3, procedure_code="64612", modifier_1="LT", units=1,
                                                          service_date="2024-05-21")],
                      value="64612: 2 units on 2024-05-14 against MUE 1 per date of service (MAI 2: absolute, "
                            "no appeal pays more)"))
def units_within_mue(df: pd.DataFrame) -> pd.Series:
    return ~df["mue_faults"]


@units_within_mue.texts(fact="mue_faults", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per line over its MUE: the code, its units (per line or per date) and the limit with its indicator."""
    pos = np.flatnonzero((f["mue_units"] > f["mue_limit"]).to_numpy(bool))
    if not len(pos):
        return pos, np.empty(0, dtype=object)
    code = lines[C.PROCEDURE_CODE].iloc[pos].astype(object).fillna("").astype(str).to_numpy(object)
    mai = f["mai"].to_numpy()[pos]
    where = np.where(mai == 1, " on one line", " on " + _dates(lines, pos))
    units = numbers(pd.Series(f["mue_units"].to_numpy()[pos])).to_numpy(object)
    limit = numbers(pd.Series(f["mue_limit"].to_numpy()[pos])).to_numpy(object)
    kind = np.array([_MAI.get(int(m), "") for m in mai], dtype=object)
    return pos, code + ": " + units + " units" + where + " against MUE " + limit + " " + kind


def _pair_texts(lines: pd.DataFrame, f: pd.DataFrame, mask: np.ndarray, why) -> tuple[np.ndarray, np.ndarray]:
    pos = np.flatnonzero(mask)
    if not len(pos):
        return pos, np.empty(0, dtype=object)
    col2 = lines[C.PROCEDURE_CODE].iloc[pos].astype(object).fillna("").astype(str).to_numpy(object)
    col1 = f["ptp_col1"].to_numpy(object)[pos]
    return pos, col2 + " with " + col1 + " on " + _dates(lines, pos) + ": the payer denies " + col2 + " " + why(col2)


@claim_rule(
    "PTP-001", E, field=C.PROCEDURE_CODE, reads=("ptp_never",), value="ptp_never", anchor="ptp_never_at",
    tables=("ptp",),
    title="NCCI pair never paid together",
    checks="On every claim of a payer that applies NCCI, no two codes billed for the same patient, date and "
           "rendering provider form an NCCI procedure-to-procedure pair with modifier indicator 0 (e.g. 64612 with "
           "64615, 64612 with diagnostic EMG 95860-95870, 95873 with 95874): the column-2 code is never paid "
           "with the column-1 code, whatever the modifiers.",
    message="NCCI pair with indicator 0: {value}.",
    fix="Remove the code the payer denies (the finding names it): no modifier gets these two codes paid "
        "together. If that service was a separate visit on another day, bill it on that day.",
    source=f"CMS NCCI Procedure-to-Procedure Edits, Practitioner (quarterly); {_NCCI}, Sec. E (modifier "
           "indicators)",
    examples=examples(fires=[add(line_no=3, procedure_code="95870", modifier_1=None, units=1, muscles=None)],
                      quiet=[add(line_no=3, procedure_code="95870", modifier_1=None, units=1, muscles=None,
                                 service_date="2024-05-21")],
                      value="95870 with 64612 on 2024-05-14: the payer denies 95870 (modifier indicator 0: "
                            "never paid together)"))
def no_pair_never_paid(df: pd.DataFrame) -> pd.Series:
    return ~df["ptp_never"]


@no_pair_never_paid.texts(fact="ptp_never", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per column-2 line of an indicator-0 pair: both codes, the date and which one is denied."""
    return _pair_texts(lines, f, (f["ptp_indicator"] == 0).to_numpy(bool),
                       lambda col2: np.full(len(col2), "(modifier indicator 0: never paid together)", dtype=object))


@claim_rule(
    "PTP-002", E, field=C.MODIFIERS[0], reads=("ptp_needs_modifier",), value="ptp_needs_modifier",
    anchor="ptp_needs_modifier_at", tables=("ptp",),
    title="NCCI pair without its modifier",
    checks="On every claim of a payer that applies NCCI, an NCCI pair with modifier indicator 1 (e.g. 64612 with "
           "96372, or with an E/M 99211-99215) carries an NCCI-associated modifier on the column-2 code: 25 (or 57) "
           "on an E/M; 59, XE, XS, XP or XU, or an anatomic modifier the column-1 line does not carry, on others.",
    message="NCCI pair with indicator 1 and no associated modifier: {value}.",
    fix="If the denied service was separate from the other one (a visit for another problem, a different site "
        "or session), add the modifier the finding names to the denied code and say why in the record; otherwise "
        "remove the denied code.",
    source=f"CMS NCCI Procedure-to-Procedure Edits, Practitioner (quarterly); {_NCCI}, Sec. E (modifier "
           "indicators) and Ch. XI (E/M with modifier 25 on the day of a procedure)",
    examples=examples(fires=[add(line_no=3, procedure_code="99213", modifier_1=None, units=1, muscles=None)],
                      quiet=[add(line_no=3, procedure_code="99213", modifier_1="25", units=1, muscles=None)],
                      value="99213 with 64612 on 2024-05-14: the payer denies 99213 unless modifier 25 is on it "
                            "(modifier indicator 1)"))
def pair_has_modifier(df: pd.DataFrame) -> pd.Series:
    return ~df["ptp_needs_modifier"]


@pair_has_modifier.texts(fact="ptp_needs_modifier", tables=True)
def _(lines: pd.DataFrame, f: pd.DataFrame, groups, claims: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per column-2 line of an indicator-1 pair without an associated modifier: which modifier it needs."""
    def why(col2):
        return np.full(len(col2), "unless an NCCI-associated modifier (59, XE, XS, XP, XU or anatomic) is on it "
                                  "(modifier indicator 1)", dtype=object)

    mask = f["ptp_indicator"].to_numpy() == 1
    on = np.flatnonzero(mask)  # the bypass text compared on the indicator-1 lines only
    mask[on] = f["ptp_bypass"].to_numpy(object)[on] == ""
    pos, texts = _pair_texts(lines, f, mask, why)
    if len(pos):
        em = lines[C.PROCEDURE_CODE].iloc[pos].astype(object).fillna("").astype(str).str.fullmatch(
            r"99[2-4]\d\d").to_numpy(bool)
        texts = np.where(em, np.char.replace(texts.astype(str), "an NCCI-associated modifier (59, XE, XS, XP, "
                                                  "XU or anatomic)", "modifier 25").astype(object), texts)
    return pos, texts
