"""Real Prefect flow runs under one session harness: the nightly inbox run, its ledger, its schedule."""

import asyncio
import datetime as dt
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from openpyxl import load_workbook

from pipeline import nightly
from pipeline.config import ScrubConfig
from pipeline.flows import build_deployment, nightly_scrub_flow, run_nightly
from pipeline.ledger import SCHEMA_VERSION, Ledger
from pipeline.sample import clean_claim, write_csv
from tests.conftest import ROOT, SAMPLES, read_all

pytestmark = pytest.mark.e2e
AS_OF = dt.date(2024, 6, 30)
PHI = ("MBR-", "Testperson", "1961-04-02", "Mockford", "A-77", "mixed.csv", "clean.csv")


def _old(path):
    past = time.time() - 3600
    os.utime(path, (past, past))


def _inbox(root, names=("clean.csv", "mixed.csv", "messy.xlsx")):
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(SAMPLES / name, inbox / name)
        _old(inbox / name)
    return inbox


async def _client_read(fn):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await fn(client)


def test_nightly_inbox_run(tmp_path, prefect_harness):
    """It scrubs good files, archives a duplicate, quarantines a corrupt file and leaves lock and fresh files."""
    inbox = _inbox(tmp_path)
    shutil.copy(SAMPLES / "clean.csv", inbox / "clean-again.csv")
    _old(inbox / "clean-again.csv")
    (inbox / "broken.xlsx").write_bytes(b"PK\x03\x04garbage")
    _old(inbox / "broken.xlsx")
    (inbox / "~$mixed.xlsx").write_bytes(b"lock")
    (inbox / "arriving.csv").write_text("Claim ID,DOS\n")  # modified just now: still being copied

    s = run_nightly(root=tmp_path, settle_seconds=60, as_of=AS_OF)  # the night ends Failed (Quarantined)

    status = sorted(f["status"] for f in s["files"])
    assert status == ["duplicate", "quarantined", "scrubbed", "scrubbed", "scrubbed"]
    assert s["quarantined"] == 1 and s["skipped"] == 2
    assert sorted(p.name for p in inbox.iterdir()) == ["arriving.csv", "~$mixed.xlsx"]
    day = tmp_path / "outbox" / "2024-06-30"
    books = sorted(p.name for p in day.glob("*.exceptions.xlsx"))
    assert len(books) == 3 and all(".exceptions.xlsx" in b for b in books)
    assert (day / "nightly-review-2024-06-30.xlsx").exists()
    assert sorted(p.name for p in (tmp_path / "archive" / "2024-06-30").iterdir()) == [
        "clean-again.csv", "clean.csv", "messy.xlsx", "mixed.csv"]
    sidecar = (tmp_path / "quarantine" / "broken.xlsx.error.txt").read_text()
    assert "E_CORRUPT_ZIP" in sidecar and (tmp_path / "quarantine" / "broken.xlsx").exists()
    files = Ledger(tmp_path / "ledger.sqlite").files()
    assert sorted(files.status) == ["duplicate", "quarantined", "scrubbed", "scrubbed", "scrubbed"]
    assert files.archived_at.notna().sum() == 4

    review = load_workbook(day / "nightly-review-2024-06-30.xlsx")
    header = [c.value for c in review["Exceptions"][1]]
    assert header[0] == "Source File" and header[1] == "Exception ID"
    sources = {r[0] for r in review["Exceptions"].iter_rows(min_row=2, values_only=True)}
    assert sources == {"mixed.csv", "messy.xlsx"}

    async def artifacts_and_logs(client):
        from prefect.client.schemas.filters import LogFilter

        arts = await read_all(client.read_artifacts)
        logs = await read_all(client.read_logs, log_filter=LogFilter())
        runs = await read_all(client.read_flow_runs)
        return arts, logs, runs

    arts, logs, runs = asyncio.run(_client_read(artifacts_and_logs))
    keys = {a.key for a in arts}
    assert {"nightly-files", "nightly-rules", "nightly-summary"} <= keys
    where = f"Outputs: `{day.resolve()}` on host `{socket.gethostname()}`"  # no outbox_link configured
    assert any(where in str(a.data) for a in arts if a.key == "nightly-summary")
    text = " ".join(str(a.data) for a in arts) + " ".join(log.message for log in logs)
    text += " ".join(f"{r.name} {r.parameters}" for r in runs)
    for needle in PHI:
        assert needle not in text, needle


