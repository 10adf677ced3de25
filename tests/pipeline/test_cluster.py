"""The Dask cluster is checked before the night (pipeline/cluster.py), on real schedulers and workers:
a daemonic worker is reported on the terminal, a worker that does not see the inbox (another "host": its
own hostname and mount namespace) or a Prefect API the workers cannot use is refused before anything is
scrubbed, a PostgreSQL ledger a worker cannot reach is named, and a good cluster passes."""

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import cluster
from pipeline.sample import clean_claim, write_csv
from tests.conftest import ROOT, read_all

pytest.importorskip("prefect_dask")
pytestmark = pytest.mark.e2e
AS_OF = dt.date(2024, 6, 30)


def _local_cluster(daemon: bool, workers: int = 1):
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": daemon}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def _settled_file(inbox: Path) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / "claims.csv"
    write_csv(clean_claim("H1", "MBR-4242", "2024-05-11"), path)
    past = time.time() - 3600
    os.utime(path, (past, past))
    return path


def _cli_env(tmp_path: Path, api_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLAIMSCRUB_", "DASK_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _nightly(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "nightly", "--runner", "dask", "--settle-seconds", "0",
                           "--as-of", AS_OF.isoformat(), *map(str, args)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=240)


def _harness_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def good_cluster():
    """One worker process allowed children (as claimscrub's own LocalCluster)."""
    with _local_cluster(daemon=False) as c:
        yield c.scheduler_address


def test_a_good_cluster_passes_and_leaves_nothing_behind(good_cluster, tmp_path, monkeypatch, prefect_harness):
    """A relative --root is resolved here first; the worker sees every folder, the ledger's folder and the
    API; no warning, no refusal, and no marker or probe file left in any folder."""
    monkeypatch.chdir(tmp_path)
    params = cluster.absolute_params({"root": Path("night"), "settle_seconds": 0})
    for key in ("root", *cluster.FOLDERS, "ledger"):
        assert Path(params[key]).is_absolute() and str(params[key]).startswith(str(tmp_path)), key
    verdict = cluster.preflight(good_cluster, params, remote=True)
    assert verdict.workers == 1 and verdict.refusals == [] and verdict.warnings == []
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".claimscrub-")]
    assert not (tmp_path / "night" / "ledger.sqlite").exists()  # the check creates no ledger


def test_an_unreachable_api_refuses_for_a_remote_cluster(good_cluster, tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.localserver import free_port

    params = cluster.absolute_params({"root": tmp_path})
    closed = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: closed}), pytest.raises(cluster.ClusterRefused) as refused:
        cluster.preflight(good_cluster, params, remote=True)
    [line] = refused.value.lines
    assert line.startswith(f"the Prefect API at {closed} does not answer from Dask worker tcp://")
    assert "PREFECT_API_URL" in line
    # With no API URL at all, Prefect's ephemeral API would live in this process: no worker reaches it.
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(cluster.ClusterRefused) as refused:
        cluster.preflight(good_cluster, params, remote=True)
    [line] = refused.value.lines
    assert "has none (Prefect's ephemeral API lives in this process)" in line and "PREFECT_API_URL" in line
    # The local cluster claimscrub starts itself is not remote: its workers use this host's API as it is.
    with temporary_settings(updates={PREFECT_API_URL: closed}):
        assert cluster.preflight(good_cluster, params, remote=False).refusals == []


def test_a_postgresql_ledger_the_workers_cannot_reach_is_named(good_cluster, tmp_path, pg_url):
    from tests.pg import free_port

    params = cluster.absolute_params({"root": tmp_path})
    assert cluster.preflight(good_cluster, {**params, "ledger": pg_url}, remote=False).refusals == []
    unreachable = f"postgresql://claims:hunter2@127.0.0.1:{free_port()}/ledger"
    with pytest.raises(cluster.ClusterRefused) as refused:
        cluster.preflight(good_cluster, {**params, "ledger": unreachable}, remote=False)
    [line] = refused.value.lines
    assert line.startswith("Dask worker tcp://")
    assert "cannot connect to the ledger postgresql://127.0.0.1:" in line and "hunter2" not in line


