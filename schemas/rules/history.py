"""History and setting rules for G51.33 claims: repeat sessions, facility setting, drug/administration pairing."""

import pandas as pd

from schemas import codesets as K
from schemas import columns as C
from schemas.rules.core import Severity, claim_rule, every, examples, on, passes_unless, prior
from schemas.text import join_flags

E, W = Severity.ERROR, Severity.WARNING
_POS = C.PLACE_OF_SERVICE
_OPD_PA_EFFECTIVE = pd.Timestamp(K.OPD_PA_EFFECTIVE)
_SETTING = (_POS, "is_toxin", "is_64612", "toxin_code", "dos_min", "prior_auth_given")
_PAIRING = ("is_64612", "admin_toxin", "admin_first_date", "admin_last_date", "drug_first_date", "drug_last_date",
            "admin_drug_npis")


_REPEAT = ("dos_min", "previous_session", "repeat_interval_days")


def too_soon(days: pd.Series, interval) -> pd.Series:
    """The repeat-session test, for this file and for the night-level pass over several files: a later
    session fewer than ``interval`` days after the previous one."""
    return days.notna() & (days > 0) & (days < interval)


def _days_since_previous(df: pd.DataFrame) -> pd.Series:
    return (df["dos_min"] - df["previous_session"]).dt.days


def _facility_with_drug(df: pd.DataFrame) -> pd.Series:
    return df[_POS].fillna("").isin(K.FACILITY_POS) & df["is_toxin"]


def _outpatient_without_auth(df: pd.DataFrame) -> pd.Series:
    return (df[_POS].fillna("").isin(K.OPD_POS) & df["is_64612"] & df["toxin_code"].isin(K.TOXIN_OPD_PA)
            & (df["dos_min"] >= _OPD_PA_EFFECTIVE) & ~df["prior_auth_given"])


def _dates_differ(df: pd.DataFrame) -> pd.Series:
    both = df["is_64612"] & df["admin_toxin"]
    moved = (df["admin_first_date"] != df["drug_first_date"]) | (df["admin_last_date"] != df["drug_last_date"])
    return both & moved & df["admin_first_date"].notna() & df["drug_first_date"].notna()


def _npis_differ(df: pd.DataFrame) -> pd.Series:
    return df["is_64612"] & df["admin_toxin"] & (df["admin_drug_npis"] > 1)


@claim_rule(
    "HFS-030", W, field=C.SERVICE_DATE, needs=(C.PATIENT_ID,), reads=("in_scope", *_REPEAT), anchor="idx_64612",
    title="Repeat injection too soon",
    checks="A patient's 64612 session is at least the payer's interval (default 84 days) after the previous one, "
           "in the same file, another file of the night or the ledger of earlier runs.",
    message="Repeat 64612 for this patient {value}.",
    fix="Check the interval; most payers allow one session every 12 weeks.",
    source="LCD L34635 (Noridian) and L39835/L39856 (treatments at least 12 weeks apart)",
    examples=examples(fires=[prior(service_date="2024-03-26")], quiet=[prior(service_date="2024-02-20")],
                      value="49 days after the session on 2024-03-26 (minimum 84)", sampled=False))
def repeat_interval(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, too_soon(_days_since_previous(df), df["repeat_interval_days"]))


@repeat_interval.detail(columns=_REPEAT)
def _(rows: pd.DataFrame) -> pd.Series:
    return (_days_since_previous(rows).astype(int).astype(str) + " days after the session on "
            + rows["previous_session"].dt.strftime("%Y-%m-%d") + " (minimum "
            + rows["repeat_interval_days"].astype(int).astype(str) + ")")


@claim_rule(
    "HFS-031", W, field=C.PLACE_OF_SERVICE, needs=(C.PLACE_OF_SERVICE,), reads=("in_scope", *_SETTING),
    anchor="idx_toxin",
    title="Facility setting with toxin line",
    checks="A professional claim in a facility place of service (19, 21, 22, 23, 24) carries no toxin line, and "
           "64612 with J0585-J0588 in a hospital outpatient department (POS 19/22) from 2020-07-01 has a "
           "prior-authorization number.",
    message="{value}.",
    fix="Bill the drug on the facility claim; for hospital outpatient settings obtain prior "
        "authorization (UTN).",
    source="42 CFR 419.83 (OPD prior authorization: botulinum toxin injections, from 2020-07-01); CMS Pub. 100-04 "
           "Ch. 12, Sec. 20.4.2 (site of service: facility and non-facility)",
    examples=examples(fires=[every(place_of_service="22")], quiet=[every(place_of_service="11")]))
def setting_fits_drug(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, _facility_with_drug(df) | _outpatient_without_auth(df))


@setting_fits_drug.detail(columns=_SETTING)
def _(rows: pd.DataFrame) -> pd.Series:
    """The facility text, the outpatient prior-authorization text, or both."""
    pos = rows[_POS].fillna("").astype(str)
    facility, outpatient = _facility_with_drug(rows).to_numpy(bool), _outpatient_without_auth(rows).to_numpy(bool)
    drug = ("POS " + pos + " (facility) with a toxin line: the drug usually belongs on the facility claim").astype(object)
    auth = ("POS " + pos + " hospital outpatient 64612 + toxin with no prior authorization number (UTN)").astype(object)
    out = drug.where(facility, auth)
    return out.where(~(facility & outpatient), drug + "; " + auth)


@claim_rule(
    "HFS-032", W, field=C.SERVICE_DATE, reads=("in_scope", *_PAIRING), anchor="idx_64612",
    title="64612 and toxin line disagree",
    checks="64612 and its toxin line share the date of service and the rendering NPI.",
    message="64612 and its toxin line differ: {value}.",
    fix="Bill the administration and the drug on the same date with the same rendering NPI.",
    source="Billing and Coding article A58423 (drug and administration on the same claim and date); CMS Pub. 100-04 "
           "Ch. 26, Sec. 10.4 items 24A and 24J",
    examples=examples(fires=[on(1, service_date="2024-05-15")], quiet=[], value="different dates of service"))
def drug_and_administration_agree(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, _dates_differ(df) | _npis_differ(df))


@drug_and_administration_agree.detail(columns=_PAIRING)
def _(rows: pd.DataFrame) -> pd.Series:
    return join_flags({"different dates of service": _dates_differ(rows),
                       "different rendering NPIs": _npis_differ(rows)}, sep="; ")
