"""The ledger on PostgreSQL (psycopg 3): the same schema, migrations and queries as the SQLite ledger
(``pipeline.ledger``), for nightly processes on several hosts over one shared inbox.

- The salt is made once, by the first migration, under a transaction-level advisory lock: two processes
  starting on an empty database make one ledger, not two.
- A run holds a session-level advisory lock on its own key while it works: a run whose lock is free is
  dead (killed, or its host gone), and what it claimed is taken back (``pipeline.nightly.recover_claims``).
- The night's setup (reconciling the archive, recovering dead runs' files) is one process at a time
  under another advisory lock; the files themselves are shared out by the ``claims`` table.
- Credentials come from the environment (``PGPASSWORD``, ``~/.pgpass``, ``PGUSER``...) or a Prefect
  Secret block (``prefect-secret://NAME`` holding the whole URL), never from a URL on the command line or
  in flow parameters: a password there would be stored by Prefect. No URL reaches a log (``describe``).
"""

import hashlib
import secrets
import threading
import time
from contextlib import closing, contextmanager
from urllib.parse import urlsplit

from pipeline.ledger import (
    LEDGER_TABLES,
    SCHEMA_VERSION,
    Ledger,
    LedgerUnusable,
    _Session,
    migration_statements,
    too_new_help,
)

