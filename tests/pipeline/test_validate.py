"""Every rule: a claim that must fire it and a near-miss that must not (small inline frames)."""

import copy
import datetime as dt

import pytest

from pipeline.config import PayerProfile, ScrubConfig
from pipeline.report import exception_ids, summarize
from pipeline.sample import (
    BOTOX_NDC,
    MUTATIONS,
    SITES,
    cervical_dystonia_claim,
    clean_claim,
    evaluation_only_claim,
    mutated,
)
from pipeline.validate import find_violations
from schemas import columns as C
from schemas.rules import RULES, RULES_BY_ID
from tests.conftest import AS_OF, lines_frame, rules_fired

M1, M2 = C.MODIFIERS[0], C.MODIFIERS[1]
STYLE_50 = ScrubConfig(payers={"Medicare": PayerProfile(bilateral_style="50", ncci_applies=False)})
NO_NCCI = ScrubConfig(payers={"Medicare": PayerProfile(ncci_applies=False)})
STYLE_RTLT = ScrubConfig(payers={"Medicare": PayerProfile(bilateral_style="RT_LT")})
LCD_2024 = ScrubConfig(payers={"Medicare": PayerProfile(lcd_effective="2024-05-01")})  # HFS-033 on the sample dates
CONFIG_FOR = {"HFS-009": (STYLE_50, STYLE_RTLT), "HFS-033": (LCD_2024, LCD_2024)}  # (firing, near miss)


def _edit(lines, i, **kw):
    lines = copy.deepcopy(lines)  # never the caller's claim: _near's entries share one
    for k, v in kw.items():
        lines[i][k] = v
    return lines


def _both_sides(lines):
    lines = copy.deepcopy(lines)
    lines[0][M1] = "RT"
    left = dict(lines[0], **{M1: "LT", C.LINE_NO: 3, C.MUSCLES: SITES})
    return lines + [left]


