"""The site-note corpus: realistic injection records with their expected reading, read by the reader and
scrubbed on clean G51.33 claims by the real rules.

``site_notes_corpus.jsonl`` holds one note a line: ``note``, ``form`` (the shorthand it exercises),
``sites`` (expected [muscle, side, units] summed per muscle and side; side null when the note states none;
units null when none are written) and ``unread`` (the fragments the reader must report, each as the start of
its unread text). Composed session notes are whole protocols written in several practices' house styles;
the second batch was written after the reader, as a check on notes it was not built from (one of them it
cannot read, and is counted as a miss).
"""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline.sample import clean_claim
from pipeline.validate import find_violations
from schemas import columns as C
from schemas.sites import read_note, reading_by_site
from tests.conftest import AS_OF, lines_frame

CORPUS = [json.loads(line) for line in (Path(__file__).parent / "site_notes_corpus.jsonl").read_text().splitlines()]
SIDE_RULES = {"HFS-013", "HFS-016", "HFS-018", "HFS-021"}


def _expected(row) -> dict:
    return {(m, s): u for m, s, u in row["sites"]}


def _reads_exactly(row) -> bool:
    reading = read_note(row["note"])
    got, want = reading_by_site(reading), _expected(row)
    if got.keys() != want.keys() or len(reading.unread) != len(row["unread"]):
        return False
    if any((got[k] is None) != (want[k] is None) or (want[k] is not None and not math.isclose(got[k], want[k]))
           for k in want):
        return False
    return all(any(u.startswith(frag) for u in reading.unread) for frag in row["unread"])


def test_corpus_covers_every_form():
    """It holds at least 300 notes, every shorthand form among them, and notes that must not be read."""
    forms = {row["form"] for row in CORPUS}
    assert len(CORPUS) >= 300
    assert {"per-side shorthand", "headings", "OO parts", "totals with breakdown", "misspellings and short forms",
            "lists with a shared side and each", "unread / ambiguous / garbage"} <= forms
    assert sum(1 for row in CORPUS if row["unread"]) >= 30


def test_corpus_reads_at_least_98_percent_exactly():
    """It reads at least 98% of the corpus notes exactly: the same units per muscle and side, and the same
    fragments reported unread."""
    misread = [row["note"] for row in CORPUS if not _reads_exactly(row)]
    rate = 1 - len(misread) / len(CORPUS)
    assert rate >= 0.98, f"{rate:.1%} read exactly; misread: {misread}"


def _corpus_claims() -> tuple[list[dict], dict[str, dict]]:
    """One clean G51.33 claim per note (64612-50 + Botox billed as the note's read total, rounded up)."""
    lines, by_claim = [], {}
    for i, row in enumerate(CORPUS):
        claim_id = f"NOTE-{i:03d}"
        total = sum(u for _, _, u in row["sites"] if u)
        claim = clean_claim(claim_id, f"MBR-{i:06d}")
        claim[0][C.MUSCLES] = row["note"]
        claim[1][C.UNITS] = math.ceil(round(total, 6)) if total else 50
        lines += claim
        by_claim[claim_id] = row
    return lines, by_claim


@pytest.fixture(scope="module")
def corpus_findings():
    lines, by_claim = _corpus_claims()
    return find_violations(lines_frame(lines), AS_OF).findings, by_claim


def test_corpus_notes_give_no_unit_or_side_error_on_clean_claims(corpus_findings):
    """It gives no units or sides error (HFS-013, HFS-018, HFS-021) on a clean claim whose billed units match
    its note, and none of the units, sides and dose rules on a claim whose note was not fully read."""
    found, by_claim = corpus_findings
    for claim_id, row in by_claim.items():
        mine = found[found[C.CLAIM_ID] == claim_id]
        complete = not row["unread"] and all(u is not None for _, _, u in row["sites"])
        both_sides = {s for _, s, _ in row["sites"]} >= {"R", "L"}
        if complete and both_sides:
            errors = mine[(mine["severity"] == "error") & mine["rule"].isin({"HFS-013", "HFS-018", "HFS-021"})]
            assert errors.empty, (row["note"], errors[["rule", "value"]].to_dict("records"))
        if row["unread"]:
            assert not set(mine["rule"]) & SIDE_RULES, (row["note"], sorted(set(mine["rule"])))


def test_unread_fragments_are_one_warning_naming_them(corpus_findings):
    """It reports a note's unread fragments (and only those) as one HFS-020 warning whose value names each of
    them, and the message says the units and sides could not be checked."""
    found, by_claim = corpus_findings
    warned = found[found["rule"] == "HFS-020"].set_index(C.CLAIM_ID)
    for claim_id, row in by_claim.items():
        if not _reads_exactly(row):
            continue  # counted by the exact-read rate
        if not row["unread"]:
            assert claim_id not in warned.index, (row["note"], warned.loc[[claim_id], "value"].tolist())
            continue
        hit = warned.loc[claim_id]
        assert hit["severity"] == "warning"
        assert all(frag in hit["value"] for frag in row["unread"]), (row["note"], hit["value"])
        assert "could not be checked" in hit["message"]


def test_scrub_of_hand_written_shorthand_claims(tmp_path):
    """It scrubs a hand-written export of clean claims in shorthand (SH-001..004) with no finding on them; the
    unreadable notes (SH-005, SH-006) get one HFS-020 warning naming the fragment and no units or sides finding;
    and real faults written in shorthand are still errors (SH-007 billed 50 for 30 documented, SH-008 one side)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    src = Path(__file__).parent / "site_notes_claims.csv"
    res = CliRunner().invoke(app, ["scrub", str(src), "--out", str(tmp_path), "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    found = pd.read_csv(tmp_path / "site_notes_claims.findings.csv", dtype=str)
    got = sorted(zip(found["claim_id"], found["rule"], found["severity"], strict=True))
    assert got == [("SH-005", "HFS-020", "warning"), ("SH-006", "HFS-020", "warning"),
                   ("SH-007", "HFS-013", "error"), ("SH-008", "HFS-021", "error")]
    values = dict(zip(found["claim_id"], found["value"], strict=True))
    assert values["SH-005"].startswith("R cheek thing 5u") and values["SH-006"].startswith("see chart")
    assert values["SH-007"] == "billed 50 units of J0585; documented 30 U = 30 billing units"
