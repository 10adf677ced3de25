"""Prefect flows over the pure pipeline: thin tasks, one task per file stage (never per row)."""

import datetime as dt
import functools
import hashlib
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task

from pipeline import ingest, runstate, scrub
from pipeline.config import PARTITION_LINES, ScrubConfig

SERVE_DEPLOYMENT = "nightly-serve"  # `claimscrub serve`; `claimscrub deploy`: nightly; prefect.yaml: nightly-yaml


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=None, persist_result=False)
def read_claims(path: Path, column_map: dict[str, str] | None, date_order: str = "MDY",
                isolated: bool = False) -> ingest.IngestResult:
    """Read one claims file (I/O); ``isolated``: in a child process (``isolate.read_isolated``)."""
    if isolated:
        from pipeline.isolate import read_isolated

        return read_isolated(path, column_map, date_order=date_order)
    return ingest.read_claims(path, column_map, date_order)


@task(cache_policy=None, persist_result=False)
def check_claims(result: ingest.IngestResult, as_of: dt.date, config: ScrubConfig):
    """Apply the rule catalog to one file's lines."""
    return scrub.check_file(result, as_of, config)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=None, persist_result=False)
def write_report(result, checked, workbook: Path, csv_path: Path, as_of: dt.date, run_id: str, mode: int):
    """Write the exceptions workbook and findings CSV (I/O)."""
    return scrub.write_outputs(result, checked, workbook, csv_path, as_of, run_id, mode)


def reference_rows(reference: dict) -> list[dict]:
    """The reference table versions a run used, one row each, for a Prefect table artifact (versions and
    counts only: no file name, no claim data)."""
    rows = [{"kind": use["kind"], "version": t["version"], "origin": t["origin"], "covers": t["covers"],
             "lines": int(t["lines"]), **({"files": int(t["files"])} if "files" in t else {})}
            for use in (reference or {}).get("tables", []) for t in use["tables"]]
    rows += [{"kind": use["kind"], "version": f"{b['between'][0]} and {b['between'][1]} (judged from both)",
              "origin": "no release shipped", "covers": b["dates"], "lines": int(b["lines"]),
              **({"files": int(b["files"])} if "files" in b else {})}
             for use in (reference or {}).get("tables", []) for b in use.get("bracketed", [])]
    return rows


def reference_markdown(reference: dict) -> str:
    """The reference tables used, the coverage warnings and the rules checked in part, as Markdown for the
    run's record (labels are file ids, never names)."""
    rows = reference_rows(reference)
    out = ["## Reference tables used", ""]
    out += [f"- {r['kind']} {r['version']} ({r['origin']}; covers {r['covers']}): {r['lines']:,} line(s)"
            + (f" in {r['files']} file(s)" if "files" in r else "") for r in rows] or ["- none"]
    warnings = list((reference or {}).get("warnings", []))
    partly = (reference or {}).get("partly", {})
    out += ["", "## Coverage warnings", ""] + ([f"- {w}" for w in warnings] or ["- none"])
    if partly:
        out += ["", "## Rules not checked on part of the claims", ""]
        out += [f"- {rule}: {why}" for rule, why in sorted(partly.items())]
    return "\n".join(out) + "\n"


# Paths of ad hoc jobs, by file id: flow parameters are stored by Prefect, and file names can carry
# patient data, so the recorded flow takes only the id and finds its paths here, in-process.
_JOBS: dict[str, tuple[Path, Path, Path]] = {}


def register_job(input_path: Path, workbook: Path, csv_path: Path) -> str:
    """Remember one ad hoc job's paths; returns the file id the flow run is named after."""
    fid = hashlib.sha256(str(Path(input_path).resolve()).encode()).hexdigest()[:12]
    _JOBS[fid] = (Path(input_path), Path(workbook), Path(csv_path))
    return fid


