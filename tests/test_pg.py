"""The PostgreSQL test harness itself (tests/pg.py): each test's database is new, empty, writable and
dropped afterwards; the throwaway server starts and stops from the Debian binaries; with neither a server
nor binaries the skip names what is missing."""

import pytest

from tests import pg


def _connect(url):
    import psycopg

    return psycopg.connect(url, connect_timeout=10, autocommit=True)


def test_the_database_is_new_empty_and_writable(pg_url):
    assert pg_url.startswith("postgresql://")
    with _connect(pg_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        assert name.startswith("claimscrub_test_")
        tables = conn.execute("SELECT count(*) FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchone()[0]
        assert tables == 0
        conn.execute("CREATE TABLE runs (id serial PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO runs (note) VALUES ('first'), ('second')")
        assert conn.execute("SELECT note FROM runs ORDER BY id").fetchall() == [("first",), ("second",)]


def test_two_databases_are_separate(pg_server):
    with pg.database(pg_server.admin_url) as a, pg.database(pg_server.admin_url) as b:
        assert a != b
        with _connect(a) as conn:
            conn.execute("CREATE TABLE only_in_a (x int)")
        with _connect(b) as conn:
            assert conn.execute("SELECT to_regclass('only_in_a')").fetchone()[0] is None


def test_the_database_is_dropped_afterwards_even_with_a_connection_left_open(pg_server):
    with pg.database(pg_server.admin_url) as url:
        name = url.rsplit("/", 1)[1]
        left_open = _connect(url)  # a test that forgot to close its connection
        left_open.execute("CREATE TABLE t (x int)")
        assert pg.exists(pg_server.admin_url, name)
    assert not pg.exists(pg_server.admin_url, name)
    left_open.close()


def test_a_throwaway_server_starts_from_the_binaries_and_is_removed():
    """The fallback for a machine without a running server, run for real (as ``nobody`` when root)."""
    pytest.importorskip("psycopg")
    bindir = pg.find_bindir()
    if bindir is None:
        pytest.skip(f"no PostgreSQL binaries (initdb, pg_ctl) to start a throwaway server: {pg.INSTALL_HINT}")
    server = pg.start_throwaway(bindir)
    try:
        assert server.how == "throwaway" and server.admin_url != pg.DEFAULT_ADMIN_URL
        assert sorted(p.name for p in server.folder.iterdir() if p.name.startswith(".s.PGSQL"))  # its socket
        with pg.database(server.admin_url) as url, _connect(url) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        server.stop()
    assert not server.folder.exists()
    assert pg.answers(server.admin_url, timeout=2) is not None  # stopped


def test_without_server_or_binaries_the_skip_says_what_is_missing(monkeypatch, tmp_path):
    pytest.importorskip("psycopg")
    monkeypatch.setenv(pg.ADMIN_ENV, f"postgresql://postgres:hunter2@127.0.0.1:{pg.free_port()}/postgres")
    monkeypatch.setenv("PATH", str(tmp_path))  # no initdb on PATH
    found = pg.server(search=(str(tmp_path / "none" / "*" / "bin"),))
    assert isinstance(found, str)
    assert "no server answers at postgresql://127.0.0.1:" in found
    assert "apt-get install postgresql" in found and pg.ADMIN_ENV in found
    assert "hunter2" not in found
