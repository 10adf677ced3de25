"""The rule catalog: ids, default severities, reviewer messages, fixes and sources.

Ids come from RULES.md and never change. Severity lives only here (and in config overrides),
never in pandera's ``error=`` or ``raise_warning``.
"""

from dataclasses import dataclass
from enum import StrEnum

from schemas import columns as C

CATALOG_VERSION = "2026.11.1"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


SEVERITY_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


class Level(StrEnum):
    FILE = "file"
    CELL = "cell"
    LINE = "line"
    CLAIM = "claim"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    level: Level
    title: str
    message: str  # reviewer-facing; may use {value}
    fix: str
    source: str
    field: str | None = None


E, W = Severity.ERROR, Severity.WARNING
_R = Rule

RULES: tuple[Rule, ...] = (
    _R("FILE-001", E, Level.FILE, "File cannot be read",
       "The file could not be read: {value}.",
       "Re-export the claims from the practice-management system and drop the file again.",
       "RULES.md FILE-001"),
    _R("FILE-002", E, Level.FILE, "No claims header or required columns missing",
       "The file has no usable claims header: {value}.",
       "Export with the claim id, date of service, procedure code, units and diagnosis columns.",
       "RULES.md FILE-002"),
    _R("FILE-003", W, Level.FILE, "Documentation-flag columns absent",
       "Documentation columns are missing ({value}); the rules that need them are reported as not checked.",
       "Add the documentation flag columns (onset, duration, frequency, neuro exam, facial nerve, "
       "imaging, surgical notes) to the export.",
       "RULES.md FILE-003"),
    _R("ING-001", E, Level.CELL, "Cell could not be read",
       "The cell value {value} could not be read as the expected type.",
       "Correct the cell in the source system and re-export.", "RULES.md ING-001"),
    # Structure, every line.
    _R("STR-001", E, Level.LINE, "Blank claim id",
       "This line has data but no claim id.",
       "Enter the claim id on every line.", "RULES.md STR-001", C.CLAIM_ID),
    _R("STR-002", E, Level.LINE, "Date of service missing, unreadable or in the future",
       "Date of service {value} is missing, unreadable or after the as-of date.",
       "Enter the actual date the service was performed.", "RULES.md STR-002", C.SERVICE_DATE),
    _R("STR-003", E, Level.LINE, "Malformed procedure code",
       "Procedure code {value} is not a valid CPT or HCPCS code.",
       "Use a 5-digit CPT, a letter + 4-digit HCPCS, or a CPT II/III code.", "RULES.md STR-003",
       C.PROCEDURE_CODE),
    _R("STR-004", E, Level.LINE, "Units missing, fractional or below 1",
       "Units {value} must be a whole number of at least 1.",
       "Bill whole units; round drug doses up to the next billing unit.", "RULES.md STR-004; ref 7",
       C.UNITS),
    _R("STR-005", E, Level.LINE, "Malformed ICD-10-CM code",
       "Diagnosis {value} is not a valid ICD-10-CM code.",
       "Correct the diagnosis code (letter, two characters, optional dot and up to four more).",
       "RULES.md STR-005", "dx"),
    _R("STR-006", E, Level.LINE, "Invalid rendering NPI",
       "Rendering NPI {value} is not a valid NPI (10 digits, starts with 1 or 2, check digit).",
       "Use the rendering provider's NPI from NPPES.", "RULES.md STR-006; ref 7 S-NPI-SDN",
       C.RENDERING_NPI),
    _R("STR-007", E, Level.LINE, "Malformed modifier or too many modifiers",
       "Modifier {value} is not a two-character modifier, or the line has more than four.",
       "Use at most four two-character modifiers per line.", "RULES.md STR-007", "modifiers"),
    _R("STR-008", E, Level.LINE, "Duplicate line number",
       "Line number {value} appears more than once on this claim.",
       "Remove the duplicate line or renumber it.", "RULES.md STR-008", C.LINE_NO),
    _R("STR-009", E, Level.LINE, "Charge missing or negative",
       "Charge {value} is missing, not a number, or negative.",
       "Enter the billed charge for the line.", "RULES.md STR-009", C.CHARGE),
    _R("STR-010", E, Level.LINE, "Diagnosis pointer names an empty position",
       "Diagnosis pointer {value} names a diagnosis position that is empty or invalid.",
       "Point each line at 1-4 filled diagnosis positions (A-L).", "RULES.md STR-010; ref 7",
       C.DX_POINTER),
    _R("STR-011", W, Level.LINE, "Different patient ids on one claim",
       "The lines of this claim carry different patient ids ({value}).",
       "Make sure every line belongs to the same patient, or split the claim.", "RULES.md STR-011",
       C.PATIENT_ID),
    _R("STR-012", W, Level.LINE, "Past timely filing",
       "Date of service {value} is more than 365 days before the as-of date (timely filing).",
       "Check whether the claim can still be filed; attach proof of timely filing if so.",
       "RULES.md STR-012; ref 7 S-FCSO-TIMELY", C.SERVICE_DATE),
    # G51.33 diagnosis.
    _R("HFS-001", E, Level.CLAIM, "G51.33 before it existed",
       "G51.33 is billed for a date of service ({value}) before 2018-10-01, when the laterality "
       "codes took effect.",
       "Bill G51.3 for services before 2018-10-01.", "RULES.md HFS-001; ref 1.2", C.SERVICE_DATE),
    _R("HFS-002", E, Level.CLAIM, "G51.3 is a non-billable header",
       "G51.3 is billed for a date of service ({value}) on or after 2018-10-01, when it is no "
       "longer billable.",
       "Use the code with laterality: G51.31, G51.32, G51.33 or G51.39.", "RULES.md HFS-002; ref 1.2",
       "dx"),
    _R("HFS-003", E, Level.CLAIM, "Conflicting hemifacial spasm laterality",
       "G51.33 (bilateral) is billed together with {value} on the same claim.",
       "Keep the one laterality code the record supports.", "RULES.md HFS-003", "dx"),
    _R("HFS-004", W, Level.CLAIM, "Bell's palsy coded with hemifacial spasm",
       "G51.0 (Bell's palsy) is coded with G51.33: palsy is weakness, spasm is contraction.",
       "Verify the record supports both diagnoses.", "RULES.md HFS-004; ref 1.1", "dx"),
    # Procedure and bilateral billing.
    _R("HFS-005", E, Level.CLAIM, "Toxin or sites without 64612",
       "The claim bills a toxin or documents injection sites ({value}) but has no 64612.",
       "Add the 64612 administration line to the same claim as the drug.", "RULES.md HFS-005; ref 5",
       C.PROCEDURE_CODE),
    _R("HFS-006", E, Level.CLAIM, "Other chemodenervation supported only by G51.33",
       "Chemodenervation code {value} is supported only by G51.33; hemifacial spasm is treated with "
       "64612.",
       "Bill 64612 for facial muscles, or add the diagnosis that supports this code.",
       "RULES.md HFS-006; ref 2.1", C.PROCEDURE_CODE),
    _R("HFS-007", W, Level.CLAIM, "Bilateral diagnosis, one side billed",
       "G51.33 is bilateral but 64612 is billed for one side only ({value}).",
       "Bill both sides (64612-50 x1, or 64612-RT and 64612-LT) if both were injected; otherwise "
       "check the diagnosis.", "RULES.md HFS-007; ref 2.3", C.MODIFIERS[0]),
    _R("HFS-008", E, Level.CLAIM, "Malformed bilateral billing",
       "64612 bilateral billing is malformed: {value}.",
       "Bill one line 64612-50 with 1 unit, or one 64612-RT and one 64612-LT line of 1 unit each.",
       "RULES.md HFS-008; ref 2.3 (IOM 100-04 Ch. 12 40.7)", C.MODIFIERS[0]),
    _R("HFS-009", W, Level.CLAIM, "Bilateral style differs from payer profile",
       "The payer expects {value}.",
       "Re-bill the bilateral service in the style this payer expects.", "RULES.md HFS-009; ref 2.3",
       C.MODIFIERS[0]),
    _R("HFS-010", E, Level.CLAIM, "64612 or toxin line does not point at G51.3x",
       "Line with {value} does not point at a G51.3x diagnosis.",
       "Point the 64612 and toxin lines at the G51.33 diagnosis.", "RULES.md HFS-010; ref 7",
       C.DX_POINTER),
    # Toxin drug lines.
    _R("HFS-011", E, Level.CLAIM, "64612 without a toxin drug line",
       "64612 is billed without a toxin drug line (J0585-J0589).",
       "Add the toxin line (J-code with units), or mark the drug as pharmacy or patient supplied.",
       "RULES.md HFS-011; ref 5", C.PROCEDURE_CODE),
    _R("HFS-012", W, Level.CLAIM, "Toxin not on the usual LCD list for hemifacial spasm",
       "{value} is not on the usual LCD off-label list for hemifacial spasm.",
       "Check the payer's botulinum toxin policy before submitting.", "RULES.md HFS-012; ref 3.3",
       C.PROCEDURE_CODE),
    _R("HFS-013", E, Level.CLAIM, "Billed drug units differ from documented dose",
       "Billed drug units differ from the documented dose: {value}.",
       "Bill the documented dose converted to billing units, rounded up.", "RULES.md HFS-013; ref 3.1",
       C.UNITS),
    _R("HFS-014", E, Level.CLAIM, "JW/JZ waste modifier problem",
       "Waste modifiers: {value}.",
       "Use JZ when nothing was discarded, or a separate JW line for the discarded units; never both.",
       "RULES.md HFS-014; ref 4", C.MODIFIERS[0]),
    _R("HFS-015", W, Level.CLAIM, "Administered + wasted units are not whole vials",
       "Administered and discarded units do not add up to whole vials: {value}.",
       "Check the vials used and the discarded amount documented.", "RULES.md HFS-015; ref 3.1",
       C.UNITS),
    _R("HFS-016", W, Level.CLAIM, "Implausible toxin dose",
       "Dose outside the plausible range for hemifacial spasm: {value}.",
       "Check the documented units per muscle and the product.", "RULES.md HFS-016; ref 6.1",
       C.MUSCLES),
    _R("HFS-017", W, Level.CLAIM, "Toxin line without a valid NDC",
       "Toxin line NDC {value} is missing or not 11 digits in 5-4-2 form.",
       "Enter the 11-digit NDC of the vial used (5-4-2, zero-padded).", "RULES.md HFS-017; ref 7",
       C.NDC),
    # Injection sites.
    _R("HFS-018", E, Level.CLAIM, "64612 without documented sites or units",
       "64612 is billed but the injection sites are incomplete: {value}.",
       "Document each muscle injected with its side and units.", "RULES.md HFS-018; ref 5",
       C.MUSCLES),
    _R("HFS-019", E, Level.CLAIM, "Muscle not innervated by the facial nerve",
       "{value} is not innervated by the facial nerve: 64612 does not cover it.",
       "Check the muscle recorded, or bill the code for that muscle group.", "RULES.md HFS-019; ref 6.3",
       C.MUSCLES),
    _R("HFS-020", W, Level.CLAIM, "Unrecognised muscle",
       "Muscle {value} is not recognised and cannot be checked.",
       "Write the full muscle name or a standard abbreviation.", "RULES.md HFS-020", C.MUSCLES),
    _R("HFS-021", E, Level.CLAIM, "Bilateral claim injected on one side",
       "G51.33 is bilateral but the documented sites are {value}.",
       "Record the side of every site; check the diagnosis if only one side was treated.",
       "RULES.md HFS-021; ref 1.3", C.MUSCLES),
    # Guidance and bundled codes.
    _R("HFS-022", E, Level.CLAIM, "Guidance billed incorrectly",
       "Guidance: {value}.",
       "Bill at most 1 unit of 95873 or 95874 per date, only with a chemodenervation code, never "
       "95874 with 64617.", "RULES.md HFS-022; ref 2.4", C.PROCEDURE_CODE),
    _R("HFS-023", W, Level.CLAIM, "Guidance needs justification",
       "Guidance: {value}.",
       "Document why guidance was medically necessary for easily targeted facial muscles, or remove it.",
       "RULES.md HFS-023; ref 2.4", C.PROCEDURE_CODE),
    _R("HFS-024", E, Level.CLAIM, "96372 billed with 64612",
       "96372 is billed with 64612; the chemodenervation code includes the injection.",
       "Remove the 96372 line.", "RULES.md HFS-024; ref 2.2", C.PROCEDURE_CODE),
    # Documentation flags.
    _R("HFS-025", E, Level.CLAIM, "Spasm history not documented",
       "Not documented: {value}.",
       "Document onset, duration and frequency of the spasms in the note.", "RULES.md HFS-025; ref 5",
       "documentation"),
    _R("HFS-026", E, Level.CLAIM, "Neurological exam not documented",
       "Not documented: {value}.",
       "Document the neurological examination and facial nerve function assessment.",
       "RULES.md HFS-026; ref 5", "documentation"),
    _R("HFS-027", W, Level.CLAIM, "Imaging not documented",
       "Imaging (e.g. MRI) is not documented{value}.",
       "Document the imaging performed and its result.", "RULES.md HFS-027", C.DOC_IMAGING),
    _R("HFS-028", E, Level.CLAIM, "Facial-nerve surgery without surgical notes",
       "Facial-nerve surgery {value} is billed without surgical notes documented.",
       "Attach the operative report.", "RULES.md HFS-028", C.DOC_SURGICAL_NOTES),
    # History and setting.
    _R("HFS-030", W, Level.CLAIM, "Repeat injection too soon",
       "Repeat 64612 for this patient {value}.",
       "Check the interval; most payers allow one session every 12 weeks.", "RULES.md HFS-030; ref 5",
       C.SERVICE_DATE),
    _R("HFS-031", W, Level.CLAIM, "Facility setting with toxin line",
       "{value}.",
       "Bill the drug on the facility claim; for hospital outpatient settings obtain prior "
       "authorization (UTN).", "RULES.md HFS-031; ref 2.5", C.PLACE_OF_SERVICE),
    _R("HFS-032", W, Level.CLAIM, "64612 and toxin line disagree",
       "64612 and its toxin line differ: {value}.",
       "Bill the administration and the drug on the same date with the same rendering NPI.",
       "RULES.md HFS-032", C.SERVICE_DATE),
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
