"""The ledger is never silently replaced (issue 17, point 7): refusals, backups, restore, archive reconciling.

Real SQLite files truncated, overwritten or put on a read-only or full tmpfs by the test, real
``claimscrub`` subprocesses and real nightly flow runs.
"""

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline import ingest, ledgercheck, nightly
from pipeline.config import ScrubConfig
from pipeline.ledger import SCHEMA_VERSION, Ledger, LedgerUnusable
from tests.conftest import ROOT, SAMPLES

AS_OF = dt.date(2024, 6, 30)


def _old(path: Path) -> None:
    past = time.time() - 3600
    os.utime(path, (past, past))


def _drop(root: Path, name: str = "clean.csv", as_name: str | None = None) -> Path:
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / (as_name or name)
    shutil.copy(SAMPLES / name, target)
    _old(target)
    return target


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def _ledger_with_rows(path: Path, n: int = 200) -> Ledger:
    book = Ledger(path)
    for i in range(n):
        book.record_file(f"{i:064x}", f"export-{i}.csv", 100 + i, "scrubbed", "r1")
    return book


def _archived(root: Path, name: str = "old.csv") -> Path:
    day = root / "archive" / "2024-06-29"
    day.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "mixed.csv", day / name)
    return day / name


# ----------------------------------------------------------------------- the faults, made for real


def _truncated(root: Path) -> None:
    _ledger_with_rows(root / "ledger.sqlite")
    _archived(root)
    with open(root / "ledger.sqlite", "r+b") as fh:
        fh.truncate(0)


def _corrupt_pages(root: Path) -> None:
    _ledger_with_rows(root / "ledger.sqlite")
    with open(root / "ledger.sqlite", "r+b") as fh:  # pages 3-4 of about 8: table and index b-tree pages
        fh.seek(2 * 4096)
        fh.write(b"\xa5" * 8192)


def _not_a_database(root: Path) -> None:
    (root / "ledger.sqlite").write_bytes(b"this is not an SQLite file " * 300)


def _newer_schema(root: Path) -> None:
    _ledger_with_rows(root / "ledger.sqlite", 3)
    with contextlib.closing(sqlite3.connect(root / "ledger.sqlite")) as con:
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")


def _missing_with_archive(root: Path) -> None:
    _archived(root)


def _no_schema_with_archive(root: Path) -> None:  # the first night's WAL lost: a header-only SQLite file
    with contextlib.closing(sqlite3.connect(root / "ledger.sqlite")) as con:
        con.execute("PRAGMA journal_mode=WAL")
    _archived(root)


def _directory(root: Path) -> None:
    (root / "ledger.sqlite").mkdir(parents=True)
    (root / "ledger.sqlite" / "x").write_text("x")


FAULTS = {
    "truncated": (_truncated, "LEDGER_TRUNCATED"),
    "corrupt-pages": (_corrupt_pages, "LEDGER_CORRUPT"),
    "not-a-database": (_not_a_database, "LEDGER_CORRUPT"),
    "newer-schema": (_newer_schema, "LEDGER_TOO_NEW"),
    "missing-with-archive": (_missing_with_archive, "LEDGER_MISSING"),
    "no-schema-with-archive": (_no_schema_with_archive, "LEDGER_EMPTY"),
    "directory": (_directory, "LEDGER_NOT_A_FILE"),
}


def _snapshot(path: Path):
    if path.is_dir():
        return "dir", sorted(p.name for p in path.iterdir())
    return ("file", path.read_bytes()) if path.exists() else ("missing", None)


@pytest.mark.parametrize("fault", FAULTS)
def test_open_for_night_refuses_a_damaged_or_lost_ledger(tmp_path, fault):
    """It refuses each fault with its reason code and leaves the ledger exactly as it found it (no new salt)."""
    make, code = FAULTS[fault]
    make(tmp_path)
    ledger = tmp_path / "ledger.sqlite"
    before = _snapshot(ledger)
    with pytest.raises(LedgerUnusable) as info:
        ledgercheck.open_for_night(ledger, tmp_path / "archive")
    assert info.value.code == code and info.value.exit_code == 5
    assert str(tmp_path) not in str(info.value)  # what Prefect may see names no path
    assert str(ledger) in info.value.line and "\n" not in info.value.line
    assert _snapshot(ledger) == before


