"""The unattended night: same results in any order, bounded work, one bad file costs itself alone,
and a signal stops the run cleanly. Real flow runs and real CLI subprocesses over real files."""

import asyncio
import datetime as dt
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from pipeline import isolate, nightly
from pipeline.flows import nightly_scrub_flow, run_nightly
from pipeline.ledger import Ledger
from pipeline.sample import clean_claim, write_csv, write_sample
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
AS_OF = dt.date(2024, 6, 30)
DAY = AS_OF.isoformat()


def _old(path: Path) -> None:
    past = time.time() - 3600
    os.utime(path, (past, past))


def _small_files(inbox: Path, n: int, prefix: str = "clinic") -> list[Path]:
    """n files of 20 lines (10 clean claims), each with its own patients."""
    inbox.mkdir(parents=True, exist_ok=True)
    out = []
    for f in range(n):
        lines = [line for c in range(10) for line in clean_claim(f"C{f}-{c}", f"MBR-{f:04d}{c:02d}", "2024-05-14")]
        out.append(write_csv(lines, inbox / f"{prefix}-{f:04d}.csv"))
        _old(out[-1])
    return out


async def _prefect_text(since: dt.datetime) -> str:
    """Everything Prefect stored since ``since``: flow and task runs (names, parameters, state messages),
    logs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterTimestamp,
    )

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=since)))
        tasks = await client.read_task_runs()
        logs = await client.read_logs(LogFilter(timestamp=LogFilterTimestamp(after_=since)))
        arts = await client.read_artifacts()
    parts = [f"{r.name} {r.parameters} {r.state.message if r.state else ''}" for r in runs]
    parts += [f"{t.name} {t.task_inputs} {t.state.message if t.state else ''}" for t in tasks]
    parts += [log.message for log in logs] + [f"{a.key} {a.data} {a.description}" for a in arts]
    return "\n".join(parts)


# --- 3. same results in any order ---------------------------------------------------------------

def test_same_results_in_any_order(tmp_path, prefect_harness):
    """It gives each file the same findings CSV, and the night the same review, whether the files run
    side by side, one at a time or on 2 Dask workers (three exports that share patients)."""
    pytest.importorskip("prefect_dask")
    src = tmp_path / "src"
    src.mkdir()
    for seed in (1, 2, 3):
        write_sample(2000, src / f"export-{seed}.csv", seed)
    ids = [set(pd.read_csv(p, dtype=str)["Member ID"]) for p in sorted(src.iterdir())]
    assert len(ids[0] & ids[1] & ids[2]) > 500  # the same patients in all three files

    runs = {"side-by-side": {}, "one-at-a-time": {"max_files_in_flight": 1}, "dask": {"runner": "dask"}}
    found = {}
    for label, options in runs.items():
        root = tmp_path / label
        shutil.copytree(src, root / "inbox")
        for p in (root / "inbox").iterdir():
            _old(p)
        summary = run_nightly(dask_workers=2, root=root, settle_seconds=0, as_of=AS_OF, **options)
        assert summary["status"] == "done" and [f["status"] for f in summary["files"]] == ["scrubbed"] * 3
        day = root / "outbox" / DAY
        csvs = {p.name: p.read_bytes() for p in sorted(day.glob("*.findings.csv"))}
        review = load_workbook(day / f"nightly-review-{DAY}.xlsx", read_only=True)["Exceptions"]
        found[label] = (csvs, [row for row in review.iter_rows(values_only=True)], summary["cross_file_repeats"])

    base_csvs, base_review, base_cross = found["side-by-side"]
    assert len(base_csvs) == 3 and base_cross > 0  # repeats across the files exist, found by the night pass
    for name, data in base_csvs.items():
        assert b"HFS-030" not in data, name  # no file saw another file of the same night
    hfs030 = [r for r in base_review if "HFS-030" in r]
    assert len(hfs030) == base_cross
    for label in ("one-at-a-time", "dask"):
        csvs, review, cross = found[label]
        assert csvs == base_csvs, label  # byte for byte
        assert review == base_review, label
        assert cross == base_cross


# --- 4. bounded work ----------------------------------------------------------------------------

def test_many_small_files_bounded(tmp_path, prefect_harness):
    """It scrubs 60 small files with at most 3 in flight: every file scrubbed and archived, one ledger
    row each with its archive time, one review workbook, the run closed."""
    from prefect.client.orchestration import get_client

    _small_files(tmp_path / "inbox", 60)
    started = dt.datetime.now(dt.UTC)
    summary = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF, max_files_in_flight=3)

    assert summary["status"] == "done" and summary["failed"] == 0 and summary["quarantined"] == 0
    assert [f["status"] for f in summary["files"]] == ["scrubbed"] * 60
    assert list((tmp_path / "inbox").iterdir()) == []
    assert len(list((tmp_path / "archive" / DAY).iterdir())) == 60
    files = Ledger(tmp_path / "ledger.sqlite").files()
    assert len(files) == 60 and set(files.status) == {"scrubbed"} and files.archived_at.notna().all()
    assert files.sha256.is_unique
    day = tmp_path / "outbox" / DAY
    assert len(list(day.glob("nightly-review-*.xlsx"))) == 1 and len(list(day.glob("*.findings.csv"))) == 60
    runs = Ledger(tmp_path / "ledger.sqlite").runs()
    assert list(runs.outcome) == ["ok"] and runs.ended.notna().all()

    async def task_spans():
        async with get_client() as client:
            tasks = await client.read_task_runs()
        return [(t.start_time, t.end_time) for t in tasks
                if t.name.startswith("scrub-inbox-file-") and t.start_time and t.start_time >= started]

    spans = asyncio.run(task_spans())
    assert len(spans) == 60
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    in_flight, most = 0, 0
    for _, step in edges:
        in_flight += step
        most = max(most, in_flight)
    assert most <= 3


# --- 5. one bad file never stops the night ------------------------------------------------------

PHI_NAME = "Testperson Alex MBR-424242"


def _without_read_override() -> list[str] | None:
    """A prefix that runs a command without the power to read any file whatever its mode: as root (how
    tests and CI run here), the same user without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if setpriv else None