CONNECT_TIMEOUT_S = 10
SETUP_WAIT_S = 600  # how long a night waits for another process's setup before it gives up
_DSN_CACHE: dict[str, str] = {}


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` (one namespace for claimscrub's locks)."""
    return int.from_bytes(hashlib.sha256(f"claimscrub:{name}".encode()).digest()[:8], "big", signed=True)


def has_password(target: str) -> bool:
    parts = urlsplit(target)
    return bool(parts.password) or "password=" in (parts.query or "").lower()


def resolve(target: str) -> str:
    """The connection string of a ledger target: the URL itself, or the URL a Prefect Secret block holds."""
    if target in _DSN_CACHE:
        return _DSN_CACHE[target]
    if target.lower().startswith("prefect-secret://"):
        from prefect.blocks.system import Secret

        name = target.split("://", 1)[1].strip("/")
        try:
            dsn = Secret.load(name, _sync=True).get()
        except Exception as exc:  # noqa: BLE001 - the block's name only: its value is the secret
            raise LedgerUnusable("LEDGER_SECRET", f"the Prefect Secret block {name!r} could not be read "
                                 f"({type(exc).__name__}); create it with the ledger's URL", target) from None
        if not isinstance(dsn, str) or not dsn.lower().startswith(("postgresql://", "postgres://")):
            raise LedgerUnusable("LEDGER_SECRET", f"the Prefect Secret block {name!r} does not hold a "
                                 "postgresql:// URL", target)
    else:
        if has_password(target):
            raise LedgerUnusable("LEDGER_PASSWORD_IN_URL", "the URL holds a password, which Prefect would store "
                                 "with the run's parameters: put it in PGPASSWORD or ~/.pgpass, or the whole URL "
                                 "in a Prefect Secret block (ledger = \"prefect-secret://NAME\")", target)
        dsn = target
    _DSN_CACHE[target] = dsn
    return dsn


def unusable(exc: BaseException, target: str) -> LedgerUnusable:
    """The refusal a psycopg error on the ledger stands for (unreachable, refused, read-only...)."""
    import psycopg

    if isinstance(exc, LedgerUnusable):
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.errors.InsufficientPrivilege | psycopg.errors.ReadOnlySqlTransaction):
        return LedgerUnusable("LEDGER_READ_ONLY", f"it cannot be written ({first}); grant the ledger's role "
                              "write access and run again (nothing was scrubbed)", target)
    if isinstance(exc, psycopg.errors.DiskFull):
        return LedgerUnusable("LEDGER_DISK_FULL", f"the database server's disk is full ({first})", target)
    if isinstance(exc, psycopg.OperationalError):
        return LedgerUnusable("LEDGER_UNREACHABLE", f"cannot connect to the PostgreSQL ledger ({first}); check "
                              "the server, the URL and the credentials (PGPASSWORD, ~/.pgpass)", target)
    return LedgerUnusable("LEDGER_UNREADABLE", f"it cannot be used ({type(exc).__name__}: {first})", target)


class PgLedger(Ledger):
    """The ledger in a PostgreSQL database; every method opens its own short connection (thread-safe)."""

    dialect = "postgresql"
    MAX_PARAMS = 5000

    def __init__(self, target: str):
        self.target, self.path = target, None
        self._dsn = resolve(target)
        self._held: set[str] = set()
        self._guard = None  # the connection holding this process's run locks
        self._guard_mutex = threading.Lock()
        try:
            with closing(self._connect()) as con:
                self._migrate(con)
        except LedgerUnusable:
            raise
        except Exception as exc:  # noqa: BLE001 - reduced to one line that names no password
            raise unusable(exc, target) from None

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="claimscrub")
        except psycopg.Error as exc:
            raise unusable(exc, self.target) from None

    @contextmanager
    def _session(self, write: bool = False):
        with closing(self._connect()) as con:
            if not write:
                yield _Session(con, True)
                return
            with con.transaction():
                yield _Session(con, True)

    def _tables(self, db: _Session) -> set[str]:
        return {r[0] for r in db.all("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                     "current_schema() AND table_name = ANY(?)", (list(LEDGER_TABLES),))}

    def _read_version(self, db: _Session) -> int:
        tables = self._tables(db)
        if "meta" not in tables:
            if tables:
                raise LedgerUnusable("LEDGER_FOREIGN", f"the database holds tables named like the ledger's "
                                     f"({', '.join(sorted(tables))}) but no ledger schema version: not a "
                                     "claimscrub ledger; point --ledger at another database", self.target)
            return 0
        row = db.one("SELECT value FROM meta WHERE key='schema_version'")
        if row is None:
            raise LedgerUnusable("LEDGER_FOREIGN", "its meta table has no schema version: not a claimscrub "
                                 "ledger (or a damaged one)", self.target)
        return int(row[0])

    def _migrate(self, con) -> None:
        db = _Session(con, True)
        version = self._read_version(db)
        if version > SCHEMA_VERSION:
            raise LedgerUnusable("LEDGER_TOO_NEW", too_new_help(version), self.target)
        if version == SCHEMA_VERSION:
            return
        with con.transaction():  # DDL is transactional here: a migration is all or nothing
            db.run("SELECT pg_advisory_xact_lock(?)", (lock_key("migrate"),))
            version = self._read_version(db)  # another process may have migrated while this one waited
            for target in range(version + 1, SCHEMA_VERSION + 1):
                if target == 1:
                    db.run("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    db.run("INSERT INTO meta VALUES ('salt', ?)", (secrets.token_hex(16),))
                    db.run("INSERT INTO meta VALUES ('schema_version', '0')")
                    statements = migration_statements(1, self.dialect)[1:]  # meta is made above
                else:
                    statements = migration_statements(target, self.dialect)
                for statement in statements:
                    db.run(statement)
                db.run("UPDATE meta SET value=? WHERE key='schema_version'", (str(target),))

    @property
    def version(self) -> int:
        with self._session() as db:
            return self._read_version(db)

    # liveness: a run holds an advisory lock on its key on one long-lived connection of its process
    @contextmanager
    def holding_run(self, run_id: str):
        with self._guard_mutex:
            if self._guard is None:
                self._guard = self._connect()
            self._guard.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"run:{run_id}"),))
            self._held.add(run_id)
        try:
            yield self
        finally:
            with self._guard_mutex:
                self._held.discard(run_id)
                try:
                    self._guard.execute("SELECT pg_advisory_unlock(%s)", (lock_key(f"run:{run_id}"),))
                    if not self._held:
                        self._guard.close()
                        self._guard = None
                except Exception:  # noqa: BLE001 - the server ends a closed session's locks anyway
                    self._guard = None

    def run_alive(self, run_id: str) -> bool:
        """Whether the run's process still holds its lock (this process's own runs: while it says so)."""
        if run_id in self._held:
            return True
        key = lock_key(f"run:{run_id}")
        with self._session() as db:
            if db.one("SELECT pg_try_advisory_lock(?)", (key,))[0]:
                db.run("SELECT pg_advisory_unlock(?)", (key,))
                return False
            return True

    @contextmanager
    def setup_lock(self):
        """The night's setup, one process at a time (others wait for it, up to ``SETUP_WAIT_S``)."""
        con = self._connect()
        try:
            key = lock_key("night-setup")
            deadline = time.monotonic() + SETUP_WAIT_S
            while not con.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise LedgerUnusable("LEDGER_BUSY", "another nightly process has held the night's setup "
                                         f"lock for over {SETUP_WAIT_S} s; run again later", self.target)
                time.sleep(0.5)
            yield
        finally:
            con.close()  # the session's advisory locks end with it
