"""History and setting rules for G51.33 claims: repeat sessions, facility setting, drug/administration pairing."""

import pandas as pd

from schemas import columns as C
from schemas.rules.core import Severity, claim_rule, every, examples, on, passes_unless, prior

E, W = Severity.ERROR, Severity.WARNING


@claim_rule(
    "HFS-030", W, field=C.SERVICE_DATE, needs=(C.PATIENT_ID,), reads=("in_scope", "why_repeat"), value="why_repeat",
    anchor="idx_64612",
    title="Repeat injection too soon",
    checks="A patient's 64612 session is at least the payer's interval (default 84 days) after the previous one, "
           "in the same file, another file of the night or the ledger of earlier runs.",
    message="Repeat 64612 for this patient {value}.",
    fix="Check the interval; most payers allow one session every 12 weeks.",
    source="LCD L34635 (Noridian) and L39835/L39856 (treatments at least 12 weeks apart)",
    examples=examples(fires=[prior(service_date="2024-03-26")], quiet=[prior(service_date="2024-02-20")],
                      value="49 days after the session on 2024-03-26 (minimum 84)", sampled=False))
def repeat_interval(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["why_repeat"])


@claim_rule(
    "HFS-031", W, field=C.PLACE_OF_SERVICE, needs=(C.PLACE_OF_SERVICE,), reads=("in_scope", "why_setting"),
    value="why_setting", anchor="idx_toxin",
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
    return passes_unless(df, df["why_setting"])


@claim_rule(
    "HFS-032", W, field=C.SERVICE_DATE, reads=("in_scope", "why_pairing"), value="why_pairing", anchor="idx_64612",
    title="64612 and toxin line disagree",
    checks="64612 and its toxin line share the date of service and the rendering NPI.",
    message="64612 and its toxin line differ: {value}.",
    fix="Bill the administration and the drug on the same date with the same rendering NPI.",
    source="Billing and Coding article A58423 (drug and administration on the same claim and date); CMS Pub. 100-04 "
           "Ch. 26, Sec. 10.4 items 24A and 24J",
    examples=examples(fires=[on(1, service_date="2024-05-15")], quiet=[], value="different dates of service"))
def drug_and_administration_agree(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["why_pairing"])