def test_rerun_after_kill_converges(tmp_path, prefect_harness):
    """It finishes a file killed after its outputs or after the ledger, with one output and nothing lost."""
    for stage in ("after_outputs", "after_ledger"):
        root = tmp_path / stage
        inbox = _inbox(root, ["mixed.csv"])
        paths = nightly.resolve_paths(ScrubConfig(), root)
        code = (
            "import datetime as dt, sys; from pathlib import Path; from pipeline import nightly, ingest;"
            "from pipeline.config import ScrubConfig; from pipeline.ledger import Ledger;"
            f"p = nightly.resolve_paths(ScrubConfig(), Path({str(root)!r})); f = p.inbox / 'mixed.csv';"
            "nightly.process_file(f, ingest.file_sha256(f), p, Ledger(p.ledger), ScrubConfig(),"
            " dt.date(2024, 6, 30), '2024-06-30', 'killed')"
        )
        env = dict(os.environ, **{nightly.FAULT_ENV: stage})
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT)
        assert proc.returncode == 137
        assert (inbox / "mixed.csv").exists()  # nothing lost
        s = nightly_scrub_flow(root=root, settle_seconds=0, as_of=AS_OF)
        assert [f["status"] for f in s["files"]] == ["scrubbed"]
        day = paths.outbox / "2024-06-30"
        assert len(list(day.glob("mixed.*.exceptions.xlsx"))) == 1
        assert len(list(day.glob("mixed.*.findings.csv"))) == 1
        assert not any(p.name.startswith(".~") for p in day.iterdir())  # no temp files left
        assert [p.name for p in (paths.archive / "2024-06-30").iterdir()] == ["mixed.csv"]
        files = Ledger(paths.ledger).files()
        assert list(files.status) == ["scrubbed"] and files.archived_at.notna().all()


def test_second_overlapping_run_exits_cleanly(tmp_path, prefect_harness):
    """It leaves the inbox alone while another nightly run holds the lock."""
    _inbox(tmp_path, ["clean.csv"])
    paths = nightly.resolve_paths(ScrubConfig(), tmp_path)
    with nightly.RunLock(paths.lock):
        s = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF)
    assert s["status"] == "locked"
    assert (tmp_path / "inbox" / "clean.csv").exists()
    assert nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF)["status"] == "done"


def test_repeat_injection_flagged_across_nights(tmp_path, prefect_harness):
    """It flags a patient injected 40 days after a session recorded in an earlier night's ledger."""
    inbox = tmp_path / "inbox"
    write_csv(clean_claim("N1", "MBR-777", "2024-04-01"), inbox / "week1.csv")
    _old(inbox / "week1.csv")
    nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=dt.date(2024, 4, 2))
    write_csv(clean_claim("N2", "MBR-777", "2024-05-11"), inbox / "week7.csv")
    _old(inbox / "week7.csv")
    s = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=dt.date(2024, 5, 12))
    assert s["by_rule"] == {"HFS-030": 1}
    with sqlite3.connect(tmp_path / "ledger.sqlite") as con:
        keys = [r[0] for r in con.execute("SELECT patient_key FROM injections")]
    assert len(keys) == 2 and all("MBR" not in k for k in keys)