def _cli_env(prefect_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PYTHONPATH=str(ROOT), HOME=str(prefect_home))
    return env


def test_bad_files_cost_themselves_alone_cli(tmp_path):
    """A real ``claimscrub nightly`` run (without the power to override file modes) over an inbox holding a healthy file
    beside: one it may not read, a corrupt one whose name is too long for its sidecar, a FIFO and a
    socket. The healthy file is scrubbed, the unreadable one stays with E_UNREADABLE, the long one is
    quarantined with a sidecar, the FIFO and socket are skipped; the review is written, the run closed,
    and no file name reaches Prefect's database."""
    prefix = _without_read_override()
    if prefix is None:
        pytest.skip("running as root without setpriv (util-linux): a file's mode cannot deny root a read")
    root, home = tmp_path / "night", tmp_path / "prefect"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    home.mkdir()
    healthy = write_csv(clean_claim("H1", "MBR-000123", "2024-05-14"), inbox / f"{PHI_NAME} healthy.csv")
    locked = write_csv(clean_claim("U1", "MBR-000124", "2024-05-14"), inbox / f"{PHI_NAME} locked.csv")
    long_name = f"{PHI_NAME} " + "x" * (250 - len(PHI_NAME) - 6) + ".xlsx"
    assert len(long_name.encode()) <= 255 < len((long_name + ".error.txt").encode())
    (inbox / long_name).write_bytes(b"PK\x03\x04 not a workbook")
    os.mkfifo(inbox / f"{PHI_NAME} pipe.csv")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / "sock.csv"))
    for p in (healthy, locked, inbox / long_name):
        _old(p)
    locked.chmod(0o000)  # the night's user cannot read it (root only with CAP_DAC_OVERRIDE)
    try:
        proc = subprocess.run([*prefix, sys.executable, "-m", "pipeline", "nightly", "--root", str(root),
                               "--settle-seconds", "0", "--as-of", DAY], cwd=ROOT, env=_cli_env(home),
                              capture_output=True, text=True, timeout=240)
    finally:
        sock.close()
    assert proc.returncode == 4, proc.stderr[-3000:]  # a file failed (unreadable); the others are done
    out = proc.stdout
    assert "E_UNREADABLE" in out and "E_CORRUPT_ZIP" in out and "scrubbed" in out
    assert sorted(p.name for p in inbox.iterdir()) == sorted([locked.name, f"{PHI_NAME} pipe.csv", "sock.csv"])
    assert [p.name for p in (root / "archive" / DAY).iterdir()] == [healthy.name]
    quarantined = sorted(p.name for p in (root / "quarantine").iterdir())
    assert long_name in quarantined and len(quarantined) == 2
    sidecar = next(p for p in (root / "quarantine").iterdir() if p.name.endswith(".error.txt"))
    assert len(sidecar.name.encode()) <= 255 and "E_CORRUPT_ZIP" in sidecar.read_text()
    assert (root / "outbox" / DAY / f"nightly-review-{DAY}.xlsx").exists()
    with sqlite3.connect(root / "ledger.sqlite") as con:
        statuses = dict(con.execute("SELECT reason_code, status FROM files WHERE reason_code IS NOT NULL"))
        runs = con.execute("SELECT ended, outcome FROM runs").fetchall()
    assert statuses == {"E_UNREADABLE": "failed", "E_CORRUPT_ZIP": "quarantined"}
    assert len(runs) == 1 and runs[0][0] and runs[0][1] == "failed"
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file() and ".db" in p.name)
    assert stored and b"MBR-000123" not in stored
    for needle in ("Testperson", "MBR-424242", "healthy", "locked", "xxxxxxxx"):
        assert needle.encode() not in stored, needle
    assert "Testperson" not in proc.stdout + proc.stderr