@flow(name="scrub-file", flow_run_name="scrub-{file_id}", persist_result=False)
def scrub_file_flow(file_id: str, as_of: dt.date, config: ScrubConfig | None = None,
                    column_map: dict[str, str] | None = None, run_id: str = "") -> dict:
    """Ingest, validate and report one claims file; returns the PHI-free summary."""
    from pipeline import logsafe

    logsafe.install()
    runstate.ship_project_logs()  # the project's own records reach the Prefect API, masked
    input_path, workbook, csv_path = _JOBS[file_id]
    config = config or ScrubConfig()
    result = read_claims(input_path, column_map, config.date_order, isolated=True)
    checked = check_claims(result, as_of, config)
    summary = write_report(result, checked, workbook, csv_path, as_of, run_id, config.output_mode)
    _record_reference(summary.reference, "scrub", f"Reference tables used by ad hoc scrub {file_id}")
    public = dict(summary.__dict__)
    public["file"] = file_id
    return public


def _record_reference(reference: dict, key: str, what: str) -> None:
    """The run's manifest of reference tables: a table artifact of the versions used and a Markdown one with
    the coverage warnings (versions, counts and file ids only)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows = reference_rows(reference)
    if rows:
        create_table_artifact(rows, key=f"{key}-reference-tables", description=what)
    create_markdown_artifact(reference_markdown(reference), key=f"{key}-coverage",
                             description=f"{what}: coverage warnings")


def _retry_on_io(task, task_run, state) -> bool:
    """Retry a file task only when it failed on I/O (a share hiccup), never on data."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is not worth retrying
        return False
    return False


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retry_on_io, cache_policy=None,
      persist_result=False, task_run_name="scrub-inbox-file-{sha256:.12}")
def scrub_inbox_file(path: Path, sha256: str, paths, ledger_path: Path | str, config: ScrubConfig, as_of: dt.date,
                     day: str, run_id: str, partition_lines: int | None = None):
    """Scrub, de-duplicate or quarantine one inbox file (what it raises never names the file: Prefect
    stores task states and logs; task-run parameters are not sent to the API)."""
    from pipeline import nightly

    check = scrub.check_file if not partition_lines else functools.partial(dask_check, partition_lines=partition_lines)
    return nightly.scrub_inbox_entry(path, sha256, paths, ledger_path, config, as_of, day, run_id, check=check)


STOP_GRACE_S = 5  # after a stop, how long files in flight may take to end (their children are killed)


def _scrub_bounded(items: list, claimer, args: tuple, limit: int) -> tuple[list, list, int]:
    """``scrub_inbox_file`` for each inbox path with at most ``limit`` in flight, whatever the task runner:
    the next file is claimed (``nightly.Claimer.take``) and submitted when one finishes, so processes over one
    shared inbox share it out. Returns (outcomes, twins, not started): outcomes in the items' order of the
    files this run took; twins: files whose content this run already holds, to be taken after it; how
    many were not started because a stop was asked for (they stay in the inbox). After a stop, a file still
    in flight ``STOP_GRACE_S`` later (a Dask worker the signal ended, or one elsewhere that never heard of
    it) is given up as interrupted: its outputs -> ledger -> archive order keeps it recoverable, and its
    claim sends it back to the inbox at the next night."""
    import queue
    import time

    from pipeline import isolate, nightly

    finished: queue.SimpleQueue = queue.SimpleQueue()
    outcomes: list = [None] * len(items)
    running: dict = {}
    twins: list = []
    todo = list(enumerate(items))[::-1]
    given_up_at = None
    while todo or running:
        while todo and len(running) < limit and not isolate.stop_requested():
            i, path = todo.pop()
            verdict, taken = claimer.take(path)
            if verdict == "later":
                twins.append(path)
            if verdict != "go":
                continue
            future = scrub_inbox_file.submit(*taken, *args)
            running[future] = (i, *taken)
            future.add_done_callback(finished.put)
        if not running:
            break
        if isolate.stop_requested():
            given_up_at = given_up_at or time.monotonic() + STOP_GRACE_S
            if time.monotonic() > given_up_at:
                for i, work_path, sha in running.values():
                    outcomes[i] = nightly.FileOutcome(nightly.file_id(sha), Path(work_path).name, "interrupted",
                                                      "E_INTERRUPTED", "still in flight when the run stopped")
                break
        try:
            future = finished.get(timeout=0.5)  # wakes to see a stop asked for by a signal
        except queue.Empty:
            continue
        i, work_path, sha = running.pop(future)
        outcomes[i] = _outcome(future, work_path, sha)
        claimer.finish(work_path, sha)
    return [o for o in outcomes if o is not None], twins, len(todo)


