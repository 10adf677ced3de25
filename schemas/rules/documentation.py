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


_LCD_2026 = ("in_scope", "is_64612", "is_toxin", "dos_min", "lcd_effective", C.DOC_SEVERITY_SCALE)


def _under_2026_lcd(df: pd.DataFrame) -> pd.Series:
    """G51.33 chemodenervation or toxin claims dated on or after their payer profile's 2026 LCD date."""
    on_or_after = df["lcd_effective"].notna() & df["dos_min"].notna() & (df["dos_min"] >= df["lcd_effective"])
    return df["in_scope"] & (df["is_64612"] | df["is_toxin"]) & on_or_after


def _off_label_without_scale(df: pd.DataFrame) -> pd.Series:
    return _under_2026_lcd(df) & ~df[C.DOC_SEVERITY_SCALE]


@claim_rule(
    "HFS-033", W, field=C.DOC_SEVERITY_SCALE, needs=(C.DOC_SEVERITY_SCALE,), reads=_LCD_2026, anchor="idx_64612",
    reach=_under_2026_lcd,
    title="2026 LCD: hemifacial spasm off-label, no objective severity scale",
    checks="On or after the payer profile's 2026 LCD date (its MAC's rewritten botulinum-toxin LCD: Noridian JE/JF "
           "2026-02-22, WPS 2026-02-15), hemifacial spasm is covered only as off-label use, and the record documents "
           "an objective severity scale (e.g. the Jankovic or HFS-7 scale). The 12-week interval stays HFS-030.",
    message="From {value} this MAC's LCD covers hemifacial spasm only off-label; no objective severity scale is "
            "documented.",
    fix="Document the severity on an objective scale (e.g. Jankovic rating scale, HFS-7) and the published evidence "
        "supporting the off-label use.",
    source="LCD L35170 (Noridian JE) and L35172 (Noridian JF), Botulinum Toxin Injections, effective 2026-02-22; "
           "WPS LCD Botulinum Toxin Injections (proposed as DL39909), effective 2026-02-15; CMS response-to-comments "
           "article A60352; CMS Pub. 100-08 Ch. 13, Sec. 13.5.1 (off-label use supported by published evidence)",
    examples=examples(fires=[], quiet=[every(doc_severity_scale="Y")], value="2024-05-01",
                      fires_profile={"lcd_effective": "2024-05-01"}, quiet_profile={"lcd_effective": "2024-05-01"},
                      sampled=False))  # a sample file's claims are dated before any 2026 LCD
def severity_scale_documented(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, _off_label_without_scale(df))


@severity_scale_documented.detail(columns=("lcd_effective",))
def _(rows: pd.DataFrame) -> pd.Series:
    return rows["lcd_effective"].dt.strftime("%Y-%m-%d")