def test_repeat_injection_flagged_across_files_of_one_night(tmp_path, prefect_harness):
    """It flags a session 40 days after one in another file of the same night, once, in the review workbook."""
    inbox = tmp_path / "inbox"
    write_csv(clean_claim("A1", "MBR-888", "2024-04-01"), inbox / "clinic-a.csv")
    write_csv(clean_claim("B1", "MBR-888", "2024-05-11") + clean_claim("B2", "MBR-999", "2024-05-11"),
              inbox / "clinic-b.csv")
    for p in inbox.iterdir():
        _old(p)
    s = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=dt.date(2024, 5, 12))
    assert s["by_rule"].get("HFS-030") == 1
    review = load_workbook(tmp_path / "outbox" / "2024-05-12" / "nightly-review-2024-05-12.xlsx")["Exceptions"]
    rows = [r for r in review.iter_rows(min_row=2, values_only=True) if r[8] == "HFS-030"]
    assert len(rows) == 1 and rows[0][0] == "clinic-b.csv" and rows[0][2] == "B1"
    assert "40 days after the session on 2024-04-01" in rows[0][12]


def test_serve_registers_the_cron_deployment(prefect_harness):
    """It registers the nightly deployment with the configured cron schedule and time zone."""
    cfg = ScrubConfig(schedule="30 1 * * *", timezone="America/Chicago")
    dep_id = build_deployment(cfg).apply()

    async def read(client):
        return await client.read_deployment(dep_id)

    dep = asyncio.run(_client_read(read))
    (sched,) = dep.schedules
    assert dep.name == "nightly-serve" and sched.schedule.cron == "30 1 * * *"
    assert sched.schedule.timezone == "America/Chicago"
    assert build_deployment(ScrubConfig()).schedules[0].schedule.cron == "0 2 * * *"


def test_ledger_migrates_an_old_schema(tmp_path):
    """It upgrades a version-1 ledger in place, keeping its rows."""
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for stmt in __import__("pipeline.ledger", fromlist=["migration_statements"]).migration_statements(1, "sqlite"):
        con.execute(stmt)
    con.execute("INSERT INTO meta VALUES ('salt', 'abc')")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    ledger = Ledger(path)
    assert ledger.version == SCHEMA_VERSION and ledger.salt == "abc"
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cross_file_repeats_unit():
    """It reports the later session of a cross-file pair once, and never one its own file already flagged."""
    import pandas as pd

    from pipeline.nightly import FileOutcome, cross_file_repeats
    from schemas import columns as C

    def outcome(name, claim, date, flagged=False):
        sessions = pd.DataFrame({"patient_key": ["k1"], "date": [pd.Timestamp(date)], "in_scope": [True],
                                 "interval": [84.0], C.CLAIM_ID: [claim], C.LINE_NO: [1], C.SOURCE_ROW: [2],
                                 C.PATIENT_ID: ["P"], C.SERVICE_DATE: [pd.Timestamp(date)], C.PAYER: ["Aetna"],
                                 C.CHARGE: [1.0]})
        findings = pd.DataFrame({"rule": ["HFS-030"] if flagged else [], C.CLAIM_ID: [claim] if flagged else []})
        return FileOutcome("id", name, "scrubbed", findings=findings, sessions=sessions)

    history = pd.DataFrame({"patient_key": [], "service_date": pd.to_datetime([])})
    got = cross_file_repeats([outcome("a.csv", "A1", "2024-04-01"), outcome("b.csv", "B1", "2024-05-11")],
                             history, ScrubConfig())
    assert got[["source_file", C.CLAIM_ID, "rule", "severity"]].values.tolist() == [["b.csv", "B1", "HFS-030",
                                                                                      "warning"]]
    assert cross_file_repeats([outcome("a.csv", "A1", "2024-04-01"),
                               outcome("b.csv", "B1", "2024-05-11", flagged=True)], history, ScrubConfig()).empty
    assert cross_file_repeats([outcome("a.csv", "A1", "2024-04-01"), outcome("b.csv", "B1", "2024-08-01")],
                              history, ScrubConfig()).empty
    assert cross_file_repeats([outcome("a.csv", "A1", "2024-04-01"), outcome("b.csv", "B1", "2024-05-11")],
                              history, ScrubConfig(disabled=["HFS-030"])).empty


