"""The ledger is never silently replaced: the start-of-night check, archive reconciling, backups and restore.

Plain functions: the nightly flow calls ``open_for_night``, ``reconcile_archive`` and ``backup_after_night``;
``claimscrub ledger check|restore`` calls ``inspect_ledger`` and ``restore_ledger``. Every refusal is a
``LedgerUnusable`` (exit 5) whose ``str()`` names no path, so it can become a Prefect state message.
"""

import datetime as dt
import errno
import logging
import os
import re
import shutil
import sqlite3
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.ledger import (
    LEDGER_ERRORS,
    SCHEMA_VERSION,
    TRUNCATED_HELP,
    Ledger,
    LedgerUnusable,
    is_url,
    too_new_help,
)

log = logging.getLogger(__name__)
BACKUPS_KEPT = 7
RESTORE_HELP = "restore it with `claimscrub ledger restore` (README: the nightly run, recovering the ledger)"
_ARCHIVED_NAME = re.compile(r"^(?P<stem>.+)\.(?P<fid>[0-9a-f]{12})(?:-\d+)?(?P<suffix>\.[^.]*)?$")


@dataclass
class LedgerState:
    """What ``claimscrub ledger check`` reports (counts only, no names)."""

    path: Path
    exists: bool
    version: int = 0
    files: dict = field(default_factory=dict)  # status -> count
    runs: int = 0
    last_run: tuple | None = None  # (started, outcome)
    injections: int = 0
    backups: list = field(default_factory=list)  # newest first
    unmatched_archive: int = 0  # archive files no ledger row names (the next night reconciles them)
    dispositions: tuple[int, int] = (0, 0)  # (changes recorded, exceptions they are about)


# ---------------------------------------------------------------- checks


def _ro_uri(path: Path) -> str:
    return f"{Path(path).resolve().as_uri()}?mode=ro"


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 256 * 1024
    except OSError:
        return False


def unusable_from(exc: BaseException, path: Path) -> LedgerUnusable:
    """The refusal an SQLite or OS error on the ledger stands for (read-only, full disk, damaged...)."""
    path = Path(path)
    if isinstance(exc, LedgerUnusable):
        return exc
    name = getattr(exc, "sqlite_errorname", "") or ""
    num = getattr(exc, "errno", None)
    if name == "SQLITE_FULL" or num in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or (
            name.startswith("SQLITE_IOERR") and _disk_full(path.parent)):
        return LedgerUnusable("LEDGER_DISK_FULL", "it cannot be written: the disk is full; free space and run "
                              "again (nothing was scrubbed)", path)
    if name.startswith("SQLITE_READONLY") or num in (errno.EROFS, errno.EACCES, errno.EPERM) or (
            name == "SQLITE_CANTOPEN" and _read_only_fs(path.parent)):
        return LedgerUnusable("LEDGER_READ_ONLY", "it cannot be written (read-only file or file system); make "
                              "it writable and run again (nothing was scrubbed)", path)
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or name.startswith("SQLITE_CORRUPT"):
        return LedgerUnusable("LEDGER_CORRUPT", f"it is damaged ({exc}); {RESTORE_HELP}", path)
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return LedgerUnusable("LEDGER_BUSY", "another process holds it locked; run again later", path)
    if num == errno.EISDIR or path.is_dir():
        return not_a_file(path)
    reason = name or (os.strerror(num) if num else type(exc).__name__)
    return LedgerUnusable("LEDGER_UNREADABLE", f"it cannot be opened or written ({reason})", path)


def not_a_file(path: Path) -> LedgerUnusable:
    return LedgerUnusable("LEDGER_NOT_A_FILE", "a directory (or other non-file) is where the ledger should be; "
                          "move it away and restore the ledger with `claimscrub ledger restore`", path)


def archive_files(archive: Path | None) -> list[Path]:
    """The files the nightly run archived: ``archive/<day>/<name>``."""
    if archive is None or not Path(archive).is_dir():
        return []
    return sorted(p for day in Path(archive).iterdir() if day.is_dir() for p in day.iterdir()
                  if p.is_file() and not p.name.startswith("."))


def quick_check(path: Path) -> str | None:
    """None when SQLite's ``PRAGMA quick_check`` says ok, else its first complaint (or the error)."""
    try:
        with closing(sqlite3.connect(_ro_uri(path), uri=True, timeout=30)) as con:
            rows = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        return str(exc)
    return None if rows == ["ok"] else rows[0]


