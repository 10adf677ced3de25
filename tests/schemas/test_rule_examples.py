"""Every rule's own examples (schemas/rules/<family>.py): the firing claim's finding as a reviewer sees it
(rule, claim, line, field, value, severity, message), and the near miss stays quiet. One test per family."""

import re

import pandas as pd
import pytest

from pipeline.config import PayerProfile, ScrubConfig
from pipeline.sample import apply_edits
from pipeline.validate import find_violations
from schemas.rules import RULES, family_of
from schemas.rules.core import add, every, on
from tests.conftest import AS_OF, lines_frame


def _config(profile: dict) -> ScrubConfig | None:
    return ScrubConfig(payers={"Medicare": PayerProfile(**profile)}) if profile else None


def _findings(edits, claim_id: str, profile: dict) -> tuple[list[dict], pd.DataFrame]:
    lines = apply_edits(edits, claim_id, "MBR-EXAMPLE")
    return lines, find_violations(lines_frame(lines), AS_OF, _config(profile)).findings


def _check(rule) -> None:
    ex = rule.examples
    lines, found = _findings(ex.fires, "EX-FIRES", ex.fires_profile)
    hit = found[found["rule"] == rule.id]
    assert len(hit), f"{rule.id} did not fire on its own example"
    row = hit.iloc[0]
    claim_ids = {line["claim_id"] for line in lines}
    assert row["claim_id"] in claim_ids or (None in claim_ids and pd.isna(row["claim_id"]))  # STR-001: blank id
    assert row["line_no"] in {line["line_no"] for line in lines}
    assert row["severity"] == rule.severity.value  # the examples are the default-severity case
    if rule.detail is None:
        assert row["field"] == (rule.field or "")
    if ex.value is not None:
        assert row["value"] == ex.value
    shown = row["value"] if row["value"] or rule.blank_ok else "(blank)"
    also = re.sub(r" Also on line\(s\) [0-9, ]+ of this claim\.$", "", row["message"])  # one finding per cause
    said = rule.message.format(value=shown)
    if rule.note is not None:  # the note after the message, in brackets (STR-012: the profile's limit)
        assert also.startswith(said + " (") and also.endswith(")"), also
    else:
        assert also == said
    assert row["fix"] == rule.fix
    _, quiet = _findings(ex.quiet, "EX-QUIET", ex.quiet_profile)
    assert rule.id not in set(quiet["rule"]), f"{rule.id} fired on its near miss"


def _rules(family: str):
    return [pytest.param(r, id=r.id) for r in RULES if r.examples and family_of(r.id) == family]


def test_every_line_and_claim_rule_has_examples():
    """It gives every rule pandera decides a firing example and a near miss."""
    assert all(r.examples for r in RULES if r.level.value in ("line", "claim"))


@pytest.mark.parametrize("rule", _rules("structure"))
def test_structure_examples(rule):
    """It fires each structure rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("payer_edits"))
def test_payer_edit_examples(rule):
    """It fires each NCCI payer-edit rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("codes"))
def test_code_set_examples(rule):
    """It fires each code-set rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("diagnosis"))
def test_diagnosis_examples(rule):
    """It fires each diagnosis rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("procedure"))
def test_procedure_examples(rule):
    """It fires each procedure rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("toxin"))
def test_toxin_examples(rule):
    """It fires each toxin rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("sites"))
def test_sites_examples(rule):
    """It fires each injection-site rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("guidance"))
def test_guidance_examples(rule):
    """It fires each guidance rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("documentation"))
def test_documentation_examples(rule):
    """It fires each documentation rule on its example and stays quiet on its near miss."""
    _check(rule)


@pytest.mark.parametrize("rule", _rules("history"))
def test_history_examples(rule):
    """It fires each history rule on its example and stays quiet on its near miss."""
    _check(rule)


