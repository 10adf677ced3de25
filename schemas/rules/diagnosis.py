"""G51.33 diagnosis rules: the code's effective date, its header and conflicting laterality."""

import pandas as pd

from schemas import codesets as K
from schemas import columns as C
from schemas.rules.core import Severity, claim_rule, every, examples, passes_unless

E, W = Severity.ERROR, Severity.WARNING
_LATERALITY = pd.Timestamp(K.LATERALITY_EFFECTIVE)
_FY2019 = "CMS FY2019 ICD-10-CM code update (G51.31-G51.39 effective 2018-10-01)"


@claim_rule(
    "HFS-001", E, field=C.SERVICE_DATE, reads=("in_scope", "dos_min"), value="dos_min",
    title="G51.33 before it existed",
    checks="A claim with G51.33 has no date of service before 2018-10-01, when the hemifacial spasm "
           "laterality codes took effect (G51.3 was billed before).",
    message="G51.33 is billed for a date of service ({value}) before 2018-10-01, when the laterality "
            "codes took effect.",
    fix="Bill G51.3 for services before 2018-10-01.",
    source=f"{_FY2019}; ICD-10-CM Official Guidelines Sec. I.B.2 (level of detail)",
    examples=examples(fires=[every(service_date="2018-09-30")], quiet=[every(service_date="2018-10-01")],
                      value="2018-09-30"))
def g5133_after_effective(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["dos_min"] < _LATERALITY)


@claim_rule(
    "HFS-002", E, field="dx", reads=("g513", "dos_max"), value="dos_max",
    title="G51.3 is a non-billable header",
    checks="No claim, G51.33 or not, bills G51.3 on or after 2018-10-01: from then it is a header that needs "
           "its laterality character.",
    message="G51.3 is billed for a date of service ({value}) on or after 2018-10-01, when it is no "
            "longer billable.",
    fix="Use the code with laterality: G51.31, G51.32, G51.33 or G51.39.",
    source=f"{_FY2019}; ICD-10-CM Official Guidelines Sec. I.B.2 (codes must be used to the highest number of "
           "characters available)",
    examples=examples(fires=[every(dx_2="G51.3", dx_pointer="A")],
                      quiet=[every(dx_1="G51.3", service_date="2018-09-30")], value="2024-05-14"))
def no_header_g513(df: pd.DataFrame) -> pd.Series:
    return ~(df["g513"] & (df["dos_max"] >= _LATERALITY))


@claim_rule(
    "HFS-003", E, field="dx", reads=("in_scope", "conflict_dx"), value="conflict_dx",
    title="Conflicting hemifacial spasm laterality",
    checks="A G51.33 (bilateral) claim does not also carry G51.31, G51.32 or G51.39.",
    message="G51.33 (bilateral) is billed together with {value} on the same claim.",
    fix="Keep the one laterality code the record supports.",
    source="ICD-10-CM Official Guidelines Sec. I.B.13 (laterality); ICD-10-CM Tabular List G51.3-",
    examples=examples(fires=[every(dx_2="G51.31")], quiet=[every(dx_2="G24.5")], value="G51.31"))
def one_laterality(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["conflict_dx"])


@claim_rule(
    "HFS-004", W, field="dx", reads=("in_scope", "g510"),
    title="Bell's palsy coded with hemifacial spasm",
    checks="A G51.33 claim does not also carry G51.0 (Bell's palsy): palsy is weakness, spasm is contraction, "
           "so the record should be checked (it is not an Excludes1 conflict).",
    message="G51.0 (Bell's palsy) is coded with G51.33: palsy is weakness, spasm is contraction.",
    fix="Verify the record supports both diagnoses.",
    source="ICD-10-CM Tabular List G51 (G51.0 Bell's palsy; G51.3- clonic hemifacial spasm)",
    examples=examples(fires=[every(dx_2="G51.0")], quiet=[every(dx_2="G24.5")]))
def no_bells_palsy(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["g510"])