def check_ledger(path: Path, archive: Path | None = None) -> LedgerState:
    """Read-only: refuse (``LedgerUnusable``) a ledger the night must not use or replace; else its state.

    A missing ledger is fine only while the archive is empty: otherwise it was lost, and a new one would
    bring a new salt (no injection history) and scrub again what was already scrubbed.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise not_a_file(path)
    if not path.exists():
        archived = archive_files(archive)
        if archived:
            raise LedgerUnusable("LEDGER_MISSING", f"it is missing, but the archive holds {len(archived)} "
                                 f"file(s): it was lost (a new one would scrub them again); {RESTORE_HELP}", path)
        return LedgerState(path, exists=False)
    if path.stat().st_size == 0:
        raise LedgerUnusable("LEDGER_TRUNCATED", TRUNCATED_HELP, path)
    try:
        with closing(sqlite3.connect(_ro_uri(path), uri=True, timeout=30)) as con:
            rows = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        raise unusable_from(exc, path) from None
    if rows != ["ok"]:
        raise LedgerUnusable("LEDGER_CORRUPT", f"it is damaged (quick_check: {rows[0]}); {RESTORE_HELP}", path)
    return _state(path, archive)


def _state(path: Path, archive: Path | None) -> LedgerState:
    try:
        with closing(sqlite3.connect(_ro_uri(path), uri=True, timeout=30)) as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerUnusable("LEDGER_TOO_NEW", too_new_help(version), path)
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0 and tables:
                raise LedgerUnusable("LEDGER_FOREIGN", "it holds tables but no ledger schema version: not a "
                                     "claimscrub ledger (or a damaged one); " + RESTORE_HELP, path)
            if version == 0:  # an SQLite file with no ledger in it yet (a crash while it was first made)
                archived = archive_files(archive)
                if archived:
                    raise LedgerUnusable("LEDGER_EMPTY", f"it holds no ledger, but the archive holds "
                                         f"{len(archived)} file(s): it was lost (a new one would scrub them "
                                         f"again); {RESTORE_HELP}", path)
                return LedgerState(path, exists=True, backups=list_backups(path))
            if not con.execute("SELECT 1 FROM meta WHERE key='salt'").fetchone():
                raise LedgerUnusable("LEDGER_CORRUPT", f"its salt is gone; {RESTORE_HELP}", path)
            files = dict(con.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall())
            runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            last = con.execute("SELECT started, outcome FROM runs ORDER BY started DESC LIMIT 1").fetchone()
            injections = con.execute("SELECT COUNT(*) FROM injections").fetchone()[0]
            dispositions = con.execute("SELECT COUNT(*), COUNT(DISTINCT exception_id) FROM dispositions").fetchone() \
                if "dispositions" in tables else (0, 0)  # a ledger of schema 2 until a night migrates it
            rows = con.execute("SELECT name, size FROM files WHERE archived_at IS NOT NULL").fetchall()
    except sqlite3.Error as exc:
        raise unusable_from(exc, path) from None
    unmatched = len(_match_by_name(archive_files(archive), [(i, n, s) for i, (n, s) in enumerate(rows)])[1])
    return LedgerState(path, True, version, files, runs, tuple(last) if last else None, injections,
                       list_backups(path), unmatched, tuple(dispositions))


def open_for_night(path: Path | str, archive: Path | None) -> Ledger:
    """The night's ledger after the check, created only when none was ever used; refuses one it cannot write.

    Run under the run lock, once per night (not per file: ``Ledger(...)`` stays cheap). A PostgreSQL ledger
    (a URL): connected and migrated, refused when its database holds no ledger yet while the archive holds
    files (it was lost, or the URL names the wrong database)."""
    if is_url(path):
        return _open_pg(path, archive)
    path = Path(path)
    check_ledger(path, archive)
    try:
        book = Ledger(path)  # creates a new one (new salt) only when missing with an empty archive
        book.touch()  # a real, committed write: read-only or full disks show here
    except (sqlite3.Error, OSError) as exc:
        raise unusable_from(exc, path) from None
    return book


def _open_pg(target: str, archive: Path | None) -> Ledger:
    from pipeline.ledger_pg import PgLedger, unusable

    try:
        book = PgLedger(target)
        if not book.file_rows():
            archived = archive_files(archive)
            if archived:
                raise LedgerUnusable("LEDGER_MISSING", f"its database holds no files, but the archive holds "
                                     f"{len(archived)} file(s): it was lost or --ledger names the wrong database "
                                     "(a new one would scrub them again); restore the database with pg_restore",
                                     target)
        book.touch()
    except LEDGER_ERRORS as exc:
        raise unusable(exc, target) from None
    return book


def pg_state(target: str, archive: Path | None) -> LedgerState:
    """``claimscrub ledger check`` on a PostgreSQL ledger: the same counts (no quick_check or backups: the
    database's own tools look after those)."""
    from pipeline.ledger_pg import PgLedger, unusable

    try:
        book = PgLedger(target)
        with book._session() as db:
            files = dict(db.all("SELECT status, COUNT(*) FROM files GROUP BY status"))
            runs = db.one("SELECT COUNT(*) FROM runs")[0]
            last = db.one("SELECT started, outcome FROM runs ORDER BY started DESC LIMIT 1")
            injections = db.one("SELECT COUNT(*) FROM injections")[0]
            dispositions = db.one("SELECT COUNT(*), COUNT(DISTINCT exception_id) FROM dispositions")
            rows = db.all("SELECT name, size FROM files WHERE archived_at IS NOT NULL")
    except LEDGER_ERRORS as exc:
        raise unusable(exc, target) from None
    unmatched = len(_match_by_name(archive_files(archive), [(i, n, s) for i, (n, s) in enumerate(rows)])[1])
    return LedgerState(target, True, book.version, files, runs, tuple(last) if last else None, injections, [],
                       unmatched, tuple(dispositions))


# ---------------------------------------------------------------- reconciling the archive


def _original_name(name: str) -> str | None:
    """``claims.<file id>[-n].csv`` (an archive name made unique) -> ``claims.csv``."""
    m = _ARCHIVED_NAME.match(name)
    return f"{m['stem']}{m['suffix'] or ''}" if m else None


def _match_by_name(files: list[Path], rows: list[tuple]) -> tuple[set, list[Path]]:
    """Pair archive files with archived rows by (name, size), no hashing: (row ids used, files left over)."""
    free = defaultdict(list)
    for row_id, name, size in rows:
        free[(name, size)].append(row_id)
    used, left = set(), []
    for p in files:
        size = p.stat().st_size
        for name in (p.name, _original_name(p.name)):
            if name and free.get((name, size)):
                used.add(free[(name, size)].pop())
                break
        else:
            left.append(p)
    return used, left


def reconcile_archive(ledger: Ledger, archive: Path, outbox: Path, run_id: str) -> dict:
    """Give every archived file its ledger row (after a crash between the move and the ledger write, or a
    lost WAL); returns counts. Cheap: only files no archived row names (by name and size) are hashed.

    - a row scrubbed/duplicate with no archive time whose file is in the archive: archive time set;
    - no row, but this content has a scrubbed row: recorded ``duplicate``;
    - no row, and its outputs are in the outbox: recorded ``scrubbed`` (reason RECONCILED), so the same
      bytes dropped again are a duplicate; its injection history was lost with the row;
    - no row and no outputs: recorded ``unrecorded`` (reason UNRECORDED): the same bytes dropped again
      are scrubbed.
    """
    from pipeline.ingest import file_sha256  # heavy: only when an archive file has no row

    counts = {"archived_at_set": 0, "recorded": 0}
    files = archive_files(archive)
    if not files:
        return counts
    rows = ledger.file_rows()
    used, left = _match_by_name(files, [(r["id"], r["name"], r["size"]) for r in rows if r["archived_at"]])
    if not left:
        return counts
    by_sha = defaultdict(list)
    for r in rows:
        if r["id"] not in used:
            by_sha[r["sha256"]].append(r)
    scrubbed_shas = {r["sha256"] for r in rows if r["status"] == "scrubbed"}
    for p in left:
        sha = file_sha256(p)
        free = by_sha.get(sha, [])
        done = next((r for r in free if r["archived_at"]), None)
        if done is not None:  # the row exists under another name: nothing to do
            free.remove(done)
            continue
        pending = next((r for r in free if r["status"] in ("scrubbed", "duplicate")), None)
        if pending is not None:  # crash between the move and the ledger's archive time
            free.remove(pending)
            ledger.mark_archived(pending["id"])
            counts["archived_at_set"] += 1
            log.warning("file %s: archived but its ledger row had no archive time; set", sha[:12])
            continue
        m = _ARCHIVED_NAME.match(p.name)
        name = f"{m['stem']}{m['suffix'] or ''}" if m and m["fid"] == sha[:12] else p.name
        workbooks = sorted(Path(outbox).glob(f"*/*.{sha[:12]}.exceptions.xlsx"))
        if sha in scrubbed_shas:
            status, code, workbook = "duplicate", "DUPLICATE", None
        elif workbooks:
            status, code, workbook = "scrubbed", "RECONCILED", str(workbooks[-1])
            scrubbed_shas.add(sha)
        else:
            status, code, workbook = "unrecorded", "UNRECORDED", None
        row = ledger.record_file(sha, name, p.stat().st_size, status, run_id, reason_code=code, workbook=workbook)
        ledger.mark_archived(row)
        counts["recorded"] += 1
        log.warning("file %s: archived with no ledger row; recorded as %s [%s]", sha[:12], status, code)
    return counts


# ---------------------------------------------------------------- backups


def backups_dir(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".backups")


def list_backups(path: Path) -> list[Path]:
    """The ledger's backups, newest first (``<ledger>.backups/ledger-<UTC time>.sqlite``)."""
    folder = backups_dir(path)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("ledger-*.sqlite"), key=lambda p: p.name, reverse=True)


