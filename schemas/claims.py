"""pandera models: canonical claim lines and one row of facts per claim, checked by the rule catalog.

The models declare the columns (typed and described); the rules in ``schemas/rules/`` are their checks, each
named by its catalog id (``LINE_SCHEMA``, ``CLAIM_SCHEMA``). Severity is not here.
"""

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas import columns as C
from schemas.pandera_adapter import rule_check
from schemas.rules import CLAIM_RULES, LINE_RULES


def _f(description: str, **kw) -> pa.Field:
    return pa.Field(nullable=True, description=description, **kw)


class RawClaims(pa.DataFrameModel):
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
    doc_severity_scale: Series[bool] = pa.Field(description="Objective severity scale documented (optional column)")
    source_row: Series[int] = pa.Field(description="Row number in the input as Excel shows it")

    class Config:
        strict = False
        coerce = False


class ClaimLines(RawClaims):
    """Claim lines as the line rules check them (``LINE_SCHEMA``): the ingest contract plus the as-of date."""

    as_of: Series[pa.DateTime] = pa.Field(description="As-of date of the run (a parameter, never the clock)")
    timely_filing_days: Series[float] = pa.Field(description="Payer profile of the line's payer: timely-filing days")


class ClaimFacts(pa.DataFrameModel):
    """One row per claim: the facts derived from its lines (``pipeline.derive``) that the claim rules read.

    A fact whose derived value is a reviewer text (what is wrong, "" when nothing is) is checked as a flag:
    ``pipeline.validate`` hands the rules ``text != ""`` for the columns declared ``bool`` here.
    """

    claim_id: Series[str] = pa.Field(description="Claim id")
    in_scope: Series[bool] = pa.Field(description="G51.33 among the claim's diagnoses")
    g513: Series[bool] = pa.Field(description="G51.3 (header code) on the claim")
    g510: Series[bool] = pa.Field(description="G51.0 on the claim")
    is_64612: Series[bool] = pa.Field(description="A 64612 line on the claim")
    is_toxin: Series[bool] = pa.Field(description="A toxin J-code line (J0585-J0589) on the claim")
    is_96372: Series[bool] = pa.Field(description="A 96372 line on the claim")
    is_surgery: Series[bool] = pa.Field(description="A facial-nerve surgery line on the claim")
    dos_min: Series[pa.DateTime] = pa.Field(nullable=True, description="Earliest date of service")
    dos_max: Series[pa.DateTime] = pa.Field(nullable=True, description="Latest date of service")
    n_sites: Series[int] = pa.Field(description="Injection sites read (a muscle on a side), deduplicated per claim")
    toxin_code: Series[object] = pa.Field(nullable=True, description="J-code of the first administered toxin line")
    drug_supplied: Series[bool] = pa.Field(description="Drug source says pharmacy or patient supplied")
    file_has_pointers: Series[bool] = pa.Field(description="The file has diagnosis pointers on any line")
    doc_onset: Series[bool] = pa.Field(description="Onset of spasms documented on any line (or the column absent)")
    doc_duration: Series[bool] = pa.Field(description="Duration of spasms documented on any line (or the column absent)")
    doc_frequency: Series[bool] = pa.Field(
        description="Frequency of spasms documented on any line (or the column absent)")
    doc_neuro_exam: Series[bool] = pa.Field(
        description="Neurological examination documented on any line (or the column absent)")
    doc_facial_nerve: Series[bool] = pa.Field(
        description="Facial nerve function documented on any line (or the column absent)")
    doc_imaging: Series[bool] = pa.Field(description="Imaging documented on any line (or the column absent)")
    doc_surgical_notes: Series[bool] = pa.Field(
        description="Surgical notes documented on any line (or the column absent)")
    doc_severity_scale: Series[bool] = pa.Field(
        description="Objective severity scale documented on any line (or the column absent)")
    lcd_effective: Series[pa.DateTime] = pa.Field(
        nullable=True, description="Payer profile: effective date of its MAC's 2026 botulinum-toxin LCD")
    conflict_dx: Series[bool] = pa.Field(description="G51.31, G51.32 or G51.39 on the claim")
    m50: Series[bool] = pa.Field(description="Modifier 50 on any line of the claim")
    m_rt: Series[bool] = pa.Field(description="Modifier RT on any line of the claim")
    m_lt: Series[bool] = pa.Field(description="Modifier LT on any line of the claim")
    n_unmod_multi: Series[bool] = pa.Field(description="A 64612 line without side modifier billed with 2+ units")
    profile_style: Series[str] = pa.Field(description="Bilateral style of the claim's payer profile: 50, RT_LT or any")
    is_95873: Series[bool] = pa.Field(description="A 95873 (electrical stimulation guidance) line on the claim")
    is_95874: Series[bool] = pa.Field(description="A 95874 (needle EMG guidance) line on the claim")
    sites_without_units: Series[bool] = pa.Field(description="A site entry without units")
    nonfacial_muscles: Series[bool] = pa.Field(description="A documented muscle not innervated by CN VII")
    sites_unread: Series[bool] = pa.Field(
        description="Fragments of the sites text that could not be read, with why (a flag to the rules)")
    other_chemo_for_g5133: Series[bool] = pa.Field(
        description="Other chemodenervation codes supported only by G51.33 (the codes; a flag to the rules)")
    bilateral_faults: Series[bool] = pa.Field(
        description="What is malformed in the 64612 bilateral billing, per line (a flag to the rules)")
    lines_off_g513x: Series[bool] = pa.Field(
        description="Codes of the 64612 and toxin lines whose pointer names no G51.3x (a flag to the rules)")
    site_units: Series[float] = pa.Field(nullable=True, description="Toxin units documented over the claim's sites")
    billing_unit: Series[float] = pa.Field(
        nullable=True, description="Toxin units per billing unit of the claim's toxin code (e.g. Dysport 5)")
    admin_units: Series[float] = pa.Field(description="Billing units on the administered toxin lines (not JW)")
    waste_faults: Series[bool] = pa.Field(
        description="What is wrong with the JW/JZ waste modifiers, per drug line (a flag to the rules)")
    waste_units: Series[float] = pa.Field(description="Billing units on the toxin lines with JW (discarded)")
    uses_jz: Series[bool] = pa.Field(description="A toxin line with JZ (nothing discarded)")
    r_units: Series[float] = pa.Field(description="Toxin units documented on the right side")
    l_units: Series[float] = pa.Field(description="Toxin units documented on the left side")
    botox_divisor: Series[float] = pa.Field(
        nullable=True, description="Toxin units per Botox-equivalent unit of the claim's code (Dysport 2.5)")
    side_min_units: Series[float] = pa.Field(description="Payer profile: lowest plausible Botox-equivalent units a side")
    side_max_units: Series[float] = pa.Field(description="Payer profile: highest plausible Botox-equivalent units a side")
    session_cap_units: Series[float] = pa.Field(description="Payer profile: session cap in Botox-equivalent units")
    toxin_ndcs_invalid: Series[bool] = pa.Field(
        description="NDCs of toxin lines missing or not 11 digits in 5-4-2 form (a flag to the rules)")
    site_on_right: Series[bool] = pa.Field(description="A documented site on the right (or both) side(s)")
    site_on_left: Series[bool] = pa.Field(description="A documented site on the left (or both) side(s)")
    site_without_side: Series[bool] = pa.Field(description="A documented site that states no side")
    guidance_faults: Series[bool] = pa.Field(
        description="Guidance lines without chemodenervation on their date, or 2+ units a date (a flag to the rules)")
    is_64617: Series[bool] = pa.Field(description="A 64617 (laryngeal chemodenervation) line on the claim")
    previous_session: Series[pa.DateTime] = pa.Field(
        nullable=True, description="The patient's previous 64612 session (this file or the ledger); G51.33 64612 claims")
    repeat_interval_days: Series[float] = pa.Field(description="Payer profile: minimum days between sessions")
    place_of_service: Series[str] = pa.Field(nullable=True, description="Place of service of the claim's first line")
    admin_toxin: Series[bool] = pa.Field(description="An administered toxin line (a toxin J-code without JW)")
    prior_auth_given: Series[bool] = pa.Field(description="A prior-authorization number (UTN) on any line")
    admin_first_date: Series[pa.DateTime] = pa.Field(nullable=True, description="Earliest date of a 64612 line")
    admin_last_date: Series[pa.DateTime] = pa.Field(nullable=True, description="Latest date of a 64612 line")
    drug_first_date: Series[pa.DateTime] = pa.Field(
        nullable=True, description="Earliest date of an administered toxin line")
    drug_last_date: Series[pa.DateTime] = pa.Field(nullable=True, description="Latest date of an administered toxin line")
    admin_drug_npis: Series[int] = pa.Field(description="Distinct rendering NPIs on the 64612 and administered toxin lines")

    ncci_applies: Series[bool] = pa.Field(description="Payer profile: the payer applies the NCCI edits")
    mue_faults: Series[bool] = pa.Field(
        description="Codes whose units exceed their NCCI MUE, per line or date (a flag to the rules)")
    over_mue_64612: Series[bool] = pa.Field(description="64612 units above its NCCI MUE on a date (NCCI applies)")
    ptp_never: Series[bool] = pa.Field(
        description="Codes denied by an NCCI pair with modifier indicator 0 (a flag to the rules)")
    ptp_needs_modifier: Series[bool] = pa.Field(
        description="Codes denied by an NCCI indicator-1 pair without an associated modifier (a flag to the rules)")
    m96372_distinct: Series[bool] = pa.Field(description="A 96372 line with modifier 59, XE, XS, XP or XU")
    dx_not_billable: Series[bool] = pa.Field(
        description="Diagnoses not billable in the ICD-10-CM release of their date (a flag to the rules)")
    proc_inactive: Series[bool] = pa.Field(
        description="Procedure codes not active on their date in the code tables (a flag to the rules)")
    mod_invalid: Series[bool] = pa.Field(description="Modifiers not on the valid list (a flag to the rules)")
    pos_faults: Series[bool] = pa.Field(
        description="Places of service not in the CMS code set, or telehealth on 64612 (a flag to the rules)")

    class Config:
        strict = False
        coerce = False


def with_rules(model: type[pa.DataFrameModel], rules) -> pa.DataFrameSchema:
    """``model``'s schema with each rule's predicate as a dataframe check named by its catalog id."""
    base = model.to_schema()
    return pa.DataFrameSchema(columns=base.columns, checks=[rule_check(r.predicate, r.id) for r in rules],
                              name=base.name, strict=base.strict, coerce=base.coerce)


LINE_SCHEMA = with_rules(ClaimLines, LINE_RULES)
CLAIM_SCHEMA = with_rules(ClaimFacts, CLAIM_RULES)
FACT_COLUMNS = tuple(dict.fromkeys([C.CLAIM_ID] + [c for r in CLAIM_RULES for c in r.reads]))
"""The claim facts the rules read: validate hands pandera only these (a failing dataframe check is
post-processed over every column of the frame)."""


# pandera registers its pandas backends on the first validation in a process (importing its
# data-synthesis strategies with them, and hypothesis when that is installed): about 0.15 s. Done on
# import instead, it is paid once: the nightly run's children fork from a process that imported this.
pa.DataFrameSchema.register_default_backends(pd.DataFrame)
