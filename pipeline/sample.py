"""Synthetic claims (never real patients): a clean G51.33 claim, one defect per rule, and files.

``MUTATIONS[rule_id]`` turns a clean claim into one that must fire that rule (the rule's own firing
example, from its module in ``schemas/rules/``); the ``claimscrub sample`` generator and the tests use them.
"""

import copy
import csv
import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

from schemas import columns as C
from schemas.rules import RULES

Line = dict
# Export headers written to sample files (the same aliases a billing system uses).
EXPORT_HEADERS = {
    C.CLAIM_ID: "Claim ID", C.LINE_NO: "Line", C.PATIENT_ID: "Member ID", C.PATIENT_NAME: "Patient Name",
    C.DOB: "DOB", C.SERVICE_DATE: "DOS", C.PAYER: "Payer", C.RENDERING_NPI: "Rendering NPI",
    C.PLACE_OF_SERVICE: "POS", C.PROCEDURE_CODE: "CPT/HCPCS", "modifiers": "Modifiers", C.UNITS: "Units",
    C.CHARGE: "Charge", "diagnoses": "Diagnosis Codes", C.DX_POINTER: "Dx Pointer", C.NDC: "NDC",
    C.DRUG_SOURCE: "Drug Source", C.PRIOR_AUTH: "Prior Auth", C.MUSCLES: "Muscles Injected",
    C.DOC_ONSET: "Onset Documented", C.DOC_DURATION: "Duration Documented",
    C.DOC_FREQUENCY: "Frequency Documented", C.DOC_NEURO_EXAM: "Neuro Exam",
    C.DOC_FACIAL_NERVE: "Facial Nerve Function", C.DOC_IMAGING: "Imaging Documented",
    C.DOC_SURGICAL_NOTES: "Surgical Notes",
}
NPI = "1993999998"
BOTOX_NDC = "00023-1145-01"
SITES = "R OO 2.5u x4; R ZM 5u; R OOr 5u; R FR 5u; L OO 2.5u x4; L ZM 5u; L OOr 5u; L FR 5u"  # 25 U a side
FIRST_NAMES = ("Alex", "Sam", "Robin", "Jordan", "Casey", "Morgan", "Taylor", "Jamie", "Avery", "Riley")
LAST_NAMES = ("Testperson", "Samplely", "Fakeington", "Mockford", "Synthwell", "Placeholder", "Dummett")


def clean_claim(claim_id: str = "CLM-0001", patient_id: str = "MBR-000001", dos: str = "2024-05-14",
                payer: str = "Medicare", name: str = "Testperson, Alex", dob: str = "1961-04-02") -> list[Line]:
    """A clean bilateral HFS claim: 64612-50 x1 and Botox 50 U with JZ, all documentation present."""
    common = {
        C.CLAIM_ID: claim_id, C.PATIENT_ID: patient_id, C.PATIENT_NAME: name, C.DOB: dob,
        C.SERVICE_DATE: dos, C.PAYER: payer, C.RENDERING_NPI: NPI, C.PLACE_OF_SERVICE: "11",
        C.DX[0]: "G51.33", C.DX_POINTER: "A", C.DRUG_SOURCE: "office",
        **{flag: "Y" for flag in C.DOC_FLAGS if flag != C.DOC_SURGICAL_NOTES},
    }
    return [
        {**common, C.LINE_NO: 1, C.PROCEDURE_CODE: "64612", C.MODIFIERS[0]: "50", C.UNITS: 1,
         C.CHARGE: 520.00, C.MUSCLES: SITES},
        {**common, C.LINE_NO: 2, C.PROCEDURE_CODE: "J0585", C.MODIFIERS[0]: "JZ", C.UNITS: 50,
         C.CHARGE: 310.50, C.NDC: BOTOX_NDC},
    ]


def evaluation_only_claim(claim_id: str, patient_id: str, dos: str) -> list[Line]:
    """A G51.33 office visit with full documentation and no injection: legitimately clean."""
    line = clean_claim(claim_id, patient_id, dos)[0]
    line.update({C.PROCEDURE_CODE: "99214", C.MODIFIERS[0]: None, C.MUSCLES: None, C.CHARGE: 180.0})
    return [line]


def cervical_dystonia_claim(claim_id: str, patient_id: str, dos: str) -> list[Line]:
    """Out of scope: 64616 + J0585 for G24.3 (no G51.33, so no HFS finding)."""
    lines = clean_claim(claim_id, patient_id, dos)
    lines[0].update({C.PROCEDURE_CODE: "64616", C.MODIFIERS[0]: None, C.DX[0]: "G24.3",
                     C.MUSCLES: "R sternocleidomastoid 50u; L splenius capitis 50u"})
    lines[1].update({C.DX[0]: "G24.3", C.UNITS: 100})
    return lines


def _all(**kw) -> Callable[[list[Line]], list[Line]]:
    def apply(lines):
        for line in lines:
            line.update(kw)
        return lines
    return apply


