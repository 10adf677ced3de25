"""claimscrub command line: a thin layer over the flows and the pure pipeline.

Examples:
    claimscrub scrub sample_claims/mixed.csv --out review/ --as-of 2024-06-30
    claimscrub ingest sample_claims/messy.xlsx
    claimscrub sample --lines 10000 big.xlsx
    claimscrub rules
    claimscrub review import review/mixed.exceptions.xlsx --root /srv/claimscrub
"""

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from pipeline.config import PARTITION_LINES

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Scrub G51.33 botulinum-toxin claims.")


def _date(value: str | None) -> dt.date:
    if not value:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"--as-of {value!r} is not a date (YYYY-MM-DD)") from None


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"claimscrub: {message}", err=True)
    raise typer.Exit(code)


def _load(config: Path | None, columns: Path | None):
    from pipeline.config import ConfigError, load_config
    from pipeline.ingest import load_column_map

    try:
        return load_config(config), load_column_map(columns)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def scrub(
    inputs: Annotated[list[Path], typer.Argument(help="Claim exports (.xlsx .xlsm .xls .ods .csv .tsv)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder, or file for one input")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
    columns: Annotated[Path | None, typer.Option(help="Header mapping TOML")] = None,
    as_of: Annotated[str | None, typer.Option(help="As-of date YYYY-MM-DD (default today)")] = None,
    fail_on: Annotated[str | None, typer.Option(help="error or warning: exit 1 if such a finding exists")] = None,
    record: Annotated[bool, typer.Option(help="Record a Prefect flow run even with no API configured")] = False,
) -> None:
    """Scrub claim files and write one exceptions workbook (and findings CSV) per input."""
    from pipeline.isolate import run_isolated, warm_up

    warm_up()  # the files are scrubbed in child processes: their server imports while this process does
    from pipeline import review
    from pipeline import scrub as S
    from pipeline.errors import OutputError
    from pipeline.ingest import IngestError, check_input

    if fail_on not in (None, "error", "warning"):
        _fail("--fail-on takes error or warning")
    day = _date(as_of)
    cfg, cmap = _load(config, columns)
    plans = S.plan_outputs(inputs, out, cfg)
    use_prefect = _prefect_reachable(record)
    worst = set()
    failed = False
    said: list[tuple[str, bool]] = []  # (text, to stderr): printed once the bar is done, never through it
    stages = ("read", "check", "write")
    with typer.progressbar(length=len(plans) * len(stages), label="Scrubbing", file=sys.stderr,
                           show_pos=False, item_show_func=lambda stage: stage) as bar:
        for plan in plans:
            path = plan.input
            started = time.perf_counter()
            done = []
            bar.current_item = f"{path.name}: reading"
            bar.render_progress()

            def step(stage: str, bar=bar, done=done, name=path.name) -> None:
                done.append(stage)
                bar.current_item = f"{name}: {_NEXT_STAGE[stage]}"
                bar.update(1)

            if plan.note:
                said.append((f"{path}: {plan.note}", True))
            try:
                review.refuse_if_open(plan.workbook)  # before any work; the write checks again
                check_input(path)
                if use_prefect:
                    summary = _scrub_recorded(plan, day, cfg, cmap)
                else:  # in a child process, as the nightly does: a reader crash or runaway sheet costs this file
                    summary = run_isolated(S.scrub_to, (path, cfg, day, cmap, plan.workbook, plan.findings_csv),
                                           path.name, progress=step)
                    if isinstance(summary, tuple):
                        raise OutputError(*summary)
            except IngestError as exc:
                said.append((f"{path}: cannot be read: {exc.reason} [{exc.code}]", True))
                failed = True
            except review.WorkbookOpen as exc:
                said.append((f"claimscrub: {exc.line} [{exc.code}]", True))
                failed = True
            except OutputError as exc:
                said.append((f"{path}: outputs not written: {exc.reason} [{exc.code}]", True))
                failed = True
            except OSError as exc:
                said.append((f"{path}: {exc.strerror or exc}", True))
                failed = True
            else:
                said.append((_summary_text(summary, time.perf_counter() - started), False))
                said.append((f"  workbook: {plan.workbook}\n  findings CSV: {plan.findings_csv}", False))
                worst |= _severities(summary)
            bar.update(len(stages) - len(done))
    for text, err in said:
        typer.echo(text, err=err)
    if failed:
        raise typer.Exit(2)
    if fail_on == "error" and "error" in worst or fail_on == "warning" and worst & {"error", "warning"}:
        raise typer.Exit(1)


_NEXT_STAGE = {"read": "checking", "check": "writing", "write": "written"}


def _prefect_reachable(record: bool) -> bool:
    """Whether to record the scrub in Prefect: a configured API that answers (else one warning line), or --record."""
    if not os.environ.get("PREFECT_API_URL"):
        return record
    return _configured_api_answers("scrubbing in-process, not recorded")


def _configured_api_answers(fallback: str) -> bool:
    """Whether the configured PREFECT_API_URL answers within 2 s; if not, one warning line saying ``fallback``
    and the URL is dropped for this process (what runs next uses no server or a temporary one)."""
    from pipeline.localserver import api_healthy

    url = os.environ.get("PREFECT_API_URL")
    if not url or api_healthy(url, timeout=2.0):
        return True
    typer.echo(f"claimscrub: warning: the Prefect API at {url} does not answer; {fallback}", err=True)
    os.environ.pop("PREFECT_API_URL")
    return False


def _scrub_recorded(plan, day, cfg, cmap) -> dict:
    import uuid

    from pipeline.flows import register_job, scrub_file_flow

    plan.workbook.parent.mkdir(parents=True, exist_ok=True)
    file_id = register_job(plan.input, plan.workbook, plan.findings_csv)
    summary = scrub_file_flow(file_id=file_id, as_of=day, config=cfg, column_map=cmap, run_id=uuid.uuid4().hex[:12])
    summary["file"] = Path(plan.input).name  # shown on the user's terminal only
    return summary


def _severities(summary: dict) -> set[str]:
    from schemas.rules import RULES_BY_ID

    return {RULES_BY_ID[r].severity.value for r in summary["by_rule"]} | (
        {"error"} if summary["claims_with_errors"] else set())


def _summary_text(s: dict, seconds: float) -> str:
    lines = [
        f"{s['file']}: {s['rows_read']:,} rows, {s['claims']:,} claims ({s['claims_with_errors']:,} with errors, "
        f"{s['claims_with_warnings']:,} with warnings only, {s.get('claims_checked_in_part', 0):,} checked in part, "
        f"{s['clean_claims']:,} clean), {s['g5133_claims']:,} G51.33 claims; {s.get('exceptions', 0):,} exceptions; "
        f"${s['at_risk']:,.2f} at risk [{seconds:.2f}s]",
    ]
    for rule, count in sorted(s["by_rule"].items()):
        lines.append(f"  {rule}: {count}")
    for rule, why in sorted(s["not_checked"].items()):
        lines.append(f"  not checked: {rule} ({why})")
    for rule, why in sorted((s.get("reference") or {}).get("partly", {}).items()):
        lines.append(f"  not checked in part: {rule} ({why})")
    carried = s.get("carried") or {}
    if carried.get("carried"):
        lines.append(f"  reviewer dispositions carried forward: {carried['carried']} "
                     f"({carried.get('not_an_issue', 0)} not an issue, {carried.get('reopened', 0)} re-opened)")
    for note in (s.get("reference") or {}).get("warnings", []):
        lines.append("  reference: " + note)
    unmatched = sorted(p for p, profile in s.get("payer_profiles", {}).items() if not profile)
    if unmatched:
        lines.append("  payers matching no profile (default applies): " + ", ".join(unmatched))
    return "\n".join(lines)


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="A claim export")],
    columns: Annotated[Path | None, typer.Option(help="Header mapping TOML")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml (its date_order)")] = None,
) -> None:
    """Show what claimscrub reads from a file: rows, claims, headers and ingest issues."""
    from pipeline.isolate import read_isolated, warm_up

    warm_up()
    from pipeline.ingest import IngestError

    cfg, cmap = _load(config, columns)
    try:
        # In a child process: a reader crash or a runaway sheet costs the child, not this one.
        result = read_isolated(file, cmap, date_order=cfg.date_order)
    except IngestError as exc:
        _fail(f"{file}: cannot be read: {exc.reason} [{exc.code}]")
    lines = result.lines
    typer.echo(f"{result.file} (sheet {result.sheet!r}): {result.rows_read} rows, "
               f"{lines['claim_id'].nunique()} claims, sha256 {result.sha256[:16]}…")
    typer.echo("mapped headers:")
    from pipeline.ingest import COMBINED_DX, COMBINED_MODIFIERS

    several = {COMBINED_DX: "diagnoses, several codes in one cell",  # never the internal name of the pair
               COMBINED_MODIFIERS: "modifiers, several codes in one cell"}
    for header, canonical in result.mapped.items():
        typer.echo(f"  {header!r} -> {several.get(canonical, canonical)}")
    typer.echo("unmapped headers: " + (", ".join(repr(h) for h in result.unmapped) or "none"))
    typer.echo(f"layout: {result.layout or 'none (headers matched by name)'}")
    disabled = _disabled_by_absent(result.present)
    if disabled:
        typer.echo("absent columns, and the rules each leaves not checked:")
        for column, rules in disabled.items():
            typer.echo(f"  {column}: {', '.join(rules)}")
    cells = result.issues[result.issues["rule"] != "NOTE"]
    typer.echo(f"ingest issues: {len(cells)}")
    for rec in cells.itertuples(index=False):
        typer.echo(f"  row {rec.row}, column {rec.column!r}: {rec.reason}")
    for note in result.notes:
        typer.echo(f"note: {note}")


