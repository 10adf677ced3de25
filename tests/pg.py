"""A real PostgreSQL server for the tests, and a brand-new empty database per test.

Server discovery, once per test session (``server()``):

1. the admin URL ``CLAIMSCRUB_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
   the trust-auth server this project's machines run), if it answers;
2. else a throwaway server started from the Debian ``postgresql`` binaries (``initdb``/``pg_ctl`` on PATH
   or under ``/usr/lib/postgresql/*/bin``) in a temporary folder, on a free port of 127.0.0.1 with its unix
   socket in that folder, stopped and removed at the end of the session. ``initdb`` refuses to run as
   root, so as root the server runs as ``nobody`` (the folder is handed to that user);
3. else the tests that need PostgreSQL skip, with one message naming what is missing and how to get it.

``database(admin_url)`` creates a database with a unique name, yields its ``postgresql://`` URL and drops
it afterwards, ending any connection a test left open first.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ADMIN_ENV = "CLAIMSCRUB_TEST_PG_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
INSTALL_HINT = "apt-get install postgresql"
UNPRIVILEGED_USER = "nobody"


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases on (``admin_url`` connects as a superuser)."""

    admin_url: str
    how: str  # "running" (found) or "throwaway" (started by the tests)
    folder: Path | None = None
    _stop: list = field(default_factory=list, repr=False)

    def stop(self) -> None:
        while self._stop:
            self._stop.pop()()


def admin_url() -> str:
    return os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN_URL


def safe(url: str) -> str:
    """The URL without user or password (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def answers(url: str, timeout: int = 3) -> str | None:
    """None if a superuser session opens on ``url``; else why not, in one line."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None


def find_bindir(search: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)) -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: PATH first, then the Debian folders
    (newest version first)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        folder = Path(on_path).resolve().parent
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    found = []
    for pattern in search:
        found += [Path(p) for p in glob.glob(pattern)]

    def version(p: Path):
        try:
            return int(p.parent.name)
        except ValueError:
            return 0

    for folder in sorted(found, key=version, reverse=True):
        if all((folder / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(cmd: list[str]) -> list[str]:
    """``cmd`` run as the unprivileged user when this process is root (initdb refuses root)."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", UNPRIVILEGED_USER, "--", *cmd]
    if shutil.which("setpriv"):
        user = pwd.getpwnam(UNPRIVILEGED_USER)
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *cmd]
    raise RuntimeError("running as root without runuser or setpriv to start PostgreSQL as an unprivileged user")


def start_throwaway(bindir: Path, timeout: int = 60) -> Server:
    """initdb + pg_ctl start in a new temporary folder; the returned server's ``stop()`` stops it and
    removes the folder. Raises RuntimeError (with the server's own words) when it cannot start."""
    # As root the server runs as nobody, who must reach the folder: /tmp, not a private TMPDIR.
    folder = Path(tempfile.mkdtemp(prefix="claimscrub-pg-", dir="/tmp" if os.geteuid() == 0 else None))
    data, log = folder / "data", folder / "server.log"
    server = Server(admin_url="", how="throwaway", folder=folder)
    server._stop.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(folder, user.pw_uid, user.pw_gid)
        os.chmod(folder, 0o700)
        run = dict(capture_output=True, text=True, timeout=timeout, cwd=folder)
        init = subprocess.run(_as_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                        "-E", "UTF8", "--locale=C", "--no-sync"]), **run)
        if init.returncode:
            raise RuntimeError(f"initdb failed: {(init.stderr or init.stdout).strip()[-500:]}")
        port = free_port()
        opts = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        start = subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                                         "-w", "-t", str(timeout), "start"]), **run)
        if start.returncode:
            tail = log.read_text(errors="replace")[-500:] if log.exists() else start.stderr
            raise RuntimeError(f"pg_ctl start failed: {tail.strip()}")
        server._stop.append(lambda: subprocess.run(
            _as_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True, timeout=timeout, cwd=folder))
        server.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + timeout
        while (why := answers(server.admin_url)) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the throwaway server does not answer: {why}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    return server


def server(search: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)) -> Server | str:
    """A server to create test databases on, or the one-line reason there is none (for pytest.skip)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "PostgreSQL tests skipped: psycopg is not installed (pip install -e '.[dev]')"
    url = admin_url()
    why = answers(url)
    if why is None:
        return Server(admin_url=url, how="running")
    bindir = find_bindir(search)
    if bindir is None:
        return (f"PostgreSQL tests skipped: no server answers at {safe(url)} ({why}) and no PostgreSQL "
                f"binaries (initdb, pg_ctl) are on PATH or under /usr/lib/postgresql/*/bin to start a throwaway "
                f"one: {INSTALL_HINT}, or set {ADMIN_ENV} to a superuser URL")
    try:
        return start_throwaway(bindir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return (f"PostgreSQL tests skipped: no server answers at {safe(url)} ({why}) and a throwaway server "
                f"from {bindir} did not start: {e}")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def drop(admin: str, name: str) -> None:
    """Drop database ``name``, ending any session still on it first."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)


def exists(admin: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@contextlib.contextmanager
def database(admin: str, prefix: str = "claimscrub_test") -> Iterator[str]:
    """A new empty database with a unique name; yields its URL; dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
    try:
        yield with_database(admin, name)
    finally:
        drop(admin, name)
