"""The ledger on a real PostgreSQL server: migrations, one salt, and nightly processes sharing one inbox.

Every test gets a new empty database (``pg_url``); the nightly processes are real ``claimscrub nightly``
processes on the session's Prefect API, started together over one shared inbox with their own outboxes.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pipeline.ledger import SCHEMA_VERSION, Ledger, LedgerUnusable, migration_statements, open_ledger
from pipeline.sample import write_sample
from tests.conftest import AS_OF, ROOT

psycopg = pytest.importorskip("psycopg")
DAY = AS_OF.isoformat()


def _q(url: str, sql: str, params=()) -> list:
    with psycopg.connect(url, autocommit=True) as con:
        cur = con.execute(sql, params)
        return cur.fetchall() if cur.description else []


# ---------------------------------------------------------------- schema and migrations


def _sqlite_columns(path: Path) -> dict:
    with sqlite3.connect(path) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                                            "'sqlite_%'")]
        return {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in tables}


def _pg_columns(url: str) -> dict:
    rows = _q(url, "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = "
                   "current_schema() ORDER BY table_name, ordinal_position")
    out: dict = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def test_same_schema_on_both_backends_and_one_salt(pg_url, tmp_path):
    """A new PostgreSQL ledger has the SQLite ledger's tables and columns, its schema version, and one salt
    even when four processes' worth of threads open the empty database at once."""
    salts, errors = [], []

    def open_one():
        try:
            salts.append(open_ledger(pg_url).salt)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(salts) == 4 and len(set(salts)) == 1
    assert _q(pg_url, "SELECT COUNT(*) FROM meta WHERE key='salt'") == [(1,)]
    book = open_ledger(pg_url)
    assert book.version == SCHEMA_VERSION and book.dialect == "postgresql"
    lite = Ledger(tmp_path / "ledger.sqlite")
    assert _pg_columns(pg_url) == _sqlite_columns(lite.path)


def test_migrates_a_schema_3_ledger_in_place(pg_url):
    """A PostgreSQL ledger written at schema 3 (before file claims) keeps its salt, rows and dispositions
    and gains the claims table when a newer claimscrub opens it."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for target in (1, 2, 3):
            for statement in migration_statements(target, "postgresql")[1 if target == 1 else 0:]:
                con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('salt', 'old-salt'), ('schema_version', '3')")
        con.execute("INSERT INTO files (sha256, name, size, status, run_id, seen_at) VALUES "
                    "('ab', 'x.csv', 1, 'scrubbed', 'r0', '2026-01-01')")
        con.execute("INSERT INTO dispositions (exception_id, status, changed_at, source) VALUES "
                    "('E1', 'Not an issue', '2026-01-01', 'test')")
    book = open_ledger(pg_url)
    assert book.version == SCHEMA_VERSION and book.salt == "old-salt"
    assert book.scrubbed("ab")["name"] == "x.csv"
    assert book.dispositions(["E1"])["status"].tolist() == ["Not an issue"]
    assert book.claim("cd", "y.csv", "r1", "/w/y.csv") is None and book.claim("cd", "y.csv", "r2", "/w") == "r1"


def test_refuses_what_it_must_not_use(pg_url):
    """A newer schema, a database of someone else's tables, a URL with a password: refused, one line each,
    and the password never appears in it."""
    _q(pg_url, "CREATE TABLE files (id INT)")
    with pytest.raises(LedgerUnusable) as foreign:
        open_ledger(pg_url)
    assert foreign.value.code == "LEDGER_FOREIGN"
    _q(pg_url, "DROP TABLE files")
    open_ledger(pg_url)
    _q(pg_url, "UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(LedgerUnusable) as newer:
        open_ledger(pg_url)
    assert newer.value.code == "LEDGER_TOO_NEW"
    secret = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    with pytest.raises(LedgerUnusable) as pw:
        open_ledger(secret)
    assert pw.value.code == "LEDGER_PASSWORD_IN_URL" and "hunter2" not in pw.value.line


def test_a_root_keeps_the_configured_postgresql_ledger(tmp_path):
    """``--root DIR`` names the folders; a PostgreSQL ledger from the config stays the ledger (no
    DIR/ledger.sqlite in its place), and every folder is absolute."""
    from pipeline.config import ScrubConfig
    from pipeline.nightly import resolve_paths

    url = "postgresql://claimscrub@db.example.org:5432/claimscrub"
    paths = resolve_paths(ScrubConfig(ledger=url), Path(os.path.relpath(tmp_path / "night")))
    assert paths.ledger == url and paths.lock is None
    assert paths.inbox == tmp_path / "night" / "inbox" and paths.inbox.is_absolute()


def test_unreachable_server_is_one_line_exit_5(tmp_path):
    """``claimscrub nightly --ledger postgresql://...`` on a port where no server listens: exit 5, one line,
    nothing scrubbed, no file moved."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(ROOT / "sample_claims" / "clean.csv", inbox / "clean.csv")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "nightly", "--root", str(tmp_path), "--ledger",
                           "postgresql://postgres@127.0.0.1:9/nowhere", "--settle-seconds", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 5, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("claimscrub: ledger postgresql://127.0.0.1:9/nowhere: cannot connect") and line.endswith(
        "[LEDGER_UNREACHABLE]")
    assert (inbox / "clean.csv").exists()