def test_a_daemonic_worker_is_reported_before_the_night(tmp_path, prefect_harness):
    """`claimscrub nightly --dask-address` on a scheduler whose worker is daemonic (Dask's default): the
    terminal says, before the night's summary, that files run in-process without limits and how to fix it;
    the night still scrubs the file, and its artifact links to the outputs under ``outbox_link``."""
    import asyncio

    from prefect.client.orchestration import get_client

    _settled_file(tmp_path / "night" / "inbox")
    config = tmp_path / "claimscrub.toml"
    config.write_text("outbox_link = '\\\\fileserver\\claims\\outbox'\n")
    with _local_cluster(daemon=True) as c:
        res = _nightly("--dask-address", c.scheduler_address, "--root", tmp_path / "night", "--config", config,
                       env=_cli_env(tmp_path, _harness_url()))
    assert res.returncode == 0, res.stderr[-2000:]
    [warning] = [line for line in res.stderr.splitlines() if "cannot start child processes" in line]
    assert warning.startswith("claimscrub: warning: 1 Dask worker(s) cannot start child processes (tcp://")
    assert "without memory or time limits" in warning and "DASK_DISTRIBUTED__WORKER__DAEMON=False" in warning
    assert ": scrubbed" in res.stdout and "claims.csv" not in res.stdout + res.stderr

    async def summaries():
        async with get_client() as client:
            return [a for a in await read_all(client.read_artifacts) if a.key == "nightly-summary"]

    link = "[`\\\\fileserver\\claims\\outbox\\2024-06-30`](file://fileserver/claims/outbox/2024-06-30)"
    assert any(f"Outputs: {link}" in str(a.data) for a in asyncio.run(summaries()))


@pytest.fixture
def worker_elsewhere(tmp_path):
    """A scheduler here and one worker "on another host": its own hostname, and its own mount namespace in
    which ``tmp_path/shared-in`` is an empty tmpfs (the shared inbox is not mounted there). Needs root."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a worker on another host is simulated with unshare (mount and UTS namespaces): needs root")
    from distributed import Client

    hidden = tmp_path / "shared-in"
    hidden.mkdir()
    with _local_cluster(daemon=False, workers=0) as c:
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        script = 'hostname elsewhere && mount -t tmpfs tmpfs "$0" && exec "$@"'
        proc = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script,
                                 str(hidden), sys.executable, "-m", "distributed.cli.dask_worker", c.scheduler_address,
                                 "--nthreads", "1", "--no-dashboard", "--no-nanny"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            with Client(c.scheduler_address, set_as_default=False) as client:
                try:
                    client.wait_for_workers(1, timeout=60)
                except TimeoutError:
                    pytest.skip("the worker in its own namespaces did not start (unshare or mount refused)")
                yield c.scheduler_address, hidden, client
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_worker_elsewhere_without_the_inbox_or_the_api_refuses(worker_elsewhere, tmp_path):
    """No inbox on the worker, and the command's temporary Prefect API (127.0.0.1 here) for a worker on
    another host: exit 2, one line each naming the folder and the worker or the API; nothing scrubbed,
    nothing created on the worker."""
    address, hidden, client = worker_elsewhere
    inbox = hidden / "inbox"
    claims = _settled_file(inbox)
    res = _nightly("--dask-address", address, "--root", tmp_path / "night", "--inbox", inbox,
                   env=_cli_env(tmp_path, None))  # no PREFECT_API_URL: the command starts its temporary API
    assert res.returncode == 2, res.stdout + res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"claimscrub: the inbox folder {inbox} does not exist on Dask worker tcp://")
    assert " on host elsewhere:" in lines[0] and "same absolute path" in lines[0]
    assert lines[1].startswith("claimscrub: this command's temporary Prefect API (http://127.0.0.1:")
    assert "other hosts (elsewhere)" in lines[1] and lines[1].endswith("; nothing was scrubbed")
    assert claims.exists() and not (tmp_path / "night" / "outbox" / AS_OF.isoformat()).exists()
    assert client.run(os.listdir, str(hidden)) == {w: [] for w in client.scheduler_info()["workers"]}


def test_a_worker_running_other_code_is_refused():
    """A worker started before an upgrade keeps the code it imported: its fingerprint differs from this
    host's and the night is refused, naming the worker (the judge, on what two workers reported)."""
    here = cluster.code_fingerprint()
    seen = {"daemon": False, "folders": {k: "ok" for k in cluster.FOLDERS}, "api": None, "ledger": None}
    facts = {"tcp://10.0.0.5:4000": {**seen, "host": "old-host", "code": "0123456789ab"},
             "tcp://10.0.0.6:4000": {**seen, "host": "new-host", "code": here}}
    verdict = cluster.judge(facts, {k: f"/srv/{k}" for k in cluster.FOLDERS},
                            {"kind": "postgresql", "target": "postgresql://db/claimscrub"}, remote=False, api_url=None, api_kind="server", local_host="here", code=here)
    assert verdict.refusals == [
        f"Dask worker tcp://10.0.0.5:4000 on host old-host runs other claimscrub code than this host (code "
        f"0123456789ab, here {here}): install the same claimscrub there and restart the worker"]