def _near(rule):
    """A claim close to firing ``rule`` that must not."""
    c = clean_claim("NEAR", "MBR-NEAR")
    return {
        "STR-001": c,
        "STR-002": [dict(x, **{C.SERVICE_DATE: AS_OF.isoformat()}) for x in c],
        "STR-003": c + [dict(c[0], **{C.LINE_NO: 3, C.PROCEDURE_CODE: "1125F", M1: None, C.MUSCLES: None})],
        "STR-004": _edit(c, 0, **{C.UNITS: 1.0}),
        "STR-005": [dict(x, **{C.DX[1]: "Z79.899"}) for x in c],
        "STR-006": [dict(x, **{C.RENDERING_NPI: "1558598797"}) for x in c],
        "STR-007": _edit(c, 1, **{M2: "KX", C.MODIFIERS[2]: "GA", C.MODIFIERS[3]: "59"}),
        "STR-008": c,
        "STR-009": _edit(c, 0, **{C.CHARGE: 0}),
        "STR-010": [dict(x, **{C.DX[1]: "G24.5", C.DX_POINTER: "AB"}) for x in c],
        "STR-011": c,
        "STR-012": [dict(x, **{C.SERVICE_DATE: (AS_OF - dt.timedelta(days=365)).isoformat()}) for x in c],
        "HFS-001": [dict(x, **{C.SERVICE_DATE: "2018-10-01"}) for x in c],
        "HFS-002": [dict(x, **{C.DX[0]: "G51.3", C.SERVICE_DATE: "2018-09-30"}) for x in c],
        "HFS-003": [dict(x, **{C.DX[1]: "G24.5"}) for x in c],
        "HFS-004": [dict(x, **{C.DX[1]: "G24.5"}) for x in c],
        "HFS-005": evaluation_only_claim("NEAR", "MBR-NEAR", "2024-05-14"),
        "HFS-006": c + [dict(c[0], **{C.LINE_NO: 3, C.PROCEDURE_CODE: "64615", M1: None, C.DX[1]: "G43.709",
                                      C.DX_POINTER: "B", C.MUSCLES: None})],
        "HFS-007": _both_sides(c),
        "HFS-008": _both_sides(c),
        "HFS-009": _both_sides(c),  # RT + LT lines, scrubbed with the RT_LT profile
        "HFS-010": [dict(x, **{C.DX_POINTER: None}) for x in c],
        "HFS-011": [dict(c[0], **{C.DRUG_SOURCE: "Pharmacy supplied"})],
        "HFS-012": _edit(c, 1, **{C.PROCEDURE_CODE: "J0586", C.UNITS: 10, C.NDC: "15054-0530-06"}),
        "HFS-013": _edit(c, 0, **{C.MUSCLES: "R OO 2.5u x4; R ZM 15u; L OO 2.5u x4; L ZM 15u"}),
        "HFS-014": [dict(x, **{C.SERVICE_DATE: "2023-06-30"}) for x in _edit(c, 1, **{M1: None})],
        "HFS-015": _edit(c, 1, **{M1: None}) + [dict(c[1], **{C.LINE_NO: 3, M1: "JW", C.UNITS: 50})],
        "HFS-016": _edit(c, 0, **{C.MUSCLES: "R OO 5u; L OO 45u"}),
        "HFS-017": _edit(c, 1, **{C.NDC: "00023114501"}),
        "HFS-018": c,
        "HFS-019": _edit(c, 0, **{C.MUSCLES: SITES + "; L platysma 0u"}),
        "HFS-020": _edit(c, 0, **{C.MUSCLES: SITES + "; R pretarsal orbicularis oculi 0u"}),
        "HFS-021": _edit(c, 0, **{C.MUSCLES: "B OO 10u each; B ZM 15u each"}),
        "HFS-022": c + [dict(c[0], **{C.LINE_NO: 3, C.PROCEDURE_CODE: "95874", M1: None, C.MUSCLES: None})],
        "HFS-023": c,
        "HFS-024": evaluation_only_claim("NEAR", "MBR-NEAR", "2024-05-14") + [
            dict(evaluation_only_claim("NEAR", "MBR-NEAR", "2024-05-14")[0],
                 **{C.LINE_NO: 2, C.PROCEDURE_CODE: "96372"})],
        "HFS-025": c,
        "HFS-026": c,
        "HFS-027": c,
        "HFS-028": [dict(x, **{C.DOC_SURGICAL_NOTES: "Y"}) for x in c] + [
            dict(c[0], **{C.LINE_NO: 3, C.PROCEDURE_CODE: "69955", M1: None, C.MUSCLES: None,
                          C.DOC_SURGICAL_NOTES: "Y"})],
        "HFS-030": clean_claim("PREV", "MBR-NEAR", "2024-02-20") + c,
        "HFS-031": [dict(x, **{C.PLACE_OF_SERVICE: "11"}) for x in c],
        "HFS-032": c,
        "HFS-033": [dict(x, **{C.DOC_SEVERITY_SCALE: "Y"}) for x in c],
        "NDC-001": _edit(c, 1, **{C.NDC: "00023-3921-02"}),  # Botox 200 U: another NDC of the billed product
    }[rule]


LINE_AND_CLAIM_RULES = [r.id for r in RULES if r.id[:3] in ("STR", "HFS", "NDC")]


@pytest.mark.parametrize("rule", LINE_AND_CLAIM_RULES)
def test_rule_fires_on_its_defect(rule):
    """It reports the rule on a claim built to break it."""
    # HFS-008 and HFS-022 (units), HFS-009 and HFS-024 (no modifier) are for payers without NCCI; with it, MUE-001/PTP-002 say so
    config = CONFIG_FOR.get(rule, (NO_NCCI if rule in ("HFS-008", "HFS-022", "HFS-024") else None, None))[0]
    assert rule in rules_fired(mutated(rule, f"BAD-{rule}", "MBR-BAD"), config=config)


@pytest.mark.parametrize("rule", LINE_AND_CLAIM_RULES)
def test_rule_quiet_on_near_miss(rule):
    """It does not report the rule on a claim that comes close but is right."""
    config = CONFIG_FOR.get(rule, (None, None))[1]
    assert rule not in rules_fired(_near(rule), config=config)


def test_every_rule_has_a_mutation():
    """It keeps one synthetic defect per rule, so the mixed sample can fire them all."""
    payer_edits = {r.id for r in RULES if r.id.split("-")[0] in ("MUE", "PTP", "CODE")}
    assert set(LINE_AND_CLAIM_RULES) | payer_edits | {"ING-001"} == set(MUTATIONS)