def _outcome(future, path: Path, sha256: str):
    """The task's outcome; a task that failed (an I/O error after its retries, already masked) costs
    its file alone."""
    from pipeline import nightly

    value = future.result(raise_on_failure=False)
    if isinstance(value, nightly.FileOutcome):
        return value
    reason = f"the file's task failed ({type(value).__name__}); it stays in the inbox"
    return nightly.FileOutcome(nightly.file_id(sha256), Path(path).name, "failed", "E_IO", reason)


def dask_check(result, as_of: dt.date, config: ScrubConfig, history, salt: str, partition_lines: int):
    """Check a file with more than ``partition_lines`` lines in parts on the Dask cluster this task runs
    on (claims whole, each patient's claims together); a smaller file, or no cluster, in one piece."""
    parts = -(-len(result.lines) // partition_lines)
    if parts < 2:
        return scrub.check_file(result, as_of, config, history, salt)
    try:
        from distributed import get_worker, worker_client

        get_worker()  # raises ValueError outside a Dask worker
    except (ImportError, ValueError):
        return scrub.check_file(result, as_of, config, history, salt)
    get_run_logger().info("validating in %d partitions on the Dask cluster", parts)
    with worker_client() as client:  # this task leaves its worker slot to the partitions while it waits
        return scrub.check_file(result, as_of, config, history, salt, parts,
                                lambda fn, items: client.gather(client.map(fn, items, pure=False)))


@task(cache_policy=None, persist_result=False)
def find_cross_file_repeats(outcomes, history, config: ScrubConfig, concurrent: dict | None = None):
    """Repeat injections between files of the same night (other processes' files of tonight included)."""
    from pipeline import nightly

    return nightly.cross_file_repeats(outcomes, history, config, concurrent)


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retry_on_io, cache_policy=None,
      persist_result=False)
def write_nightly_review(outcomes, outbox_day: Path, day: str, as_of: dt.date, run_id: str, extra=None,
                         mode: int = 0o640, ledger=None, tag: str = ""):
    """Write the combined nightly review workbook, carrying the reviewers' dispositions."""
    from pipeline import nightly

    return nightly.write_combined(outcomes, outbox_day, day, as_of, run_id, scrub.VERSION, extra, mode, ledger,
                                  tag)


