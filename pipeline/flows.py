"""Prefect flows over the pure pipeline: thin tasks, one task per file stage (never per row)."""

import datetime as dt
import hashlib
from pathlib import Path

from prefect import flow, task

from pipeline import ingest, scrub
from pipeline.config import ScrubConfig


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=None, persist_result=False)
def read_claims(path: Path, column_map: dict[str, str] | None) -> ingest.IngestResult:
    """Read one claims file (I/O)."""
    return ingest.read_claims(path, column_map)


@task(cache_policy=None, persist_result=False)
def check_claims(result: ingest.IngestResult, as_of: dt.date, config: ScrubConfig):
    """Apply the rule catalog to one file's lines."""
    return scrub.check_file(result, as_of, config)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=None, persist_result=False)
def write_report(result, checked, workbook: Path, csv_path: Path, as_of: dt.date, run_id: str):
    """Write the exceptions workbook and findings CSV (I/O)."""
    return scrub.write_outputs(result, checked, workbook, csv_path, as_of, run_id)


def _file_run_name() -> str:
    from prefect.runtime import flow_run

    # The file's id (hash prefix), never its name: names can carry patient data.
    name = Path(str(flow_run.parameters.get("input_path", "file"))).name
    return f"scrub-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


@flow(name="scrub-file", flow_run_name=_file_run_name, persist_result=False)
def scrub_file_flow(input_path: Path, workbook: Path, csv_path: Path, as_of: dt.date,
                    config: ScrubConfig | None = None, column_map: dict[str, str] | None = None,
                    run_id: str = "") -> dict:
    """Ingest, validate and report one claims file; returns the PHI-free summary."""
    config = config or ScrubConfig()
    result = read_claims(input_path, column_map)
    checked = check_claims(result, as_of, config)
    summary = write_report(result, checked, workbook, csv_path, as_of, run_id)
    return summary.__dict__