def test_severity_scale_column_absent_leaves_hfs_033_unchecked_only_where_a_2026_lcd_applies():
    """It does not call HFS-033 not checked (so the claims stay clean) when no claim is under a 2026 LCD, and it
    does when one is: an export without the optional Severity Scale column is not 'checked in part' for nothing."""
    present = set(C.CANONICAL) - {C.DOC_SEVERITY_SCALE}
    plain = find_violations(lines_frame(clean_claim()), AS_OF, present=present)
    assert "HFS-033" not in plain.not_checked and plain.findings.empty
    under = find_violations(lines_frame(clean_claim()), AS_OF, LCD_2024, present=present)
    assert "Severity Scale Documented" in under.not_checked["HFS-033"]
    assert "HFS-033" not in set(under.findings["rule"])


def test_clean_claim_and_evaluation_visit_are_clean():
    """It finds nothing on a complete bilateral claim or an evaluation-only G51.33 visit."""
    assert rules_fired(clean_claim()) == set()
    assert rules_fired(evaluation_only_claim("E1", "P1", "2024-05-14")) == set()


def test_out_of_scope_claim_gets_no_hfs_finding():
    """It leaves a cervical-dystonia claim (64616 + J0585, no G51.33) alone."""
    fired = rules_fired(cervical_dystonia_claim("CD1", "P1", "2024-05-14"))
    assert not {r for r in fired if r.startswith("HFS")}


@pytest.mark.parametrize(("dos", "fires"), [("2018-09-30", True), ("2018-10-01", False)])
def test_hfs_001_effective_date(dos, fires):
    """It rejects G51.33 before 2018-10-01 and accepts it from that day."""
    lines = [dict(x, **{C.SERVICE_DATE: dos}) for x in clean_claim()]
    fired = rules_fired(lines, as_of=dt.date(2019, 1, 1))
    assert ("HFS-001" in fired) is fires


@pytest.mark.parametrize(("dos", "fires"), [("2023-06-30", False), ("2023-07-01", True)])
def test_hfs_014_jz_required_from_2023_07_01(dos, fires):
    """It requires JZ (or a JW line) only from 2023-07-01."""
    lines = [dict(x, **{C.SERVICE_DATE: dos}) for x in clean_claim()]
    lines[1][M1] = None
    fired = rules_fired(lines, as_of=dt.date(2023, 12, 1))
    assert ("HFS-014" in fired) is fires


@pytest.mark.parametrize(("code", "sites", "billed", "ok"), [
    ("J0586", "R OO 156u; L OO 156u", 63, True),   # Dysport 312 U -> 62.4 -> 63 units
    ("J0586", "R OO 156u; L OO 156u", 62, False),
    ("J0585", "R OO 1.25 U x 8 sites", 10, True),  # Botox 1.25 U x 8 = 10 units
    ("J0587", "R OO 1250u; L OO 1250u", 25, True),  # Myobloc 2500 U -> 25 units
    ("J0587", "R OO 1250u; L OO 1250u", 2500, False),
])
def test_hfs_013_unit_arithmetic_is_exact(code, sites, billed, ok):
    """It converts documented toxin units to billing units, rounding up."""
    lines = clean_claim()
    lines[0][C.MUSCLES] = sites
    lines[1].update({C.PROCEDURE_CODE: code, C.UNITS: billed})
    assert ("HFS-013" not in rules_fired(lines)) is ok


def test_hfs_027_is_an_error_with_a_structural_cause():
    """It raises missing imaging to an error when the claim carries a structural-cause diagnosis."""
    lines = [dict(x, **{C.DOC_IMAGING: "N", C.DX[1]: "D33.3"}) for x in clean_claim()]
    f = find_violations(lines_frame(lines), AS_OF).findings
    assert f.loc[f.rule == "HFS-027", "severity"].tolist() == ["error"]
    plain = [dict(x, **{C.DOC_IMAGING: "N"}) for x in clean_claim()]
    f = find_violations(lines_frame(plain), AS_OF).findings
    assert f.loc[f.rule == "HFS-027", "severity"].tolist() == ["warning"]