@flow(name="nightly-scrub", flow_run_name=runstate.night_run_name, persist_result=False)
def nightly_scrub_flow(root: Path | None = None, inbox: Path | None = None, outbox: Path | None = None,
                       archive: Path | None = None, quarantine: Path | None = None, ledger: str | None = None,
                       settle_seconds: float | None = None, as_of: dt.date | None = None,
                       config_path: Path | None = None, partition_lines: int | None = None,
                       max_files_in_flight: int | None = None) -> dict:
    """Scrub every settled file in the inbox; returns a PHI-free summary of the night.

    ``partition_lines`` (with the Dask runner): a file with more lines is validated in parts across
    the cluster. ``max_files_in_flight``: files scrubbed at once (default: the config's, else the
    number of cores). SIGINT/SIGTERM during the night stop it cleanly (status ``interrupted``)."""
    import os
    import uuid

    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from pipeline import cluster, isolate, ledgercheck, logsafe, nightly, report, review
    from pipeline.config import load_config

    report.check_environment()
    logsafe.install()
    runstate.ship_project_logs()  # the project's own records reach the Prefect API, masked
    logger = get_run_logger()
    config = load_config(config_path)
    as_of = as_of or dt.date.today()
    day = as_of.isoformat()
    paths = nightly.resolve_paths(config, root, inbox=inbox, outbox=outbox, archive=archive,
                                  quarantine=quarantine, ledger=ledger)
    settle = config.settle_seconds if settle_seconds is None else settle_seconds
    limit = max_files_in_flight or config.max_files_in_flight or os.cpu_count() or 1
    run_id = uuid.uuid4().hex[:12]
    try:  # SQLite: one night at a time (the flock); PostgreSQL: processes share the inbox (advisory locks)
        lock = nightly.RunLock(paths.lock).__enter__() if paths.lock is not None else None
    except nightly.RunInProgress:
        logger.warning("a nightly run is already in progress; this run does nothing")
        return {"status": "locked", "files": []}
    isolate.reset_stop()  # a stop asked of an earlier run in this process (tests, serve) is not this one's
    stopping = isolate.stop_on_signals()
    stopping.__enter__()  # from here on a signal leaves every file in a known state
    try:
        nightly.clean_stale_temps(paths.outbox)
        book = ledgercheck.open_for_night(paths.ledger, paths.archive)  # refuses a lost or damaged ledger
        with book.holding_run(run_id):
            with book.setup_lock():  # one process at a time: what a crash or a killed run left is put right
                ledgercheck.reconcile_archive(book, paths.archive, paths.outbox, run_id)  # rows a crash lost
                back = nightly.recover_claims(book, paths, run_id)
                book.start_run(run_id)
            if back:
                logger.warning("%d file(s) a killed run had claimed are back in the inbox", back)
            try:  # what reviewers changed in the last review workbook, so tonight's outputs carry it
                imported = review.import_latest_review(paths.outbox, day, book, run_id)
                logger.info("dispositions: %d change(s) taken from the last review workbook", imported)
            except Exception as exc:  # noqa: BLE001 - counts and the error type only: reviewer text never logged
                logger.warning("dispositions: the last review workbook could not be read (%s)", type(exc).__name__)
            ready, skipped = nightly.scan_inbox(paths.inbox, settle)
            logger.info("inbox: %d file(s) ready, %d left alone; up to %d at once", len(ready), len(skipped),
                        limit)
            claimer = nightly.Claimer(book, paths, run_id)
            args = (paths, book.target, config, as_of, day, run_id, partition_lines)
            try:
                outcomes, twins, not_started = _scrub_bounded(ready, claimer, args, limit)
                later, _, not_started_later = _scrub_bounded(twins, claimer, args, 1)  # after their twin is recorded
            finally:
                claimer.close()  # whatever was not finished goes back to the inbox
            interrupted = isolate.stop_requested()
            not_started += not_started_later
            outcomes += later + claimer.faults
            if claimer.elsewhere:
                logger.info("%d file(s) were taken by another nightly process", claimer.elsewhere)
            if interrupted:
                logger.warning("stopped by a signal: %d file(s) not started and %d interrupted stay in the inbox",
                               not_started, sum(o.status == "interrupted" for o in outcomes))
            concurrent, others = {}, set()
            if book.dialect != "sqlite" and not interrupted:  # other processes' files of tonight
                held = nightly.wait_for_other_runs(book, run_id, config.wait_for_other_runs_seconds,
                                                   isolate.stop_requested)
                if held:
                    logger.warning("%d file(s) of other nightly processes still in flight; the cross-file "
                                   "repeat check does not see them", held)
            if book.dialect != "sqlite":  # other processes of the night: their sessions, and a review of its own
                others = set(book.concurrent_runs(run_id))
            try:
                scope = nightly.night_scope(outcomes)
                history = book.injection_history(exclude_run=run_id, sources=True, **scope)
                if book.dialect != "sqlite":
                    shas = history.loc[history["run_id"].isin(others), "file_sha256"].unique().tolist()
                    concurrent = {h: "" for h in shas} | book.file_names(shas)
                cross = find_cross_file_repeats(outcomes, history, config, concurrent)
            except Exception as exc:  # noqa: BLE001 - the files are scrubbed; this extra pass must not fail the night
                logger.error("cross-file repeat check failed (%s); per-file results stand", type(exc).__name__)
                cross = pd.DataFrame()
            reviewed = write_nightly_review(outcomes, paths.outbox / day, day, as_of, run_id, cross,
                                            config.output_mode, book, f"run-{run_id}" if others else "")
            quarantined = sum(o.status == "quarantined" for o in outcomes)
            failed = sum(o.status == "failed" for o in outcomes)
            book.end_run(run_id, len(outcomes), "interrupted" if interrupted else "failed" if failed
                         else "quarantined" if quarantined else "ok")
        if book.dialect == "sqlite":  # a PostgreSQL ledger is backed up by the database's own tools (pg_dump)
            ledgercheck.backup_after_night(paths.ledger, config.ledger_backups)
    finally:
        stopping.__exit__(None, None, None)
        if lock is not None:
            lock.__exit__(None, None, None)
    files = [o.public() for o in outcomes]
    by_rule: dict[str, int] = {}
    for o in outcomes:
        for rule, n in o.by_rule.items():
            by_rule[rule] = by_rule.get(rule, 0) + int(n)
    if len(cross):
        for rule, n in cross["rule"].value_counts().items():
            by_rule[rule] = by_rule.get(rule, 0) + int(n)
    if files:
        create_table_artifact(files, key="nightly-files", description=f"Files scrubbed on {day} (ids only)")
    if by_rule:
        create_table_artifact([{"rule": r, "findings": n} for r, n in sorted(by_rule.items())],
                              key="nightly-rules", description=f"Findings per rule on {day}")
    from pipeline.validate import combine_reference_use, grouped_warnings

    used = combine_reference_use([(f"file {o.file_id}", o.reference) for o in outcomes if o.reference])
    _record_reference(used, "nightly", f"Reference tables used on {day}")
    create_markdown_artifact(
        f"# Nightly scrub {day}\n\n{len(files)} file(s): "
        f"{sum(f['status'] == 'scrubbed' for f in files)} scrubbed, "
        f"{sum(f['status'] == 'duplicate' for f in files)} duplicate, {quarantined} quarantined, "
        f"{failed} failed (left in the inbox).\n\n"
        f"Outputs: {cluster.outbox_markdown(config.outbox_link, (paths.outbox / day).resolve(), day)}\n",
        key="nightly-summary")
    return runstate.night_state({
        "status": "interrupted" if interrupted else "done", "run_id": run_id, "day": day, "files": files,
        "by_rule": by_rule, "quarantined": quarantined, "failed": failed, "skipped": len(skipped),
        "deferred": sum(o.status == "deferred" for o in outcomes), "not_started": not_started,
        "cross_file_repeats": len(cross), "taken_elsewhere": claimer.elsewhere,
        "reference": {"tables": reference_rows(used), "partly": used["partly"],
                      "warnings": grouped_warnings([o.reference for o in outcomes if o.reference])},
        "review_workbook": str(reviewed) if reviewed else "", "outbox": str(paths.outbox / day)})