@pytest.mark.parametrize("fault", FAULTS)
def test_nightly_and_ledger_check_cli_refuse_with_exit_5_and_one_line(tmp_path, fault):
    """``claimscrub nightly`` exits 5 with one line naming the ledger and the reason, scrubs nothing and keeps
    the input in the inbox; ``claimscrub ledger check`` says the same."""
    make, code = FAULTS[fault]
    make(tmp_path)
    dropped = _drop(tmp_path)
    before = _snapshot(tmp_path / "ledger.sqlite")
    proc = _cli("nightly", "--root", str(tmp_path), "--settle-seconds", "0")
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"claimscrub: ledger {tmp_path / 'ledger.sqlite'}: ")
    assert lines[0].endswith(f"[{code}]") and "clean.csv" not in proc.stderr
    assert dropped.exists() and not list((tmp_path / "outbox").rglob("*.xlsx"))
    assert _snapshot(tmp_path / "ledger.sqlite") == before
    check = _cli("ledger", "check", "--root", str(tmp_path))
    assert check.returncode == 5 and check.stderr.strip().splitlines() == lines


def test_ledger_never_makes_a_new_salt_in_a_zero_byte_file(tmp_path):
    """It refuses ``Ledger(path)`` on a truncated file (every file task constructs one) and a newer schema."""
    path = tmp_path / "ledger.sqlite"
    path.touch()
    with pytest.raises(LedgerUnusable, match="LEDGER_TRUNCATED"):
        Ledger(path)
    assert path.stat().st_size == 0
    newer = tmp_path / "newer.sqlite"
    Ledger(newer)
    with contextlib.closing(sqlite3.connect(newer)) as con:
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 3}")
    with pytest.raises(LedgerUnusable, match="LEDGER_TOO_NEW"):
        Ledger(newer)


def test_a_new_root_gets_a_new_ledger(tmp_path):
    """It creates a ledger (with its salt) when there is none and the archive is empty."""
    book = ledgercheck.open_for_night(tmp_path / "ledger.sqlite", tmp_path / "archive")
    assert book.version == SCHEMA_VERSION and len(book.salt) == 32
    state = ledgercheck.check_ledger(tmp_path / "ledger.sqlite", tmp_path / "archive")
    assert state.exists and state.files == {} and state.backups == []


# ----------------------------------------------------------------------- read-only and full disks


@contextlib.contextmanager
def _tmpfs(where: Path, size: str):
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): "
                    "the read-only and full-disk ledgers need one (run as root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _root_on(fs: Path) -> Path:
    root = fs / "r"
    for folder in ("inbox", "outbox", "archive", "quarantine"):
        (root / folder).mkdir(parents=True)
    _ledger_with_rows(root / "ledger.sqlite", 20)
    (root / "ledger.sqlite.lock").touch()
    _drop(root)
    return root


def test_read_only_file_system_refuses_with_exit_5(tmp_path):
    """A ledger on a read-only file system (root ignores file modes, so a read-only tmpfs remount is what
    really stops SQLite here): exit 5, one line, the input stays in the inbox."""
    with _tmpfs(tmp_path / "fs", "8m") as fs:
        root = _root_on(fs)
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        proc = _cli("nightly", "--root", str(root), "--settle-seconds", "0")
        assert proc.returncode == 5, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"claimscrub: ledger {root / 'ledger.sqlite'}: it cannot be written (read-only file or file system); "
            "make it writable and run again (nothing was scrubbed) [LEDGER_READ_ONLY]"]
        assert (root / "inbox" / "clean.csv").exists()


