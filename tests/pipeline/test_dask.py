"""The nightly flow on a local Dask cluster (2 workers) gives the same results as the default runner."""

import datetime as dt
import shutil
import time

import pandas as pd
import pytest

from pipeline.flows import run_nightly
from pipeline.sample import clean_claim, write_csv
from tests.conftest import SAMPLES

pytest.importorskip("prefect_dask")
pytestmark = pytest.mark.e2e
AS_OF = dt.date(2024, 6, 30)


def _inbox(root):
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    for name in ("clean.csv", "mixed.csv", "messy.xlsx"):
        shutil.copy(SAMPLES / name, inbox / name)
    write_csv(clean_claim("H1", "MBR-4242", "2024-05-11"), inbox / "repeat.csv")
    (inbox / "broken.xlsx").write_bytes(b"PK\x03\x04nope")
    past = time.time() - 3600
    for p in inbox.iterdir():
        p.touch()
        import os

        os.utime(p, (past, past))


def _findings(root):
    day = root / "outbox" / AS_OF.isoformat()
    frames = {p.name: pd.read_csv(p, dtype=str).fillna("") for p in sorted(day.glob("*.findings.csv"))}
    return frames


def test_dask_runner_matches_default(tmp_path, prefect_harness, pg_url):
    """It produces the same files, findings and ledger statuses on 2 Dask workers on the PostgreSQL ledger,
    with each file's claims validated in partitions across the workers, as in-process in one piece on the
    SQLite ledger."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTextSearch

    results = {}
    for runner in ("default", "dask"):
        root = tmp_path / runner
        _inbox(root)
        ledger = pg_url if runner == "dask" else None
        summary = run_nightly(runner=runner, dask_workers=2, partition_lines=5, root=root, settle_seconds=0,
                              as_of=AS_OF, ledger=ledger)
        results[runner] = (summary, _findings(root))
    from pipeline.ledger import open_ledger

    statuses = {runner: sorted(open_ledger(target).files()["status"]) for runner, target in (
        ("default", tmp_path / "default" / "ledger.sqlite"), ("dask", pg_url))}
    assert statuses["default"] == statuses["dask"] and "scrubbed" in statuses["dask"]
    assert not (tmp_path / "dask" / "ledger.sqlite").exists()  # nothing made a ledger of its own

    async def partition_logs():
        async with get_client() as client:
            return await client.read_logs(LogFilter(text=LogFilterTextSearch(query="partitions on the Dask")))

    split = [log for log in asyncio.run(partition_logs()) if "partitions on the Dask cluster" in log.message]
    assert len(split) == 3  # mixed.csv (100 lines), clean.csv (11) and messy.xlsx (6) in parts; repeat.csv (2) whole
    (s_def, f_def), (s_dask, f_dask) = results["default"], results["dask"]
    assert sorted((f["file_id"], f["status"]) for f in s_def["files"]) == sorted(
        (f["file_id"], f["status"]) for f in s_dask["files"])
    assert s_def["by_rule"] == s_dask["by_rule"] and s_def["quarantined"] == s_dask["quarantined"] == 1
    assert list(f_def) == list(f_dask)
    for name in f_def:
        pd.testing.assert_frame_equal(f_def[name], f_dask[name])


def test_dask_runner_on_an_existing_scheduler(tmp_path, prefect_harness):
    """``--dask-address``: it connects to a scheduler it did not start (here one started by this test)
    and gives the same findings as the default runner."""
    import dask
    from distributed import Client, LocalCluster

    roots = {name: tmp_path / name for name in ("default", "address")}
    for root in roots.values():
        _inbox(root)
    run_nightly(runner="default", root=roots["default"], settle_seconds=0, as_of=AS_OF)
    with dask.config.set({"distributed.worker.daemon": False}), LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        summary = run_nightly(runner="dask", dask_address=cluster.scheduler_address, partition_lines=40,
                              root=roots["address"], settle_seconds=0, as_of=AS_OF)
        with Client(cluster) as client:  # the files' tasks ran on this scheduler's worker
            ran = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
    assert ran > 0
    assert summary["quarantined"] == 1 and len(summary["files"]) == 5
    default, address = _findings(roots["default"]), _findings(roots["address"])
    assert list(default) == list(address) and len(default) == 4
    for name in default:
        pd.testing.assert_frame_equal(default[name], address[name])