# ---------------------------------------------------------------- two nightly processes over one inbox


FILES, LINES = 8, 600


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """Exports that share their patients (the generator's seeds draw from one population), so sessions
    in one file repeat sessions in others: HFS-030 across files."""
    folder = tmp_path_factory.mktemp("exports")
    for seed in range(1, FILES + 1):
        write_sample(LINES, folder / f"export-{seed:02d}.csv", seed)
    return folder


def _drop(exports: Path, inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    past = time.time() - 3600
    for p in sorted(exports.iterdir()):
        shutil.copy(p, inbox / p.name)
        os.utime(inbox / p.name, (past, past))


def _hfs030(outbox: Path) -> list[tuple]:
    """(source file, claim id) of every HFS-030 exception in a night's review workbook."""
    found = []
    for path in (outbox / DAY).glob(f"nightly-review-{DAY}*.xlsx"):
        rows = list(load_workbook(path, read_only=True)["Exceptions"].iter_rows(values_only=True))
        head = next(i for i, r in enumerate(rows) if "Rule" in r)
        names = list(rows[head])
        rule, claim, source = names.index("Rule"), names.index("Claim ID"), names.index("Source File")
        found += [(r[source], r[claim]) for r in rows[head + 1:] if r[rule] == "HFS-030"]
    return sorted(found)


@pytest.fixture(scope="module")
def one_process(exports, tmp_path_factory, prefect_harness) -> list[tuple]:
    """The reference: the same exports in one night of one process (SQLite ledger)."""
    from pipeline.flows import run_nightly

    root = tmp_path_factory.mktemp("one")
    _drop(exports, root / "inbox")
    summary = run_nightly(root=root, settle_seconds=0, as_of=AS_OF)
    assert [f["status"] for f in summary["files"]] == ["scrubbed"] * FILES
    found = _hfs030(root / "outbox")
    assert summary["cross_file_repeats"] > 0 and len(found) > summary["cross_file_repeats"] // 2
    return found


def _night(shared: Path, outbox: Path, url: str, log: Path) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PYTHONPATH=str(ROOT), PREFECT_API_URL=PREFECT_API_URL.value())
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "nightly", "--inbox", str(shared / "inbox"), "--archive",
             str(shared / "archive"), "--quarantine", str(shared / "quarantine"), "--outbox", str(outbox),
             "--ledger", url, "--settle-seconds", "0", "--as-of", DAY, "--max-files", "1"],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _exactly_once(shared: Path, outboxes: list[Path], url: str) -> None:
    """Every export scrubbed once: one scrubbed row per content, archived, its workbook in one outbox,
    nothing left in the inbox, no claim or working folder left."""
    rows = _q(url, "SELECT sha256, status, archived_at FROM files")
    assert len(rows) == FILES and len({r[0] for r in rows}) == FILES, rows
    assert all(status == "scrubbed" and archived for _, status, archived in rows), rows
    assert sorted(p.name for p in (shared / "archive" / DAY).iterdir()) == [
        f"export-{s:02d}.csv" for s in range(1, FILES + 1)]
    assert not list((shared / "inbox").iterdir())  # no file, and no working folder either
    books = [p.name for o in outboxes for p in (o / DAY).glob("*.exceptions.xlsx")]
    assert len(books) == len(set(books)) == FILES
    assert _q(url, "SELECT COUNT(*) FROM claims") == [(0,)]


def test_two_processes_share_one_inbox(exports, one_process, pg_url, tmp_path):
    """Two nightly processes at once over one shared inbox, separate outboxes, one PostgreSQL ledger: both
    exit 0, each scrubs a share of the files, every file is scrubbed exactly once, and the HFS-030 repeats
    across files are exactly those one process finds in one night."""
    shared = tmp_path / "shared"
    _drop(exports, shared / "inbox")
    outboxes = [tmp_path / "a" / "outbox", tmp_path / "b" / "outbox"]
    procs = [_night(shared, o, pg_url, tmp_path / f"{i}.log") for i, o in enumerate(outboxes)]
    for i, proc in enumerate(procs):
        assert proc.wait(timeout=400) == 0, (tmp_path / f"{i}.log").read_text()[-3000:]
    _exactly_once(shared, outboxes, pg_url)
    shares = [len(list((o / DAY).glob("*.exceptions.xlsx"))) for o in outboxes]
    assert all(shares), shares  # both processes took files
    runs = _q(pg_url, "SELECT outcome, files FROM runs")
    assert sorted(runs) == sorted([("ok", n) for n in shares])
    assert sorted(_hfs030(outboxes[0]) + _hfs030(outboxes[1])) == one_process
    # each review workbook is named by its run, so outboxes shared by the processes would keep both
    reviews = sorted(p.name for o in outboxes for p in (o / DAY).glob("nightly-review-*.xlsx"))
    assert reviews == sorted(f"nightly-review-{DAY}.run-{r}.xlsx" for (r,) in _q(pg_url, "SELECT id FROM runs"))


