"""Canonical claim-line column names: the only place these strings are spelled."""

CLAIM_ID = "claim_id"
LINE_NO = "line_no"
PATIENT_ID = "patient_id"
PATIENT_NAME = "patient_name"
DOB = "dob"
SERVICE_DATE = "service_date"
PAYER = "payer"
RENDERING_NPI = "rendering_npi"
PLACE_OF_SERVICE = "place_of_service"
PROCEDURE_CODE = "procedure_code"
MODIFIERS = tuple(f"modifier_{i}" for i in range(1, 5))
MODIFIER_EXTRA = "modifier_extra"
UNITS = "units"
CHARGE = "charge"
DX = tuple(f"dx_{i}" for i in range(1, 13))
DX_POINTER = "dx_pointer"
NDC = "ndc"
DRUG_SOURCE = "drug_source"
PRIOR_AUTH = "prior_auth"
MUSCLES = "muscles"

DOC_ONSET = "doc_onset"
DOC_DURATION = "doc_duration"
DOC_FREQUENCY = "doc_frequency"
DOC_NEURO_EXAM = "doc_neuro_exam"
DOC_FACIAL_NERVE = "doc_facial_nerve"
DOC_IMAGING = "doc_imaging"
DOC_SURGICAL_NOTES = "doc_surgical_notes"
DOC_FLAGS = (
    DOC_ONSET,
    DOC_DURATION,
    DOC_FREQUENCY,
    DOC_NEURO_EXAM,
    DOC_FACIAL_NERVE,
    DOC_IMAGING,
    DOC_SURGICAL_NOTES,
)
# Optional documentation flag, not one of FILE-003's expected columns: an objective severity scale (e.g. the
# Jankovic or HFS-7 scale) documented, which the 2026 MAC LCDs ask for off-label hemifacial spasm (HFS-033).
DOC_SEVERITY_SCALE = "doc_severity_scale"
FLAG_COLUMNS = (*DOC_FLAGS, DOC_SEVERITY_SCALE)

# Bookkeeping added by ingest: where each line came from.
SOURCE_ROW = "source_row"
SOURCE_SHEET = "source_sheet"

TEXT_COLUMNS = (
    CLAIM_ID,
    PATIENT_ID,
    PATIENT_NAME,
    PAYER,
    RENDERING_NPI,
    PLACE_OF_SERVICE,
    PROCEDURE_CODE,
    *MODIFIERS,
    MODIFIER_EXTRA,
    *DX,
    DX_POINTER,
    NDC,
    DRUG_SOURCE,
    PRIOR_AUTH,
    MUSCLES,
)
DATE_COLUMNS = (DOB, SERVICE_DATE)
NUMBER_COLUMNS = (UNITS, CHARGE)

CANONICAL = (
    CLAIM_ID,
    LINE_NO,
    PATIENT_ID,
    PATIENT_NAME,
    DOB,
    SERVICE_DATE,
    PAYER,
    RENDERING_NPI,
    PLACE_OF_SERVICE,
    PROCEDURE_CODE,
    *MODIFIERS,
    MODIFIER_EXTRA,
    UNITS,
    CHARGE,
    *DX,
    DX_POINTER,
    NDC,
    DRUG_SOURCE,
    PRIOR_AUTH,
    MUSCLES,
    *DOC_FLAGS,
    DOC_SEVERITY_SCALE,
    SOURCE_ROW,
    SOURCE_SHEET,
)

# Columns a file must have (else the file is refused: schemas/rules/file.py). "At least one diagnosis" is checked separately.
REQUIRED = (CLAIM_ID, SERVICE_DATE, PROCEDURE_CODE, UNITS)

# PHI: never logged, never in Prefect artifacts; only the workbook shows them.
PHI_COLUMNS = (PATIENT_ID, PATIENT_NAME, DOB)

# What a reviewer reads for each column (sheet headers, Field column, messages) when the input file's own
# header is not known. Several modifier or diagnosis columns read as one ("Modifiers", "Diagnoses").
LABELS = {
    CLAIM_ID: "Claim ID", LINE_NO: "Line", PATIENT_ID: "Patient ID", PATIENT_NAME: "Patient Name",
    DOB: "Date of Birth", SERVICE_DATE: "Service Date", PAYER: "Payer", RENDERING_NPI: "Rendering NPI",
    PLACE_OF_SERVICE: "Place of Service", PROCEDURE_CODE: "CPT/HCPCS", **{m: "Modifiers" for m in MODIFIERS},
    MODIFIER_EXTRA: "Modifiers", UNITS: "Units", CHARGE: "Charge", **{d: "Diagnoses" for d in DX},
    DX_POINTER: "Dx Pointer", NDC: "NDC", DRUG_SOURCE: "Drug Source", PRIOR_AUTH: "Prior Auth",
    MUSCLES: "Muscles", DOC_ONSET: "Onset Documented", DOC_DURATION: "Duration Documented",
    DOC_FREQUENCY: "Frequency Documented", DOC_NEURO_EXAM: "Neuro Exam Documented",
    DOC_FACIAL_NERVE: "Facial Nerve Exam Documented", DOC_IMAGING: "Imaging Documented",
    DOC_SURGICAL_NOTES: "Surgical Notes Documented", DOC_SEVERITY_SCALE: "Severity Scale Documented",
    SOURCE_ROW: "Row in File", SOURCE_SHEET: "Sheet",
}