def test_history_read_for_a_file_is_its_patients_in_the_dates_that_matter(tmp_path):
    """It reads only the file's 64612 patients' sessions from a year before its first date on, and finds the same repeats."""
    import pandas as pd

    from pipeline.derive import patient_key
    from pipeline.validate import find_violations
    from tests.conftest import lines_frame

    book = Ledger(tmp_path / "ledger.sqlite")
    salt = book.salt
    mine, other = patient_key("MBR-000001", salt), patient_key("MBR-424242", salt)
    sessions = [(mine, "2023-01-01"), (mine, "2023-05-14"), (mine, "2023-05-13"), (mine, "2024-04-04"),
                (mine, "2024-05-15"), (mine, "2024-06-01"), (other, "2024-04-04")]
    book.record_scrubbed("sha-earlier", "earlier.csv", 1, "run-earlier", pd.DataFrame(
        {"patient_key": [k for k, _ in sessions], "service_date": [d for _, d in sessions], "code": "64612",
         "sides": "both"}))
    lines = lines_frame(clean_claim(dos="2024-05-14") + clean_claim("CLM-2", "MBR-000002", "2024-05-20"))

    scope = nightly.history_scope(lines, salt)
    assert scope["since"] == "2023-05-14" and scope["until"] == "2024-05-20"  # 366 days before the first date
    assert set(scope["keys"]) == {mine, patient_key("MBR-000002", salt)}
    scoped = book.injection_history(**scope)
    assert sorted(zip(scoped["patient_key"], scoped["service_date"].dt.strftime("%Y-%m-%d"), strict=True)) == [
        (mine, "2023-05-14"), (mine, "2024-04-04"), (mine, "2024-05-15")]
    assert len(book.injection_history()) == len(sessions)
    assert book.injection_history(exclude_run="run-earlier", **scope).empty

    full = find_violations(lines, AS_OF, history=book.injection_history(), salt=salt).findings
    part = find_violations(lines, AS_OF, history=scoped, salt=salt).findings
    assert "HFS-030" in set(full["rule"])
    pd.testing.assert_frame_equal(full, part)
    assert nightly.history_scope(lines.iloc[0:0], salt) == {"keys": []}


def test_session_keys_cover_every_session_of_the_file():
    """It hashes each patient once per file: every session's key is among them and the sessions are unchanged."""
    import pandas as pd

    from pipeline.validate import find_violations
    from tests.conftest import lines_frame

    lines = lines_frame(clean_claim() + clean_claim("CLM-2", "MBR-000002", "2024-05-20")
                        + [dict(x, **{"claim_id": "CLM-3", "patient_id": "MBR-000003"})
                           for x in clean_claim() if x["procedure_code"] != "64612"])
    lines["source_row"] = range(2, len(lines) + 2)
    claims = find_violations(lines, AS_OF, salt="s").claims
    keys, window = nightly.session_keys(lines, "s")
    assert set(keys) == {"MBR-000001", "MBR-000002"} and window == {"since": "2023-05-14", "until": "2024-05-20"}
    plain = nightly.night_sessions(claims, lines, "s")
    pd.testing.assert_frame_equal(nightly.night_sessions(claims, lines, "s", keys), plain)
    assert set(plain["patient_key"]) <= set(keys.values())


def _latest(arts, key):
    mine = [a for a in arts if a.key == key]
    assert mine, key
    return str(max(mine, key=lambda a: a.created).data)


def _sections(workbook) -> dict[str, list[tuple]]:
    """The Summary sheet's sections: title -> its rows (header included)."""
    out, title = {}, None
    rows = list(load_workbook(workbook)["Summary"].iter_rows(values_only=True))
    for i, row in enumerate(rows):
        if i and row[0] and not any(row[1:]) and (i + 1 < len(rows)) and (i == 0 or not any(rows[i - 1])):
            title = row[0]
            out[title] = []
        elif title and any(row):
            out[title].append(row)
    return out


