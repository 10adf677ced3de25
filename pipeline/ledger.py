"""SQLite ledger: files seen, runs, injection history (salted patient keys, never ids) and reviewers'
dispositions of exceptions (a history of changes per exception id).

One file, WAL mode so readers never block the nightly writer; the schema is versioned with
``PRAGMA user_version`` and migrated in place.
"""

import datetime as dt
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd

SCHEMA_VERSION = 3

_MIGRATIONS = {
    1: """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, started TEXT NOT NULL, ended TEXT, files INTEGER DEFAULT 0,
            outcome TEXT);
        CREATE TABLE files (
            id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT NOT NULL, name TEXT NOT NULL,
            size INTEGER NOT NULL, status TEXT NOT NULL, run_id TEXT NOT NULL, seen_at TEXT NOT NULL,
            done_at TEXT, rows INTEGER, claims INTEGER, findings INTEGER, errors INTEGER,
            reason_code TEXT, workbook TEXT, archived_at TEXT);
        CREATE INDEX files_sha ON files (sha256, status);
        CREATE TABLE injections (
            patient_key TEXT NOT NULL, service_date TEXT NOT NULL, code TEXT NOT NULL,
            sides TEXT NOT NULL, file_sha256 TEXT NOT NULL, run_id TEXT NOT NULL,
            PRIMARY KEY (patient_key, service_date, code, file_sha256));
    """,
    2: """
        CREATE INDEX injections_patient ON injections (patient_key, service_date);
    """,
    # One row per change of an exception's disposition (never updated): the latest row is the current one.
    # Reviewer and notes are the reviewer's free text: they stay here and in the workbooks, never in logs.
    3: """
        CREATE TABLE dispositions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, exception_id TEXT NOT NULL, status TEXT NOT NULL,
            reviewer TEXT NOT NULL DEFAULT '', notes TEXT NOT NULL DEFAULT '', claim_hash TEXT NOT NULL DEFAULT '',
            changed_at TEXT NOT NULL, source TEXT NOT NULL, run_id TEXT NOT NULL DEFAULT '');
        CREATE INDEX dispositions_exception ON dispositions (exception_id, id);
    """,
}


def too_new_help(version: int) -> str:
    return (f"schema version {version} is newer than this claimscrub knows ({SCHEMA_VERSION}): "
            "run the claimscrub that wrote it, or upgrade")


_KEYS_PER_QUERY = 900  # under SQLite's oldest limit of 999 bound parameters per statement


class LedgerUnusable(Exception):
    """The ledger cannot be used; the night refuses rather than start a new one or write into a damaged one.

    ``str()`` is generic (it may become a Prefect state message or log line); ``line`` names the ledger's
    path for the terminal. ``code`` is one of the LEDGER_* reason codes the README lists.
    """

    exit_code = 5

    def __init__(self, code: str, detail: str, path: Path | str):
        self.code, self.detail, self.path = code, detail, Path(path)
        super().__init__(f"the ledger cannot be used [{code}]; run `claimscrub ledger check`")

    @property
    def line(self) -> str:
        """One line for the terminal: the ledger's path (never a claims file's), what is wrong and what to do."""
        return f"ledger {self.path}: {self.detail} [{self.code}]"


