"""The command line: exit codes, outputs and a recorded Prefect flow run."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import SAMPLES

runner = CliRunner()


def test_scrub_writes_outputs_and_exits_zero(tmp_path):
    """It writes the workbook and CSV and exits 0 when findings exist."""
    res = runner.invoke(app, ["scrub", str(SAMPLES / "mixed.csv"), "--out", str(tmp_path), "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mixed.exceptions.xlsx").exists() and (tmp_path / "mixed.findings.csv").exists()
    assert "HFS-013" in res.output
    assert "payers matching no profile (default applies): Acme Commercial, Aetna, Demo MAC" in res.output  # no --config here


def test_fail_on_and_unreadable_inputs(tmp_path):
    """It exits 1 with --fail-on error when errors exist and 2 when an input cannot be read."""
    res = runner.invoke(app, ["scrub", str(SAMPLES / "mixed.csv"), "--out", str(tmp_path), "--fail-on", "error"])
    assert res.exit_code == 1
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    res = runner.invoke(app, ["scrub", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "E_EMPTY" in res.output


def test_rules_and_ingest_commands():
    """It prints the catalog and what a file holds."""
    from schemas.rules import RULES_BY_ID

    full = runner.invoke(app, ["rules"]).output
    hfs013 = RULES_BY_ID["HFS-013"]
    assert "HFS-030" in full and f"checks: {hfs013.checks}" in full and f"source: {hfs013.source}" in full
    brief = runner.invoke(app, ["rules", "--brief"]).output
    assert "HFS-030" in brief and "source:" not in brief
    out = runner.invoke(app, ["ingest", str(SAMPLES / "messy.xlsx")]).output
    assert "'Svc Date' -> service_date" in out and "row 11" in out


def test_sample_generator_is_deterministic(tmp_path):
    """It writes the same synthetic file for the same seed."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    runner.invoke(app, ["sample", "--lines", "300", str(a)])
    runner.invoke(app, ["sample", "--lines", "300", str(b)])
    assert a.read_bytes() == b.read_bytes() and len(a.read_text().splitlines()) == 301


