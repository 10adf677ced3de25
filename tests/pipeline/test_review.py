"""The reviewer round-trip: dispositions read back, carried forward, kept in the ledger; open workbooks left alone."""

import asyncio
import datetime as dt
import shutil
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from pipeline import review
from pipeline.cli import app
from pipeline.config import load_config
from pipeline.ledger import Ledger
from pipeline.scrub import scrub_file
from tests.conftest import AS_OF, SAMPLES, lines_frame, read_all

SOFFICE = shutil.which("soffice")
needs_libreoffice = pytest.mark.skipif(
    SOFFICE is None, reason="LibreOffice (soffice) is not installed: the LibreOffice round-trip test is SKIPPED "
                            "(.ci/run installs libreoffice-calc-nogui)")
runner = CliRunner()
CONFIG = load_config(SAMPLES / "claimscrub.toml")


def _scrub(out: Path):
    return scrub_file(SAMPLES / "mixed.csv", out, CONFIG, AS_OF, run_id="review-test")


def _rows(path: Path) -> dict[str, dict]:
    """Exceptions rows by Exception ID, as {header: value} (columns found by header, as claimscrub does)."""
    ws = load_workbook(path, read_only=True)["Exceptions"]
    rows = list(ws.iter_rows(values_only=True))
    head = list(rows[0])
    return {r[head.index("Exception ID")]: dict(zip(head, r, strict=False)) for r in rows[1:]}


def _edit(path: Path, target: Path, edits: dict[str, tuple]) -> None:
    """A reviewer's edits (Exception ID -> (status, reviewer, notes)) written into a copy at ``target``."""
    wb = load_workbook(path)
    ws = wb["Exceptions"]
    head = [c.value for c in ws[1]]
    col = {h: head.index(h) + 1 for h in ("Exception ID", "Status", "Reviewer", "Notes")}
    for row in range(2, ws.max_row + 1):
        eid = ws.cell(row, col["Exception ID"]).value
        if eid in edits:
            for h, v in zip(("Status", "Reviewer", "Notes"), edits[eid], strict=True):
                ws.cell(row, col[h]).value = v
    target.parent.mkdir(parents=True, exist_ok=True)
    wb.save(target)