def test_full_disk_refuses_with_exit_5(tmp_path):
    """A ledger on a full file system (a 2 MB tmpfs filled to ENOSPC, what a full disk gives SQLite; an
    RLIMIT_FSIZE limit gives EFBIG, which SQLite reports as an I/O error instead): exit 5, one line, input kept."""
    with _tmpfs(tmp_path / "fs", "2m") as fs:
        root = _root_on(fs)
        with open(fs / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):  # close never flushes
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        proc = _cli("nightly", "--root", str(root), "--settle-seconds", "0")
        assert proc.returncode == 5, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.endswith("[LEDGER_DISK_FULL]") and "disk is full" in line
        assert (root / "inbox" / "clean.csv").exists()
        (fs / "filler").unlink()
        assert _cli("ledger", "check", "--root", str(root)).returncode == 0  # nothing was damaged


# ----------------------------------------------------------------------- backups


def test_backups_keep_the_newest_and_each_passes_quick_check(tmp_path):
    """It keeps the newest ``keep`` backups, each one self-contained file that passes quick_check."""
    path = tmp_path / "ledger.sqlite"
    _ledger_with_rows(path, 50)
    start = dt.datetime(2026, 1, 1, 2, 0, tzinfo=dt.UTC)
    made = [ledgercheck.backup_ledger(path, keep=7, now=start + dt.timedelta(days=i)) for i in range(9)]
    kept = ledgercheck.list_backups(path)
    assert kept == made[:1:-1] and len(kept) == 7
    assert kept[0].name == "ledger-20260109T020000Z.sqlite"
    assert sorted(p.name for p in kept[0].parent.iterdir()) == sorted(p.name for p in kept)  # no -wal, no temp
    for backup in kept:
        assert ledgercheck.quick_check(backup) is None
        with contextlib.closing(sqlite3.connect(backup)) as con:
            assert con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 50
    assert oct(kept[0].stat().st_mode & 0o777) == "0o600"


# ----------------------------------------------------------------------- nights, restore, reconciling


def _night(root: Path, **kw) -> dict:
    from pipeline.flows import nightly_scrub_flow

    return nightly_scrub_flow(root=root, settle_seconds=0, as_of=AS_OF, **kw)