# Every branch of the multi-part rules: (rule, firing edits, the text its finding shows, quiet edits).
_NDC = "00023-1145-01"
_RT_LT = [on(0, modifier_1="RT"), add(line_no=3, procedure_code="64612", modifier_1="LT", muscles=None)]
_NO_NCCI = {"ncci_applies": False}  # a payer that applies NCCI has units above the MUE reported by MUE-001
BRANCHES = {
    "HFS-008 50 with units other than 1": (
        "HFS-008", [on(0, units=2)], "64612-50 billed with 2 units", [on(0, units=1)], _NO_NCCI),
    "HFS-008 50 with RT/LT on one line": (
        "HFS-008", [on(0, modifier_2="RT")], "modifier 50 together with RT/LT on one line", [on(0, modifier_2="KX")]),
    "HFS-008 50 plus an RT/LT line on the same date": (
        "HFS-008", [add(line_no=3, procedure_code="64612", modifier_1="RT")],
        "64612-50 plus a 64612-RT/LT line on the same date",
        [add(line_no=3, procedure_code="64612", modifier_1="RT", service_date="2024-05-15")], _NO_NCCI),
    "HFS-008 unmodified line of 2+ units": (
        "HFS-008", [on(0, modifier_1=None, units=2)], "64612 without side modifier billed with 2+ units",
        [on(0, modifier_1=None, units=1)], _NO_NCCI),
    "HFS-008 two lines for the same side and date": (
        "HFS-008", [on(0, modifier_1="RT"), add(line_no=3, procedure_code="64612", modifier_1="RT")],
        "two 64612 lines for the same side on the same date", _RT_LT, _NO_NCCI),
    "HFS-008 RT/LT line with units other than 1": (
        "HFS-008", [on(0, modifier_1="RT", units=2), add(line_no=3, procedure_code="64612", modifier_1="LT")],
        "64612-RT/LT billed with 2 units (1 per side)", _RT_LT, _NO_NCCI),
    "HFS-014 JZ required from 2023-07-01": (
        "HFS-014", [on(1, modifier_1=None)], "J0585 needs JZ or a JW line for discarded units (dates from 2023-07-01)",
        [on(1, modifier_1=None), every(service_date="2023-06-30")]),
    "HFS-014 JW and JZ on one line": (
        "HFS-014", [on(1, modifier_2="JW"), add(procedure_code="J0585", modifier_1="JZ", units=50, ndc=_NDC)],
        "JW and JZ on one line", [on(1, modifier_2="KX")]),  # with an administered line: a lone JW line reads as such
    "HFS-014 a JZ line and a JW line": (
        "HFS-014", [add(procedure_code="J0585", modifier_1="JW", units=50, ndc=_NDC)],
        "a JZ line and a JW line for J0585",
        [on(1, modifier_1=None), add(procedure_code="J0585", modifier_1="JW", units=50, ndc=_NDC)]),
    "HFS-014 JW line with no administered line": (
        "HFS-014", [on(1, modifier_1="JW")], "JW line for J0585 with no administered line",
        [on(1, modifier_1=None), add(procedure_code="J0585", modifier_1="JW", units=50, ndc=_NDC)]),
    "HFS-014 JW on a non-drug line": (
        "HFS-014", [on(0, modifier_2="JW")], "JW on a non-drug line (64612)", [on(0, modifier_2="KX")]),
    "HFS-022 guidance without chemodenervation on the date": (
        "HFS-022", [add(procedure_code="95874", service_date="2024-05-15")],
        "guidance without a chemodenervation code on the same date", [add(procedure_code="95874")]),
    "HFS-022 more than 1 unit of guidance": (  # a payer without NCCI: with it, MUE-001 says so
        "HFS-022", [add(procedure_code="95873", units=2)], "more than 1 unit of guidance on one date",
        [add(procedure_code="95873", units=1)], {"ncci_applies": False}),
    "HFS-022 95874 with 64617": (
        "HFS-022", [on(0, procedure_code="64617", modifier_1=None), add(procedure_code="95874")],
        "95874 with 64617 (guidance included)", [on(0, procedure_code="64617", modifier_1=None),
                                                 add(procedure_code="95873")]),
    # A shorthand note is read and checked; the same note with a fragment it cannot read is not checked.
    "HFS-013 a shorthand note's dose, unless the note is not fully read": (
        "HFS-013", [on(0, muscles="R/L OO 10u each; B/L ZM 5u ea")],
        "documented 30 U = 30 billing units",
        [on(0, muscles="R/L OO 10u each; B/L ZM 5u ea; R zygomaticus 5u")]),
    "HFS-018 sites without units, unless the note is not fully read": (
        "HFS-018", [on(0, muscles="Right side: OO\nLeft side: OO")], "Left side: OO",
        [on(0, muscles="see chart")]),
    "HFS-021 one side under a heading, unless the note is not fully read": (
        "HFS-021", [on(0, muscles="Right side: OO 10u (2.5u x4), ZM 5u")], "on the right side only",
        [on(0, muscles="Right side: OO 10u (2.5u x4), ZM 5u; L cheek 5u")]),
}


@pytest.mark.parametrize("case", list(BRANCHES))
def test_multi_part_rule_branch_fires_and_its_near_miss_does_not(case):
    """It reports each branch of HFS-008, HFS-014, HFS-022 (and the site rules' not-checked notes) with its own
    text, and not the near miss."""
    rule, fires, text, quiet, *profile = BRANCHES[case]
    _, found = _findings(fires, "BR-FIRES", profile[0] if profile else {})
    hit = found[found["rule"] == rule]
    assert len(hit) == 1, f"{case}: {sorted(set(found['rule']))}"
    assert text in hit.iloc[0]["value"].split("; ")
    assert hit.iloc[0]["claim_id"] == "BR-FIRES" and hit.iloc[0]["severity"] == "error"
    _, near = _findings(quiet, "BR-QUIET", profile[0] if profile else {})
    assert rule not in set(near["rule"]), case
