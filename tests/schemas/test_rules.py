"""The catalog, the pandera check names and RULES.md agree exactly."""

import re
from pathlib import Path

from schemas import columns as C
from schemas.claims import CLAIM_SCHEMA, LINE_SCHEMA, ClaimFacts, RawClaims
from schemas.rules import RULES, RULES_BY_ID

RULES_MD = Path(__file__).resolve().parents[2] / "docs" / "rules-spec.md"  # the spec of record, copied in
PLANNED: set[str] = set()  # ids in the spec not built yet
INGEST_RULES = {"FILE-001", "FILE-002", "FILE-003", "ING-001"}  # raised by ingest, not pandera checks


def _check_names(schema) -> set[str]:
    return {c.name for c in schema.checks} | {c.name for col in schema.columns.values() for c in col.checks}


def test_catalog_ids_unique_and_match_check_names():
    """It has one catalog entry per pandera check, named by rule id."""
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    checks = _check_names(LINE_SCHEMA) | _check_names(CLAIM_SCHEMA)
    assert checks == set(ids) - INGEST_RULES


def test_every_rules_md_id_is_implemented():
    """It implements every rule id of the specification but the planned ones, with its default severity."""
    spec = dict(re.findall(r"^\| ((?:FILE|ING|STR|MUE|PTP|CODE|NDC|HFS)-\d{3}) \| (\w+) \|", RULES_MD.read_text(), re.M))
    assert set(spec) - PLANNED == set(RULES_BY_ID)
    assert not PLANNED & set(RULES_BY_ID), "a planned rule is built: take it out of PLANNED"
    spec = {k: v for k, v in spec.items() if k not in PLANNED}
    assert {k: RULES_BY_ID[k].severity.value for k in spec} == spec


def test_model_fields_are_the_canonical_columns():
    """It spells every model field with the canonical column constants."""
    fields = set(RawClaims.to_schema().columns)
    assert fields <= set(C.CANONICAL)
    assert RawClaims.claim_id == C.CLAIM_ID


def test_every_fact_a_claim_rule_reads_is_declared_and_described():
    """It declares, types and describes on ClaimFacts every fact column a claim rule reads."""
    columns = ClaimFacts.to_schema().columns
    for rule in RULES:
        assert set(rule.reads) <= set(columns), rule.id
    assert all(col.description for col in columns.values())
    assert all(col.description for col in RawClaims.to_schema().columns.values())


def test_every_entry_is_complete_and_cites_a_public_source():
    """It gives every rule a title, plain-language text, message, fix and a public source (never a file of ours)."""
    for rule in RULES:
        assert rule.title and rule.checks and rule.message and rule.fix and rule.source, rule.id
        assert "…" not in rule.checks and "{value}" not in rule.checks, rule.id
        assert not re.search(r"RULES\.md|\bref \d|domain-rules|reference/", rule.source), rule.id
        if rule.level.value in ("line", "claim"):
            assert rule.predicate is not None and rule.examples is not None, rule.id


def test_fixes_and_messages_speak_a_billers_words():
    """It words every fix and message without NCCI table jargon (column-1/column-2 codes, indicator-0 edits): the
    finding already names the code the payer denies."""
    jargon = re.compile(r"column[- ][12]|indicator-[01] edit|\bcol ?[12]\b", re.IGNORECASE)
    for rule in RULES:
        assert not jargon.search(rule.fix), rule.id
        assert not jargon.search(rule.message), rule.id


def test_docs_rules_md_is_generated_from_the_catalog():
    """It fails when docs/RULES.md is stale: regenerate with ``python -m schemas.rules > docs/RULES.md``."""
    from schemas.rules import catalog_markdown

    generated = Path(__file__).resolve().parents[2] / "docs" / "RULES.md"
    assert generated.read_text() == catalog_markdown(), "docs/RULES.md is stale: python -m schemas.rules > docs/RULES.md"
    for rule in RULES:
        assert f"| {rule.id} | {rule.severity.value} |" in generated.read_text()


def test_catalog_entries_live_in_their_family_module():
    """It keeps each rule's predicate in the family module it is catalogued under."""
    from schemas.rules import family_of

    for rule in RULES:
        if rule.predicate is not None:
            assert rule.predicate.__module__ == f"schemas.rules.{family_of(rule.id)}"