def test_hfs_030_uses_ledger_history():
    """It flags a session 40 days after one recorded by an earlier run (salted patient key)."""
    import pandas as pd

    from pipeline.derive import patient_key

    history = pd.DataFrame({"patient_key": [patient_key("MBR-000001", "s")],
                            "service_date": [pd.Timestamp("2024-04-04")]})
    assert "HFS-030" in rules_fired(clean_claim(), history=history, salt="s")
    assert "HFS-030" not in rules_fired(clean_claim(), history=history, salt="other-salt")


def test_config_overrides_severity_and_disables_rules():
    """It applies per-rule severity overrides and disabled rules from the config."""
    lines = [dict(x, **{C.DOC_IMAGING: "N"}) for x in clean_claim()]
    cfg = ScrubConfig(severity={"HFS-027": "error"})
    f = find_violations(lines_frame(lines), AS_OF, cfg).findings
    assert f.loc[f.rule == "HFS-027", "severity"].tolist() == ["error"]
    off = find_violations(lines_frame(lines), AS_OF, ScrubConfig(disabled=["HFS-027"]))
    assert "HFS-027" not in set(off.findings.rule)
    assert off.not_checked["HFS-027"] == "disabled in the configuration"


def test_missing_doc_columns_are_not_checked_not_passed():
    """It reports documentation rules as not checked when the file lacks those columns."""
    lines = [{k: v for k, v in x.items() if not k.startswith("doc_")} for x in clean_claim()]
    present = set(C.CANONICAL) - set(C.DOC_FLAGS)
    v = find_violations(lines_frame(lines), AS_OF, present=present)
    assert {"HFS-025", "HFS-026", "HFS-027", "HFS-028"} <= set(v.not_checked)
    assert list(v.findings.rule) == ["FILE-003"]


def test_findings_name_rule_claim_line_row_field_value_message_fix():
    """It gives every finding what a reviewer needs to act on it."""
    v = find_violations(lines_frame(mutated("HFS-017", "C9", "P9")), AS_OF)
    row = v.findings.iloc[0]
    assert (row.rule, row.severity, row.claim_id, row.line_no, row.field) == ("HFS-017", "warning", "C9", 2, "ndc")
    assert row.value == "0023-1145-01" and "0023-1145-01" in row.message
    assert row.fix == RULES_BY_ID["HFS-017"].fix and row.source_row == 3
    assert BOTOX_NDC not in row.value


def test_hfs_017_blank_ndc_fires():
    """It flags a toxin line with no NDC at all."""
    lines = clean_claim()
    lines[1][C.NDC] = None
    assert "HFS-017" in rules_fired(lines)


def test_validation_never_raises_on_garbage():
    """It returns findings, not exceptions, for lines full of nonsense."""
    lines = [{C.CLAIM_ID: None, C.PROCEDURE_CODE: "???", C.UNITS: "x", C.SERVICE_DATE: "never",
              C.DX[0]: "##", C.MUSCLES: ";;; L 5u x x; (((", C.DX_POINTER: "ZZZZZ"}]
    fired = rules_fired(lines)
    assert {"STR-001", "STR-002", "STR-003", "STR-004"} <= fired


def test_default_profile_overrides_apply_to_named_payers():
    """It applies the [default] profile's severity and disabled rules to payers without a profile of their own."""
    from pipeline.config import PayerProfile

    lines = [dict(x, **{C.DOC_IMAGING: "N"}) for x in clean_claim()]  # payer "Medicare", no payer profiles
    cfg = ScrubConfig(default=PayerProfile(severity={"HFS-027": "error"}))
    f = find_violations(lines_frame(lines), AS_OF, cfg).findings
    assert f.loc[f.rule == "HFS-027", "severity"].tolist() == ["error"]
    off = find_violations(lines_frame(lines), AS_OF, ScrubConfig(default=PayerProfile(disabled=["HFS-027"])))
    assert "HFS-027" not in set(off.findings.rule)


