"""The unattended night as an operator runs it: real Prefect servers, a real process worker, the real CLI.

One Prefect server and one process worker (both on 127.0.0.1, their own PREFECT_HOME) are shared by
the deploy tests; `serve` starts its own server, as it does for a user.
"""

import datetime as dt
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.localserver import LocalServer, free_port
from tests.conftest import ROOT, SAMPLES

pytestmark = pytest.mark.e2e
POOL = "claimscrub-process"
PHI = ("MBR-", "Testperson", "1961-04-02", "Mockford", "mixed.csv", "clean.csv", "broken.xlsx")


def _env(home: Path, api_url: str | None = None, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLAIMSCRUB_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_SERVER_UI_ENABLED="false", **extra)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _cli(*args, env, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], env=env, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _inbox(root: Path, *names: str) -> Path:
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    past = time.time() - 3600  # settled: last modified an hour ago
    for name in names:
        shutil.copy(SAMPLES / name, inbox / name)
        os.utime(inbox / name, (past, past))
    return inbox


def _wait(predicate, timeout: float, every: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _scrubbed(root: Path, name: str, day: str) -> bool:
    """What a user checks: the file archived, its workbook in the outbox, its ledger row."""
    if not (root / "archive" / day / name).exists():
        return False
    if not list((root / "outbox" / day).glob(f"{Path(name).stem}.*.exceptions.xlsx")):
        return False
    with sqlite3.connect(root / "ledger.sqlite") as con:
        return con.execute("SELECT count(*) FROM files WHERE name = ? AND status = 'scrubbed'",
                           (name,)).fetchone()[0] == 1


def _prefect_servers(port: int) -> list[int]:
    """Pids of live `prefect server start` processes on ``port``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server" in argv and b"start" in argv and str(port).encode() in argv:
            found.append(int(proc.name))
    return found


def _client(api_url: str):
    """A sync Prefect client on ``api_url`` (this test process also has the session harness)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Client:
        def __enter__(self):
            self._settings = temporary_settings({PREFECT_API_URL: api_url})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Client()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `prefect server start` on 127.0.0.1 with its own PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_SERVER_UI_ENABLED", "false")
    with LocalServer(home=home, log=home / "server.log") as srv:
        yield srv.api_url, home


@pytest.fixture(scope="module")
def worker(server):
    """A real process worker on the claimscrub pool (started after the pool exists)."""
    api_url, home = server
    log = open(home / "worker.log", "ab")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
                            env=_env(home, api_url, PREFECT_WORKER_QUERY_SECONDS="2"), cwd="/",
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def _flow_runs(api_url: str, deployment: str):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with _client(api_url) as c:
        return c.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                                sort=FlowRunSort.START_TIME_ASC)


def _run(api_url: str, deployment: str, **params):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        return run_deployment(f"nightly-scrub/{deployment}", parameters=params or None, timeout=0)


def _final(api_url: str, run_id, timeout: float = 120):
    def done():
        with _client(api_url) as c:
            run = c.read_flow_run(run_id)
        return run if run.state.is_final() else None

    return _wait(done, timeout, what=f"flow run {run_id} to finish")