def _libreoffice_save(path: Path, profile: Path) -> Path:
    """Open ``path`` in LibreOffice Calc (headless) and save it as xlsx: the file is the one LibreOffice wrote."""
    out = path.parent / "lo-saved"
    subprocess.run([SOFFICE, "--headless", "--norestore", f"-env:UserInstallation=file://{profile}",
                    "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(out), str(path)],
                   check=True, capture_output=True, timeout=180)
    return out / path.name


def _pick(rows: dict, rule: str) -> str:
    return next(eid for eid, r in rows.items() if r["Rule"] == rule and r["Claim ID"])


def test_carry_forward_keeps_not_an_issue_and_reopens_fixed():
    """It keeps "Not an issue" while the claim is unchanged, re-opens it when the claim changed, re-opens a
    "Fixed" that came back saying so, and carries other statuses, reviewers and notes as they are."""
    prior = pd.DataFrame({
        "exception_id": ["A", "B", "C", "D"], "status": ["Not an issue", "Not an issue", "Fixed", "Appealed"],
        "reviewer": ["Ann", "Ann", "Bob", "Cy"], "notes": ["payer ok", "", "rebilled", ""],
        "claim_hash": ["h1", "h2", "h3", "h4"], "since": ["2024-07-01"] * 4})
    got = review.carry_forward(["A", "B", "C", "D", "E"], ["h1", "h2-changed", "h3", "h4", "h5"], prior,
                               dt.date(2024, 7, 9))
    assert got.status == ["Not an issue", "Re-opened", "Re-opened", "Appealed", "Open"]
    assert got.reviewer == ["Ann", "Ann", "Bob", "Cy", ""]
    assert got.notes[0] == "payer ok" and got.notes[3] == "" and got.notes[4] == ""
    assert got.notes[1].startswith("re-opened 2024-07-09: was Not an issue on 2024-07-01; the claim changed")
    assert got.notes[2] == "re-opened 2024-07-09: was Fixed on 2024-07-01\nrebilled"
    assert got.counts == {"carried": 4, "reopened": 2, "not_an_issue": 1}


def test_claim_hashes_follow_content_not_position():
    """It gives a claim the same hash when its lines only moved in the file, another when a line changed."""
    base = [{"claim_id": "C1", "line_no": 1, "source_row": 2, "procedure_code": "64612", "units": 1},
            {"claim_id": "C1", "line_no": 2, "source_row": 3, "procedure_code": "J0585", "units": 100},
            {"claim_id": "C2", "line_no": 1, "source_row": 4, "procedure_code": "64612", "units": 1}]
    moved = [dict(r, source_row=r["source_row"] + 10) for r in reversed(base)]
    changed = [dict(r, units=110) if r["procedure_code"] == "J0585" else r for r in base]
    h, m, c = (review.claim_hashes(lines_frame(x)) for x in (base, moved, changed))
    assert h["C1"] == m["C1"] and h["C2"] == m["C2"]
    assert h["C1"] != c["C1"] and h["C2"] == c["C2"]


def test_status_list_refuses_other_values(tmp_path):
    """It puts a stop-style list validation with an error message on the whole Status column."""
    wb = load_workbook(_scrub(tmp_path).workbook)
    ws = wb["Exceptions"]
    (dv,) = ws.data_validations.dataValidation
    head = [c.value for c in ws[1]]
    letter = ws.cell(1, head.index("Status") + 1).column_letter
    assert dv.type == "list" and dv.formula1 == '"' + ",".join(review.STATUSES) + '"'
    assert dv.showErrorMessage and dv.errorStyle == "stop" and dv.error
    assert str(dv.sqref) == f"{letter}2:{letter}1048576"


@pytest.mark.parametrize("lock", [".~lock.mixed.exceptions.xlsx#", "~$mixed.exceptions.xlsx"])
def test_open_workbook_is_never_replaced(tmp_path, lock):
    """It refuses to write over a workbook LibreOffice or Excel has open (exit 2, one line naming it), and
    the reviewer's workbook is left byte for byte."""
    first = _scrub(tmp_path).workbook
    rows = _rows(first)
    _edit(first, first, {_pick(rows, "HFS-013"): ("Not an issue", "Ann Reviewer", "payer ok")})
    before = first.read_bytes()
    (tmp_path / lock).write_text("locked")
    with pytest.raises(review.WorkbookOpen):
        _scrub(tmp_path)
    res = runner.invoke(app, ["scrub", str(SAMPLES / "mixed.csv"), "--out", str(tmp_path), "--as-of", "2024-06-30"])
    assert res.exit_code == 2
    line = next(x for x in res.output.splitlines() if "open in a spreadsheet app" in x)
    assert str(first) in line and lock in line and "nothing was written" in line
    assert first.read_bytes() == before
    assert not list(tmp_path.glob("*.previous-*"))  # nothing was even copied
    (tmp_path / lock).unlink()
    assert _rows(_scrub(tmp_path).workbook)[_pick(rows, "HFS-013")]["Status"] == "Not an issue"


def test_previous_versions_kept_beside_and_bounded(tmp_path):
    """It keeps the replaced workbook beside the new one (still named as claimscrub's own output), at most
    three of them, the newest holding the reviewer's last edits."""
    wb = _scrub(tmp_path).workbook
    eid = _pick(_rows(wb), "HFS-013")
    for i in range(5):
        _edit(wb, wb, {eid: ("Appealed", "Ann Reviewer", f"round {i}")})
        _scrub(tmp_path)
    kept = sorted(tmp_path.glob("mixed.previous-*.exceptions.xlsx"))
    assert len(kept) == review.PREVIOUS_KEPT
    assert _rows(kept[-1])[eid]["Notes"] == "round 4"
    assert _rows(wb)[eid]["Notes"] == "round 4" and _rows(wb)[eid]["Status"] == "Appealed"
    from pipeline.scrub import is_own_output

    assert all(is_own_output(p.name) for p in kept)


def test_fixed_that_comes_back_after_a_run_without_it_is_reopened(tmp_path):
    """It keeps the disposition of an exception a run did not find (hidden Review State sheet), so a "Fixed"
    that comes back in a later export is re-opened, saying so."""
    src, out = tmp_path / "claims.csv", tmp_path / "out"
    full = (SAMPLES / "mixed.csv").read_text()
    src.write_text(full)
    run = lambda: scrub_file(src, out, CONFIG, AS_OF, run_id="t").workbook  # noqa: E731
    wb = run()
    rows = _rows(wb)
    fixed = _pick(rows, "HFS-001")
    _edit(wb, wb, {fixed: ("Fixed", "Bob", "rebilled")})
    claim = rows[fixed]["Claim ID"]
    src.write_text("".join(x for x in full.splitlines(keepends=True) if claim not in x))  # fixed at the source
    assert fixed not in _rows(run())
    src.write_text(full)  # and back again in a later export
    got = _rows(run())[fixed]
    assert got["Status"] == "Re-opened" and got["Reviewer"] == "Bob"
    assert "was Fixed on " in got["Notes"] and got["Notes"].endswith("rebilled")


@needs_libreoffice
def test_libreoffice_saved_review_survives_three_reruns(tmp_path):
    """A reviewer's workbook edited and saved by LibreOffice keeps its dispositions over three re-runs:
    "Not an issue" stays (counted as such), "Fixed" comes back re-opened saying so, the rest is carried;
    LibreOffice keeps the Status list's stop validation."""
    out = tmp_path / "out"
    wb = _scrub(out).workbook
    rows = _rows(wb)
    nai, fixed, appealed = _pick(rows, "HFS-013"), _pick(rows, "HFS-001"), _pick(rows, "HFS-002")
    _edit(wb, tmp_path / "edit" / wb.name, {nai: ("Not an issue", "Ann Reviewer", "payer confirmed by phone"),
                                           fixed: ("Fixed", "Bob", "rebilled"), appealed: ("Appealed", "Cy", None)})
    saved = _libreoffice_save(tmp_path / "edit" / wb.name, tmp_path / "profile")
    with zipfile.ZipFile(saved) as z:  # it is LibreOffice's file, not openpyxl's
        assert "LibreOffice" in z.read("docProps/app.xml").decode()
    shutil.copy(saved, wb)
    for run in range(3):
        outcome = _scrub(out)
        got = _rows(outcome.workbook)
        assert (got[nai]["Status"], got[nai]["Reviewer"], got[nai]["Notes"]) == (
            "Not an issue", "Ann Reviewer", "payer confirmed by phone"), run
        assert got[fixed]["Status"] == "Re-opened" and got[fixed]["Reviewer"] == "Bob"
        assert got[fixed]["Notes"].startswith("re-opened ") and "was Fixed on " in got[fixed]["Notes"]
        assert got[fixed]["Notes"].endswith("rebilled")
        assert (got[appealed]["Status"], got[appealed]["Reviewer"]) == ("Appealed", "Cy")
        assert outcome.summary.by_status["Not an issue"] == 1 and outcome.summary.by_status["Re-opened"] == 1
        summary = {r[0]: r[3] for r in load_workbook(outcome.workbook)["Summary"].iter_rows(values_only=True)
                   if r and len(r) > 3}
        assert summary["Not an issue"] == 1 and summary["Open"] == len(got) - 3
    again = _libreoffice_save(wb, tmp_path / "profile")  # the Status list after LibreOffice saved it
    (dv,) = load_workbook(again)["Exceptions"].data_validations.dataValidation
    assert dv.type == "list" and dv.errorStyle in ("stop", None) and dv.showErrorMessage  # stop is the default
    assert all(s in dv.formula1 for s in review.STATUSES)


def _ledger_with_night(tmp_path) -> Ledger:
    book = Ledger(tmp_path / "ledger.sqlite")
    return book


def test_review_import_records_history(tmp_path):
    """It loads a reviewed workbook's dispositions into the ledger, one history row per change, with who
    and when; importing the same workbook again records nothing new."""
    wb = _scrub(tmp_path).workbook
    eid = _pick(_rows(wb), "HFS-013")
    book = _ledger_with_night(tmp_path)
    _edit(wb, wb, {eid: ("Appealed", "Ann Reviewer", "sent to payer")})
    res = runner.invoke(app, ["review", "import", str(wb), "--ledger", str(book.path)])
    assert res.exit_code == 0, res.output
    assert "1 change(s) recorded" in res.output and "Ann Reviewer" not in res.output
    assert runner.invoke(app, ["review", "import", str(wb), "--ledger", str(book.path)]).output.count(
        "0 change(s) recorded") == 1
    _edit(wb, wb, {eid: ("Not an issue", "Bob", "payer said fine")})
    review.import_workbook(wb, book)
    history = book.disposition_history(eid)
    assert history[["status", "reviewer", "notes"]].values.tolist() == [
        ["Appealed", "Ann Reviewer", "sent to payer"], ["Not an issue", "Bob", "payer said fine"]]
    assert history["changed_at"].str.match(r"\d{4}-\d\d-\d\dT").all() and (history["source"] == "import").all()
    assert len(history["claim_hash"].iat[1]) == 16
    assert book.dispositions([eid])["status"].tolist() == ["Not an issue"]
    check = runner.invoke(app, ["ledger", "check", "--ledger", str(book.path)])
    assert check.exit_code == 0 and "disposition changes: 2 on 1 exception(s)" in check.output


def test_review_import_bad_inputs(tmp_path):
    """It refuses, in one line each and recording nothing: a file that is no workbook, a workbook without
    an Exceptions sheet, and Status values outside the list (named by row)."""
    book = _ledger_with_night(tmp_path)
    notes = tmp_path / "notes.xlsx"
    notes.write_text("not a workbook")
    bare = tmp_path / "bare.xlsx"
    Workbook().save(bare)
    wb = _scrub(tmp_path).workbook
    rows = _rows(wb)
    ids = list(rows)
    _edit(wb, wb, {ids[0]: ("Done", "Ann", None), ids[2]: ("not an issue", "Bob", None)})
    for path, want in ((notes, "not an .xlsx workbook"), (bare, "no Exceptions sheet"),
                       (wb, "sheet Exceptions row 2: unknown status 'Done'")):
        res = runner.invoke(app, ["review", "import", str(path), "--ledger", str(book.path)])
        assert res.exit_code == 2, res.output
        assert want in res.output and str(path) in res.output and "Traceback" not in res.output
    assert "row 4" not in res.output  # a status in another case is the list's value
    with sqlite3.connect(book.path) as con:
        assert con.execute("SELECT COUNT(*) FROM dispositions").fetchone()[0] == 0
    res = runner.invoke(app, ["review", "import", str(wb), "--ledger", str(tmp_path / "nowhere.sqlite")])
    assert res.exit_code == 2 and "none there" in res.output


def test_nightly_keeps_dispositions_and_a_resent_duplicate_keeps_open_exceptions(tmp_path, prefect_harness):
    """The nightly carries the ledger's dispositions into its review workbook, takes what reviewers changed
    in the last review workbook, and a re-sent unchanged file keeps its still-open exceptions in the night's
    review (closed ones are not listed again); reviewer text never reaches the night's summary."""
    from pipeline.flows import nightly_scrub_flow
    from tests.pipeline.test_flows import _client_read, _inbox

    _inbox(tmp_path, ["mixed.csv"])
    first = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF)
    review1 = Path(first["review_workbook"])
    rows = _rows(review1)
    nai, fixed, appealed = _pick(rows, "HFS-013"), _pick(rows, "HFS-001"), _pick(rows, "HFS-002")
    _edit(review1, review1, {nai: ("Not an issue", "Ann Reviewer", "payer ok"), fixed: ("Fixed", "Bob", None),
                             appealed: ("Appealed", "Cy Reviewer-Three", "sent to payer 7731")})
    _inbox(tmp_path, ["mixed.csv"])  # the same bytes again the next night
    second = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF + dt.timedelta(days=1))
    assert [f["status"] for f in second["files"]] == ["duplicate"]
    # its Summary adds up: the re-sent file's claims are counted (they were 0 beside its listed exceptions)
    summary = {r[0]: r[3] for r in load_workbook(second["review_workbook"])["Summary"].iter_rows(values_only=True)
               if r[0] in ("With errors", "With warnings only", "Checked in part", "Clean", "Total claims")}
    assert summary["Total claims"] == first["files"][0]["claims"] > 0
    assert summary["Total claims"] == sum(v for k, v in summary.items() if k != "Total claims")
    got = _rows(Path(second["review_workbook"]))
    assert nai not in got and fixed not in got
    assert (got[appealed]["Status"], got[appealed]["Reviewer"], got[appealed]["Notes"]) == (
        "Appealed", "Cy Reviewer-Three", "sent to payer 7731")
    assert len(got) == len(rows) - 2 and {r["Status"] for r in got.values()} == {"Open", "Appealed"}
    book = Ledger(tmp_path / "ledger.sqlite")
    assert book.dispositions([nai, fixed, appealed]).set_index("exception_id")["status"].to_dict() == {
        nai: "Not an issue", fixed: "Fixed", appealed: "Appealed"}
    assert set(book.disposition_history(nai)["source"]) == {"nightly-review"}
    assert "Ann Reviewer" not in repr(second) and "payer ok" not in repr(second)
    # a new export holding the same claims (other bytes): "Fixed" came back, so it is re-opened and recorded
    inbox = tmp_path / "inbox"
    (inbox / "mixed-v2.csv").write_text((SAMPLES / "mixed.csv").read_text() + "\n")
    third = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF + dt.timedelta(days=2))
    got = _rows(Path(third["review_workbook"]))
    assert got[nai]["Status"] == "Not an issue" and got[fixed]["Status"] == "Re-opened"
    assert "was Fixed on" in got[fixed]["Notes"]
    assert book.disposition_history(fixed)[["status", "source"]].values.tolist() == [
        ["Fixed", "nightly-review"], ["Re-opened", "nightly"]]

    async def artifacts_and_logs(client):
        from prefect.client.schemas.filters import LogFilter

        return await read_all(client.read_artifacts), await read_all(client.read_logs, log_filter=LogFilter())

    arts, logs = asyncio.run(_client_read(artifacts_and_logs))
    text = " ".join(str(a.data) for a in arts) + " ".join(log.message for log in logs)
    assert "dispositions: 3 change(s) taken from the last review workbook" in text  # this test's nights are here
    for needle in ("Ann Reviewer", "payer ok", "Cy Reviewer-Three", "sent to payer 7731"):
        assert needle not in text, needle