def test_partitioned_check_finds_the_same(tmp_path):
    """It finds the same findings when the lines are checked in parts (claims whole, patients together)."""
    import pandas as pd

    from pipeline.ingest import read_claims
    from pipeline.sample import generate
    from pipeline.validate import partition_lines
    from tests.conftest import SAMPLES

    lines = generate(2000)
    for k in range(12):  # repeat sessions of one patient on different claims (HFS-030 across parts)
        lines += mutated("HFS-030", f"REP-{k}", f"MBR-R{k}")
    path = tmp_path / "g.csv"
    from pipeline.sample import write_csv

    write_csv(lines, path)
    for source in (SAMPLES / "mixed.csv", SAMPLES / "messy.xlsx", SAMPLES / "clean.csv", path):
        r = read_claims(source)
        whole = find_violations(r.lines, AS_OF, None, r.present, None, "", r.issues).findings
        parts = partition_lines(r.lines, 4)
        assert sum(map(len, parts)) == len(r.lines) and sum(len(p) > 0 for p in parts) >= 2
        owner = {c: k for k, p in enumerate(parts) for c in p[C.CLAIM_ID].dropna()}
        assert all(owner[c] == k for k, p in enumerate(parts) for c in p[C.CLAIM_ID].dropna())  # claims whole
        split = find_violations(r.lines, AS_OF, None, r.present, None, "", r.issues, partitions=4).findings
        if source in (SAMPLES / "mixed.csv", path):
            assert (split["rule"] == "HFS-030").sum() >= (12 if source == path else 1)
        pd.testing.assert_frame_equal(split, whole)


def test_line_rules_beside_the_claim_facts_find_the_same(monkeypatch):
    """It finds the same when a large file's line rules run on a helper thread while the claim facts
    are derived, and its reference-table lookups on another beside the claim facts that need none of them,
    as when they run one after the other."""
    import threading

    import pandas as pd

    from pipeline import derive, lookups, validate
    from pipeline.ingest import read_claims
    from tests.conftest import SAMPLES

    ran_on = []
    line_rules = validate._line_rule_findings

    def spy(*args):
        ran_on.append(threading.current_thread().name)
        return line_rules(*args)

    looked_up_on = []
    code_facts = lookups.code_facts

    def spy_tables(*args):
        looked_up_on.append(threading.current_thread().name)
        return code_facts(*args)

    monkeypatch.setattr(validate, "_line_rule_findings", spy)
    monkeypatch.setattr(lookups, "code_facts", spy_tables)
    for source in (SAMPLES / "mixed.csv", SAMPLES / "messy.xlsx", SAMPLES / "payer_edits.csv"):
        r = read_claims(source)
        monkeypatch.setattr(validate, "PARALLEL_LINES", 10**9)
        monkeypatch.setattr(derive, "PARALLEL_LINES", 10**9)
        alone = find_violations(r.lines, AS_OF, None, r.present, None, "", r.issues).findings
        monkeypatch.setattr(validate, "PARALLEL_LINES", 1)
        monkeypatch.setattr(derive, "PARALLEL_LINES", 1)
        beside = find_violations(r.lines, AS_OF, None, r.present, None, "", r.issues).findings
        assert {"STR-002", "MUE-001"} <= set(alone["rule"])  # line rules, and claim rules on the tables, fire
        pd.testing.assert_frame_equal(beside, alone)
    assert ran_on[0] == "MainThread" and ran_on[1].startswith("claimscrub-lines")
    assert looked_up_on[0] == "MainThread" and looked_up_on[1].startswith("claimscrub-tables")


def test_outpatient_prior_auth_names_the_right_claim():
    """It flags the hospital-outpatient claim without a UTN, not an office claim listed before it."""
    office = clean_claim("Z-OFFICE", "MBR-1", "2024-05-14")
    opd = clean_claim("A-OPD", "MBR-2", "2024-05-14")
    for line in opd:
        line[C.PLACE_OF_SERVICE] = "22"
        line[C.PRIOR_AUTH] = None
    found = find_violations(lines_frame(office + opd), AS_OF).findings
    hits = found[found["rule"] == "HFS-031"]
    assert set(hits[C.CLAIM_ID]) == {"A-OPD"}
    assert "no prior authorization number" in hits["value"].iat[0]


def test_exception_id_does_not_depend_on_the_other_findings():
    """It gives a finding the same id whether or not the file also has a file-level finding."""
    from pipeline.report import exception_ids

    lines = lines_frame(mutated("HFS-025", "C1", "M1"))
    alone = find_violations(lines, AS_OF).findings
    with_file_level = find_violations(lines, AS_OF, present=set(C.CANONICAL) - {C.DOC_SURGICAL_NOTES}).findings
    a = dict(zip(alone["rule"], exception_ids(alone), strict=True))
    b = dict(zip(with_file_level["rule"], exception_ids(with_file_level), strict=True))
    assert "FILE-003" in b and a["HFS-025"] == b["HFS-025"]