def test_a_process_killed_mid_night_loses_nothing(exports, pg_url, tmp_path, prefect_harness):
    """kill -9 of one of two processes while it scrubs: the other ends with exit 0 (it does not wait for the
    dead one); the file the killed run held is taken back by the first night whose setup comes after the
    kill (the other process's, or the re-run) and finished. Every file is scrubbed exactly once, nothing is
    lost, the killed run is closed as crashed."""
    shared = tmp_path / "shared"
    _drop(exports, shared / "inbox")
    outboxes = [tmp_path / "a" / "outbox", tmp_path / "b" / "outbox", tmp_path / "c" / "outbox"]
    victim = _night(shared, outboxes[0], pg_url, tmp_path / "a.log")
    other = None
    deadline = time.monotonic() + 300
    killed_run = None
    while time.monotonic() < deadline and killed_run is None:  # the victim has done a file and holds another
        if other is None and _tables(pg_url) and _q(pg_url, "SELECT 1 FROM claims"):
            # the victim has its first file: the other starts now (both starting at once, the other could
            # take all but one file, leaving the victim nothing to be killed with)
            other = _night(shared, outboxes[1], pg_url, tmp_path / "b.log")
        done = _q(pg_url, "SELECT run_id, COUNT(*) FROM files GROUP BY run_id") if _tables(pg_url) else []
        held = _q(pg_url, "SELECT run_id FROM claims") if _tables(pg_url) else []
        victims = [r for r, n in done if n >= 1 and (r,) in held and _run_pid(pg_url, r) == victim.pid]
        assert victim.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
        if victims:
            # Frozen first, so that it cannot finish the file between the look and the kill (a fast scrub did).
            os.killpg(victim.pid, signal.SIGSTOP)
            in_flight = [Path(w).name for (w,) in _q(pg_url, "SELECT work_path FROM claims WHERE run_id=%s",
                                                     (victims[0],))]
            if in_flight:
                killed_run = victims[0]
                os.killpg(victim.pid, signal.SIGKILL)
            else:  # it finished that file meanwhile: let it go on to the next
                os.killpg(victim.pid, signal.SIGCONT)
        time.sleep(0.05)
    assert killed_run, "the victim never held a file after finishing one"
    assert in_flight  # it was killed holding a file, in its working folder
    victim.wait(timeout=30)
    assert other is not None and other.wait(timeout=400) == 0, (tmp_path / "b.log").read_text()[-3000:]
    # The killed run's file waits, claimed, for a night that starts after the kill: the other process took it
    # back if its own setup came after the kill, else the re-run does. Either way, once (below).
    rerun = _night(shared, outboxes[2], pg_url, tmp_path / "c.log")
    assert rerun.wait(timeout=400) == 0, (tmp_path / "c.log").read_text()[-3000:]
    _exactly_once(shared, outboxes, pg_url)
    outcomes = dict(_q(pg_url, "SELECT id, outcome FROM runs"))
    assert outcomes.pop(killed_run) == "crashed" and set(outcomes.values()) == {"ok"}
    assert _q(pg_url, "SELECT files FROM runs WHERE id=%s", (killed_run,))[0][0] >= 1  # what it finished


def _tables(url: str) -> bool:
    return bool(_q(url, "SELECT 1 FROM information_schema.tables WHERE table_name = 'claims'"))


def _run_pid(url: str, run_id: str) -> int | None:
    rows = _q(url, "SELECT pid FROM runs WHERE id=%s", (run_id,))
    return rows[0][0] if rows else None


def test_url_from_a_prefect_secret_block(pg_url, prefect_harness):
    """``prefect-secret://NAME``: the URL (password included, where there is one) is read from a Prefect
    Secret block; the ledger is named without it; a missing block is one refusal naming the block."""
    import uuid

    from prefect.blocks.system import Secret

    name = f"ledger-{uuid.uuid4().hex[:8]}"
    Secret(value=pg_url).save(name)
    book = open_ledger(f"prefect-secret://{name}")
    assert book.version == SCHEMA_VERSION and book.where == f"prefect-secret://{name}"
    with pytest.raises(LedgerUnusable) as missing:
        open_ledger("prefect-secret://no-such-block")
    assert missing.value.code == "LEDGER_SECRET" and "no-such-block" in missing.value.line
