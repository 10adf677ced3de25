"""Before a night on Dask: check every worker, and say what the cluster cannot do before anything is scrubbed.

``preflight(address, paths, ...)`` runs ``worker_facts`` on every worker (``client.run``) and judges what
they report (``judge``, pure):

1. **Child processes.** A daemonic worker (Dask's default, ``distributed.worker.daemon``) cannot start the
   child each file is scrubbed in, so its files run in-process, without the memory and time limits: a
   warning before the night, naming the fix (``DASK_DISTRIBUTED__WORKER__DAEMON=False``).
2. **The folders.** The inbox, outbox, archive and quarantine, by the absolute paths this host resolved,
   must be on every worker, be the same folders this host sees (a hidden marker file written here must be
   there), and be writable. Otherwise a refusal naming the folder and the worker; nothing is created on
   the worker.
3. **The Prefect API** (a cluster given by address): the workers report their task runs to the API this
   run uses (Prefect sends its settings along with each task), so it must be a server every worker
   reaches. Prefect's in-process ephemeral API reaches no worker; this command's temporary API listens on
   127.0.0.1 of this host only.
4. **The ledger.** An SQLite ledger: its folder is on every worker (the same folder), and when the ledger
   exists here it exists there: a worker never starts a ledger of its own. A PostgreSQL ledger: every
   worker connects to it (a short timeout).

Also: ``absolute_params`` makes every path a night hands to workers absolute on this host first, and
``outbox_markdown`` is the artifact's link to the night's outputs (``outbox_link`` in the config).
Dask and Prefect are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

FOLDERS = ("inbox", "outbox", "archive", "quarantine")
MARKER_PREFIX = ".claimscrub-preflight-"  # hidden: the inbox scan leaves it alone
CONNECT_TIMEOUT_S = 5
SCHEDULER_TIMEOUT_S = 20
WORKERS_WAIT_S = 20
DAEMON_FIX = "DASK_DISTRIBUTED__WORKER__DAEMON=False"
MAX_LINES = 6


class ClusterRefused(Exception):
    """The cluster cannot run the night; ``lines``: one line per problem (folders, worker, what to do)."""

    exit_code = 2

    def __init__(self, lines: list[str]):
        self.lines = lines[:MAX_LINES] + ([f"(and {len(lines) - MAX_LINES} more)"] if len(lines) > MAX_LINES else [])
        super().__init__("the Dask cluster cannot run the night: " + self.lines[0])


# --- ledger targets --------------------------------------------------------------------------------

def _is_url(target) -> bool:
    from pipeline.ledger import is_url

    return is_url(target)


def _describe(target) -> str:
    """A URL without its user name and password (safe for a terminal or a log)."""
    from pipeline.ledger import describe

    return describe(target)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


# --- paths ----------------------------------------------------------------------------------------

PATH_PARAMS = ("root", "inbox", "outbox", "archive", "quarantine", "config_path")


def absolute_params(params: dict) -> dict:
    """The nightly flow's parameters with every folder and the ledger named, by absolute paths resolved on
    this host (config paths and a relative ``--root`` included): the flow hands them to workers elsewhere,
    whose working folder is not this one. A ledger URL is kept as it is."""
    from pipeline.config import load_config
    from pipeline.nightly import resolve_paths

    out = dict(params)
    for key in PATH_PARAMS:
        if out.get(key) is not None:
            out[key] = Path(out[key]).expanduser().resolve()
    config = load_config(out.get("config_path"))
    ledger = out.get("ledger")
    url = ledger if _is_url(ledger) else None
    overrides = {k: out.get(k) for k in FOLDERS}
    if url is None and ledger is not None:
        overrides["ledger"] = Path(ledger)
    paths = resolve_paths(config, out.get("root"), **overrides)
    for key in FOLDERS:
        out[key] = Path(getattr(paths, key)).expanduser().resolve()
    target = url or paths.ledger  # a str either way: the flow's ledger parameter may be a URL or a path
    out["ledger"] = str(target) if _is_url(target) else str(Path(target).expanduser().resolve())
    return out


# --- on each worker -------------------------------------------------------------------------------

def _writable(folder: Path) -> bool:
    """Whether a file can be made (and is removed again) in ``folder``."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=MARKER_PREFIX)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


