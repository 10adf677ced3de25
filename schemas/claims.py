"""pandera models: canonical claim lines (structure rules) and one row of facts per claim (HFS rules).

Every business rule is a named check whose name is its catalog id. Severity is not here.
"""

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.backends.pandas.checks import PandasCheckBackend
from pandera.typing import Series

from schemas import codesets as K
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

_LATERALITY = pd.Timestamp(K.LATERALITY_EFFECTIVE)


def rule(rule_id: str):
    """A claim rule as a pandera check named by its catalog id (a ``RuleCheck`` in a ``RuleModel``).

    ``ignore_na=False``: a rule decides about blanks itself, and pandera then skips a whole-frame
    ``isna()`` per check (the frames here are wide).
    """
    return pa.dataframe_check(name=rule_id, ignore_na=False)


class RuleCheck(pa.Check):
    """A catalog rule's dataframe check. Its failing rows are the False entries of its output, which
    each pandera error carries (``check_output``) and pipeline.validate reads. pandera is not asked
    for per-row failure cases: it would select every failing row, reshape it per column and format it
    into the error message, once per failing check (about 2 ms each plus the rows), and nothing reads
    them."""


class _RuleCheckBackend(PandasCheckBackend):
    """pandera's pandas check backend, without the failure cases (the error says which check failed)."""

    def _get_series_failure_cases(self, check_obj, check_output):
        return None


RuleCheck.register_backend(pd.DataFrame, _RuleCheckBackend)


class RuleModel(pa.DataFrameModel):
    """A model whose ``@rule`` checks are ``RuleCheck`` objects."""

    @classmethod
    def _extract_df_checks(cls, check_infos):
        checks = super()._extract_df_checks(check_infos)
        for check in checks:
            check.__class__ = RuleCheck  # same state; only the backend differs
        return checks


def _f(description: str, **kw) -> pa.Field:
    return pa.Field(nullable=True, description=description, **kw)


class RawClaims(RuleModel):
    """One claim line after ingest: one row per (claim_id, line_no); the ingest contract."""

    claim_id: Series[str] = _f("Claim id as written")
    line_no: Series[pd.Int64Dtype] = _f("Line number within the claim")
    patient_id: Series[str] = _f("Member / patient id (PHI)")
    patient_name: Series[str] = _f("Patient name (PHI)")
    dob: Series[pa.DateTime] = _f("Date of birth (PHI)")
    service_date: Series[pa.DateTime] = _f("Date of service")
    payer: Series[str] = _f("Payer or plan name")
    rendering_npi: Series[str] = _f("Rendering provider NPI")
    place_of_service: Series[str] = _f("Place of service, two digits")
    procedure_code: Series[str] = _f("CPT or HCPCS code, upper case")
    modifier_1: Series[str] = _f("Modifier 1")
    modifier_2: Series[str] = _f("Modifier 2")
    modifier_3: Series[str] = _f("Modifier 3")
    modifier_4: Series[str] = _f("Modifier 4")
    modifier_extra: Series[str] = _f("Modifiers beyond the fourth, comma-separated")
    units: Series[float] = _f("Service units")
    charge: Series[float] = _f("Billed charge, USD")
    dx_pointer: Series[str] = _f("Diagnosis pointer letters, e.g. AB")
    ndc: Series[str] = _f("National Drug Code as written")
    drug_source: Series[str] = _f("Who supplied the drug: office, pharmacy, patient")
    prior_auth: Series[str] = _f("Prior authorization number (UTN)")
    muscles: Series[str] = _f("Injection sites free text")
    doc_onset: Series[bool] = pa.Field(description="Onset of spasms documented")
    doc_duration: Series[bool] = pa.Field(description="Duration of spasms documented")
    doc_frequency: Series[bool] = pa.Field(description="Frequency of spasms documented")
    doc_neuro_exam: Series[bool] = pa.Field(description="Neurological examination documented")
    doc_facial_nerve: Series[bool] = pa.Field(description="Facial nerve function assessment documented")
    doc_imaging: Series[bool] = pa.Field(description="Imaging documented")
    doc_surgical_notes: Series[bool] = pa.Field(description="Surgical notes documented")
    source_row: Series[int] = pa.Field(description="Row number in the input as Excel shows it")

    class Config:
        strict = False
        coerce = False


