"""One file through the pipeline: ingest -> validate -> workbook + findings CSV (plain functions)."""

import datetime as dt
import uuid
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from pipeline import ingest, report, validate
from pipeline.config import ScrubConfig
from pipeline.errors import OutputError

try:
    VERSION = version("claimscrub")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    VERSION = "0.0.0"


@dataclass
class ScrubOutcome:
    """What one scrub produced: the summary (no PHI), the output paths and the findings."""

    summary: report.ScrubSummary
    workbook: Path
    findings_csv: Path
    findings: pd.DataFrame


def output_paths(input_path: Path, out: Path | None, single: bool) -> tuple[Path, Path]:
    """``<stem>.exceptions.xlsx`` and ``<stem>.findings.csv`` beside the input or in ``out``."""
    input_path = Path(input_path)
    if out is not None and single and Path(out).suffix.lower() == ".xlsx":
        wb = Path(out)
        return wb, wb.with_name(wb.name.removesuffix(".xlsx").removesuffix(".exceptions") + ".findings.csv")
    folder = Path(out) if out is not None else input_path.parent
    return folder / f"{input_path.stem}.exceptions.xlsx", folder / f"{input_path.stem}.findings.csv"


def check_file(result: ingest.IngestResult, as_of: dt.date, config: ScrubConfig,
               history: pd.DataFrame | None = None, salt: str = "", partitions: int = 1,
               mapper=map) -> validate.Validation:
    """Validate what was read from one file (in ``partitions`` parts through ``mapper``, see find_violations)."""
    return validate.find_violations(result.lines, as_of, config, result.present, history, salt, result.issues,
                                    partitions, mapper)


def write_outputs(result: ingest.IngestResult, checked: validate.Validation, workbook: Path, csv_path: Path,
                  as_of: dt.date, run_id: str) -> report.ScrubSummary:
    summary = report.summarize(result.file, result.sha256, result.rows_read, result.lines, checked.findings,
                               checked.claims, checked.not_checked, as_of.isoformat(), run_id, VERSION)
    generated = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        workbook.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise OutputError("E_OUTPUT_UNWRITABLE", "the output folder cannot be created") from None
    ids = report.exception_ids(report.in_sheet_order(checked.findings))  # once, for both outputs
    report.build_workbook(workbook, summary, result.lines, checked.findings, result.issues, generated, ids=ids)
    report.write_findings_csv(checked.findings, csv_path, ids)
    return summary


def scrub_file(path: Path, out: Path | None = None, config: ScrubConfig | None = None,
               as_of: dt.date | None = None, column_map: dict[str, str] | None = None,
               history: pd.DataFrame | None = None, salt: str = "", run_id: str | None = None,
               single: bool = True) -> ScrubOutcome:
    """Scrub one file end to end; raises ``ingest.IngestError`` when it cannot be read."""
    config = config or ScrubConfig()
    as_of = as_of or dt.date.today()
    run_id = run_id or uuid.uuid4().hex[:12]
    result = ingest.read_claims(path, column_map)
    checked = check_file(result, as_of, config, history, salt)
    workbook, csv_path = output_paths(Path(path), out, single)
    summary = write_outputs(result, checked, workbook, csv_path, as_of, run_id)
    return ScrubOutcome(summary, workbook, csv_path, checked.findings)