def _folder_state(path: str, marker: str | None) -> str:
    folder = Path(path)
    if not folder.is_dir():
        return "missing"
    if marker and not (folder / marker).exists():
        return "other"
    if not _writable(folder):
        return "read-only"
    return "ok"


def _ledger_connects(target: str, timeout: int) -> str | None:
    """None if a session opens on the PostgreSQL ledger from here; else why not, in one line (no secret)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'claimscrub[postgresql]')"
    try:
        try:
            from pipeline.ledger_pg import resolve  # a Prefect Secret block holding the URL, once merged
        except ImportError:
            dsn = target
        else:
            dsn = resolve(target)
        with psycopg.connect(dsn, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure is the answer; first line only, never the URL
        detail = getattr(exc, "detail", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return detail
    return None


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of claimscrub's own code as this process imported it (``pipeline`` and ``schemas``): a worker
    started before an upgrade keeps the old code, and its files would be scrubbed by it."""
    import hashlib

    import pipeline
    import schemas

    digest = hashlib.sha256()
    for package in (pipeline, schemas):
        base = Path(package.__file__).parent
        for path in sorted(p for p in base.rglob("*") if p.suffix in (".py", ".toml") and p.is_file()):
            digest.update(str(path.relative_to(base.parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def worker_facts(folders: dict[str, str], markers: dict[str, str | None], ledger: dict,
                 api_url: str | None, timeout: int = CONNECT_TIMEOUT_S) -> dict:
    """What one worker sees (run there by ``client.run``): its host, whether it may start child processes,
    the state of each folder (ok, missing, other: not the folder the submitting host sees, read-only), the
    ledger's and whether the Prefect API at ``api_url`` answers from there. Creates nothing that stays."""
    import multiprocessing

    facts: dict = {"host": socket.gethostname(), "daemon": bool(multiprocessing.current_process().daemon),
                   "folders": {name: _folder_state(path, markers.get(name)) for name, path in folders.items()},
                   "api": None, "ledger": None, "code": code_fingerprint()}
    if ledger.get("kind") == "sqlite":
        path = Path(ledger["path"])
        state = _folder_state(str(path.parent), markers.get("ledger"))
        if state == "ok" and ledger.get("exists_here") and not path.is_file():
            state = "no-ledger"
        facts["ledger"] = state
    elif ledger.get("kind") == "postgresql":
        facts["ledger"] = _ledger_connects(ledger["target"], timeout)
    if api_url:
        from pipeline.localserver import api_healthy

        facts["api"] = api_healthy(api_url, timeout=timeout)
    return facts


# --- judging what the workers said (pure) -----------------------------------------------------------

@dataclass
class Verdict:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    workers: int = 0


_FOLDER_HELP = {
    "missing": "does not exist on Dask worker {w}",
    "other": "on Dask worker {w} is not the folder this host sees at that path (no shared folder there)",
    "read-only": "cannot be written on Dask worker {w}",
}


def judge(facts: dict[str, dict | BaseException], folders: dict[str, str], ledger: dict, *, remote: bool,
          api_url: str | None, api_kind: str, local_host: str, code: str | None = None) -> Verdict:
    """The refusals and warnings for the workers' ``facts`` (worker address -> ``worker_facts`` or the error
    it raised). ``api_kind``: "server" (a configured URL), "temporary" (this command's own, on 127.0.0.1)
    or "ephemeral" (in-process, no URL); checked only for a ``remote`` cluster. ``code``: this host's
    ``code_fingerprint``; a worker running other code is refused."""
    v = Verdict(workers=len(facts))
    daemonic, other_hosts = [], set()
    for addr, f in sorted(facts.items()):
        if isinstance(f, BaseException):
            first = (str(f).strip().splitlines() or [""])[0][:200]
            v.refusals.append(f"Dask worker {addr} could not run claimscrub's checks ({type(f).__name__}: {first}); "
                              "install the same claimscrub on every worker")
            continue
        w = f"{addr} on host {f['host']}"
        if code and f.get("code") != code:
            v.refusals.append(f"Dask worker {w} runs other claimscrub code than this host (code {f.get('code') or 'older'}"
                              f", here {code}): install the same claimscrub there and restart the worker")
        if f["host"] != local_host:
            other_hosts.add(f["host"])
        if f["daemon"]:
            daemonic.append(w)
        for name in FOLDERS:
            state = f["folders"].get(name, "ok")
            if state != "ok":
                v.refusals.append(f"the {name} folder {folders[name]} {_FOLDER_HELP[state].format(w=w)}: every "
                                  "worker must see the shared folders at the same absolute path")
        if ledger.get("kind") == "sqlite" and f["ledger"] not in (None, "ok"):
            path = ledger["path"]
            if f["ledger"] == "no-ledger":
                v.refusals.append(f"the ledger {path} is not on Dask worker {w} (a worker would start a ledger of "
                                  "its own): put it in a folder every worker shares at the same path, or use a "
                                  "postgresql:// ledger")
            else:
                v.refusals.append(f"the ledger's folder {Path(path).parent} {_FOLDER_HELP[f['ledger']].format(w=w)}: "
                                  "every worker must reach the ledger at the same absolute path, or use a "
                                  "postgresql:// ledger")
        if ledger.get("kind") == "postgresql" and f["ledger"]:
            v.refusals.append(f"Dask worker {w} cannot connect to the ledger {_describe(ledger['target'])}: "
                              f"{f['ledger']}")
        if remote and api_kind == "server" and f["api"] is False:
            v.refusals.append(f"the Prefect API at {_safe_url(api_url)} does not answer from Dask worker {w}; "
                              "the workers report their tasks to it: run the Prefect server where every worker "
                              "reaches it and set PREFECT_API_URL to that address")
    if remote and api_kind == "ephemeral":
        v.refusals.append("a Dask cluster given by address needs a Prefect server its workers can reach, and this "
                          "run has none (Prefect's ephemeral API lives in this process): start one (prefect server "
                          "start --host 0.0.0.0) and set PREFECT_API_URL to it")
    if remote and api_kind == "temporary" and other_hosts:
        v.refusals.append(f"this command's temporary Prefect API ({_safe_url(api_url)}, on this host only) cannot "
                          f"serve Dask workers on other hosts ({', '.join(sorted(other_hosts))}): start a Prefect "
                          "server they reach (prefect server start --host 0.0.0.0) and set PREFECT_API_URL to it")
    if daemonic:
        v.warnings.append(f"{len(daemonic)} Dask worker(s) cannot start child processes ({', '.join(daemonic)}); "
                          "files will be scrubbed in-process there, without memory or time limits; start the "
                          f"workers with {DAEMON_FIX}")
    if ledger.get("kind") == "sqlite" and other_hosts and not v.refusals:
        v.warnings.append(f"the SQLite ledger {ledger['path']} is shared with Dask workers on other hosts "
                          f"({', '.join(sorted(other_hosts))}) over a network folder, where SQLite's locking is "
                          "not reliable: use a postgresql:// ledger for a cluster of several hosts")
    return v


# --- on this host ---------------------------------------------------------------------------------

def api_in_use() -> tuple[str | None, str]:
    """The Prefect API URL this run's tasks will use (Prefect sends it to the workers) and its kind:
    server, temporary (``pipeline.localapi``'s, on 127.0.0.1) or ephemeral (no URL)."""
    from prefect.settings import PREFECT_API_URL

    from pipeline import localapi

    url = PREFECT_API_URL.value()
    if not url:
        return None, "ephemeral"
    return url, "temporary" if url in localapi.ACTIVE else "server"


@contextlib.contextmanager
def _markers(folders: dict[str, str]) -> Iterator[dict[str, str | None]]:
    """A hidden empty file in each folder for the ``with`` block (None where it cannot be made: the
    worker then only checks the folder is there)."""
    made: dict[str, str | None] = {}
    name = f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    try:
        for key, folder in folders.items():
            try:
                Path(folder, name).touch(exist_ok=False)
                made[key] = name
            except OSError:
                made[key] = None
        yield made
    finally:
        for key, marker in made.items():
            if marker:
                with contextlib.suppress(OSError):
                    Path(folders[key], marker).unlink()


def ledger_spec(target) -> dict:
    if _is_url(target):
        return {"kind": "postgresql", "target": str(target)}
    path = Path(target)
    return {"kind": "sqlite", "path": str(path), "exists_here": path.is_file()}


def check_cluster(client, params: dict, *, remote: bool) -> Verdict:
    """Run ``worker_facts`` on every worker of ``client``'s cluster and judge them (``params``: the
    flow's absolute parameters, ``absolute_params``)."""
    folders = {k: str(params[k]) for k in FOLDERS}
    ledger = ledger_spec(params["ledger"])
    api_url, api_kind = api_in_use()
    marked = dict(folders)
    if ledger["kind"] == "sqlite":
        marked["ledger"] = str(Path(ledger["path"]).parent)
    with _markers(marked) as markers:
        facts = client.run(worker_facts, folders, markers, ledger, api_url if remote else None,
                           on_error="return")
    return judge(facts, folders, ledger, remote=remote, api_url=api_url, api_kind=api_kind,
                 local_host=socket.gethostname(), code=code_fingerprint())


def connect(address: str):
    """A Dask client on the scheduler at ``address`` with at least one worker, else ClusterRefused."""
    from distributed import Client

    try:
        client = Client(address, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterRefused([f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}); check the "
                              "address (tcp://host:8786) and that the scheduler is running"]) from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_WAIT_S)
    except TimeoutError:
        client.close()
        raise ClusterRefused([f"the Dask scheduler at {address} has no workers (waited {WORKERS_WAIT_S} s): start "
                              f"them with `{DAEMON_FIX} dask worker {address}`"]) from None
    return client


def preflight(address: str, params: dict, *, remote: bool,
              notify: Callable[[str], None] | None = None) -> Verdict:
    """Check the cluster at ``address`` before the night: raises ClusterRefused (nothing scrubbed) or
    returns the verdict, its warnings given to ``notify`` (default: this module's logger)."""
    import logging

    with contextlib.closing(connect(address)) as client:
        verdict = check_cluster(client, params, remote=remote)
    if verdict.refusals:
        raise ClusterRefused(verdict.refusals)
    say = notify or logging.getLogger(__name__).warning
    for line in verdict.warnings:
        say(line)
    return verdict


@contextlib.contextmanager
def dask_cluster(address: str | None, workers: int) -> Iterator[str]:
    """The scheduler address of the night's cluster: ``address`` as given, or a LocalCluster of ``workers``
    processes (one thread each, allowed child processes) for the ``with`` block."""
    if address:
        yield address
        return
    import dask
    from distributed import LocalCluster

    # Worker processes must be allowed children: each file is read in a limited child process.
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster:
        yield cluster.scheduler_address


# --- the artifact's link to the outputs -------------------------------------------------------------

def outbox_markdown(base: str | None, outbox_day: Path, day: str, host: str | None = None) -> str:
    """Markdown naming the night's output folder so the team can open it: under ``base`` (``outbox_link``
    in the config: a URL, a share path ``\\\\server\\share\\outbox`` or a path as the team mounts it), else
    the folder's path and the host it is on."""
    if not base:
        return (f"`{outbox_day}` on host `{host or socket.gethostname()}` (set `outbox_link` in the config for "
                "a link the team can open)")
    if base.startswith("\\\\") or re.match(r"^[a-zA-Z]:[\\/]", base):  # a Windows share or drive
        path = base.rstrip("\\/") + "\\" + day
        href = path.replace("\\", "/")
        href = "file:" + quote(href) if href.startswith("//") else "file:///" + quote(href, safe="/:")
        return f"[`{path}`]({href})"
    if "://" in base:
        link = base.rstrip("/") + "/" + quote(day)
        return f"[{link}]({link})"
    path = base.rstrip("/") + "/" + day
    return f"[`{path}`](file://{quote(path)})"