class ClaimLines(RawClaims):
    """Claim lines with the structure rules (STR), checked on every line."""

    as_of: Series[pa.DateTime] = pa.Field(description="As-of date of the run (a parameter, never the clock)")

    @rule("STR-001")
    def claim_id_present(cls, df: pd.DataFrame) -> Series[bool]:
        return df[C.CLAIM_ID].notna()

    @rule("STR-002")
    def service_date_valid(cls, df: pd.DataFrame) -> Series[bool]:
        return df[C.SERVICE_DATE].notna() & (df[C.SERVICE_DATE] <= df["as_of"])

    @rule("STR-003")
    def procedure_code_valid(cls, df: pd.DataFrame) -> Series[bool]:
        return text_matches(df[C.PROCEDURE_CODE], CPT_PATTERN)

    @rule("STR-004")
    def units_whole_positive(cls, df: pd.DataFrame) -> Series[bool]:
        u = df[C.UNITS]
        return u.notna() & (u >= 1) & (u % 1 == 0)

    @rule("STR-005")
    def dx_is_icd10(cls, df: pd.DataFrame) -> Series[bool]:
        ok = pd.Series(True, index=df.index)
        for col in C.DX:
            if col in df:
                ok &= df[col].isna() | text_matches(df[col], ICD10_PATTERN)
        return ok

    @rule("STR-006")
    def npi_valid(cls, df: pd.DataFrame) -> Series[bool]:
        return npi_is_valid(df[C.RENDERING_NPI])

    @rule("STR-007")
    def modifiers_valid(cls, df: pd.DataFrame) -> Series[bool]:
        ok = df[C.MODIFIER_EXTRA].isna()
        for col in C.MODIFIERS:
            ok &= df[col].isna() | text_matches(df[col], MODIFIER_PATTERN)
        return ok

    @rule("STR-008")
    def line_unique(cls, df: pd.DataFrame) -> Series[bool]:
        keyed = (df[C.CLAIM_ID].notna() & df[C.LINE_NO].notna()).to_numpy(bool)
        repeated = np.zeros(len(df), dtype=bool)
        repeated[keyed] = repeated_keys(group_codes(df[C.CLAIM_ID][keyed]), group_codes(df[C.LINE_NO][keyed]))
        return pd.Series(~repeated, index=df.index)

    @rule("STR-009")
    def charge_valid(cls, df: pd.DataFrame) -> Series[bool]:
        return df[C.CHARGE].notna() & (df[C.CHARGE] >= 0)

    @rule("STR-010")
    def pointer_names_filled_dx(cls, df: pd.DataFrame) -> Series[bool]:
        ptr = df[C.DX_POINTER]
        ok = ptr.isna() | text_matches(ptr, POINTER_PATTERN)
        text = ptr.fillna("").astype(str)
        for k, col in enumerate(C.DX):
            names_k = text.str.contains(chr(65 + k), regex=False)
            ok &= ~(names_k & df[col].isna())
        return ok

    @rule("STR-011")
    def one_patient_per_claim(cls, df: pd.DataFrame) -> Series[bool]:
        return pd.Series(~several_per_group(group_codes(df[C.CLAIM_ID]), df[C.PATIENT_ID]), index=df.index)

    @rule("STR-012")
    def within_timely_filing(cls, df: pd.DataFrame) -> Series[bool]:
        limit = df["as_of"] - pd.Timedelta(days=K.TIMELY_FILING_DAYS)
        return df[C.SERVICE_DATE].isna() | (df[C.SERVICE_DATE] >= limit)


def _clear(df: pd.DataFrame, why: str) -> Series[bool]:
    """A G51.33 claim passes when the derived reason is empty (text) or False (flag)."""
    return ~(df["in_scope"] & df[why].astype(bool))


# Every claim fact the HFS checks below read. validate hands pandera only these columns: for each
# failing dataframe check pandera formats every failing row once per column of the frame.
FACT_COLUMNS = (
    "claim_id", "in_scope", "g513", "g510", "is_64612", "is_toxin", "is_96372", "is_surgery", "dos_min",
    "dos_max", "n_sites", "toxin_code", "drug_supplied", "file_has_pointers", "conflict_dx", "one_side",
    "sites_without_units", "nonfacial_muscles", "unknown_muscles", C.DOC_IMAGING, C.DOC_SURGICAL_NOTES,
    "why_other_chemo", "why_bilateral", "why_style", "why_pointer", "why_units", "why_waste", "why_vials",
    "why_dose", "why_ndc", "why_sides", "why_guidance", "why_guidance_warn", "why_history", "why_exam",
    "why_repeat", "why_setting", "why_pairing",
)


