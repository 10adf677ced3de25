"""What a nightly run shows in Prefect: its name (the night's date), its final state with counts, its logs.

A night stopped by a signal ends ``Failed`` named ``Interrupted``; one that quarantined files ends
``Failed`` named ``Quarantined``; one with files that could not be finished (left in the inbox) ends
``Failed``; otherwise ``Completed``. The state message holds counts
only, never file names. The project's own log records (logger ``pipeline``) are shipped to the
Prefect API during a run, masked by ``logsafe`` first.
"""

import copy
import datetime as dt
import logging

from pipeline import logsafe

QUARANTINED = "Quarantined"
INTERRUPTED = "Interrupted"


def night_run_name() -> str:
    """``nightly-<as-of date>``: the date the run scrubs for (today unless ``as_of`` is given)."""
    from prefect.runtime import flow_run

    as_of = (flow_run.parameters or {}).get("as_of")
    return f"nightly-{as_of or dt.date.today().isoformat()}"


def night_message(summary: dict) -> str:
    """The night's counts (no names): files by outcome and files left alone."""
    files = summary.get("files", [])
    count = {s: sum(f.get("status") == s for f in files) for s in ("scrubbed", "duplicate")}
    message = (f"{len(files)} file(s): {count['scrubbed']} scrubbed, {count['duplicate']} duplicate, "
               f"{summary.get('quarantined', 0)} quarantined, {summary.get('failed', 0)} failed (left in the inbox)")
    if summary.get("deferred"):
        message += f", {summary['deferred']} deferred to the next night"
    message += f"; {summary.get('skipped', 0)} left alone"
    if summary.get("status") == "interrupted":
        message += f"; stopped by a signal, {summary.get('not_started', 0)} file(s) not started"
    return message


class NightNotClean(Exception):
    """A night that quarantined or failed files: its counts as the message, the summary for the CLI.

    A failed state's result must be an exception (Prefect raises it where the run ends); the summary
    rides on it in memory only (results are not persisted)."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}

    def __reduce__(self):
        return type(self), (str(self),)  # a pickled copy carries the counts, never the summary's paths


def night_state(summary: dict):
    """The final state of a night: Completed, Failed named Quarantined, or Failed; counts as the message."""
    from prefect.states import Completed, Failed

    message = night_message(summary)
    if summary.get("status") == "interrupted":
        return Failed(name=INTERRUPTED, message=message, data=NightNotClean(message, summary))
    if summary.get("failed"):
        return Failed(message=message, data=NightNotClean(message, summary))
    if summary.get("quarantined"):
        return Failed(name=QUARANTINED, message=message, data=NightNotClean(message, summary))
    return Completed(message=message, data=summary)


def summary_of(state) -> dict:
    """The night's summary from its final state; re-raises what a crashed or failed run raised."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        return result
    if isinstance(result, NightNotClean) and result.summary:
        return result.summary
    if isinstance(result, BaseException):
        raise result
    return state.result()  # raises for a failed state without a summary


class _ProjectLogHandler(logging.Handler):
    """Prefect's API log handler for the ``pipeline`` loggers: masked, and silent outside a run."""

    def __init__(self):
        super().__init__(logging.INFO)
        from prefect.logging.handlers import APILogHandler

        self._api = APILogHandler()

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import get_run_context
        from prefect.exceptions import MissingContextError

        try:
            get_run_context()
        except MissingContextError:
            return  # an in-process ad hoc scrub: nothing to ship it to
        shipped = copy.copy(record)  # masked for the server only; other handlers see the record as made
        shipped.msg, shipped.args = logsafe.mask(record.getMessage()), ()
        shipped.exc_info = shipped.exc_text = None  # a traceback's text can carry paths
        self._api.emit(shipped)


def ship_project_logs() -> None:
    """Send the ``pipeline`` loggers' records to the Prefect API (called where a flow starts; idempotent)."""
    logger = logging.getLogger("pipeline")
    if not any(isinstance(h, _ProjectLogHandler) for h in logger.handlers):
        logger.addHandler(_ProjectLogHandler())
