"""One file through the pipeline: ingest -> validate -> workbook + findings CSV (plain functions)."""

import datetime as dt
import hashlib
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from pipeline import ingest, report, review, validate
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


OUTPUT_SUFFIXES = (".exceptions.xlsx", ".findings.csv")  # what claimscrub writes: never an export to scrub
REVIEW_PREFIX = "nightly-review-"


def is_own_output(name: str) -> bool:
    """Whether a file name is one of claimscrub's own outputs (a workbook, findings CSV or nightly review)."""
    lower = name.lower()
    return lower.endswith(OUTPUT_SUFFIXES) or (lower.startswith(REVIEW_PREFIX) and lower.endswith(".xlsx"))


def output_paths(input_path: Path, out: Path | None, single: bool) -> tuple[Path, Path]:
    """``<stem>.exceptions.xlsx`` and ``<stem>.findings.csv`` beside the input or in ``out``."""
    input_path = Path(input_path)
    if out is not None and single and Path(out).suffix.lower() == ".xlsx":
        wb = Path(out)
        return wb, wb.with_name(wb.name.removesuffix(".xlsx").removesuffix(".exceptions") + ".findings.csv")
    folder = Path(out) if out is not None else input_path.parent
    return folder / f"{input_path.stem}.exceptions.xlsx", folder / f"{input_path.stem}.findings.csv"


def inbox_outbox(folder: Path, config: ScrubConfig) -> Path | None:
    """Where ad hoc outputs go for an input in a nightly inbox (``None`` when ``folder`` is no inbox).

    An inbox is the configured one, or an ``inbox`` folder beside a ledger (the ``--root`` layout); its
    outputs go to the matching outbox's ``adhoc/`` folder, since the next night would otherwise take them
    for claim exports."""
    folder = Path(folder).resolve()
    if folder == Path(config.inbox).resolve():
        return Path(config.outbox).resolve() / "adhoc"
    if folder.name == "inbox" and (folder.parent / Path(config.ledger).name).exists():
        return folder.parent / "outbox" / "adhoc"
    return None


@dataclass(frozen=True)
class Planned:
    """One ad hoc input and where its outputs go."""

    input: Path
    workbook: Path
    findings_csv: Path
    note: str = ""  # said on the terminal when the outputs are not where the user would look first


def plan_outputs(inputs: list[Path], out: Path | None, config: ScrubConfig) -> list[Planned]:
    """Each input's outputs, no two inputs writing the same file.

    Outputs go beside the input, into ``out``, or (for an input in a nightly inbox, without ``out``) into
    that inbox's outbox ``adhoc/`` folder. Inputs whose outputs would collide (``d1/claims.csv
    d2/claims.csv --out o``, or ``x.xlsx x.csv``) are named by their whole file name instead of the stem,
    and where that still collides, also by a hash of their path. An input named twice is planned once.
    """
    unique = list(dict.fromkeys(Path(p) for p in inputs))
    single = len(unique) == 1
    plans: list[tuple[Path, Path, str]] = []
    for path in unique:
        folder, note = out, ""
        if out is None and (adhoc := inbox_outbox(path.parent, config)) is not None:
            folder, note = adhoc, f"in a nightly inbox: outputs go to {adhoc}"
        workbook, _ = output_paths(path, folder, single)
        plans.append((path, workbook, note))

    def key(p: Path) -> str:
        return str(p.resolve()).casefold()

    def clashing(named: list[Path]) -> set[int]:
        seen: dict[str, list[int]] = {}
        for i, wb in enumerate(named):
            seen.setdefault(key(wb), []).append(i)
        return {i for group in seen.values() if len(group) > 1 for i in group}

    books = [wb for _, wb, _ in plans]
    for rename in (lambda p, wb: wb.with_name(f"{p.name}.exceptions.xlsx"),
                   lambda p, wb: wb.with_name(
                       f"{p.name}.{hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:8]}.exceptions.xlsx")):
        clash = clashing(books)
        if not clash:
            break
        for i in clash:
            books[i] = rename(plans[i][0], books[i])
    planned = []
    for (path, _, note), wb in zip(plans, books, strict=True):
        csv_path = wb.with_name(wb.name.removesuffix(".xlsx").removesuffix(".exceptions") + ".findings.csv")
        planned.append(Planned(path, wb, csv_path, note))
    return planned