def test_nightly_names_the_tables_used_and_the_coverage_warnings(tmp_path, prefect_harness, capsys):
    """It gives the nightly review's Summary the reference tables the night used (lines and files each), each
    file's coverage warnings, the rules not checked on part of the claims (never "All rules were checked" beside
    claims checked in part) and the payer profiles matched; the Prefect artifacts name the table versions and the
    warnings (no file name, no claim data); the console says the warnings."""
    from pipeline.cli import _print_night
    from schemas import columns as C

    inbox = tmp_path / "inbox"
    medicare = [dict(line, **{C.DOC_SEVERITY_SCALE: "N"})
                for line in clean_claim("N1", "MBR-000101", "2026-03-10", payer="Medicare")
                + clean_claim("N2", "MBR-000102", "2026-03-11", payer="UHC Medicare Advantage")]
    _old(write_csv(medicare, inbox / "night-a.csv"))
    _old(write_csv(clean_claim("N3", "MBR-000103", "2026-03-20", payer="Acme Health"), inbox / "night-b.csv"))
    s = run_nightly(root=tmp_path, settle_seconds=0, as_of=dt.date(2026, 4, 15))
    assert [f["status"] for f in s["files"]] == ["scrubbed", "scrubbed"]

    parts = _sections(s["review_workbook"])
    tables = {(r[0], r[1].split(" ")[0]): r for r in parts["Reference tables used"] if r[0] != "Warning"}
    assert tables[("mue", "2026-Q2")][1] == "2026-Q2 (shipped; 2026-04-01 to 2026-06-30; in 2 file(s))"
    assert tables[("mue", "2026-Q2")][3] == 6 and tables[("icd10cm", "FY2026")][1].endswith("; in 2 file(s))")
    warnings = [r[1] for r in parts["Reference tables used"] if r[0] == "Warning"]
    assert "night-a.csv: 4 lines are dated outside the mue tables' coverage (before or between them): checked " \
           "against the nearest table" in warnings
    assert any(w.startswith("HFS-033 not checked on part of the night's claims: night-a.csv: not checked on 2 ")
               for w in warnings)
    assert ("UHC Medicare Advantage", "Medicare Advantage", None, None) in parts["Payer profiles matched"]
    assert ("Acme Health", "none matched: default profile", None, None) in parts["Payer profiles matched"]
    not_checked = parts["Not checked, and why"]
    assert not any(r[0] == "All rules were checked." for r in not_checked)
    assert any(r[0] == "HFS-033" for r in not_checked)
    assert any(r[0] == "Checked in part" and r[3] == 2 for r in parts["Claims"])

    async def artifacts(client):
        return await read_all(client.read_artifacts)

    arts = asyncio.run(_client_read(artifacts))
    versions, coverage = _latest(arts, "nightly-reference-tables"), _latest(arts, "nightly-coverage")
    assert "2026-Q2" in versions and "FY2026" in versions
    assert "4 lines are dated outside the mue tables' coverage" in coverage and "HFS-033" in coverage
    for text in (versions, coverage):
        assert "night-a" not in text and "night-b" not in text and "MBR-" not in text and "Testperson" not in text

    capsys.readouterr()
    _print_night(s)
    said = capsys.readouterr().out
    assert "reference tables used: mue 2026-Q2, ptp 2026-Q2" in said
    assert "reference: 6 lines in 2 file(s) are dated outside the mue tables' coverage" in said
    assert "not checked in part: HFS-033" in said and "night-a" not in said


def test_ad_hoc_scrub_flow_names_the_tables_used(tmp_path, prefect_harness):
    """It records, with the ad hoc scrub-file flow run, the table versions used and the coverage warnings."""
    from pipeline.flows import register_job, scrub_file_flow

    src = write_csv(clean_claim("H1", "MBR-000201", "2026-03-10"), tmp_path / "adhoc-x.csv")
    fid = register_job(src, tmp_path / "x.exceptions.xlsx", tmp_path / "x.findings.csv")
    scrub_file_flow(file_id=fid, as_of=dt.date(2026, 4, 15), run_id="adhoc")

    async def artifacts(client):
        return await read_all(client.read_artifacts)

    arts = asyncio.run(_client_read(artifacts))
    versions, coverage = _latest(arts, "scrub-reference-tables"), _latest(arts, "scrub-coverage")
    assert "2026-Q2" in versions and "ptp" in versions
    assert "2 lines are dated outside the ptp tables' coverage" in coverage
    assert "adhoc-x" not in versions + coverage and "MBR-" not in versions + coverage
