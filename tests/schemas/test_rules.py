"""The catalog, the pandera check names and RULES.md agree exactly."""

import re
from pathlib import Path

from schemas import columns as C
from schemas.claims import ClaimFacts, ClaimLines, RawClaims
from schemas.rules import RULES, RULES_BY_ID

RULES_MD = Path(__file__).resolve().parents[2] / "docs" / "rules-spec.md"  # the spec of record, copied in
PLANNED = {"HFS-033"}  # in the spec's "Payer edits and code sets" section: issue 19, not built yet
INGEST_RULES = {"FILE-001", "FILE-002", "FILE-003", "ING-001"}  # raised by ingest, not pandera checks


def _check_names(model) -> set[str]:
    schema = model.to_schema()
    return {c.name for c in schema.checks} | {c.name for col in schema.columns.values() for c in col.checks}


def test_catalog_ids_unique_and_match_check_names():
    """It has one catalog entry per pandera check, named by rule id."""
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    checks = _check_names(ClaimLines) | _check_names(ClaimFacts)
    assert checks == set(ids) - INGEST_RULES


def test_every_rules_md_id_is_implemented():
    """It implements every rule id of the specification but the planned ones, with its default severity."""
    spec = dict(re.findall(r"^\| ((?:FILE|ING|STR|HFS)-\d{3}) \| (\w+) \|", RULES_MD.read_text(), re.M))
    assert set(spec) - PLANNED == set(RULES_BY_ID)
    assert not PLANNED & set(RULES_BY_ID), "a planned rule is built: take it out of PLANNED"
    spec = {k: v for k, v in spec.items() if k not in PLANNED}
    assert {k: RULES_BY_ID[k].severity.value for k in spec} == spec


def test_model_fields_are_the_canonical_columns():
    """It spells every model field with the canonical column constants."""
    fields = set(RawClaims.to_schema().columns)
    assert fields <= set(C.CANONICAL)
    assert RawClaims.claim_id == C.CLAIM_ID