def check_file(result: ingest.IngestResult, as_of: dt.date, config: ScrubConfig,
               history: pd.DataFrame | None = None, salt: str = "", partitions: int = 1,
               mapper=map) -> validate.Validation:
    """Validate what was read from one file (in ``partitions`` parts through ``mapper``, see find_violations)."""
    return validate.find_violations(result.lines, as_of, config, result.present, history, salt, result.issues,
                                    partitions, mapper, headers=result.mapped)


def write_outputs(result: ingest.IngestResult, checked: validate.Validation, workbook: Path, csv_path: Path,
                  as_of: dt.date, run_id: str, mode: int = report.DEFAULT_MODE,
                  dispositions_of=None) -> report.ScrubSummary:
    """Write one file's workbook and findings CSV (file permissions ``mode``), carrying the reviewer's
    dispositions forward from the workbook already at ``workbook`` (refused while it is open; kept beside
    as a previous version) and from ``dispositions_of(ids)`` (the nightly's ledger lookup)."""
    summary = report.summarize(result.file, result.sha256, result.rows_read, result.lines, checked.findings,
                               checked.claims, checked.not_checked, as_of.isoformat(), run_id, VERSION,
                               checked.reference)
    generated = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        workbook.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise OutputError("E_OUTPUT_UNWRITABLE", "the output folder cannot be created") from None
    ordered = report.in_sheet_order(checked.findings)
    ids = report.exception_ids(ordered)  # once, for both outputs
    labels = report.labels_for(result.mapped)  # the file's own headers, in the Field column and on Claims
    prior = review.merge_prior(dispositions_of(ids) if dispositions_of else None, review.prepare_output(workbook))
    flagged = report.flagged_lines(result.lines, ordered)  # all the hashes and the workbook read of the lines
    carried = review.carry_forward(ids, review.finding_claim_hashes(ordered, flagged), prior, dt.date.today())
    # counts only: a status typed outside the list is the reviewer's free text, so it is counted, not named
    summary.by_status = dict(Counter(s if s in review.STATUSES else review.OTHER_STATUS for s in carried.status))
    summary.carried = carried.counts
    report.build_workbook(workbook, summary, flagged, checked.findings, result.issues, generated, ids=ids,
                          labels=labels, mode=mode, carried=carried)
    report.write_findings_csv(checked.findings, csv_path, ids, labels, mode)
    return summary


def scrub_file(path: Path, out: Path | None = None, config: ScrubConfig | None = None,
               as_of: dt.date | None = None, column_map: dict[str, str] | None = None,
               history: pd.DataFrame | None = None, salt: str = "", run_id: str | None = None,
               single: bool = True, outputs: tuple[Path, Path] | None = None,
               progress: Callable[[str], None] | None = None) -> ScrubOutcome:
    """Scrub one file end to end (into ``outputs`` when given); raises ``ingest.IngestError`` when it
    cannot be read. ``progress`` is told each stage as it ends: "read", "check", "write"."""
    config = config or ScrubConfig()
    as_of = as_of or dt.date.today()
    run_id = run_id or uuid.uuid4().hex[:12]
    step = progress or (lambda stage: None)
    result = ingest.read_claims(path, column_map, config.date_order)
    step("read")
    checked = check_file(result, as_of, config, history, salt)
    step("check")
    workbook, csv_path = outputs or output_paths(Path(path), out, single)
    summary = write_outputs(result, checked, workbook, csv_path, as_of, run_id, config.output_mode)
    step("write")
    return ScrubOutcome(summary, workbook, csv_path, checked.findings)


def scrub_to(path: Path, config: ScrubConfig, as_of: dt.date, column_map: dict[str, str] | None, workbook: Path,
             csv_path: Path, progress: Callable[[str], None] | None = None) -> dict | tuple[str, str]:
    """``scrub_file`` into the given outputs, for a child process (``isolate.run_isolated``): the summary as a
    dict, or an ``OutputError``'s (code, reason) (returned, not raised: a raise there reads as an unreadable file)."""
    try:
        return scrub_file(path, None, config, as_of, column_map, outputs=(workbook, csv_path),
                          progress=progress).summary.__dict__
    except OutputError as exc:
        return exc.code, exc.reason