TRUNCATED_HELP = "it is empty (0 bytes): it was truncated; restore it with `claimscrub ledger restore`"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Ledger:
    """The ledger at ``path``; every method opens its own short connection (thread-safe)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size == 0:  # never a new salt in a truncated ledger
            raise LedgerUnusable("LEDGER_TRUNCATED", TRUNCATED_HELP, self.path)
        with closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")
            self._migrate(con)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def _migrate(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerUnusable("LEDGER_TOO_NEW", too_new_help(version), self.path)
        if version == 0 and con.execute("SELECT EXISTS (SELECT 1 FROM sqlite_master)").fetchone()[0]:
            raise LedgerUnusable("LEDGER_FOREIGN", "it holds tables but no ledger schema version: not a "
                                 "claimscrub ledger (or a damaged one); restore it or point --ledger elsewhere",
                                 self.path)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            con.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _MIGRATIONS[target].split(";")):
                    con.execute(statement)
                con.execute(f"PRAGMA user_version={target}")
                if target == 1:
                    con.execute("INSERT INTO meta VALUES ('salt', ?)", (secrets.token_hex(16),))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    @property
    def version(self) -> int:
        with closing(self._connect()) as con:
            return con.execute("PRAGMA user_version").fetchone()[0]

    @property
    def salt(self) -> str:
        with closing(self._connect()) as con:
            return con.execute("SELECT value FROM meta WHERE key='salt'").fetchone()[0]

    # runs
    def start_run(self, run_id: str) -> None:
        with closing(self._connect()) as con:
            con.execute("INSERT INTO runs (id, started) VALUES (?, ?)", (run_id, _now()))

    def end_run(self, run_id: str, files: int, outcome: str) -> None:
        with closing(self._connect()) as con:
            con.execute("UPDATE runs SET ended=?, files=?, outcome=? WHERE id=?", (_now(), files, outcome, run_id))

    # files
    def scrubbed(self, sha256: str) -> dict | None:
        """The scrubbed record of this content, if any."""
        with closing(self._connect()) as con:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM files WHERE sha256=? AND status='scrubbed' ORDER BY id LIMIT 1",
                              (sha256,)).fetchone()
            return dict(row) if row else None

    def record_file(self, sha256: str, name: str, size: int, status: str, run_id: str, **counts) -> int:
        cols = ["sha256", "name", "size", "status", "run_id", "seen_at", "done_at", *counts]
        values = [sha256, name, size, status, run_id, _now(), _now(), *counts.values()]
        with closing(self._connect()) as con:
            cur = con.execute(f"INSERT INTO files ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                              values)
            return cur.lastrowid

    def record_scrubbed(self, sha256: str, name: str, size: int, run_id: str, injections: pd.DataFrame,
                        **counts) -> int:
        """The file's outputs are written: its row and its injection history, in one transaction."""
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                cols = ["sha256", "name", "size", "status", "run_id", "seen_at", "done_at", *counts]
                values = [sha256, name, size, "scrubbed", run_id, _now(), _now(), *counts.values()]
                cur = con.execute(
                    f"INSERT INTO files ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values)
                # In key order, both indexes are updated page after page instead of at random pages of
                # salted hashes: 250k sessions take about 0.9 s instead of 2.9 s (1.1 s instead of 4.0 s
                # into a ledger that already holds a night like it).
                con.executemany(
                    "INSERT OR IGNORE INTO injections VALUES (?, ?, ?, ?, ?, ?)",
                    sorted((k, d, c, s, sha256, run_id) for k, d, c, s in injections[
                        ["patient_key", "service_date", "code", "sides"]].itertuples(index=False)))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # a failed COMMIT (disk full) may already have ended it
                    con.execute("ROLLBACK")
                raise
            return cur.lastrowid

    def mark_archived(self, file_id: int) -> None:
        with closing(self._connect()) as con:
            con.execute("UPDATE files SET archived_at=? WHERE id=?", (_now(), file_id))

    def files(self) -> pd.DataFrame:
        with closing(self._connect()) as con:
            return pd.read_sql_query("SELECT * FROM files ORDER BY id", con)

    def runs(self) -> pd.DataFrame:
        with closing(self._connect()) as con:
            return pd.read_sql_query("SELECT * FROM runs ORDER BY started", con)

    # dispositions
    def record_dispositions(self, changes: pd.DataFrame, source: str, run_id: str = "") -> int:
        """Add one history row per changed disposition (``exception_id, status, reviewer, notes, claim_hash``,
        optional ``changed_at``); returns how many."""
        if changes is None or not len(changes):
            return 0
        now = _now()
        when = changes["changed_at"] if "changed_at" in changes else pd.Series(now, index=changes.index)
        rows = [(e, s, r or "", n or "", h or "", w or now, source, run_id) for e, s, r, n, h, w in zip(
            changes["exception_id"], changes["status"], changes["reviewer"].fillna(""), changes["notes"].fillna(""),
            changes["claim_hash"].fillna(""), when.fillna(now), strict=True)]
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT INTO dispositions (exception_id, status, reviewer, notes, claim_hash, "
                                "changed_at, source, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        return len(rows)

    def dispositions(self, ids=None) -> pd.DataFrame:
        """The current (latest) disposition of each exception id (of ``ids`` when given)."""
        query = ("SELECT d.exception_id, d.status, d.reviewer, d.notes, d.claim_hash, d.changed_at FROM dispositions d "
                 "JOIN (SELECT exception_id, MAX(id) AS id FROM dispositions {where} GROUP BY exception_id) m "
                 "ON d.id = m.id")
        with closing(self._connect()) as con:
            if ids is None:
                rows = con.execute(query.format(where="")).fetchall()
            else:
                ids, rows = list(ids), []
                for i in range(0, len(ids), _KEYS_PER_QUERY):
                    batch = ids[i:i + _KEYS_PER_QUERY]
                    rows += con.execute(query.format(where=f"WHERE exception_id IN ({','.join('?' * len(batch))})"),
                                        batch).fetchall()
        return pd.DataFrame(rows, columns=["exception_id", "status", "reviewer", "notes", "claim_hash", "changed_at"])

    def disposition_history(self, exception_id: str) -> pd.DataFrame:
        """Every recorded change of one exception's disposition, oldest first (who, when, what, from where)."""
        with closing(self._connect()) as con:
            return pd.read_sql_query(
                "SELECT status, reviewer, notes, claim_hash, changed_at, source, run_id FROM dispositions "
                "WHERE exception_id = ? ORDER BY id", con, params=(exception_id,))

    def holds_dispositions(self) -> bool:
        """Whether any disposition is recorded (a ledger no reviewer's work reached: nothing to look up)."""
        with closing(self._connect()) as con:
            return con.execute("SELECT EXISTS (SELECT 1 FROM dispositions)").fetchone()[0] == 1

    def holds_injections(self) -> bool:
        """Whether any session is recorded at all (a new ledger: nothing to look up)."""
        with closing(self._connect()) as con:
            return con.execute("SELECT EXISTS (SELECT 1 FROM injections)").fetchone()[0] == 1

    def injection_history(self, exclude_run: str | None = None, keys=None, since: str = "0000-00-00",
                          until: str = "9999-99-99", exclude_file: str = "") -> pd.DataFrame:
        """(patient_key, service_date) of the recorded chemodenervation sessions, optionally not one run's.

        ``keys`` (salted patient keys) and ``since``/``until`` (``YYYY-MM-DD``, inclusive) limit it to the
        sessions a check can use, so what is read stays one file's patients however many nights the
        ledger holds; each batch of keys is one lookup on the (patient_key, service_date) index.
        ``exclude_file``: a file's own sessions (by its sha256) are never its history (a re-sent duplicate).
        """
        query = "SELECT DISTINCT patient_key, service_date FROM injections WHERE run_id != ? AND file_sha256 != ?"
        with closing(self._connect()) as con:
            if keys is None:
                rows = con.execute(query, (exclude_run or "", exclude_file)).fetchall()
            else:
                keys, rows = list(keys), []
                for i in range(0, len(keys), _KEYS_PER_QUERY):
                    batch = keys[i:i + _KEYS_PER_QUERY]
                    rows += con.execute(
                        f"{query} AND service_date BETWEEN ? AND ? AND patient_key IN ({','.join('?' * len(batch))})",
                        (exclude_run or "", exclude_file, since, until, *batch)).fetchall()
        df = pd.DataFrame(rows, columns=["patient_key", "service_date"])
        df["service_date"] = pd.to_datetime(df["service_date"]).astype("datetime64[ns]")
        return df