def test_deploy_creates_the_pool_and_a_worker_runs_one_night_at_a_time(tmp_path, server, request):
    """It registers nightly-scrub/nightly on a fresh server (pool created), and a process worker started
    anywhere runs it: the inbox is scrubbed, the run is named for the night, a second night waits."""
    api_url, home = server
    root = tmp_path / "root"
    _inbox(root, "mixed.csv")
    with _client(api_url) as c:
        assert not [p for p in c.read_work_pools() if p.name == POOL]

    res = _cli("deploy", "--root", os.path.relpath(root, tmp_path), env=_env(home, api_url), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"work pool {POOL} created" in res.stdout and "nightly-scrub/nightly registered" in res.stdout
    with _client(api_url) as c:
        dep = c.read_deployment_by_name("nightly-scrub/nightly")
        assert c.read_work_pool(POOL).type == "process"
    assert dep.parameters == {"root": str(root.resolve())}  # absolute, though given relative
    assert dep.entrypoint == "pipeline.flows.nightly_scrub_flow" and dep.work_pool_name == POOL
    assert dep.global_concurrency_limit.limit == 1 and dep.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert dep.schedules[0].schedule.cron == "0 2 * * *"

    request.getfixturevalue("worker")  # started only now: the pool above was created by deploy
    first, second = _run(api_url, "nightly"), _run(api_url, "nightly")
    a, b = sorted((_final(api_url, first.id), _final(api_url, second.id)), key=lambda r: r.start_time)
    today = dt.date.today().isoformat()
    assert a.state.type.value == "COMPLETED" and b.state.type.value == "COMPLETED", (a.state, b.state)
    assert a.name == b.name == f"nightly-{today}"
    assert "1 file(s): 1 scrubbed" in a.state.message and "0 file(s)" in b.state.message
    assert _scrubbed(root, "mixed.csv", today)
    with _client(api_url) as c:
        waited = [s.name for s in c.read_flow_run_states(b.id)]
    assert "AwaitingConcurrencySlot" in waited, waited  # queued, not run beside the first
    assert b.start_time >= a.end_time
    assert not any(needle in f"{a.name} {a.parameters} {a.state.message}" for needle in PHI)


def test_prefect_yaml_deploys_as_the_readme_says(tmp_path, server, worker):
    """It deploys the bundled prefect.yaml with `prefect deploy --all` (no extra environment) as
    nightly-scrub/nightly-yaml beside nightly; the worker runs it with the root given per run, and a
    night that quarantined a file ends Failed named Quarantined, its logs free of file names."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    api_url, home = server
    root = tmp_path / "root"
    _inbox(root, "clean.csv")
    (root / "inbox" / "broken.xlsx").write_bytes(b"PK\x03\x04garbage")
    os.utime(root / "inbox" / "broken.xlsx", (time.time() - 3600,) * 2)
    env = _env(home, api_url)
    with _client(api_url) as c:
        before = {d.name for d in c.read_deployments()}
    res = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    with _client(api_url) as c:
        dep = c.read_deployment_by_name("nightly-scrub/nightly-yaml")
        names = {d.name for d in c.read_deployments()}
    assert dep.parameters == {"root": "/srv/claimscrub"} and dep.global_concurrency_limit.limit == 1
    assert before | {"nightly-yaml"} == names  # nightly (claimscrub deploy), when there, is not replaced
    run = _final(api_url, _run(api_url, "nightly-yaml", root=str(root)).id)
    assert (run.state.type.value, run.state.name) == ("FAILED", "Quarantined"), run.state
    assert run.state.message.startswith("2 file(s): 1 scrubbed, 0 duplicate, 1 quarantined")
    assert _scrubbed(root, "clean.csv", dt.date.today().isoformat())
    assert (root / "quarantine" / "broken.xlsx").exists()

    def logged():  # the pipeline logger's warning, from the worker's run (shipped in batches)
        with _client(api_url) as c:
            logs = c.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        text = " ".join(log.message for log in logs)
        return text if "quarantined [E_CORRUPT_ZIP]" in text and "Finished in state" in text else None

    text = _wait(logged, 30, what="the run's logs on the server")
    assert not any(needle in text for needle in PHI) and str(root) not in text


def test_serve_fires_on_its_schedule_with_no_server_configured(tmp_path):
    """It starts a local Prefect server, a scheduled run scrubs the inbox, and SIGTERM stops both."""
    root, home = tmp_path / "root", tmp_path / "prefect-home"
    _inbox(root, "mixed.csv")
    config = tmp_path / "claimscrub.toml"
    config.write_text('schedule = "* * * * *"\ntimezone = "UTC"\nsettle_seconds = 60\n')
    err = open(tmp_path / "serve.err", "w+")  # noqa: SIM115 - closed below
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--root", str(root), "--config", str(config)],
                            env=_env(home, PREFECT_RUNNER_POLL_FREQUENCY="2"), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        port = int(_wait(lambda: re.search(r"127\.0\.0\.1:(\d+)/api", (tmp_path / "serve.err").read_text()), 60,
                         what="serve to start its server").group(1))
        day = dt.date.today().isoformat()
        _wait(lambda: _scrubbed(root, "mixed.csv", day), 150, what="a scheduled run to scrub the inbox")
        fired_after = time.monotonic() - started
        assert _prefect_servers(port), "the local server runs while serve does"
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # the main process only, as systemd's KillMode=mixed does
        code = proc.wait(60)
        err.close()
    log = (tmp_path / "serve.err").read_text()
    assert code in (0, 143), log
    assert "local Prefect server stopped" in log and "Traceback" not in log
    assert not _prefect_servers(port), "a Prefect server outlived serve"
    assert (home / "prefect.db").exists()  # its database in PREFECT_HOME
    print(f"serve: scheduled run scrubbed the inbox {fired_after:.0f} s after start")


def test_scrub_falls_back_in_process_when_the_api_does_not_answer(tmp_path):
    """It scrubs in-process with one warning line when PREFECT_API_URL names a server that is down."""
    api_url = f"http://127.0.0.1:{free_port()}/api"
    started = time.monotonic()
    res = _cli("scrub", SAMPLES / "clean.csv", "--out", tmp_path, "--as-of", "2024-06-30",
               env=_env(tmp_path / "home", api_url))
    took = time.monotonic() - started
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and api_url in warnings[0] and "in-process" in warnings[0]
    assert "Traceback" not in res.stderr and (tmp_path / "clean.exceptions.xlsx").exists()
    assert took < 20



def test_nightly_runs_on_a_temporary_api_when_the_configured_one_does_not_answer(tmp_path):
    """It runs the night with one warning line when PREFECT_API_URL names a server that is down."""
    api_url = f"http://127.0.0.1:{free_port()}/api"
    inbox = tmp_path / "root" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copy(SAMPLES / "clean.csv", inbox / "clean.csv")
    res = _cli("nightly", "--root", tmp_path / "root", "--settle-seconds", "0", "--as-of", "2024-06-30",
               env=_env(tmp_path / "home", api_url), timeout=180)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "warning: the prefect api" in line.lower()]
    assert len(warnings) == 1 and "temporary local API" in warnings[0]
    assert "Traceback" not in res.stderr and "scrubbed 6 claims" in res.stdout
    assert (tmp_path / "root" / "archive" / "2024-06-30" / "clean.csv").exists()

def test_a_quarantining_night_ends_failed_with_counts_and_masked_project_logs(tmp_path, prefect_harness):
    """It ends a night that quarantined a file in Failed named Quarantined, with counts only, ships the
    `pipeline` log records to the server masked, and `nightly` still prints its summary and exits 3."""
    import logging

    from prefect import flow
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from pipeline import runstate
    from pipeline.flows import run_nightly

    inbox = _inbox(tmp_path, "clean.csv")
    (inbox / "broken.xlsx").write_bytes(b"PK\x03\x04garbage")
    summary = run_nightly(root=tmp_path, settle_seconds=0, as_of=dt.date(2024, 6, 30))
    assert summary["quarantined"] == 1 and len(summary["files"]) == 2

    @flow(name="log-probe")
    def probe():
        runstate.ship_project_logs()  # as the claimscrub flows do in their first lines
        logging.getLogger("pipeline.probe").warning("member MBR-000123 born 1961-04-02")

    seen = []
    spy = logging.Handler()
    spy.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("pipeline").addHandler(spy)
    try:
        probe_run = probe(return_state=True).state_details.flow_run_id
    finally:
        logging.getLogger("pipeline").removeHandler(spy)
    assert seen == ["member MBR-000123 born 1961-04-02"]  # masked for the server only, the record unchanged

    with _client(_harness_url()) as c:
        run = max((r for r in c.read_flow_runs() if r.name == "nightly-2024-06-30"), key=lambda r: r.created)
    # This night's and the probe's logs only: the session's server holds every earlier test's logs too.
    these = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id, probe_run]))

    def shipped():  # the API log worker sends records in batches, shortly after they are made
        with _client(_harness_url()) as c:
            logs = [log.message for log in c.read_logs(these)]
        return logs if any(m.startswith("member") for m in logs) else None

    logs = _wait(shipped, 20, every=0.5, what="the probe's log record on the server")
    assert run.state.type.value == "FAILED" and run.state.name == "Quarantined"
    assert run.state.message.startswith("2 file(s): 1 scrubbed, 0 duplicate, 1 quarantined, 0 failed")
    assert any(re.fullmatch(r"file \w+: quarantined \[E_CORRUPT_ZIP\]", m) for m in logs), logs
    assert "member *** born ***" in logs, [m for m in logs if "member" in m]
    text = " ".join(logs) + run.state.message + run.name
    assert not any(needle in text for needle in PHI)

    root2 = tmp_path / "cli"
    (root2 / "inbox").mkdir(parents=True)
    (root2 / "inbox" / "broken.xlsx").write_bytes(b"PK\x03\x04garbage")
    res = _cli("nightly", "--root", root2, "--settle-seconds", "0", "--as-of", "2024-06-30",
               env=_env(Path(os.environ["PREFECT_HOME"]), _harness_url()))
    assert res.returncode == 3, res.stderr
    assert "quarantined [E_CORRUPT_ZIP]" in res.stdout and "Traceback" not in res.stderr


def _harness_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.mark.parametrize("quarantined, failed, status, state_type, name, tail", [
    (0, 0, "done", "COMPLETED", "Completed", ""), (1, 0, "done", "FAILED", "Quarantined", ""),
    (1, 2, "done", "FAILED", "Failed", ""),
    (0, 0, "interrupted", "FAILED", "Interrupted", "; stopped by a signal, 3 file(s) not started")])
def test_night_state_names_the_outcome_with_counts_only(quarantined, failed, status, state_type, name, tail):
    """It maps a night's counts to its final state; the summary is the state's result, the message counts."""
    from pipeline.runstate import night_state

    files = [{"file_id": "abc", "status": "scrubbed"}, {"file_id": "def", "status": "duplicate"}]
    summary = {"files": files, "quarantined": quarantined, "failed": failed, "skipped": 4, "status": status,
               "not_started": 3}
    state = night_state(summary)
    assert (state.type.value, state.name) == (state_type, name)
    assert state.message == (f"2 file(s): 1 scrubbed, 1 duplicate, {quarantined} quarantined, {failed} failed "
                             "(left in the inbox); 4 left alone" + tail)
    assert (state.data if state_type == "COMPLETED" else state.data.summary) is summary
    if state_type == "FAILED":  # what Prefect raises where the run ends (a worker logs it): counts only
        assert str(state.data) == state.message and "abc" not in repr(state.data)