class ClaimFacts(RuleModel):
    """One row per claim: the facts derived from its lines, with the G51.33 rules (HFS)."""

    claim_id: Series[str] = pa.Field(description="Claim id")
    in_scope: Series[bool] = pa.Field(description="G51.33 among the claim's diagnoses")
    g513: Series[bool] = pa.Field(description="G51.3 (header code) on the claim")
    g510: Series[bool] = pa.Field(description="G51.0 on the claim")
    is_64612: Series[bool] = pa.Field(description="A 64612 line on the claim")
    is_toxin: Series[bool] = pa.Field(description="A toxin J-code line (J0585-J0589) on the claim")
    dos_min: Series[pa.DateTime] = pa.Field(nullable=True, description="Earliest date of service")
    dos_max: Series[pa.DateTime] = pa.Field(nullable=True, description="Latest date of service")
    n_sites: Series[int] = pa.Field(description="Parsed injection-site entries, deduplicated per claim")

    class Config:
        strict = False
        coerce = False

    @rule("HFS-001")
    def g5133_after_effective(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & (df["dos_min"] < _LATERALITY))

    @rule("HFS-002")
    def no_header_g513(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["g513"] & (df["dos_max"] >= _LATERALITY))

    @rule("HFS-003")
    def one_laterality(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "conflict_dx")

    @rule("HFS-004")
    def no_bells_palsy(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & df["g510"])

    @rule("HFS-005")
    def drug_with_administration(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & (df["is_toxin"] | (df["n_sites"] > 0)) & ~df["is_64612"])

    @rule("HFS-006")
    def other_chemo_supported(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_other_chemo")

    @rule("HFS-007")
    def both_sides_billed(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "one_side")

    @rule("HFS-008")
    def bilateral_well_formed(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_bilateral")

    @rule("HFS-009")
    def bilateral_style_matches_payer(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_style")

    @rule("HFS-010")
    def lines_point_at_g513x(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["file_has_pointers"] & df["in_scope"] & df["why_pointer"].astype(bool))

    @rule("HFS-011")
    def toxin_line_present(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & df["is_64612"] & ~df["is_toxin"] & ~df["drug_supplied"])

    @rule("HFS-012")
    def toxin_on_lcd_list(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & df["toxin_code"].isin(K.TOXIN_OFF_LIST))

    @rule("HFS-013")
    def billed_units_match_dose(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_units")

    @rule("HFS-014")
    def waste_modifiers_valid(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_waste")

    @rule("HFS-015")
    def whole_vials(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_vials")

    @rule("HFS-016")
    def dose_plausible(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_dose")

    @rule("HFS-017")
    def ndc_present(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_ndc")

    @rule("HFS-018")
    def sites_documented(cls, df: pd.DataFrame) -> Series[bool]:
        missing = (df["n_sites"] == 0) | df["sites_without_units"].astype(bool)
        return ~(df["in_scope"] & df["is_64612"] & missing)

    @rule("HFS-019")
    def muscles_facial(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "nonfacial_muscles")

    @rule("HFS-020")
    def muscles_recognised(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "unknown_muscles")

    @rule("HFS-021")
    def sites_on_both_sides(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_sides")

    @rule("HFS-022")
    def guidance_valid(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_guidance")

    @rule("HFS-023")
    def guidance_justified(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_guidance_warn")

    @rule("HFS-024")
    def no_96372_with_64612(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & df["is_96372"] & df["is_64612"])

    @rule("HFS-025")
    def spasm_history_documented(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_history")

    @rule("HFS-026")
    def exam_documented(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_exam")

    @rule("HFS-027")
    def imaging_documented(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & ~df[C.DOC_IMAGING])

    @rule("HFS-028")
    def surgical_notes_documented(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["in_scope"] & df["is_surgery"] & ~df[C.DOC_SURGICAL_NOTES])

    @rule("HFS-030")
    def repeat_interval(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_repeat")

    @rule("HFS-031")
    def setting_fits_drug(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_setting")

    @rule("HFS-032")
    def drug_and_administration_agree(cls, df: pd.DataFrame) -> Series[bool]:
        return _clear(df, "why_pairing")


# pandera registers its pandas backends on the first validation in a process (importing its
# data-synthesis strategies with them, and hypothesis when that is installed): about 0.15 s. Done on
# import instead, it is paid once: the nightly run's children fork from a process that imported this.
pa.DataFrameSchema.register_default_backends(pd.DataFrame)