def test_line_findings_name_every_bad_code_of_the_line():
    """STR-005 and STR-007 show each malformed code of a line and the columns they sit in."""
    lines = clean_claim()
    lines[0].update({C.DX[1]: "G5", C.DX[3]: "12.X", M1: "5", C.MODIFIER_EXTRA: "XYZ"})
    found = find_violations(lines_frame(lines), AS_OF).findings.set_index("rule")
    assert found.loc["STR-005", "field"] == "dx_2, dx_4"
    assert found.loc["STR-005", "value"] == "G5, 12.X"
    assert found.loc["STR-007", "value"] == "5, XYZ"


def test_a_rule_check_that_raises_is_reported_not_passed(monkeypatch, caplog):
    """A check that cannot run (here: a fact column missing) is logged as a contract problem by rule id."""
    from pipeline import validate

    facts = validate._facts_for_checks
    monkeypatch.setattr(validate, "_facts_for_checks", lambda claims: facts(claims).drop(columns=["site_units"]))
    with caplog.at_level("WARNING", logger="pipeline.validate"):
        find_violations(lines_frame(clean_claim()), AS_OF)
    # the rule that could not run by id, and the missing declared fact column by pandera's check name
    assert "schema contract problems in ClaimFacts: ['HFS-013', 'HFS-016', 'column_in_dataframe']" in caplog.text


def test_failing_rules_carry_their_rows_without_pandera_failure_cases():
    """Each failing rule's error holds one boolean per row (what validate reads) and no per-row
    failure-case table: pandera is not asked to format the failing rows it would only throw away."""
    import pandas as pd
    from pandera.errors import SchemaErrors

    from pipeline.ingest import to_canonical
    from schemas.claims import LINE_SCHEMA
    from schemas.pandera_adapter import RuleCheck

    assert all(isinstance(c, RuleCheck) for c in LINE_SCHEMA.checks)
    frame = to_canonical(lines_frame(_edit(clean_claim(), 0, procedure_code="6461")))
    frame = frame.assign(as_of=pd.Timestamp(AS_OF), timely_filing_days=365.0)
    with pytest.raises(SchemaErrors) as caught:
        LINE_SCHEMA.validate(frame, lazy=True)
    (err,) = [e for e in caught.value.schema_errors if e.check.name == "STR-003"]
    assert err.check_output.tolist() == [False] + [True] * (len(frame) - 1)
    assert not isinstance(err.failure_cases, pd.DataFrame | pd.Series)


def _dated(lines, dos, **kw):
    return [dict(x, **{C.SERVICE_DATE: dos}, **kw) for x in lines]


@pytest.mark.parametrize(("payer", "dos", "fires"), [
    ("Aetna PPO", "2024-03-31", True), ("Aetna PPO", "2024-04-01", False),  # 91 and 90 days before 2024-06-30
    ("Medicare Part B", "2024-03-31", False), ("Medicare Part B", "2023-06-30", True),
    ("Someone Else", "2024-03-31", False),
])
def test_str_012_uses_the_matched_profile_days(payer, dos, fires):
    """It flags a claim past its payer's filing limit: a 90-day commercial contract, Medicare's 365 days."""
    cfg = ScrubConfig(payers={"Aetna": PayerProfile(aliases=["Aetna PPO"], timely_filing_days=90)})
    found = find_violations(lines_frame(_dated(clean_claim(), dos, **{C.PAYER: payer})), AS_OF, cfg).findings
    hit = found[found["rule"] == "STR-012"]
    assert (len(hit) == 1) == fires  # once for the claim (its lines share the date: one finding per cause)
    if fires:
        assert set(hit["value"]) == {dos} and set(hit["severity"]) == {"warning"}
        # The message names the limit applied and whose it is, never another payer's (the value stays the date).
        days, profile = ("90", "Aetna") if payer.startswith("Aetna") else ("365", "Medicare")
        assert f"({days} days: the {profile} profile's limit)" in hit["message"].iat[0]
        assert "Medicare" not in hit["message"].iat[0] or profile == "Medicare"