def task_runner_for(runner: str, dask_address: str | None = None, dask_workers: int = 2):
    """The task runner of the nightly flow: None (Prefect's default, files run concurrently in-process)
    or prefect-dask's DaskTaskRunner on an existing scheduler (``dask_address``) or a LocalCluster."""
    if runner == "default":
        return None
    if runner != "dask":
        raise ValueError(f"unknown runner {runner!r} (default or dask)")
    import dask
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    # Worker processes must be allowed children: each file is read in a limited child process.
    dask.config.set({"distributed.worker.daemon": False})
    return DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def run_nightly(runner: str = "default", dask_address: str | None = None, dask_workers: int = 2,
                partition_lines: int = PARTITION_LINES, notify=None, **params) -> dict:
    """Run the nightly flow with the chosen task runner (Dask: files, and parts of files with more than
    ``partition_lines`` lines, spread over the cluster). On Dask, every path is made absolute here and the
    workers are checked before the night (``cluster.preflight``: raises ClusterRefused, nothing scrubbed;
    its warnings go to ``notify``)."""
    if runner != "dask":
        task_runner_for(runner)  # None for "default"; a ValueError for an unknown runner
        return runstate.summary_of(nightly_scrub_flow(**params, return_state=True))
    from pipeline import cluster

    params = cluster.absolute_params(params)
    with cluster.dask_cluster(dask_address, dask_workers) as address:
        cluster.preflight(address, params, remote=dask_address is not None, notify=notify)
        flow_ = nightly_scrub_flow.with_options(task_runner=task_runner_for(runner, address))
        return runstate.summary_of(flow_(**params, partition_lines=partition_lines, return_state=True))


def build_deployment(config: ScrubConfig, root: Path | None = None, config_path: Path | None = None,
                     name: str = SERVE_DEPLOYMENT):
    """The nightly deployment on the configured cron schedule and time zone: absolute paths, a module
    entrypoint (runs wherever claimscrub is installed), one run at a time (a second night waits)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    params = {k: str(Path(v).expanduser().resolve()) for k, v in {"root": root, "config_path": config_path}.items()
              if v is not None}
    return nightly_scrub_flow.to_deployment(
        name=name, schedules=[Cron(config.schedule, timezone=config.timezone)], parameters=params,
        tags=["claimscrub"], description="Scrub the claims inbox every night",
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        entrypoint_type=EntrypointType.MODULE_PATH)
