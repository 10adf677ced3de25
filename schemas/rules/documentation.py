"""Documentation rules for G51.33 claims (flags from the record; blank = not documented)."""

import pandas as pd

from schemas import columns as C
from schemas.rules.core import Severity, add, claim_rule, every, examples, passes_unless
from schemas.text import choose, join_flags, pick

E, W = Severity.ERROR, Severity.WARNING
_LCD_DOCS = "LCD L33274 (First Coast) and L34635 (Noridian), Documentation Requirements"
_HISTORY = {C.DOC_ONSET: "onset", C.DOC_DURATION: "duration", C.DOC_FREQUENCY: "frequency of spasms"}
_EXAM = {C.DOC_NEURO_EXAM: "neurological examination", C.DOC_FACIAL_NERVE: "facial nerve function"}


def _all_documented(df: pd.DataFrame, items: dict) -> pd.Series:
    ok = pd.Series(True, index=df.index)
    for col in items:
        ok &= df[col]
    return ok


def _missing(rows: pd.DataFrame, items: dict) -> pd.Series:
    """The items not documented, named in the record's order."""
    return join_flags({label: ~rows[col].astype(bool) for col, label in items.items()})


@claim_rule(
    "HFS-025", E, field="documentation", needs=(C.DOC_ONSET, C.DOC_DURATION, C.DOC_FREQUENCY),
    reads=("in_scope", *_HISTORY),
    title="Spasm history not documented",
    checks="The record documents the onset, duration and frequency of the spasms (one finding naming each "
           "missing item).",
    message="Not documented: {value}.",
    fix="Document onset, duration and frequency of the spasms in the note.",
    source=f"{_LCD_DOCS} (history of the condition)",
    examples=examples(fires=[every(doc_onset="N", doc_frequency="")], quiet=[], value="onset, frequency of spasms"))
def spasm_history_documented(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, ~_all_documented(df, _HISTORY))


@spasm_history_documented.detail(columns=tuple(_HISTORY))
def _(rows: pd.DataFrame) -> pd.Series:
    return _missing(rows, _HISTORY)


@claim_rule(
    "HFS-026", E, field="documentation", needs=(C.DOC_NEURO_EXAM, C.DOC_FACIAL_NERVE),
    reads=("in_scope", *_EXAM),
    title="Neurological exam not documented",
    checks="The record documents a neurological examination and a facial nerve function assessment.",
    message="Not documented: {value}.",
    fix="Document the neurological examination and facial nerve function assessment.",
    source=f"{_LCD_DOCS} (examination findings supporting the diagnosis)",
    examples=examples(fires=[every(doc_neuro_exam="N")], quiet=[], value="neurological examination"))
def exam_documented(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, ~_all_documented(df, _EXAM))


@exam_documented.detail(columns=tuple(_EXAM))
def _(rows: pd.DataFrame) -> pd.Series:
    return _missing(rows, _EXAM)


@claim_rule(
    "HFS-027", W, field=C.DOC_IMAGING, needs=(C.DOC_IMAGING,), reads=("in_scope", C.DOC_IMAGING), blank_ok=True,
    title="Imaging not documented",
    checks="The record documents imaging (e.g. MRI). An error when the claim also carries a structural-cause "
           "diagnosis (D33.3, D43.3, C72.5, D32.0, Q28.2, Q28.3, I67.1) or a facial-nerve surgery code.",
    message="Imaging (e.g. MRI) is not documented{value}.",
    fix="Document the imaging performed and its result.",
    source=f"{_LCD_DOCS}; ICD-10-CM Tabular List (structural causes: D33.3, D43.3, C72.5, D32.0, Q28.2, Q28.3, "
           "I67.1)",
    examples=examples(fires=[every(doc_imaging="N")], quiet=[], value=""))
def imaging_documented(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, ~df[C.DOC_IMAGING])


@imaging_documented.detail(columns=("structural", "is_surgery"))
def _(rows: pd.DataFrame) -> pd.Series:
    """Why imaging is mandatory here, as the end of the message ("" when it is only expected)."""
    return choose([(rows["structural"], " and the claim carries a structural-cause diagnosis"),
                   (rows["is_surgery"], " and facial-nerve surgery is billed")], len(rows), rows.index)


@imaging_documented.severity(columns=("structural", "is_surgery"))
def _(rows: pd.DataFrame) -> pd.Series:
    """An error when a structural cause or facial-nerve surgery makes imaging mandatory."""
    return pick((rows["structural"] | rows["is_surgery"]).to_numpy(bool), ["warning", "error"], rows.index)


@claim_rule(
    "HFS-028", E, field=C.DOC_SURGICAL_NOTES, needs=(C.DOC_SURGICAL_NOTES,),
    reads=("in_scope", "is_surgery", C.DOC_SURGICAL_NOTES), value="surgery_codes",
    title="Facial-nerve surgery without surgical notes",
    checks="Facial-nerve surgery (61458, 69720, 69725, 69955) is billed only with surgical notes documented.",
    message="Facial-nerve surgery {value} is billed without surgical notes documented.",
    fix="Attach the operative report.",
    source="CMS Pub. 100-08 (Medicare Program Integrity Manual) Ch. 3, Sec. 3.3.2 (documentation supporting the "
           "service); AMA CPT 61458, 69720, 69725, 69955",
    examples=examples(fires=[add(procedure_code="69955", units=1)],
                      quiet=[every(doc_surgical_notes="Y"), add(line_no=3, procedure_code="69955")],
                      value="69955"))
def surgical_notes_documented(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["is_surgery"] & ~df[C.DOC_SURGICAL_NOTES])