def test_nightly_leaves_open_workbooks_alone(tmp_path):
    """In the nightly run, a file whose workbook is open fails with E_OUTPUT_OPEN and stays in the inbox,
    the workbook untouched; an open review workbook is left alone and the night's is written beside it."""
    from pipeline import nightly
    from pipeline.config import ScrubConfig
    from pipeline.ingest import file_sha256

    paths = nightly.resolve_paths(ScrubConfig(), tmp_path)
    src = paths.inbox / "mixed.csv"
    shutil.copy(SAMPLES / "mixed.csv", src)
    sha = file_sha256(src)
    workbook, _ = nightly.output_names(paths.outbox / "d", src.name, sha)
    workbook.parent.mkdir(parents=True)
    workbook.write_bytes(b"the reviewer's copy")
    lock = workbook.with_name(f".~lock.{workbook.name}#")
    lock.write_text("locked")
    book = Ledger(paths.ledger)
    out = nightly.process_file(src, sha, paths, book, ScrubConfig(), AS_OF, "d", "r1", isolate=False)
    assert (out.status, out.reason_code) == ("failed", "E_OUTPUT_OPEN") and src.exists()
    assert workbook.read_bytes() == b"the reviewer's copy"
    lock.unlink()
    out = nightly.process_file(src, sha, paths, book, ScrubConfig(), AS_OF, "d", "r2", isolate=False)
    assert out.status == "scrubbed"
    review_wb = nightly.write_combined([out], paths.outbox / "d", "d", AS_OF, "r2", "test", ledger=book)
    before = review_wb.read_bytes()
    (review_wb.parent / f"~${review_wb.name}").write_text("excel")
    beside = nightly.write_combined([out], paths.outbox / "d", "d", AS_OF, "r2", "test", ledger=book)
    assert beside != review_wb and beside.name.startswith("nightly-review-d.") and review_wb.read_bytes() == before
    assert len(_rows(beside)) == len(_rows(review_wb))