def test_str_012_note_leaves_the_exception_id_alone():
    """Its note changes with the profile's days; the value, and so the exception id, does not."""
    lines = lines_frame(_dated(clean_claim(), "2024-03-31", **{C.PAYER: "Aetna PPO"}))
    ids, notes = set(), set()
    for days in (60, 90):
        cfg = ScrubConfig(payers={"Aetna": PayerProfile(aliases=["Aetna PPO"], timely_filing_days=days)})
        hit = find_violations(lines, AS_OF, cfg).findings.query("rule == 'STR-012'")
        ids |= set(exception_ids(hit))
        notes.add(hit["message"].iat[0])
    assert len(ids) == 1 and len(notes) == 2


@pytest.mark.parametrize(("payer", "dos", "scale", "fires"), [
    ("Noridian JE", "2026-03-02", None, True), ("Noridian JE", "2026-03-02", "Y", False),
    ("Noridian JE", "2026-02-21", None, False), ("Medicare WPS", "2026-02-15", None, True),
    ("Novitas", "2026-03-02", None, False), ("Aetna", "2026-03-02", None, False),
    ("UHC Medicare Advantage", "2026-03-02", None, False),
    ("UHC Medicare Advantage", "2026-03-02", None, "2026-02-22"), ("Humana Medicare HMO", "2026-02-21", None, "2026-02-22"),
])
def test_hfs_033_from_the_macs_lcd_date(payer, dos, scale, fires):
    """It warns on a Medicare claim on or after its MAC's 2026 LCD date without an objective severity scale; a
    Medicare Advantage plan with the date of its service area's MAC set (a date in ``fires``) is checked alike."""
    lines = _dated(clean_claim(), dos, **{C.PAYER: payer, C.DOC_SEVERITY_SCALE: scale})
    cfg = None
    if isinstance(fires, str):
        cfg = ScrubConfig(payers={"Medicare Advantage": PayerProfile(lcd_effective=fires)})
        fires = dos >= fires
    found = find_violations(lines_frame(lines), dt.date(2026, 6, 30), cfg).findings
    hit = found[found["rule"] == "HFS-033"]
    assert len(hit) == int(fires)
    if fires:
        assert hit["severity"].iat[0] == "warning" and hit["line_no"].iat[0] == 1


@pytest.mark.parametrize(("payer", "dos", "unknown"), [
    ("Medicare", "2026-03-02", True), ("Novitas", "2026-03-02", True), ("Medicare", "2025-12-31", False),
    ("Noridian JE", "2026-03-02", False), ("UHC Medicare Advantage", "2026-03-02", True),
    ("Humana Medicare HMO", "2026-03-02", True), ("Medicare Replacement (Aetna)", "2026-03-02", True),
    ("UHC Medicare Advantage", "2025-12-31", False), ("Aetna", "2026-03-02", False),
])
def test_hfs_033_not_checked_where_the_medicare_profile_has_no_lcd_date(payer, dos, unknown):
    """It says HFS-033 was not checked (and how to set lcd_effective) for a 2026 Medicare claim whose profile has
    no LCD date (plain Medicare, a MAC whose rewrite is not confirmed, a Medicare Advantage plan, which follows its
    service area's LCD), and counts the claim as checked in part, not clean; a MAC with its date, a commercial
    payer or a 2025 date are not concerned."""
    lines = _dated(clean_claim(), dos, **{C.PAYER: payer, C.DOC_SEVERITY_SCALE: "N"})
    v = find_violations(lines_frame(lines), dt.date(2026, 6, 30))
    why = v.reference.get("partly", {}).get("HFS-033", "")
    assert bool(why) == unknown
    if unknown:
        assert "not checked on 1 Medicare claim(s)" in why and "lcd_effective = YYYY-MM-DD" in why
        plan = "Medicare Advantage" in payer or "Replacement" in payer or "HMO" in payer
        assert ('[payers."Medicare Advantage"] lcd_effective' in why) == plan
        assert ("service area" in why) == plan and ("name the MAC as the payer" in why) == (not plan)
        assert "HFS-033" not in set(v.findings["rule"])
        s = summarize("f.csv", "", len(lines), lines_frame(lines), v.findings, v.claims, v.not_checked,
                      "2026-06-30", "r", "0", v.reference)
        assert (s.claims_checked_in_part, s.clean_claims) == (1, 0)