def test_vanished_and_changed_files_are_left_for_the_next_night(tmp_path, prefect_harness):
    """In a real flow run (one file at a time), a file removed after it was listed costs itself alone
    (E_VANISHED), and a file still being written with settle 0 is never scrubbed partially (E_CHANGED,
    left in the inbox); the next night scrubs all of it. No file name reaches Prefect."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_sample(20_000, inbox / f"{PHI_NAME} a-slow.csv", seed=5)
    gone = write_csv(clean_claim("G1", "MBR-000555", "2024-05-14"), inbox / f"{PHI_NAME} b-gone.csv")
    for p in inbox.iterdir():
        _old(p)
    growing = inbox / f"{PHI_NAME} c-growing.csv"
    body = (ROOT / "sample_claims" / "mixed.csv").read_text().splitlines(keepends=True)
    header, rows = body[0], body[1:]
    total = 0
    stop_writing = threading.Event()

    def writer():  # a slow copy: appends rows until told to stop
        nonlocal total
        with open(growing, "w") as fh:
            fh.write(header)
            while not stop_writing.is_set():
                for row in rows[:10]:
                    fh.write(row)
                total += 10
                fh.flush()
                time.sleep(0.02)

    def remover():  # once the first file is being scrubbed, the second (already listed) goes away
        deadline = time.monotonic() + 60
        while not isolate._LIVE and time.monotonic() < deadline:
            time.sleep(0.005)
        gone.unlink()

    started = dt.datetime.now(dt.UTC)
    threads = [threading.Thread(target=writer), threading.Thread(target=remover)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        summary = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF, max_files_in_flight=1)
    finally:
        stop_writing.set()
        for t in threads:
            t.join()
    by_code = {f["reason_code"]: f["status"] for f in summary["files"]}
    assert by_code == {"": "scrubbed", "E_VANISHED": "deferred", "E_CHANGED": "deferred"}
    assert summary["status"] == "done" and summary["failed"] == 0
    assert growing.exists() and not list((tmp_path / "outbox" / DAY).glob("*c-growing*"))
    assert (tmp_path / "outbox" / DAY / f"nightly-review-{DAY}.xlsx").exists()
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert set(ledger.files().status) == {"scrubbed", "deferred"} and ledger.runs().ended.notna().all()
    text = asyncio.run(_prefect_text(started))
    for needle in ("Testperson", "MBR-424242", "a-slow", "b-gone", "c-growing"):
        assert needle not in text, needle

    _old(growing)
    again = nightly_scrub_flow(root=tmp_path, settle_seconds=0, as_of=AS_OF)
    assert [f["status"] for f in again["files"]] == ["scrubbed"]
    files = Ledger(tmp_path / "ledger.sqlite").files()
    row = files[(files.status == "scrubbed") & files.name.str.contains("c-growing")].iloc[0]
    archived = tmp_path / "archive" / DAY / growing.name
    assert row.sha256 == nightly.inbox_sha256(archived) and row.rows == total


def test_long_names_fit_and_stay_unique(tmp_path):
    """It cuts a name too long for its sidecar or outputs to 255 bytes, keeping two such names apart."""
    a = tmp_path / ("é" * 120 + "-a.xlsx")
    b = tmp_path / ("é" * 120 + "-b.xlsx")
    sa, sb = nightly.sidecar_for(a), nightly.sidecar_for(b)
    assert sa != sb and all(len(s.name.encode()) <= 255 and s.name.endswith(".error.txt") for s in (sa, sb))
    assert nightly.sidecar_for(tmp_path / "short.xlsx").name == "short.xlsx.error.txt"
    wb, csv = nightly.output_names(tmp_path, a.name, "ab" * 32)
    assert len(wb.name.encode()) <= 255 and wb.name.endswith(".abababababab.exceptions.xlsx")
    assert csv.name.endswith(".abababababab.findings.csv")
    wb.write_text("x")  # the file system takes it


# --- 6. stopping is clean -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def big_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    write_sample(200_000, path, seed=11)
    return path


def _session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in session ``sid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[3]) != sid:
                continue
            found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_signals_stop_the_night_cleanly(tmp_path, big_csv, prefect_harness):
    """SIGTERM to the whole process group, then SIGINT to the main process alone, while a large file is
    being read: each run stops within seconds with exit 143/130, the file stays in the inbox (not
    quarantined), the runs row says interrupted and no process outlives the run; the next run scrubs
    the file once."""
    root, home = tmp_path / "night", tmp_path / "prefect"
    home.mkdir()
    (root / "inbox").mkdir(parents=True)
    target = root / "inbox" / "big.csv"
    shutil.copy(big_csv, target)
    _old(target)
    command = [sys.executable, "-m", "pipeline", "nightly", "--root", str(root), "--settle-seconds", "0",
               "--as-of", DAY]
    for signum, to_group in ((signal.SIGTERM, True), (signal.SIGINT, False)):
        log = tmp_path / f"night-{signum}.log"
        with open(log, "wb") as fh:  # a file, not a pipe: nothing but the process itself is waited for
            proc = subprocess.Popen(command, cwd=ROOT, env=_cli_env(home), start_new_session=True,
                                    stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the file is being read: a grandchild (forkserver's child)
            procs = _session_processes(proc.pid)
            if sum(1 for pid, _ in procs if pid != proc.pid and _parent(pid) not in (proc.pid, 1)):
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("the file was never read")
        time.sleep(0.3)
        sent = time.monotonic()
        os.killpg(proc.pid, signum) if to_group else os.kill(proc.pid, signum)
        proc.wait(timeout=60)
        took = time.monotonic() - sent
        output = log.read_text()
        assert proc.returncode == 128 + signum, output[-3000:]
        assert took < 10, took
        assert target.exists() and not list((root / "quarantine").iterdir()), output[-2000:]
        with sqlite3.connect(root / "ledger.sqlite") as con:
            outcome, ended = con.execute("SELECT outcome, ended FROM runs ORDER BY started DESC").fetchone()
            assert con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0
        assert outcome == "interrupted" and ended
        deadline = time.monotonic() + 10
        while (_session_processes(proc.pid) or _mentioning(str(home))) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _session_processes(proc.pid) and not _mentioning(str(home))

    done = nightly_scrub_flow(root=root, settle_seconds=0, as_of=AS_OF)  # the next night
    assert done["status"] == "done" and [f["status"] for f in done["files"]] == ["scrubbed"]
    assert list((root / "inbox").iterdir()) == []
    assert len(list((root / "outbox" / DAY).glob("big.*.findings.csv"))) == 1
    files = Ledger(root / "ledger.sqlite").files()
    assert list(files.status) == ["scrubbed"] and files.archived_at.notna().all()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_io_error_of_one_file_is_masked_and_retry_finishes_it(tmp_path):
    """An I/O error after the outputs and ledger (here the archive cannot be made) comes back without the
    file's name or folder, as an ``OSError`` the task may retry; the retry finishes the archiving."""
    from pipeline.config import ScrubConfig

    root = tmp_path / f"{PHI_NAME} root"
    paths = nightly.resolve_paths(ScrubConfig(), root)
    f = write_csv(clean_claim("A1", "MBR-000777", "2024-05-14"), paths.inbox / f"{PHI_NAME}.csv")
    sha = nightly.inbox_sha256(f)
    Ledger(paths.ledger)  # the night made it (a file's task never makes a ledger of its own)
    (paths.archive / DAY).write_text("a file where the day's archive folder should be")
    with pytest.raises(OSError) as caught:
        nightly.scrub_inbox_entry(f, sha, paths, paths.ledger, ScrubConfig(), AS_OF, DAY, "run-1")
    assert isinstance(caught.value, nightly.MaskedOSError)
    text = str(caught.value) + repr(caught.value.args)
    assert "Testperson" not in text and "MBR" not in text and str(tmp_path) not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    (paths.archive / DAY).unlink()
    again = nightly.scrub_inbox_entry(f, sha, paths, paths.ledger, ScrubConfig(), AS_OF, DAY, "run-1")
    assert again.status == "scrubbed" and (paths.archive / DAY / f.name).exists()
    files = Ledger(paths.ledger).files()
    assert list(files.status) == ["scrubbed"] and files.archived_at.notna().all()