def _add(**kw) -> Callable[[list[Line]], list[Line]]:
    def apply(lines):
        extra = {**copy.deepcopy(lines[0]), C.MUSCLES: None, C.MODIFIERS[0]: None,
                 C.LINE_NO: len(lines) + 1, C.UNITS: 1, C.CHARGE: 100.0, **kw}
        return lines + [extra]
    return apply


def _apply(edits) -> Callable[[list[Line]], list[Line]]:
    """A rule example's edits (``schemas.rules.core.Edit``) as a function of the claim's lines."""
    def apply(lines: list[Line]) -> list[Line]:
        for edit in edits:
            if edit.kind == "set":
                lines[edit.line].update(edit.values)
            elif edit.kind == "all":
                lines = _all(**edit.values)(lines)
            elif edit.kind == "add":
                lines = _add(**edit.values)(lines)
            elif edit.kind == "keep":
                lines = [lines[i] for i in edit.line]
            elif edit.kind == "prior":
                first = lines[0]
                lines = clean_claim(first[C.CLAIM_ID] + "-PREV", first[C.PATIENT_ID],
                                    edit.values[C.SERVICE_DATE]) + lines
            else:
                raise ValueError(f"unknown edit {edit.kind!r}")
        return lines
    return apply


def apply_edits(edits, claim_id: str, patient_id: str, dos: str = "2024-05-14") -> list[Line]:
    """The clean claim with a rule example's edits applied in order."""
    return _apply(edits)(clean_claim(claim_id, patient_id, dos))


# Each rule's firing example (schemas/rules/<family>.py), in catalog order.
MUTATIONS: dict[str, Callable[[list[Line]], list[Line]]] = {
    r.id: _apply(r.examples.fires) for r in RULES if r.examples
}
_SAMPLED = [r.id for r in RULES if r.examples and r.examples.sampled]


def mutated(rule: str, claim_id: str, patient_id: str, dos: str = "2024-05-14") -> list[Line]:
    """A claim that fires ``rule`` (and as little else as possible)."""
    return MUTATIONS[rule](clean_claim(claim_id, patient_id, dos))


def row_for_file(line: Line) -> dict:
    """Canonical line -> export row with combined modifier and diagnosis columns."""
    row = {}
    for col, header in EXPORT_HEADERS.items():
        if col == "modifiers":
            row[header] = ", ".join(str(line[m]) for m in C.MODIFIERS if line.get(m))
        elif col == "diagnoses":
            row[header] = ", ".join(str(line[d]) for d in C.DX if line.get(d))
        else:
            value = line.get(col)
            row[header] = "" if value is None else value
    return row


def write_csv(lines: list[Line], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(EXPORT_HEADERS.values()))
        writer.writeheader()
        for line in lines:
            writer.writerow(row_for_file(line))
    return path


def write_xlsx(lines: list[Line], path: Path, title_rows: int = 0) -> Path:
    from openpyxl import Workbook

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Claims")
    for i in range(title_rows):
        ws.append(["Synthetic claims export" if i == 0 else ""])
    headers = list(EXPORT_HEADERS.values())
    ws.append(headers)
    for line in lines:
        row = row_for_file(line)
        ws.append([_cell(row[h]) for h in headers])
    wb.save(path)
    return path


def _cell(value):
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value
    return value


def generate(n_lines: int, seed: int = 20261124, defect_rate: float = 0.05,
             start: str = "2024-01-02") -> list[Line]:
    """Realistic synthetic lines: mostly clean G51.33 claims, a few with defects, some out of scope."""
    rng = random.Random(seed)
    rules = _SAMPLED
    payers = ("Medicare", "Aetna", "BlueCross", "UnitedHealthcare", "Cigna")
    base = dt.date.fromisoformat(start)
    out: list[Line] = []
    k = 0
    while len(out) < n_lines:
        k += 1
        claim_id = f"CLM-{k:07d}"
        # One patient per claim (a bijection of k): no chance repeat sessions, so the share of
        # flagged claims stays near defect_rate at every file size.
        patient_id = f"MBR-{(k * 104_729) % 9_999_991:07d}"
        dos = (base + dt.timedelta(days=rng.randrange(150))).isoformat()
        name = f"{rng.choice(LAST_NAMES)}, {rng.choice(FIRST_NAMES)}"
        roll = rng.random()
        if roll < 0.08:
            lines = cervical_dystonia_claim(claim_id, patient_id, dos)
        elif roll < 0.12:
            lines = evaluation_only_claim(claim_id, patient_id, dos)
        else:
            lines = clean_claim(claim_id, patient_id, dos, rng.choice(payers), name)
            if rng.random() < defect_rate:
                lines = MUTATIONS[rng.choice(rules)](lines)
        out.extend(lines)
    return out[:n_lines]


def write_sample(n_lines: int, out: Path, seed: int = 20261124) -> Path:
    """``claimscrub sample``: the format follows OUT's extension (.xlsx or .csv)."""
    lines = generate(n_lines, seed)
    if Path(out).suffix.lower() == ".xlsx":
        return write_xlsx(lines, out)
    return write_csv(lines, out)