def _copy(source: Path, target: Path, journal_mode: str = "DELETE") -> None:
    """SQLite's online backup API: a consistent copy even while others read or write ``source``.

    A backup is one self-contained file (rollback journal, no WAL beside it); a restored ledger is WAL
    again. The source is opened read-write so that, closing last, it folds its WAL back as usual."""
    with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute(f"PRAGMA journal_mode={journal_mode}")


def backup_ledger(path: Path, keep: int = BACKUPS_KEPT, now: dt.datetime | None = None) -> Path:
    """Copy the ledger into ``<ledger>.backups/``, check the copy, keep the newest ``keep``; returns it."""
    path = Path(path)
    folder = backups_dir(path)
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = folder / f"ledger-{stamp}.sqlite"
    n = 1
    while target.exists():
        target = folder / f"ledger-{stamp}-{n}.sqlite"
        n += 1
    tmp = folder / f".{target.name}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        _copy(path, tmp)
        os.chmod(tmp, 0o600)  # file names of claims exports are in it
        problem = quick_check(tmp)
        if problem is not None:
            raise sqlite3.DatabaseError(f"the backup failed its quick_check ({problem})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    for old in list_backups(path)[max(keep, 1):]:
        old.unlink(missing_ok=True)
    return target


def backup_after_night(path: Path, keep: int = BACKUPS_KEPT) -> Path | None:
    """The night's backup; a failure is logged (no path) and does not undo the night's work."""
    try:
        return backup_ledger(path, keep)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        log.error("ledger backup failed (%s); the night's results stand; see `claimscrub ledger check`", reason)
        return None


# ---------------------------------------------------------------- restore


def restore_ledger(path: Path, lock: Path, backup: Path | None = None,
                   now: dt.datetime | None = None) -> tuple[Path, Path | None]:
    """Put a good backup (``backup``, else the newest that passes quick_check) in the ledger's place.

    The ledger there (file, WAL, or a directory) is moved aside to ``<ledger>.bad-<UTC time>``, never
    deleted. Refuses while a night holds the run lock. Returns (backup used, where the old one went).
    """
    from pipeline.nightly import RunInProgress, RunLock

    path = Path(path)
    try:
        with RunLock(lock):
            return _restore_locked(path, backup, now)
    except RunInProgress:
        raise LedgerUnusable("RESTORE_BUSY", "a nightly run holds the run lock; restore after it ends",
                             path) from None
    except (OSError, sqlite3.Error) as exc:  # read-only or full disk: nothing was moved, or see .bad-*
        raise unusable_from(exc, path) from None


def _restore_locked(path: Path, backup: Path | None, now: dt.datetime | None) -> tuple[Path, Path | None]:
    if backup is not None:
        problem = quick_check(backup) if Path(backup).is_file() else "no such file"
        if problem is not None:
            raise LedgerUnusable("RESTORE_BAD_BACKUP", f"backup {backup} cannot be used ({problem})", path)
        chosen = Path(backup)
    else:
        chosen = next((b for b in list_backups(path) if quick_check(b) is None), None)
        if chosen is None:
            raise LedgerUnusable("RESTORE_NO_BACKUP", f"no good backup in {backups_dir(path)}", path)
    with closing(sqlite3.connect(_ro_uri(chosen), uri=True)) as con:
        version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LedgerUnusable("LEDGER_TOO_NEW", f"backup {chosen.name}: " + too_new_help(version), path)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    tmp = path.with_name(f".{path.name}.restore.tmp")
    tmp.unlink(missing_ok=True)
    try:
        _copy(chosen, tmp, "WAL")  # first the copy: a full disk fails here, before anything is moved
        os.chmod(tmp, 0o600)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    aside = None
    if path.exists() or path.is_symlink():
        aside = path.with_name(f"{path.name}.bad-{stamp}")
        os.replace(path, aside)
    for suffix in ("-wal", "-shm"):  # a WAL belongs to the file moved aside, never to the restored one
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, path.with_name(f"{path.name}.bad-{stamp}{suffix}"))
    os.replace(tmp, path)
    return chosen, aside


def preflight(paths) -> None:
    """The check ``claimscrub nightly`` runs before it starts Prefect, so a refusal is one line and fast.

    Under the run lock, like the flow's own check; skipped when a night holds the lock (the flow then
    says so)."""
    from pipeline.nightly import RunInProgress, RunLock

    if paths.lock is None:  # PostgreSQL: nights share the ledger; connecting and migrating is the check
        open_for_night(paths.ledger, paths.archive)
        return
    try:
        with RunLock(paths.lock):
            open_for_night(paths.ledger, paths.archive)
    except RunInProgress:
        return
    except OSError as exc:  # the lock beside the ledger cannot be made: read-only or full disk
        raise unusable_from(exc, paths.ledger) from None