def test_nightly_review_says_what_was_not_checked_per_file(tmp_path):
    """It lists, in the nightly review's Summary, each file's rules that could not run and the columns
    they need, and counts that file's claims as checked in part, not clean."""
    import csv

    from pipeline import scrub
    from pipeline.config import ScrubConfig

    # dated in FY2025, a year the shipped ICD-10-CM tables cover (no FY2024 table ships: CODE-001 not checked)
    full = write_csv(clean_claim("A-1", dos="2025-05-14"), tmp_path / "full.csv")
    lacking = write_csv(clean_claim("B-1", patient_id="MBR-000002", dos="2025-05-14"), tmp_path / "nomuscles.csv")
    with open(lacking, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(lacking, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[h for h in rows[0] if h != "Muscles Injected"])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != "Muscles Injected"} for r in rows)
    outcomes = []
    for path in (full, lacking):
        done = scrub.scrub_file(path, tmp_path / "out", ScrubConfig(), dt.date(2025, 6, 30), single=False)
        s = done.summary
        outcomes.append(nightly.FileOutcome(
            path.stem, path.name, "scrubbed", findings=done.findings, not_checked=s.not_checked,
            lines=pd.DataFrame(columns=["claim_id", "source_row", "charge", "service_date", "payer"]),
            issues=pd.DataFrame(columns=["file", "sheet", "row", "column", "value", "reason", "rule"]),
            counts={"rows": s.rows_read, "claims": s.claims, "g5133_claims": s.g5133_claims,
                    "claims_with_errors": s.claims_with_errors, "claims_with_warnings": s.claims_with_warnings,
                    "claims_checked_in_part": s.claims_checked_in_part, "clean_claims": s.clean_claims}))
    review = nightly.write_combined(outcomes, tmp_path / "outbox", DAY, AS_OF, "r", "v")
    rows = list(load_workbook(review)["Summary"].iter_rows(values_only=True))
    at = next(i for i, r in enumerate(rows) if r[0] == "Not checked, and why")
    listed = {r[0]: r[2] for r in rows[at + 2:] if r[0] and r[0].startswith("HFS-0")}
    assert "HFS-018" in listed and listed["HFS-018"].startswith("nomuscles.csv: ") and "Muscles" in listed["HFS-018"]
    count = {r[0]: r[3] for r in rows if r[0] in ("Checked in part", "Clean", "Total claims")}
    assert count == {"Checked in part": 1, "Clean": 1, "Total claims": 2}