@pytest.mark.e2e
def test_recorded_scrub_runs_the_prefect_flow(tmp_path, prefect_harness):
    """It records an ad hoc scrub as a scrub-file flow run whose name carries no file name."""
    import asyncio

    from prefect.client.orchestration import get_client

    res = runner.invoke(app, ["scrub", str(SAMPLES / "clean.csv"), "--out", str(tmp_path), "--record",
                              "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    assert Path(tmp_path / "clean.exceptions.xlsx").exists()

    async def runs():
        async with get_client() as client:
            return await client.read_flow_runs()

    flow_runs = asyncio.run(runs())
    assert flow_runs and all("clean" not in r.name for r in flow_runs)
    assert any(r.state and r.state.is_completed() for r in flow_runs)


def test_scrub_never_overwrites_one_inputs_outputs_with_anothers(tmp_path):
    """It gives two inputs with one name (other folders, or other extensions) outputs of their own."""
    import shutil

    for folder, sample in (("d1", "clean.csv"), ("d2", "mixed.csv")):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLES / sample, tmp_path / folder / "claims.csv")
    out = tmp_path / "o"
    res = runner.invoke(app, ["scrub", str(tmp_path / "d1" / "claims.csv"), str(tmp_path / "d2" / "claims.csv"),
                              "--out", str(out), "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    books = sorted(out.glob("*.exceptions.xlsx"))
    csvs = sorted(out.glob("*.findings.csv"))
    assert len(books) == 2 and len(csvs) == 2
    rules = sorted(len(p.read_text().splitlines()) for p in csvs)
    assert rules[0] == 1 and rules[1] > 1  # the clean file's CSV holds only its header, the other its findings
    for book in books:
        assert f"workbook: {book}" in res.output
    for path in csvs:
        assert f"findings CSV: {path}" in res.output  # every output it wrote, by its path

    shutil.copy(SAMPLES / "messy.xlsx", tmp_path / "x.xlsx")
    shutil.copy(SAMPLES / "mixed.csv", tmp_path / "x.csv")
    res = runner.invoke(app, ["scrub", str(tmp_path / "x.xlsx"), str(tmp_path / "x.csv"), "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.xlsx.exceptions.xlsx").exists() and (tmp_path / "x.csv.exceptions.xlsx").exists()
    assert not (tmp_path / "x.exceptions.xlsx").exists()


def test_scrub_of_an_inbox_file_writes_outside_the_inbox(tmp_path):
    """It writes an ad hoc scrub of a nightly inbox's file to the outbox's adhoc folder, says so, and the
    nightly scan leaves claimscrub's own outputs in an inbox alone."""
    import shutil

    from pipeline.nightly import scan_inbox

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "ledger.sqlite").write_bytes(b"")  # the --root layout: an inbox beside a ledger
    shutil.copy(SAMPLES / "mixed.csv", inbox / "x.csv")
    res = runner.invoke(app, ["scrub", str(inbox / "x.csv"), "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    assert [p.name for p in inbox.iterdir()] == ["x.csv"]
    adhoc = tmp_path / "outbox" / "adhoc"
    assert (adhoc / "x.exceptions.xlsx").exists() and (adhoc / "x.findings.csv").exists()
    assert f"outputs go to {adhoc}" in res.output

    for name in ("x.exceptions.xlsx", "x.findings.csv", "nightly-review-2024-06-30.xlsx"):
        shutil.copy(adhoc / "x.exceptions.xlsx", inbox / name)
    ready, skipped = scan_inbox(inbox, settle_seconds=0)
    assert [p.name for p in ready] == ["x.csv"]
    assert sorted((p.name, why) for p, why in skipped) == [
        ("nightly-review-2024-06-30.xlsx", "claimscrub output, not an export"),
        ("x.exceptions.xlsx", "claimscrub output, not an export"),
        ("x.findings.csv", "claimscrub output, not an export")]


def test_payer_edit_defects_are_flagged_by_scrub(tmp_path):
    """It flags each payer-edit defect of the hand-written sample with its rule and severity, and keeps the clean
    claims clean (the issue's acceptance file: Medicare claims dated 2025-12 and 2026-03)."""
    import pandas as pd

    res = runner.invoke(app, ["scrub", str(SAMPLES / "payer_edits.csv"), "--out", str(tmp_path), "--as-of",
                              "2026-04-15", "--config", str(SAMPLES / "claimscrub.toml")])
    assert res.exit_code == 0, res.output
    found = pd.read_csv(tmp_path / "payer_edits.findings.csv", dtype=str)
    got = set(zip(found["claim_id"], found["rule"], found["severity"], strict=True))
    want = {("A01", "MUE-001", "error"), ("A02", "PTP-001", "error"), ("A03", "PTP-001", "error"),
            ("A04", "PTP-002", "error"), ("A05", "CODE-001", "error"), ("A06", "CODE-002", "error"),
            ("A07", "CODE-003", "error"), ("A08", "CODE-004", "error"), ("A09", "HFS-024", "warning"),
            ("A10", "PTP-002", "error")}
    assert want <= got
    assert not {c for c, _, _ in got} & {"C01", "C02"}
    assert "HFS-009" not in set(found["rule"])  # A01 is the MUE error, not also the style warning


def test_reference_lists_tables_and_import_refuses_a_wrong_file(tmp_path):
    """It lists the shipped tables, and refuses to import a file that is not what its kind claims, in one line."""
    listed = runner.invoke(app, ["reference"])
    assert listed.exit_code == 0 and "ptp" in listed.output and "2026-Q2" in listed.output
    wrong = tmp_path / "MCR_MUE.csv"
    wrong.write_text("Column 1,Column 2,Modifier\n64612,64615,0\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'reference_dir = "{tmp_path / "ref"}"\n')
    res = runner.invoke(app, ["reference", "import", "mue", str(wrong), "--from", "2026-07-01", "--config", str(cfg)])
    assert res.exit_code == 2 and "MCR_MUE.csv: not an NCCI MUE table" in res.output
    good = tmp_path / "mue.csv"
    good.write_text("HCPCS/CPT Code,Practitioner Services MUE Values,MUE Adjudication Indicator\n64612,1,2\n")
    res = runner.invoke(app, ["reference", "import", "mue", str(good), "--from", "2026-07-01", "--config", str(cfg),
                              "--partial"])
    assert res.exit_code == 0 and "imported mue 2026-Q3: 1 rows, covers 2026-07-01 to 2026-09-30" in res.output
    assert "imported" in runner.invoke(app, ["reference", "--config", str(cfg)]).output


def test_reference_import_refuses_garbage_in_one_line_and_says_what_it_replaced(tmp_path):
    """A random-bytes file gets one line naming it and exit 2 (no traceback); importing a quarter again says which
    table it replaced; an HCPCS import prints both tables it gives and what it kept from the shipped ones."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'reference_dir = "{tmp_path / "ref"}"\n')
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 40)
    for kind in ("mue", "ptp", "hcpcs", "ndc", "asp"):
        res = runner.invoke(app, ["reference", "import", kind, str(garbage), "--from", "2026-07-01", "--config", str(cfg)])
        assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output  # no Python error
        assert res.output.strip() == "claimscrub: garbage.csv: not a text file or spreadsheet (binary content)"
    good = tmp_path / "mue.csv"
    good.write_text("HCPCS/CPT Code,Practitioner Services MUE Values,MUE Adjudication Indicator\n64612,1,2\n")
    args = ["reference", "import", "mue", str(good), "--from", "2026-07-01", "--config", str(cfg), "--partial"]
    assert "replaced" not in runner.invoke(app, args).output
    res = runner.invoke(app, args)
    assert res.exit_code == 0
    assert "replaced the earlier mue 2026-Q3 table (1 rows, covers 2026-07-01 to 2026-09-30, imported from mue.csv)" \
        in res.output
    hcpcs = tmp_path / "HCPC2027_CONTR_ANWEB.csv"
    hcpcs.write_text("HCPC,ADD_DT,TERM_DT\nJ0585,20000101,\nJZ,20230101,\n")
    res = runner.invoke(app, ["reference", "import", "hcpcs", str(hcpcs), "--from", "2027-01-01", "--config", str(cfg)])
    assert res.exit_code == 0 and "imported procedures 2027" in res.output and "imported modifiers 2027" in res.output
    assert "(CPT modifiers and others)" in res.output and "(CPT codes and deletions)" in res.output


@pytest.mark.e2e
def test_demo_flags_no_clean_sample_claim(tmp_path, prefect_harness):
    """It runs the demo night over the 2024 samples and scrubs the payer-edits sample ad hoc at its own as-of
    date, so no clean sample claim gets a finding (no "after the as-of date" on claims dated 2025-2026)."""
    from openpyxl import load_workbook

    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    assert "ad hoc scrub of payer_edits.csv as of 2026-04-15" in res.output
    books = [tmp_path / "demo" / "outbox" / "2024-06-30" / "nightly-review-2024-06-30.xlsx",
             tmp_path / "demo" / "adhoc" / "payer_edits.exceptions.xlsx"]
    flagged, rules = set(), set()
    for book in books:
        ws = load_workbook(book, read_only=True)["Exceptions"]
        header = [c.value for c in next(ws.iter_rows(max_row=1))]
        at, rule = header.index("Claim ID"), header.index("Rule")
        for row in ws.iter_rows(min_row=2, values_only=True):
            flagged.add(row[at])
            rules.add(row[rule])
    clean = {"CLN-001", "CLN-002", "CLN-003", "CLN-004", "CLN-005", "CLN-EVAL", "MIX-CLEAN", "MIX-EVAL", "C01", "C02"}
    assert not flagged & clean
    assert {"A01", "A02", "A05", "MIX-HFS-013"} <= flagged  # the defects are still found
    payer_edits = load_workbook(books[1], read_only=True)["Exceptions"]
    assert not any("STR-002" in (row or ()) for row in payer_edits.iter_rows(values_only=True))
