"""File and cell rules: raised by ingest (``pipeline.ingest``), catalogued here."""

from schemas.rules.core import Level, Severity, examples, file_rule, on

E, W = Severity.ERROR, Severity.WARNING
_CLAIM_FORM = "CMS Pub. 100-04 (Medicare Claims Processing Manual) Ch. 26, Sec. 10 (Form CMS-1500 items); ASC X12 837P"

UNREADABLE = file_rule(
    "FILE-001", E, Level.FILE, title="File cannot be read",
    checks="The file opens as a spreadsheet or delimited text: not corrupt, encrypted or empty.",
    message="The file could not be read: {value}.",
    fix="Re-export the claims from the practice-management system and drop the file again.",
    source=_CLAIM_FORM)
NO_HEADER = file_rule(
    "FILE-002", E, Level.FILE, title="No claims header or required columns missing",
    checks="The file has a header row naming the claim id, date of service, procedure code, units and at "
           "least one diagnosis column.",
    message="The file has no usable claims header: {value}.",
    fix="Export with the claim id, date of service, procedure code, units and diagnosis columns.",
    source=_CLAIM_FORM)
NO_DOC_COLUMNS = file_rule(
    "FILE-003", W, Level.FILE, title="Documentation-flag columns absent",
    checks="The file carries the documentation columns (onset, duration, frequency, neurological exam, facial "
           "nerve, imaging, surgical notes); without them the documentation rules are reported as not checked.",
    message="Documentation columns are missing ({value}); the rules that need them are reported as not checked.",
    fix="Add the documentation flag columns (onset, duration, frequency, neuro exam, facial nerve, "
        "imaging, surgical notes) to the export.",
    source="LCD L33274 (First Coast) and L34635 (Noridian), Documentation Requirements")
BAD_CELL = file_rule(
    "ING-001", E, Level.CELL, title="Cell could not be read",
    checks="Every cell reads as its type: dates as dates, numbers as numbers, codes as codes.",
    message="The cell value {value} could not be read as the expected type.",
    fix="Correct the cell in the source system and re-export.", source=_CLAIM_FORM,
    examples=examples(fires=[on(1, charge="12.3.4")], quiet=[on(1, charge="12.34")], value="12.3.4"))
