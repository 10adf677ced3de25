"""The catalog, the pandera check names and RULES.md agree exactly."""

import re
from pathlib import Path

import pytest

from schemas import columns as C
from schemas.claims import ClaimFacts, ClaimLines, RawClaims
from schemas.rules import RULES, RULES_BY_ID

RULES_MD = Path(__file__).resolve().parents[3] / "shared" / "RULES.md"
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


@pytest.mark.skipif(not RULES_MD.exists(), reason="shared/RULES.md is not beside this checkout")
def test_every_rules_md_id_is_implemented():
    """It implements every rule id of the specification, with its default severity."""
    spec = dict(re.findall(r"^\| ((?:FILE|ING|STR|HFS)-\d{3}) \| (\w+) \|", RULES_MD.read_text(), re.M))
    assert set(spec) == set(RULES_BY_ID)
    assert {k: RULES_BY_ID[k].severity.value for k in spec} == spec


def test_model_fields_are_the_canonical_columns():
    """It spells every model field with the canonical column constants."""
    fields = set(RawClaims.to_schema().columns)
    assert fields <= set(C.CANONICAL)
    assert RawClaims.claim_id == C.CLAIM_ID