def _disabled_by_absent(present: set[str]) -> dict[str, list[str]]:
    """Canonical column the file lacks -> ids of the rules that need it (they are not checked)."""
    from schemas.rules import RULES

    out: dict[str, list[str]] = {}
    for rule in RULES:
        for column in rule.needs:
            if column not in present:
                out.setdefault(column, []).append(rule.id)
    return out


@app.command()
def sample(
    out: Annotated[Path, typer.Argument(help="Output file (.xlsx or .csv)")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Number of claim lines")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same file)")] = 20261124,
) -> None:
    """Write a synthetic claims export (deterministic) for demos and benchmarks."""
    from pipeline.sample import write_sample

    if out.suffix.lower() not in (".xlsx", ".csv"):
        _fail(f"{out}: the output must end in .xlsx or .csv")
    write_sample(lines, out, seed)
    typer.echo(f"wrote {lines} synthetic claim lines to {out}")


@app.command()
def rules(
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="One line per rule: id, severity, title")] = False,
) -> None:
    """Print the rule catalog: what each rule checks, its effective severity, the fix and its public source."""
    from schemas.rules import CATALOG_VERSION, RULES

    cfg, _ = _load(config, None)
    typer.echo(f"rule catalog {CATALOG_VERSION}")
    for r in RULES:
        sev = cfg.severity.get(r.id, r.severity).value
        state = " (disabled)" if r.id in cfg.disabled else ""
        typer.echo(f"{r.id:9} {sev:8} {r.title}{state}")
        if brief:
            continue
        for label, text in (("checks", r.checks), ("fix", r.fix), ("source", r.source),
                            ("needs", ", ".join(r.needs))):
            if text:
                typer.echo(f"{'':19}{label}: {text}")