def test_hfs_033_not_checked_without_the_column():
    """It reports HFS-033 as not checked, never as passed, when the file has no severity-scale column."""
    lines = _dated(clean_claim(), "2026-03-02", **{C.PAYER: "Noridian JE"})
    present = set(C.CANONICAL) - {C.DOC_SEVERITY_SCALE}
    result = find_violations(lines_frame(lines), dt.date(2026, 6, 30), present=present)
    assert "HFS-033" in result.not_checked and "HFS-033" not in set(result.findings["rule"])
    assert "FILE-003" not in set(result.findings["rule"])  # an optional column: not a missing documentation column


@pytest.mark.parametrize(("code", "ndc", "value"), [
    ("J0585", "00023-9232-01", "00023-9232-01 is BOTOX Cosmetic, a cosmetic-only product: not billable on J0585"),
    ("J0585", "N400023923202", "N400023923202 is BOTOX Cosmetic, a cosmetic-only product: not billable on J0585"),
    ("J0585", "00259-1620-01", "00259-1620-01 is Xeomin (billed on J0588), not J0585"),
    ("J0585", "81165-0100-01", "81165-0100-01 is Letybo, a cosmetic-only product: not billable on J0585"),
    ("J0588", "72301-0595-10", "72301-0595-10 is Jeuveau, a cosmetic-only product: not billable on J0588"),
    ("J0586", "15054-0530-06", None), ("J0588", "00259-1620-01", None), ("J0589", "72960-0112-01", None),
    ("J0585", "12345-6789-01", None),  # a product the table does not list: not judged
    ("J0585", "72301-595-10", None),  # 5-3-2 as printed on the carton: HFS-017's form problem, not judged here
])
def test_ndc_001_matches_the_ndc_to_the_billed_product(code, ndc, value):
    """It flags an NDC of another product or of a cosmetic-only product on a toxin line, with what it is."""
    lines = _edit(clean_claim(), 1, **{C.PROCEDURE_CODE: code, C.NDC: ndc})
    found = find_violations(lines_frame(lines), AS_OF).findings
    hit = found[found["rule"] == "NDC-001"]
    assert hit["value"].tolist() == ([value] if value else [])
    if value:
        assert hit["severity"].iat[0] == "error" and hit["line_no"].iat[0] == 2 and hit["field"].iat[0] == C.NDC


def test_ndc_001_on_every_claim_and_not_checked_without_ndc():
    """It checks NDCs on claims of any diagnosis, and is not checked when the file has no NDC column."""
    lines = _edit(cervical_dystonia_claim("CD1", "P1", "2024-05-14"), 1, **{C.NDC: "00023-9232-01"})
    assert "NDC-001" in rules_fired(lines)
    result = find_violations(lines_frame(lines), AS_OF, present=set(C.CANONICAL) - {C.NDC})
    assert "NDC-001" in result.not_checked and "NDC-001" not in set(result.findings["rule"])


def test_dose_caps_apply_from_their_effective_date():
    """It takes a profile's dose cap from its effective date on (HFS-016), the profile's range before."""
    cap = {"effective": "2024-05-01", "side_max_units": 20, "source": "a payer policy"}
    cfg = ScrubConfig(payers={"Medicare": PayerProfile(dose_caps=[cap])})
    assert "HFS-016" in rules_fired(clean_claim(), config=cfg)  # 25 U a side on 2024-05-14
    assert "HFS-016" not in rules_fired(_dated(clean_claim(), "2024-04-30"), config=cfg)


def test_xeomin_200_unit_vial_is_known_to_the_vial_arithmetic():
    """It counts the 200 U Xeomin vial among J0588's vials."""
    lines = _edit(_edit(clean_claim(), 1, **{C.PROCEDURE_CODE: "J0588", C.NDC: "00259-1620-01", C.UNITS: 50}), 1)
    lines.append(dict(lines[1], **{C.LINE_NO: 3, M1: "JW", C.UNITS: 75}))
    lines[1][M1] = None
    found = find_violations(lines_frame(lines), AS_OF).findings
    assert found.loc[found["rule"] == "HFS-015", "value"].tolist() == [
        "50 U given + 75 U discarded = 125 U; vials are 50/100/200 U"]
    lines[2][C.UNITS] = 150  # 50 + 150 = one 200 U vial
    assert "HFS-015" not in rules_fired(lines)