async def _flow_run_texts(name_prefix: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        runs = await client.read_flow_runs()
        texts = []
        for run in runs:
            if run.state and run.state.message:
                texts.append(run.state.message)
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            texts += [log.message for log in logs]
        return "\n".join(texts)


@pytest.mark.e2e
def test_night_refuses_inside_prefect_without_naming_the_ledger(tmp_path, prefect_harness):
    """The flow itself (as served or deployed, no CLI) fails with the reason code and no path in Prefect."""
    _corrupt_pages(tmp_path)
    _drop(tmp_path)
    with pytest.raises(LedgerUnusable, match=r"\[LEDGER_CORRUPT\]"):
        _night(tmp_path)
    assert (tmp_path / "inbox" / "clean.csv").exists()
    texts = asyncio.run(_flow_run_texts("nightly"))
    assert "LEDGER_CORRUPT" in texts
    assert str(tmp_path) not in texts and "ledger.sqlite" not in texts and "clean.csv" not in texts


@pytest.mark.e2e
def test_backup_check_and_restore_after_corruption(tmp_path, prefect_harness):
    """A night leaves a backup; after the ledger is damaged, ``ledger restore`` puts the backup back (the
    damaged one kept aside), refuses while a night holds the lock, and the restored ledger still knows the
    scrubbed content (same salt, the same bytes again are a duplicate)."""
    _drop(tmp_path)
    assert [f["status"] for f in _night(tmp_path)["files"]] == ["scrubbed"]
    ledger = tmp_path / "ledger.sqlite"
    salt = Ledger(ledger).salt
    (backup,) = ledgercheck.list_backups(ledger)
    check = _cli("ledger", "check", "--root", str(tmp_path))
    assert check.returncode == 0, check.stderr
    assert "quick_check ok" in check.stdout and "1 scrubbed" in check.stdout and backup.name in check.stdout

    _corrupt_pages_in_place(ledger)
    damaged = ledger.read_bytes()
    assert _cli("ledger", "check", "--root", str(tmp_path)).returncode == 5
    with nightly.RunLock(ledger.with_name("ledger.sqlite.lock")):
        busy = _cli("ledger", "restore", "--root", str(tmp_path))
    assert busy.returncode == 5 and busy.stderr.strip().endswith("[RESTORE_BUSY]")
    assert ledger.read_bytes() == damaged
    done = _cli("ledger", "restore", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (aside,) = tmp_path.glob("ledger.sqlite.bad-*Z")
    assert aside.read_bytes() == damaged and str(aside) in done.stdout
    assert _cli("ledger", "check", "--root", str(tmp_path)).returncode == 0
    assert Ledger(ledger).salt == salt
    _drop(tmp_path, as_name="clean-again.csv")
    assert [f["status"] for f in _night(tmp_path)["files"]] == ["duplicate"]
    assert len(ledgercheck.list_backups(ledger)) == 2


def _corrupt_pages_in_place(ledger: Path) -> None:
    size = ledger.stat().st_size
    with open(ledger, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xa5" * min(size - 4096, 3 * 4096))


def test_restore_without_a_good_backup_refuses(tmp_path):
    """It refuses (exit 5) when no backup passes quick_check, and leaves the ledger where it is."""
    _truncated(tmp_path)
    folder = ledgercheck.backups_dir(tmp_path / "ledger.sqlite")
    folder.mkdir()
    (folder / "ledger-20260101T000000Z.sqlite").write_bytes(b"garbage" * 1000)
    proc = _cli("ledger", "restore", "--root", str(tmp_path))
    assert proc.returncode == 5 and proc.stderr.strip().endswith("[RESTORE_NO_BACKUP]")
    assert (tmp_path / "ledger.sqlite").stat().st_size == 0


def _kill_in_process_file(root: Path, stage: str, drop_wal: bool = False) -> None:
    """Scrub inbox/clean.csv in a child killed at ``stage``; with ``drop_wal`` the child keeps a reader
    open (the WAL is not folded back into the ledger), removes ``ledger.sqlite-wal`` after the file is
    archived and recorded, then dies: what an admin deleting the WAL mid-run, or a lost volume, leaves."""
    code = (
        "import datetime as dt, os, sqlite3; from pathlib import Path; from pipeline import nightly, ingest;"
        "from pipeline.config import ScrubConfig; from pipeline.ledger import Ledger;"
        f"p = nightly.resolve_paths(ScrubConfig(), Path({str(root)!r})); f = p.inbox / 'clean.csv';"
        "hold = sqlite3.connect(p.ledger); hold.execute('SELECT COUNT(*) FROM files').fetchone();"
        "nightly.process_file(f, ingest.file_sha256(f), p, Ledger(p.ledger), ScrubConfig(),"
        " dt.date(2024, 6, 30), '2024-06-30', 'killed', isolate=False);"
        "os.remove(str(p.ledger) + '-wal'); os._exit(137)"
    )
    env = dict(os.environ, **({} if drop_wal else {nightly.FAULT_ENV: stage}))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, timeout=120).returncode == 137


@pytest.mark.e2e
def test_crash_after_archive_is_reconciled_next_night(tmp_path, prefect_harness):
    """Killed between the move to the archive and the ledger's archive time: the next night sets it."""
    Ledger(tmp_path / "ledger.sqlite")
    _drop(tmp_path)
    _kill_in_process_file(tmp_path, "after_archive")
    files = Ledger(tmp_path / "ledger.sqlite").files()
    assert list(files.status) == ["scrubbed"] and files.archived_at.isna().all()  # before: left like this
    assert (tmp_path / "archive" / "2024-06-30" / "clean.csv").exists()
    s = _night(tmp_path)
    assert s["files"] == []
    files = Ledger(tmp_path / "ledger.sqlite").files()
    assert list(files.status) == ["scrubbed"] and files.archived_at.notna().all()


@pytest.mark.e2e
def test_wal_removed_mid_run_is_reconciled_next_night(tmp_path, prefect_harness):
    """The WAL deleted while a run had written: the archived file has no row (reproduced); the next night
    records it from its outputs, so the same bytes dropped again are a duplicate, not scrubbed again."""
    Ledger(tmp_path / "ledger.sqlite")
    _drop(tmp_path)
    _kill_in_process_file(tmp_path, "", drop_wal=True)
    archived = tmp_path / "archive" / "2024-06-30" / "clean.csv"
    assert archived.exists() and Ledger(tmp_path / "ledger.sqlite").files().empty  # the row is gone
    assert ledgercheck.check_ledger(tmp_path / "ledger.sqlite", tmp_path / "archive").unmatched_archive == 1
    _drop(tmp_path, as_name="clean-again.csv")
    s = _night(tmp_path)
    assert [f["status"] for f in s["files"]] == ["duplicate"]
    files = Ledger(tmp_path / "ledger.sqlite").files()
    assert list(zip(files.status, files.reason_code, strict=True)) == [("scrubbed", "RECONCILED"),
                                                                       ("duplicate", "DUPLICATE")]
    assert files.archived_at.notna().all() and files.name.tolist() == ["clean.csv", "clean-again.csv"]
    assert files.sha256.iloc[0] == ingest.file_sha256(archived)


def test_reconcile_records_each_archived_file_once_and_hashes_only_unnamed_ones(tmp_path):
    """It pairs archived rows by name and size (also ``name.<id>.csv``), records a file with no outputs as
    ``unrecorded`` and a second copy of scrubbed content as ``duplicate``; a second pass changes nothing."""
    paths = nightly.resolve_paths(ScrubConfig(), tmp_path)
    book = Ledger(paths.ledger)
    day = paths.archive / "2024-06-30"
    day.mkdir()
    shutil.copy(SAMPLES / "clean.csv", day / "clean.csv")
    sha = ingest.file_sha256(day / "clean.csv")
    row = book.record_file(sha, "clean.csv", (day / "clean.csv").stat().st_size, "scrubbed", "r1")
    book.mark_archived(row)
    shutil.copy(SAMPLES / "clean.csv", day / f"clean.{sha[:12]}.csv")  # its twin, archived, row lost
    shutil.copy(SAMPLES / "mixed.csv", day / "mixed.csv")  # archived, row lost, no outputs
    counts = ledgercheck.reconcile_archive(book, paths.archive, paths.outbox, uuid.uuid4().hex[:12])
    assert counts == {"archived_at_set": 0, "recorded": 2}
    files = book.files().set_index("name")
    assert files.loc["clean.csv", "status"].tolist() == ["scrubbed", "duplicate"]
    assert files.loc["mixed.csv", ["status", "reason_code"]].tolist() == ["unrecorded", "UNRECORDED"]
    assert book.files().archived_at.notna().all()
    assert ledgercheck.reconcile_archive(book, paths.archive, paths.outbox, "again") == {
        "archived_at_set": 0, "recorded": 0}


def test_restore_moves_a_directory_in_the_ledgers_place_aside(tmp_path):
    """It restores over a directory standing where the ledger was, keeping the directory and what is in it."""
    path = tmp_path / "ledger.sqlite"
    _ledger_with_rows(path, 5)
    backup = ledgercheck.backup_ledger(path)
    path.unlink()
    _directory(tmp_path)
    used, aside = ledgercheck.restore_ledger(path, tmp_path / "ledger.sqlite.lock")
    assert used == backup and (aside / "x").read_text() == "x"
    assert ledgercheck.check_ledger(path, tmp_path / "archive").files == {"scrubbed": 5}