reference_app = typer.Typer(add_completion=False, no_args_is_help=False,
                            help="List the reference tables (NCCI edits, code sets), or import a CMS file.")
app.add_typer(reference_app, name="reference")


@reference_app.callback(invoke_without_command=True)
def reference_list(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
) -> None:
    """List every reference table: kind, version, dates of service covered, rows, origin and source."""
    if ctx.invoked_subcommand:
        return
    from pipeline import reference as R

    cfg, _ = _load(config, None)
    try:
        found = R.tables(cfg.reference_dir)
    except R.RefDataError as exc:
        _fail(str(exc))
    typer.echo(f"{'kind':11}{'version':10}{'covers':26}{'rows':>9}  origin    source")
    for t in found:
        typer.echo(f"{t.kind:11}{t.version:10}{t.covers_from + ' to ' + t.covers_to:26}{t.rows:>9}  {t.origin:9} "
                   f"{t.source}")
        if t.origin == "imported" and t.note:
            typer.echo(f"{'':58}note: {t.note}")
    typer.echo(f"imported tables: {cfg.reference_dir} (take precedence for the dates they cover)")


@reference_app.command("import")
def reference_import(
    kind: Annotated[str, typer.Argument(help="mue, ptp, icd10cm, hcpcs or ndc (the ASP NDC-HCPCS crosswalk; also asp)")],
    files: Annotated[list[Path], typer.Argument(help="The official file(s); PTP: the quarter's four files")],
    covers_from: Annotated[str, typer.Option("--from", help="First date of service covered, YYYY-MM-DD")],
    covers_to: Annotated[str | None, typer.Option("--to", help="Last date covered (default: the quarter, fiscal "
                                                               "year or year of --from)")] = None,
    version: Annotated[str | None, typer.Option(help="Version label, e.g. 2026-Q3 (default: from the dates)")] = None,
    partial: Annotated[bool, typer.Option("--partial", help="Accept an MUE or PTP table smaller than the official "
                                                            "one (a deliberate extract: codes it lacks go "
                                                            "unchecked for its dates)")] = False,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
) -> None:
    """Load an official CMS file into the reference folder (``reference_dir``), checking its shape first.

    Examples:
        claimscrub reference import mue MCR_MUE_PractitionerServices.csv --from 2026-07-01
        claimscrub reference import ptp ccipra-v323r0-f1.txt ccipra-v323r0-f2.txt ccipra-v323r0-f3.txt
            ccipra-v323r0-f4.txt --from 2026-07-01
        claimscrub reference import icd10cm icd10cm-order-2027.txt --from 2026-10-01
        claimscrub reference import hcpcs HCPC2027_CONTR_ANWEB.csv --from 2027-01-01
        claimscrub reference import ndc "July 2026 ASP NDC-HCPCS Crosswalk.csv" --from 2026-07-01
    """
    from pipeline import reference as R

    cfg, _ = _load(config, None)
    kind = {"asp": "ndc"}.get(kind.lower(), kind.lower())
    if kind not in R.IMPORTERS:
        _fail(f"unknown reference kind {kind!r}: one of {', '.join(sorted(R.IMPORTERS))}")
    start = _day(covers_from, "--from")
    end = _day(covers_to, "--to") if covers_to else None
    for f in files:
        if not f.is_file():
            _fail(f"{f}: no such file")
    label = version or (f"{start.year}-Q{(start.month - 1) // 3 + 1}" if R.IMPORTERS[kind].span == "quarter"
                        else f"FY{start.year + (start.month >= 10)}" if R.IMPORTERS[kind].span == "fiscal_year"
                        else str(start.year))
    try:
        before = R.would_replace(kind, cfg.reference_dir, label)
        made = R.build_tables(kind, files, cfg.reference_dir, label, start, end, partial=partial,
                              note="imported from " + ", ".join(f.name for f in files))
    except R.RefDataError as exc:
        _fail(str(exc))
    for old in before:
        typer.echo(f"replaced the earlier {old.kind} {old.version} table ({old.rows} rows, covers {old.covers_from} "
                   f"to {old.covers_to}, {(old.note or 'imported').split(';')[0]})")
    for table in made:
        typer.echo(f"imported {table.kind} {table.version}: {table.rows} rows, covers {table.covers_from} to "
                   f"{table.covers_to}, into {cfg.reference_dir}")
        if table.note:
            typer.echo(f"  note: {table.note}")


def _day(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value!r} is not a date (YYYY-MM-DD)")


@app.command()
def nightly(
    root: Annotated[Path | None, typer.Option(help="DIR/inbox, outbox, archive, quarantine, ledger.sqlite")] = None,
    inbox: Annotated[Path | None, typer.Option(help="Folder the billing team drops files in")] = None,
    outbox: Annotated[Path | None, typer.Option(help="Folder for workbooks (outbox/<date>/)")] = None,
    archive: Annotated[Path | None, typer.Option(help="Folder for scrubbed inputs (archive/<date>/)")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Folder for unreadable inputs")] = None,
    ledger: Annotated[str | None, typer.Option(help="SQLite ledger file, or postgresql://user@host/db (password: PGPASSWORD/~/.pgpass) or prefect-secret://NAME")] = None,
    settle_seconds: Annotated[float | None, typer.Option(help="Skip files modified this recently")] = None,
    as_of: Annotated[str | None, typer.Option(help="As-of date YYYY-MM-DD (default today)")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
    runner: Annotated[str, typer.Option(help="default (concurrent in-process) or dask")] = "default",
    dask_address: Annotated[str | None, typer.Option(
        help="Existing Dask scheduler, e.g. tcp://host:8786 (its workers are checked before the night)")] = None,
    dask_workers: Annotated[int, typer.Option(min=1, help="Workers of the local Dask cluster")] = 2,
    partition_lines: Annotated[int, typer.Option(
        min=1, help="With --runner dask: validate a file with more lines in parts across the cluster")] = PARTITION_LINES,
    max_files: Annotated[int | None, typer.Option(
        min=1, help="Files scrubbed at once (default: max_files_in_flight in the config, else the cores)")] = None,
) -> None:
    """Scrub every settled file in the inbox (the nightly-scrub Prefect flow). Exit 3 if any was quarantined,
    4 if any failed, 5 if the ledger cannot be used (nothing scrubbed), 130/143 when stopped by SIGINT/SIGTERM."""
    import signal

    from pipeline import isolate, ledgercheck
    from pipeline.cluster import ClusterRefused
    from pipeline.ledger import LedgerUnusable
    from pipeline.localapi import temporary_api
    from pipeline.nightly import resolve_paths

    cfg, _ = _load(config, None)
    if runner not in ("default", "dask"):
        _fail("--runner takes default or dask")
    try:
        paths = resolve_paths(cfg, root, inbox=inbox, outbox=outbox, archive=archive, quarantine=quarantine,
                              ledger=ledger)
    except OSError as exc:
        _fail(f"cannot create the folder {exc.filename}: {exc.strerror}; nothing was scrubbed")

    def stop(signum, frame):  # before and after the flow (which handles them itself while it runs)
        isolate.request_stop(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    answers = _configured_api_answers("the night runs on a temporary local API, not recorded there")
    try:
        ledgercheck.preflight(paths)
        # The temporary API runs in its own session: a signal to this process group leaves it to this run.
        with temporary_settings(restore_defaults=set() if answers else {PREFECT_API_URL}), temporary_api():
            summary = _run_nightly(root=root, inbox=inbox, outbox=outbox, archive=archive, quarantine=quarantine,
                                   ledger=ledger, settle_seconds=settle_seconds, as_of=_date(as_of),
                                   config_path=config, runner=runner, dask_address=dask_address,
                                   dask_workers=dask_workers, partition_lines=partition_lines,
                                   max_files_in_flight=max_files, notify=_warn)
    except LedgerUnusable as exc:
        _fail(exc.line, exc.exit_code)
    except ClusterRefused as exc:
        for line in exc.lines[:-1]:
            typer.echo(f"claimscrub: {line}", err=True)
        _fail(f"{exc.lines[-1]}; nothing was scrubbed", exc.exit_code)
    except KeyboardInterrupt:
        signum = isolate.stop_signal() or signal.SIGINT
        typer.echo(f"claimscrub: stopped by {signal.Signals(signum).name}; files not done stay in the inbox",
                   err=True)
        raise typer.Exit(128 + signum) from None
    if summary["status"] == "interrupted":
        _print_night(summary)
        signum = isolate.stop_signal() or signal.SIGINT
        typer.echo(f"claimscrub: stopped by {signal.Signals(signum).name}; {summary['not_started']} file(s) not "
                   "started and the ones interrupted stay in the inbox for the next run", err=True)
        raise typer.Exit(128 + signum)
    if summary["status"] == "locked":
        typer.echo("a nightly run is already in progress; nothing done")
        return
    _print_night(summary)
    if summary["failed"]:
        raise typer.Exit(4)
    if summary["quarantined"]:
        raise typer.Exit(3)


def _warn(line: str) -> None:
    typer.echo(f"claimscrub: warning: {line}", err=True)


def _run_nightly(**params) -> dict:
    from pipeline.flows import run_nightly

    return run_nightly(**params)


def _print_night(summary: dict) -> None:
    typer.echo(f"nightly scrub {summary['day']} (run {summary['run_id']}): {len(summary['files'])} file(s), "
               f"{summary['skipped']} left alone in the inbox (lock, hidden, temporary, unsettled or not exports)")
    for f in summary["files"]:
        extra = f" [{f['reason_code']}]" if f["reason_code"] else ""
        extra += " (left in the inbox for the next run)" if f["status"] == "deferred" else ""
        counts = f" {f.get('claims', 0)} claims, {f.get('findings', 0)} findings" if f["status"] == "scrubbed" else ""
        typer.echo(f"  file {f['file_id']}: {f['status']}{extra}{counts}")
    used = summary.get("reference") or {}
    if used.get("tables"):
        typer.echo("reference tables used: " + ", ".join(f"{r['kind']} {r['version']}" for r in used["tables"]))
    for note in used.get("warnings", []):
        typer.echo("  reference: " + note)
    for rule, why in sorted(used.get("partly", {}).items()):
        typer.echo(f"  not checked in part: {rule} ({why})")
    if summary.get("taken_elsewhere"):
        typer.echo(f"{summary['taken_elsewhere']} file(s) were taken by another nightly process over the same inbox")
    if summary["review_workbook"]:
        typer.echo(f"review workbook: {Path(summary['review_workbook']).resolve()}")
    typer.echo(f"outputs: {Path(summary['outbox']).resolve()}")


ledger_app = typer.Typer(no_args_is_help=True, help="Check or restore the nightly run's ledger.")
app.add_typer(ledger_app, name="ledger")
_ROOT_HELP = "Nightly root folder (DIR/ledger.sqlite, DIR/archive)"


def _ledger_paths(root: Path | None, ledger: str | None, archive: Path | None,
                  config: Path | None) -> tuple[Path | str, Path | None]:
    """The ledger and archive the nightly run with the same options would use (no folder is created)."""
    from pipeline.ledger import is_url

    cfg, _ = _load(config, None)
    if ledger is not None and not is_url(ledger):
        ledger = Path(ledger)
    if root is not None:
        return ledger or root / "ledger.sqlite", archive or root / "archive"
    if ledger is not None:
        return ledger, archive
    return cfg.ledger, archive or cfg.archive


@ledger_app.command("check")
def ledger_check(
    root: Annotated[Path | None, typer.Option(help=_ROOT_HELP)] = None,
    ledger: Annotated[str | None, typer.Option(help="SQLite ledger file, or postgresql://user@host/db (password: PGPASSWORD/~/.pgpass) or prefect-secret://NAME")] = None,
    archive: Annotated[Path | None, typer.Option(help="Archive folder (default: beside the ledger's root)")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
) -> None:
    """Integrity (quick_check), schema version, counts and backups of the ledger. Exit 5 if a night would refuse it."""
    from pipeline import ledgercheck
    from pipeline.ledger import SCHEMA_VERSION, LedgerUnusable, describe, is_url

    path, archive_dir = _ledger_paths(root, ledger, archive, config)
    if is_url(path):
        try:
            state = ledgercheck.pg_state(path, archive_dir)
        except LedgerUnusable as exc:
            _fail(exc.line, exc.exit_code)
        typer.echo(f"ledger {describe(path)}: PostgreSQL, schema version {state.version} (this claimscrub: "
                   f"{SCHEMA_VERSION}); back it up with pg_dump (no file backups are made)")
    else:
        try:
            state = ledgercheck.check_ledger(path, archive_dir)
        except LedgerUnusable as exc:
            _fail(exc.line, exc.exit_code)
    if not state.exists:
        beside = "the archive is empty" if archive_dir is not None else "give --archive to compare with the archive"
        typer.echo(f"ledger {path}: none yet (the first night creates it); {beside}")
        return
    if not is_url(path):
        typer.echo(f"ledger {path}: quick_check ok, schema version {state.version} (this claimscrub: "
                   f"{SCHEMA_VERSION})")
    files = ", ".join(f"{n} {s}" for s, n in sorted(state.files.items())) or "none"
    last = f", last started {state.last_run[0]} ({state.last_run[1] or 'not ended'})" if state.last_run else ""
    typer.echo(f"files: {files}; runs: {state.runs}{last}; injection sessions: {state.injections}; "
               f"disposition changes: {state.dispositions[0]} on {state.dispositions[1]} exception(s)")
    if state.unmatched_archive:
        typer.echo(f"archive: {state.unmatched_archive} file(s) no ledger row names; the next night records them")
    if is_url(path):
        return
    if state.backups:
        newest = state.backups[0]
        good = "passes quick_check" if ledgercheck.quick_check(newest) is None else "FAILS quick_check"
        typer.echo(f"backups: {len(state.backups)} in {newest.parent}; newest {newest.name} ({good})")
    else:
        typer.echo(f"backups: none yet in {ledgercheck.backups_dir(path)} (one is made after every night)")


@ledger_app.command("restore")
def ledger_restore(
    root: Annotated[Path | None, typer.Option(help=_ROOT_HELP)] = None,
    ledger: Annotated[str | None, typer.Option(help="SQLite ledger file, or postgresql://user@host/db (password: PGPASSWORD/~/.pgpass) or prefect-secret://NAME")] = None,
    from_: Annotated[Path | None, typer.Option("--from", help="Backup to restore (default: newest good one)")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
) -> None:
    """Put a good backup in the ledger's place; the old ledger is moved aside, never deleted. Exit 5 if refused."""
    from pipeline import ledgercheck
    from pipeline.ledger import LedgerUnusable, describe, is_url

    path, _ = _ledger_paths(root, ledger, None, config)
    if is_url(path):
        _fail(f"ledger {describe(path)}: a PostgreSQL ledger is restored with the database's own tools "
              "(pg_restore from a pg_dump), not by claimscrub [RESTORE_POSTGRESQL]", 5)
    try:
        used, aside = ledgercheck.restore_ledger(path, path.with_name(path.name + ".lock"), from_)
    except LedgerUnusable as exc:
        _fail(exc.line, exc.exit_code)
    typer.echo(f"ledger {path}: restored from {used}")
    if aside is not None:
        typer.echo(f"the ledger that was there is kept at {aside}")
    typer.echo("files archived after that backup get their rows back at the next night (README: recovering the ledger)")


review_app = typer.Typer(no_args_is_help=True, help="Reviewers' dispositions of exceptions.")
app.add_typer(review_app, name="review")


@review_app.command("import")
def review_import(
    workbook: Annotated[Path, typer.Argument(help="A reviewed exceptions or nightly review workbook (.xlsx)")],
    root: Annotated[Path | None, typer.Option(help="Nightly root folder (DIR/ledger.sqlite)")] = None,
    ledger: Annotated[str | None, typer.Option(help="SQLite ledger file, or postgresql://user@host/db (password: PGPASSWORD/~/.pgpass) or prefect-secret://NAME")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
) -> None:
    """Load the Status, Reviewer and Notes of a reviewed workbook into the ledger (a history row per change)."""
    from pipeline import ledgercheck, review
    from pipeline.ledger import LedgerUnusable, describe, is_url

    path, archive_dir = _ledger_paths(root, ledger, None, config)
    if not is_url(path) and not path.is_file():
        _fail(f"ledger {path}: none there (a night creates it); check --root or --ledger")
    try:
        book = ledgercheck.open_for_night(path, archive_dir)
        done = review.import_workbook(workbook, book)
    except LedgerUnusable as exc:
        _fail(exc.line, exc.exit_code)
    except review.ReviewFileError as exc:
        for line in exc.lines[:-1]:
            typer.echo(f"claimscrub: {line}", err=True)
        _fail(exc.lines[-1] + "; nothing imported")
    typer.echo(f"{workbook}: {done.rows} reviewed exception(s) read; {done.recorded} change(s) recorded in "
               f"ledger {describe(path)}, {done.unchanged} already there")


@app.command()
def serve(
    root: Annotated[Path | None, typer.Option(help="Nightly root folder")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
    port: Annotated[int, typer.Option(help="Port of the local Prefect server (default: a free one)")] = 0,
) -> None:
    """Serve the nightly deployment on its cron schedule (default 0 2 * * * in the configured time zone).

    With no PREFECT_API_URL, a local Prefect server (its scheduler included) is started on 127.0.0.1,
    its database in PREFECT_HOME, and stopped when serve stops."""
    import signal

    from pipeline import localserver

    cfg, _ = _load(config, None)
    url = os.environ.get("PREFECT_API_URL")
    if url:
        if not localserver.api_healthy(url, timeout=2.0):
            _fail(f"the Prefect API at {url} does not answer; start it, or unset PREFECT_API_URL to let "
                  "serve start a local server")
        _serve(cfg, root, config)
        return
    # Until Prefect's runner takes SIGTERM over, it stops serve through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    home.mkdir(parents=True, exist_ok=True)
    server = localserver.LocalServer(port or None, home=home, log=home / "claimscrub-server.log")
    typer.echo(f"claimscrub: starting a local Prefect server at {server.api_url} (database and log "
               f"claimscrub-server.log in {home})", err=True)
    try:
        server.start()
    except localserver.ServerStartError as exc:
        _fail(f"{exc}; see {home / 'claimscrub-server.log'}")
    try:
        typer.echo(f"claimscrub: local Prefect server ready; UI and API at {server.api_url[:-4]}", err=True)
        os.environ["PREFECT_API_URL"] = server.api_url
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: server.api_url}):
            _serve(cfg, root, config)
    finally:
        server.stop()
        typer.echo("claimscrub: local Prefect server stopped", err=True)


def _serve(cfg, root: Path | None, config: Path | None) -> None:
    from prefect import serve as prefect_serve

    from pipeline.flows import build_deployment

    prefect_serve(build_deployment(cfg, root, config))


@app.command()
def deploy(
    root: Annotated[Path | None, typer.Option(help="Nightly root folder")] = None,
    config: Annotated[Path | None, typer.Option(help="claimscrub.toml")] = None,
    work_pool: Annotated[str, typer.Option(help="Prefect process work pool (created if missing)")] = "claimscrub-process",
    name: Annotated[str, typer.Option(help="Deployment name")] = "nightly",
) -> None:
    """Register the nightly deployment with a Prefect server's process work pool (run a worker there)."""
    from pipeline.localserver import api_healthy

    cfg, _ = _load(config, None)
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        _fail("deploy needs a Prefect server: start one (prefect server start) and set PREFECT_API_URL, "
              "e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api")
    if not api_healthy(url, timeout=2.0):
        _fail(f"the Prefect API at {url} does not answer")
    if root is None and config is None:
        _fail("deploy needs --root DIR (or --config FILE naming absolute folders)")
    from pipeline.deployments import deploy_nightly, other_nightly_deployments

    try:
        dep_id, created = deploy_nightly(cfg, root, config, work_pool, name)
    except ValueError as exc:
        _fail(str(exc))
    if created:
        typer.echo(f"work pool {work_pool} created (type process)")
    typer.echo(f"deployment nightly-scrub/{name} registered ({dep_id}): {cfg.schedule} {cfg.timezone}, "
               f"one run at a time; start a worker with: prefect worker start --pool {work_pool}")
    others = other_nightly_deployments(name)
    if others:
        typer.echo("note: this server has other nightly-scrub deployments, each on its own schedule: "
                   + ", ".join(others), err=True)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Demo folder (recreated)")] = Path("demo_run"),
) -> None:
    """Build a demo inbox from sample_claims/, run the nightly flow over it and say where the workbook is; then
    scrub the payer-edits sample ad hoc at its own as-of date (its claims are dated 2025-12 and 2026-03)."""
    import shutil

    from pipeline import scrub as S
    from pipeline.config import load_config

    root = Path(__file__).resolve().parent.parent / "sample_claims"
    if out.exists():
        shutil.rmtree(out)
    inbox = out / "inbox"
    inbox.mkdir(parents=True)
    for path in sorted(root.glob("*")):
        if path.suffix.lower() in (".csv", ".xlsx") and path.name not in DEMO_AD_HOC:
            shutil.copy(path, inbox / path.name)
    (inbox / "~$mixed.xlsx").write_bytes(b"owner file of an open workbook")
    (inbox / "damaged.xlsx").write_bytes(b"PK\x03\x04 this is not really a workbook")
    typer.echo(f"demo inbox: {inbox.resolve()} ({len(list(inbox.iterdir()))} files, one damaged, one lock file)")
    summary = _run_nightly(root=out, settle_seconds=0, as_of=DEMO_AS_OF, config_path=root / "claimscrub.toml")
    _print_night(summary)
    cfg = load_config(root / "claimscrub.toml")
    for name, as_of in DEMO_AD_HOC.items():  # what `claimscrub scrub FILE --as-of DATE` does, in-process
        typer.echo(f"ad hoc scrub of {name} as of {as_of} (claimscrub scrub sample_claims/{name} --as-of {as_of} "
                   "--config sample_claims/claimscrub.toml):")
        started = time.perf_counter()
        done = S.scrub_file(root / name, out / "adhoc", cfg, as_of)
        typer.echo(_summary_text(done.summary.__dict__, time.perf_counter() - started))
        typer.echo(f"  workbook: {done.workbook.resolve()}")


DEMO_AS_OF = dt.date(2024, 6, 30)  # the nightly samples' claims are dated 2024-05
DEMO_AD_HOC = {"payer_edits.csv": dt.date(2026, 4, 15)}  # samples dated later, scrubbed ad hoc at their own date


def main() -> None:
    from pipeline import logsafe, report

    report.check_environment()
    logsafe.install()
    app()


if __name__ == "__main__":
    main()
