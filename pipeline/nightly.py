"""The nightly inbox run, as plain functions the ``nightly-scrub`` flow wraps.

Order per file, so a crash at any point loses nothing and a re-run converges:
outputs written (atomic) -> ledger says scrubbed -> input moved to archive -> ledger says archived.
A re-run re-writes the same outputs (same names) if the ledger was not reached, and only finishes the
archiving if it was. Logs and the returned summaries carry file ids (hash prefixes), never names.
"""

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import logging
import multiprocessing as mp
import os
import shutil
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import ingest, report, review, scrub, validate
from pipeline.config import MAX_REPEAT_INTERVAL_DAYS, ScrubConfig
from pipeline.derive import patient_key
from pipeline.errors import OutputError, ScrubFailure
from pipeline.isolate import Interrupted, read_isolated, run_isolated
from pipeline.ledger import LEDGER_ERRORS, Ledger, is_url, open_ledger
from schemas import codesets as K
from schemas import columns as C

log = logging.getLogger(__name__)
INBOX_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".csv", ".tsv"}
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", "~")
FAULT_ENV = "CLAIMSCRUB_FAULT_STAGE"  # test hook: kill the process at a named stage
NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems
OUTPUT_STEM_MAX = 230  # room for ".exceptions.xlsx" and the writers' temporary names (".~<stem>…tmp")
# Statuses of a file the night could not take; it stays in the inbox. "deferred": picked up next night
# with nothing to do (changed while read, or gone); "failed": someone must look (reason code).
LEFT_CODES = {"E_CHANGED": "deferred", "E_VANISHED": "deferred"}
WORK_FOLDER = ".claimscrub-work"  # in the inbox (same file system: a move is a rename); hidden from scans


@dataclass(frozen=True)
class NightlyPaths:
    root: Path | None
    inbox: Path
    outbox: Path
    archive: Path
    quarantine: Path
    ledger: Path | str  # an SQLite file, or a PostgreSQL URL (``pipeline.ledger.open_ledger``)

    @property
    def lock(self) -> Path | None:
        """The SQLite night's flock file beside the ledger (none on PostgreSQL: advisory locks instead)."""
        return None if is_url(self.ledger) else self.ledger.with_name(self.ledger.name + ".lock")

    @property
    def work(self) -> Path:
        """Where each run keeps the files it has claimed, one folder per run: ``<inbox>/.claimscrub-work/<run>``."""
        return self.inbox / WORK_FOLDER


def resolve_paths(config: ScrubConfig, root: Path | None = None, **overrides: Path | None) -> NightlyPaths:
    """``--root DIR`` means DIR/inbox, outbox, archive, quarantine and ledger.sqlite; flags override. Every
    path is made absolute here, on the host that starts the night: workers elsewhere get the same paths."""
    base = {
        "inbox": config.inbox, "outbox": config.outbox, "archive": config.archive,
        "quarantine": config.quarantine, "ledger": config.ledger,
    }
    if root is not None:
        root = Path(root)
        base = {"inbox": root / "inbox", "outbox": root / "outbox", "archive": root / "archive",
                "quarantine": root / "quarantine",  # a PostgreSQL ledger is no file of the root's: kept
                "ledger": config.ledger if is_url(config.ledger) else root / "ledger.sqlite"}
    base.update({k: v if k == "ledger" and is_url(v) else Path(v) for k, v in overrides.items() if v is not None})
    base = {k: v if k == "ledger" and is_url(v) else Path(os.path.abspath(Path(v).expanduser()))
            for k, v in base.items()}
    paths = NightlyPaths(root=Path(os.path.abspath(Path(root).expanduser())) if root is not None else None, **base)
    for folder in (paths.inbox, paths.outbox, paths.archive, paths.quarantine,
                   *([] if is_url(paths.ledger) else [paths.ledger.parent])):
        folder.mkdir(parents=True, exist_ok=True)
    return paths


def file_id(sha256: str) -> str:
    """What logs and artifacts call a file: a prefix of its content hash."""
    return sha256[:12]


def clean_stale_temps(outbox: Path) -> int:
    """Remove private temporary folders a killed run left in the outbox (they can hold claim data)."""
    removed = 0
    for folder in Path(outbox).glob("*/.claimscrub-tmp-*"):
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    for tmp in Path(outbox).glob("*/.~*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def scan_inbox(inbox: Path, settle_seconds: float, now: float | None = None) -> tuple[list[Path], list[tuple]]:
    """Claim files ready to scrub, and the ones left alone with why (lock, hidden, temporary, unsettled)."""
    now = time.time() if now is None else now
    ready, skipped = [], []
    for path in sorted(Path(inbox).iterdir()):
        name = path.name
        try:
            st = path.stat()
        except OSError:  # vanished since the listing (or a dangling link): nothing to take
            continue
        if stat.S_ISDIR(st.st_mode):  # the runs' working folder among them
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO, socket or device: opening it could block the night
            skipped.append((path, "not a regular file"))
            continue
        if name.startswith("~$"):
            skipped.append((path, "office lock file"))
        elif name.startswith("."):
            skipped.append((path, "hidden file"))
        elif name.lower().endswith(TEMP_SUFFIXES):
            skipped.append((path, "temporary file"))
        elif scrub.is_own_output(name):
            skipped.append((path, "claimscrub output, not an export"))
        elif path.suffix.lower() not in INBOX_SUFFIXES:
            skipped.append((path, "not a claims file type"))
        elif now - st.st_mtime < settle_seconds:
            skipped.append((path, "still being written"))
        else:
            ready.append(path)
    return ready, skipped


class RunInProgress(RuntimeError):
    """Another nightly run holds the lock."""


class RunLock:
    """An exclusive, non-blocking lock next to the ledger: one nightly run at a time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None

    def __enter__(self) -> "RunLock":
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise RunInProgress("a nightly run is already in progress") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


@dataclass
class FileOutcome:
    """One inbox file's fate. Counts and ids only, plus the frames the combined workbook needs."""

    file_id: str
    name: str  # never logged; the combined workbook's Source File column
    status: str  # scrubbed | duplicate | quarantined | failed (outputs not written; input left in the inbox)
    reason_code: str = ""
    reason: str = ""
    counts: dict = field(default_factory=dict)
    by_rule: dict = field(default_factory=dict)
    workbook: str = ""
    lines: pd.DataFrame | None = None  # lines of flagged claims only
    sessions: pd.DataFrame | None = None  # this file's 64612 sessions, for the night-level repeat pass
    findings: pd.DataFrame | None = None
    issues: pd.DataFrame | None = None
    not_checked: dict = field(default_factory=dict)  # rule -> why (rule ids and column names only)
    reference: dict = field(default_factory=dict)  # tables used, coverage warnings (validate.reference_use)
    payer_profiles: dict = field(default_factory=dict)  # payer name -> profile matched ("" = none)

    def public(self) -> dict:
        """What may be shown in logs and Prefect artifacts (no names, no patient data)."""
        return {"file_id": self.file_id, "status": self.status, "reason_code": self.reason_code,
                **self.counts}


def _fault(stage: str) -> None:
    if os.environ.get(FAULT_ENV) == stage:
        os._exit(137)


def fit_name(stem: str, tail: str, limit: int = NAME_MAX) -> str:
    """``stem + tail`` in at most ``limit`` bytes: the stem is cut, never the tail (an id, a suffix)."""
    room = max(limit - len(os.fsencode(tail)), 1)
    raw = os.fsencode(stem)
    if len(raw) <= room:
        return stem + tail
    try:  # on a character boundary when the name is text (a cut character is dropped whole)
        raw.decode("utf-8")
        return raw[:room].decode("utf-8", "ignore") + tail
    except UnicodeDecodeError:  # a name that is not UTF-8 stays bytes, as the file system gave it
        return os.fsdecode(raw[:room]) + tail


def _unique(folder: Path, name: str, sha256: str) -> Path:
    """``folder/name``, or ``name`` with the file id inserted when another file already has it."""
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while target.exists():  # never overwrite: an archive or quarantine keeps every file it was given
        target = folder / fit_name(stem, f".{file_id(sha256)}{'' if n == 1 else f'-{n}'}{suffix}")
        n += 1
    return target


def sidecar_for(target: Path) -> Path:
    """``<name>.error.txt`` beside a quarantined file; a name too long for it is cut and made unique
    again with a hash of the whole name."""
    name = target.name + ".error.txt"
    if len(os.fsencode(name)) > NAME_MAX:
        digest = hashlib.sha256(os.fsencode(target.name)).hexdigest()[:12]
        name = fit_name(target.name, f".{digest}.error.txt")
    return target.with_name(name)


def _move(path: Path, folder: Path, sha256: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = _unique(folder, path.name, sha256)
    os.replace(path, target) if path.stat().st_dev == folder.stat().st_dev else shutil.move(path, target)
    return target


class FileFault(Exception):
    """An inbox file the night cannot take (gone, unreadable, not a regular file). Its text never names
    the file: it can reach logs and Prefect state messages."""

    def __init__(self, code: str, reason: str):
        self.code, self.reason = code, reason
        super().__init__(f"{reason} [{code}]")

    @classmethod
    def from_os(cls, exc: OSError, doing: str) -> "FileFault":
        if isinstance(exc, FileNotFoundError):
            return cls("E_VANISHED", f"the file was gone when {doing}")
        if isinstance(exc, PermissionError):
            return cls("E_UNREADABLE", f"no permission ({doing}): fix the file's permissions")
        return cls("E_IO", f"{errno.errorcode.get(exc.errno or 0, 'I/O error')} while {doing}")


class MaskedOSError(OSError):
    """An ``OSError`` raised again without its file names (a retryable I/O failure of one file)."""

    def __init__(self, exc: OSError, fid: str):
        super().__init__(exc.errno, f"{errno.errorcode.get(exc.errno or 0, 'I/O error')} on file {fid}")


def inbox_sha256(path: Path) -> str:
    """The content hash of an inbox file, opened without blocking (a FIFO put in its place must not hang
    the night); raises ``FileFault``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileFault.from_os(exc, "opening it") from None
    try:
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileFault("E_NOT_A_FILE", "not a regular file (a pipe, socket or device)")
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise FileFault.from_os(exc, "hashing it") from None


class Claimer:
    """Takes inbox files for one run, one at a time as the run has room for them, so that processes over
    one shared inbox share its files out: hash -> claim in the ledger (the insert is atomic: one run per
    content) -> move into the run's working folder (a rename: one process per path). What one run holds,
    no other scrubs; what it has not claimed yet, another may take. A file the run could not finish goes
    back to the inbox (``finish``); a killed run's files are taken back by the next night (``recover_claims``).
    """

    def __init__(self, ledger: Ledger, paths: NightlyPaths, run_id: str):
        self.ledger, self.paths, self.run_id = ledger, paths, run_id
        self.folder = paths.work / run_id
        self.faults: list[FileOutcome] = []  # files that could not be hashed or moved (left in the inbox)
        self.elsewhere = 0  # files another run took first (or holds the same content of)

    def take(self, path: Path) -> tuple[str, tuple[Path, str] | None]:
        """``("go", (work path, sha256))``, ``("later", None)`` (this run holds the same content: a twin, taken
        after it), or ``("skip", None)`` (gone to another run, or could not be taken: see ``faults``)."""
        try:
            sha = inbox_sha256(path)
        except FileFault as fault:
            if fault.code == "E_VANISHED" and is_url(self.paths.ledger):  # most likely another process took it
                self.elsewhere += 1
                return "skip", None
            self.faults.append(_leave(path, "", 0, self.ledger, self.run_id, fault.code, fault.reason))
            return "skip", None
        self.folder.mkdir(parents=True, exist_ok=True)
        target = _unique(self.folder, path.name, sha)
        for _ in range(3):  # a claim released between the insert and the look-up: try again
            holder = self.ledger.claim(sha, path.name, self.run_id, str(target))
            if holder != "":
                break
        if holder == self.run_id:
            return "later", None
        if holder:
            log.info("file %s: the same content is being scrubbed by another run; left in the inbox", file_id(sha))
            self.elsewhere += 1
            return "skip", None
        try:
            os.rename(path, target)
        except FileNotFoundError:  # another process moved it (its claim came and went): not ours
            self.ledger.release(sha, self.run_id)
            self.elsewhere += 1
            return "skip", None
        except OSError as exc:
            self.ledger.release(sha, self.run_id)
            fault = FileFault.from_os(exc, "moving it to the run's working folder")
            self.faults.append(_leave(path, sha, 0, self.ledger, self.run_id, fault.code, fault.reason))
            return "skip", None
        return "go", (target, sha)

    def finish(self, work_path: Path, sha256: str) -> None:
        """The file's task is over: a file still in the working folder (failed, deferred, interrupted) goes
        back to the inbox; the claim is released."""
        put_back(work_path, self.paths.inbox, sha256)
        self.ledger.release(sha256, self.run_id)

    def close(self) -> None:
        """Files never finished (a stop) go back; the run's working folder is removed when empty."""
        for claim in self.ledger.claims(self.run_id):
            self.finish(Path(claim["work_path"]), claim["sha256"])
        for folder in (self.folder, self.paths.work):  # each only when empty (other runs may be working)
            with contextlib.suppress(OSError):
                folder.rmdir()


def put_back(work_path: Path, inbox: Path, sha256: str) -> Path | None:
    """A file from a run's working folder back into the inbox (a new name only if one is taken there)."""
    work_path = Path(work_path)
    if not work_path.exists():
        return None
    target = _unique(inbox, work_path.name, sha256)
    os.rename(work_path, target)
    return target


def recover_claims(ledger: Ledger, paths: NightlyPaths, run_id: str) -> int:
    """What dead runs (killed mid-night) had claimed goes back to the inbox and their claims are released;
    their runs are closed as ``crashed``. Run during the night's setup (one process at a time). Returns how
    many files went back."""
    back = 0
    for claim in ledger.claims():
        if claim["run_id"] == run_id or ledger.run_alive(claim["run_id"]):
            continue
        back += put_back(Path(claim["work_path"]), paths.inbox, claim["sha256"]) is not None
        ledger.release(claim["sha256"], claim["run_id"])
        log.warning("file %s: claimed by a run that did not finish; back in the inbox", file_id(claim["sha256"]))
    if paths.work.is_dir():  # files a dead run moved without a claim row left (never, but never lose one)
        for folder in paths.work.iterdir():
            if not folder.is_dir() or folder.name == run_id or ledger.run_alive(folder.name):
                continue
            for leftover in folder.iterdir():
                if leftover.is_file() and not leftover.name.startswith("."):
                    try:
                        sha = inbox_sha256(leftover)
                    except FileFault:
                        continue
                    back += put_back(leftover, paths.inbox, sha) is not None
            with contextlib.suppress(OSError):
                folder.rmdir()
    ledger.close_dead_runs()
    return back


def wait_for_other_runs(ledger: Ledger, run_id: str, timeout: float, stop=lambda: False, poll: float = 1.0) -> int:
    """Wait until no other live run holds a file (their sessions are then all in the ledger for the
    cross-file pass), at most ``timeout`` seconds; returns how many are still held."""
    deadline = time.monotonic() + timeout
    while (held := ledger.claims_in_flight(run_id)) and time.monotonic() < deadline and not stop():
        time.sleep(poll)
    return held


def _leave(path: Path, sha256: str, size: int, ledger: Ledger, run_id: str, code: str, reason: str) -> FileOutcome:
    """A file this night does not take: recorded with its reason code, left in the inbox."""
    status = LEFT_CODES.get(code, "failed")
    fid = file_id(sha256) if sha256 else "-" * 12
    ledger.record_file(sha256, path.name, size, status, run_id, reason_code=code)
    log.warning("file %s: %s [%s]; left in the inbox", fid, reason, code)
    return FileOutcome(fid, path.name, status, code, reason)


def _same_file(path: Path, before: os.stat_result) -> bool:
    """Whether the file is still the one stat'ed before (same inode, size and modification time)."""
    try:
        now = path.stat()
    except OSError:
        return False
    return (now.st_ino, now.st_size, now.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def scrub_inbox_entry(path: Path, sha256: str, paths: NightlyPaths, ledger_path: Path | str, config: ScrubConfig,
                      as_of: dt.date, day: str, run_id: str, check=scrub.check_file) -> FileOutcome:
    """``process_file`` for the nightly task: nothing it raises names the file. An ``OSError`` (a share
    hiccup, a full archive) comes back as a ``MaskedOSError`` the task may retry (a retry finishes what
    the first try recorded); anything else is a failed outcome, and the file stays in the inbox."""
    fid = file_id(sha256)
    try:
        return process_file(path, sha256, paths, open_ledger(ledger_path, create=False), config, as_of, day, run_id,
                            check=check)
    except OSError as exc:
        log.error("file %s: %s", fid, errno.errorcode.get(exc.errno or 0, type(exc).__name__))
        raise MaskedOSError(exc, fid) from None
    except Exception as exc:  # noqa: BLE001 - reduced to a safe reason; the file stays in the inbox
        failure = ScrubFailure("scrubbing the file", exc)
        log.error("file %s: %s [%s]; the file stays in the inbox", fid, failure.reason, failure.code)
        return FileOutcome(fid, Path(path).name, "failed", failure.code, failure.reason)


def output_names(outbox_day: Path, name: str, sha256: str) -> tuple[Path, Path]:
    """Deterministic per content, so a re-run replaces its own outputs instead of adding copies."""
    stem = fit_name(Path(name).stem, f".{file_id(sha256)}", OUTPUT_STEM_MAX)
    return outbox_day / f"{stem}.exceptions.xlsx", outbox_day / f"{stem}.findings.csv"


def injection_rows(sessions: pd.DataFrame) -> pd.DataFrame:
    """The ledger's injection history rows of one file: salted patient key, date, code, sides."""
    return pd.DataFrame({
        "patient_key": sessions["patient_key"].to_numpy(),
        "service_date": pd.to_datetime(sessions["date"]).dt.strftime("%Y-%m-%d").to_numpy(),
        "code": "64612", "sides": sessions["sides"].to_numpy(),
    })


def _window(dates: pd.Series) -> dict:
    """From the longest repeat interval before the first date to the last: the history dates that matter."""
    first, last = pd.Timestamp(dates.min()), pd.Timestamp(dates.max())
    since = first - pd.Timedelta(days=MAX_REPEAT_INTERVAL_DAYS)
    return {"since": f"{since:%Y-%m-%d}", "until": f"{last:%Y-%m-%d}"}


def history_scope(lines: pd.DataFrame, salt: str) -> dict:
    """The ledger sessions the repeat-interval rule can use for one file: its 64612 claims' patients, in the dates that matter
    (``Ledger.injection_history`` keyword arguments)."""
    keys, window = session_keys(lines, salt)
    return {"keys": list(keys.values()), **window} if keys else {"keys": []}


def session_keys(lines: pd.DataFrame, salt: str) -> tuple[dict, dict]:
    """{patient id: salted key} of the patients on a claim with a 64612 line, and the history dates that matter.

    The patients are a superset of the file's sessions (derive's and ``night_sessions``'), so their keys
    are hashed once per file. The dates run from the longest interval before the file's first date of
    service to its last: an earlier session is only ever compared with the session right after it.
    """
    codes, uniques = pd.factorize(lines[C.CLAIM_ID])
    has_64612 = np.zeros(len(uniques) + 1, dtype=bool)  # the last slot: lines without a claim id (code -1)
    has_64612[codes[(lines[C.PROCEDURE_CODE] == K.CHEMO_FACIAL).to_numpy(bool, na_value=False)]] = True
    on = has_64612[codes] & (codes >= 0)
    patients, dates = lines[C.PATIENT_ID][on].dropna().unique().tolist(), lines[C.SERVICE_DATE][on].dropna()
    if not patients or dates.empty:
        return {}, {}
    return {p: patient_key(p, salt) for p in patients}, _window(dates)


def night_scope(outcomes: list["FileOutcome"]) -> dict:
    """The ledger sessions the cross-file pass can use: tonight's session keys, in the dates that matter."""
    parts = [o.sessions for o in outcomes if o.sessions is not None and len(o.sessions)]
    if not parts:
        return {"keys": []}
    tonight = pd.concat(parts, ignore_index=True)
    return {"keys": tonight["patient_key"].unique().tolist(), **_window(pd.to_datetime(tonight["date"]))}


SESSION_COLUMNS = ["patient_key", "date", "sides", "in_scope", "interval", C.CLAIM_ID, C.LINE_NO, C.SOURCE_ROW,
                   C.PATIENT_ID, C.SERVICE_DATE, C.PAYER, C.CHARGE]


def night_sessions(claims: pd.DataFrame | None, lines: pd.DataFrame, salt: str, keys: dict | None = None
                   ) -> pd.DataFrame:
    """This file's 64612 sessions (one salted key per session, computed once for the ledger and the
    night-level repeat pass) with what a finding on them needs (its 64612 line). ``keys``: patient
    id -> salted key already hashed for this file (``session_keys``)."""
    if claims is None or claims.empty:
        return pd.DataFrame(columns=SESSION_COLUMNS)
    sel = claims[claims["is_64612"] & claims[C.PATIENT_ID].notna() & claims["dos_min"].notna()]
    known = keys or {}
    at = lines.loc[sel["idx_64612"].to_numpy()]
    sides = np.where(sel["m50"] | (sel["m_rt"] & sel["m_lt"]), "both",
                     np.where(sel["m_rt"], "right", np.where(sel["m_lt"], "left", "unspecified")))
    return pd.DataFrame({
        "patient_key": [known.get(p) or patient_key(p, salt) for p in sel[C.PATIENT_ID]],
        "date": sel["dos_min"].to_numpy(),
        "sides": sides,
        "in_scope": sel["in_scope"].to_numpy(), "interval": sel["repeat_interval_days"].to_numpy(),
        C.CLAIM_ID: sel[C.CLAIM_ID].to_numpy(), C.LINE_NO: at[C.LINE_NO].to_numpy(),
        C.SOURCE_ROW: at[C.SOURCE_ROW].to_numpy(), C.PATIENT_ID: at[C.PATIENT_ID].to_numpy(),
        C.SERVICE_DATE: at[C.SERVICE_DATE].to_numpy(), C.PAYER: at[C.PAYER].to_numpy(),
        C.CHARGE: at[C.CHARGE].to_numpy(),
    })


def cross_file_repeats(outcomes: list["FileOutcome"], history: pd.DataFrame, config: ScrubConfig,
                       concurrent: dict | None = None) -> pd.DataFrame:
    """The repeat-interval rule between files of the same night, which no file's own check could see (files
    run concurrently).

    A session is flagged when the patient's previous session, within the payer's interval, is in another
    file of tonight; claims already flagged by their own file are left as they are. ``concurrent``: file
    sha256 -> name of the files other processes scrubbed while this night ran (over the same shared inbox,
    on a PostgreSQL ledger); their sessions in ``history`` (with its ``file_sha256`` column) count as
    tonight's, so that two processes flag what one process would have flagged.
    """
    from pipeline.validate import FINDING_COLUMNS, severity_for
    from schemas.rules import RULES_BY_ID
    from schemas.rules.history import repeat_interval, too_soon

    rule_id = repeat_interval.rule_id

    parts = [o.sessions.assign(source_file=o.name) for o in outcomes if o.sessions is not None and len(o.sessions)]
    others = concurrent or {}
    if not parts or (len(parts) < 2 and not others):
        return pd.DataFrame(columns=[*FINDING_COLUMNS, "source_file"])
    tonight = pd.concat(parts, ignore_index=True)
    tonight["date"] = pd.to_datetime(tonight["date"]).astype("datetime64[ns]")
    tonight["patient_key"] = tonight["patient_key"].astype(object)
    earlier = history.rename(columns={"service_date": "date"}).assign(source_file="(earlier run)")
    if others and "file_sha256" in earlier:
        tonight_elsewhere = earlier["file_sha256"].isin(list(others))
        earlier.loc[tonight_elsewhere, "source_file"] = earlier.loc[tonight_elsewhere, "file_sha256"].map(
            lambda h: f"{others.get(h) or 'file ' + file_id(h)} (scrubbed by another process tonight)")
    earlier = earlier[["patient_key", "date", "source_file"]].copy()
    earlier["patient_key"] = earlier["patient_key"].astype(object)
    pool = pd.concat([tonight[["patient_key", "date", "source_file"]], earlier],
                     ignore_index=True).sort_values("date", kind="stable")
    pool["prev_date"], pool["prev_file"] = pool["date"], pool["source_file"]
    merged = pd.merge_asof(tonight.sort_values("date", kind="stable"), pool[["patient_key", "date", "prev_date",
                                                                             "prev_file"]],
                           on="date", by="patient_key", allow_exact_matches=False, direction="backward")
    days = (merged["date"] - merged["prev_date"]).dt.days
    flagged = [(o.name, c) for o in outcomes if o.findings is not None
               for c in o.findings.loc[o.findings["rule"] == rule_id, C.CLAIM_ID]]
    already = pd.MultiIndex.from_arrays([merged["source_file"], merged[C.CLAIM_ID]]).isin(flagged) \
        if flagged else np.zeros(len(merged), dtype=bool)
    hit = (merged["in_scope"].astype(bool) & too_soon(days, merged["interval"])
           & merged["prev_file"].notna() & (merged["prev_file"] != merged["source_file"])
           & (merged["prev_file"] != "(earlier run)") & ~already)
    rows, days = merged[hit], days[hit]
    # Column by column: a night of files that share their patients can hold hundreds of thousands.
    by_payer: dict = {}
    severity = [by_payer[p] if p in by_payer else by_payer.setdefault(
        p, severity_for(rule_id, p if isinstance(p, str) else None, config)) for p in rows[C.PAYER]]
    keep = np.array([sev is not None for sev in severity], dtype=bool)
    rows, days = rows[keep], days[keep]
    severity = [sev for sev in severity if sev is not None]
    if not len(rows):
        return pd.DataFrame(columns=[*FINDING_COLUMNS, "source_file"])
    rule = RULES_BY_ID[rule_id]
    value = (days.astype(int).astype(str) + " days after the session on " + rows["prev_date"].dt.strftime("%Y-%m-%d")
             + " in " + rows["prev_file"].astype(str) + " (minimum " + rows["interval"].astype(int).astype(str)
             + ")").tolist()
    out = {"rule": rule_id, "severity": severity, C.CLAIM_ID: rows[C.CLAIM_ID].to_numpy(),
           C.LINE_NO: rows[C.LINE_NO].to_numpy(), C.SOURCE_ROW: rows[C.SOURCE_ROW].to_numpy(), "field": rule.field,
           "value": value, "message": [rule.message.format(value=v) for v in value], "fix": rule.fix,
           C.PATIENT_ID: rows[C.PATIENT_ID].to_numpy(), C.SERVICE_DATE: rows[C.SERVICE_DATE].to_numpy(),
           C.PAYER: rows[C.PAYER].to_numpy(), C.CHARGE: rows[C.CHARGE].to_numpy(),
           "source_file": rows["source_file"].to_numpy()}
    return pd.DataFrame(out, columns=[*FINDING_COLUMNS, "source_file"])


def process_file(path: Path, sha256: str, paths: NightlyPaths, ledger: Ledger, config: ScrubConfig,
                 as_of: dt.date, day: str, run_id: str, column_map: dict | None = None,
                 isolate: bool = True, check=scrub.check_file) -> FileOutcome:
    """Scrub one inbox file, or record it as a duplicate, or quarantine it; never raises on bad data.

    ``check(result, as_of, config, history, salt)`` validates what was read (the Dask runner passes one
    that spreads a large file's claims over the cluster)."""
    path = Path(path)
    fid = file_id(sha256)
    try:
        before = path.stat()
    except OSError as exc:
        fault = FileFault.from_os(exc, "its task started")
        return _leave(path, sha256, 0, ledger, run_id, fault.code, fault.reason)
    size = before.st_size
    _fault("claimed")
    done = ledger.scrubbed(sha256)
    if done is not None:
        if done["name"] == path.name and done["archived_at"] is None:
            _move(path, paths.archive / day, sha256)  # a crash came between ledger and archive: finish
            ledger.mark_archived(done["id"])
            log.info("file %s: finished archiving an earlier run's scrub", fid)
            return FileOutcome(fid, path.name, "scrubbed", reason="resumed", workbook=done["workbook"] or "")
        # Content an earlier night scrubbed is scrubbed again for the night's review, so its exceptions still
        # open stay on the reviewer's list (a twin of tonight is already there); nothing else is recorded.
        again = None
        if done["run_id"] != run_id:
            workbook, csv_path = output_names(paths.outbox / day, path.name, sha256)
            work = (path, column_map, as_of, config, ledger.target, ledger.salt, workbook, csv_path, run_id, sha256)
            try:
                again = _scrub_work(path, work, isolate, check)
            except Interrupted as exc:
                log.warning("file %s: stopped before it was done; it stays in the inbox [E_INTERRUPTED]", fid)
                return FileOutcome(fid, path.name, "interrupted", "E_INTERRUPTED", str(exc))
            except ingest.IngestError:
                again = None
            if not isinstance(again, Scrubbed):
                log.warning("file %s: duplicate could not be scrubbed again; its exceptions are not in tonight's "
                            "review", fid)
                again = None
        row = ledger.record_file(sha256, path.name, size, "duplicate", run_id, reason_code="DUPLICATE")
        _move(path, paths.archive / day, sha256)
        ledger.mark_archived(row)
        log.info("file %s: duplicate of content already scrubbed; archived", fid)
        if again is None:
            return FileOutcome(fid, path.name, "duplicate", "DUPLICATE", "the same content was already scrubbed")
        # Its counts too: the night's review lists its open exceptions, and its Summary adds up its claims.
        return FileOutcome(fid, path.name, "duplicate", "DUPLICATE", "the same content was already scrubbed",
                           counts=_counts(again.summary, again.findings), workbook=str(workbook), lines=again.lines,
                           findings=again.findings, issues=again.issues, not_checked=again.summary.not_checked,
                           reference=again.summary.reference, payer_profiles=again.summary.payer_profiles)
    if isolate and mp.current_process().daemon:
        isolate = False  # a daemonic worker (e.g. a Dask worker so configured) may not start children
        log.warning("file %s: scrubbed in-process (this worker cannot start a child process)", fid)
    workbook, csv_path = output_names(paths.outbox / day, path.name, sha256)
    work = (path, column_map, as_of, config, ledger.target, ledger.salt, workbook, csv_path, run_id, sha256)
    try:
        done = _scrub_work(path, work, isolate, check)
    except Interrupted as exc:  # a stop was asked for: nothing recorded, the file stays for the next run
        log.warning("file %s: stopped before it was done; it stays in the inbox [E_INTERRUPTED]", fid)
        return FileOutcome(fid, path.name, "interrupted", "E_INTERRUPTED", str(exc))
    except ingest.IngestError as exc:
        if exc.code == "E_MISSING" or not _same_file(path, before):  # gone or replaced: not the file's fault
            code = "E_VANISHED" if exc.code == "E_MISSING" else "E_CHANGED"
            return _leave(path, sha256, size, ledger, run_id, code, "the file was gone or changed while it was read")
        return _quarantine(path, sha256, size, paths, ledger, run_id, exc.code, exc.reason)
    if isinstance(done, Scrubbed) and not _same_file(path, before):  # written to while it was scrubbed
        for out in (workbook, csv_path):
            out.unlink(missing_ok=True)
        done = ("E_CHANGED", "the file changed while it was scrubbed (still being written?)", False)
    if not isinstance(done, Scrubbed):
        code, reason, outputs_written = done
        if code in LEFT_CODES:
            return _leave(path, sha256, size, ledger, run_id, code, reason)
        ledger.record_file(sha256, path.name, size, "failed", run_id, reason_code=code)
        log.error("file %s: %s [%s]; the file stays in the inbox", fid,
                  "outputs not written" if outputs_written is False else reason, code)
        return FileOutcome(fid, path.name, "failed", code, reason)
    summary, sessions = done.summary, done.sessions
    _fault("after_outputs")
    counts = _counts(summary, done.findings)
    try:
        row = ledger.record_scrubbed(
            sha256, path.name, size, run_id, injection_rows(sessions), rows=summary.rows_read,
            claims=summary.claims, findings=counts["findings"], errors=summary.claims_with_errors,
            workbook=str(workbook))
    except LEDGER_ERRORS as exc:  # disk full, locked, damaged or unreachable ledger: outputs exist, nothing recorded
        reason = f"the ledger could not be written ({type(exc).__name__}: {exc})"
        log.error("file %s: %s; the file stays in the inbox [E_LEDGER_UNWRITABLE]", fid, reason)
        return FileOutcome(fid, path.name, "failed", "E_LEDGER_UNWRITABLE", reason)
    _fault("after_ledger")
    _move(path, paths.archive / day, sha256)
    _fault("after_archive")
    ledger.mark_archived(row)
    log.info("file %s: scrubbed, %d findings", fid, counts["findings"])
    return FileOutcome(fid, path.name, "scrubbed", counts=counts, by_rule=summary.by_rule, workbook=str(workbook),
                       lines=done.lines, findings=done.findings, issues=done.issues, sessions=sessions,
                       not_checked=summary.not_checked, reference=summary.reference,
                       payer_profiles=summary.payer_profiles)


def _counts(summary: report.ScrubSummary, findings: pd.DataFrame) -> dict:
    """A scrubbed file's counts, as logs, artifacts and the night's Summary show them."""
    return {"rows": summary.rows_read, "claims": summary.claims, "g5133_claims": summary.g5133_claims,
            "claims_with_errors": summary.claims_with_errors, "claims_with_warnings": summary.claims_with_warnings,
            "findings": int(len(findings)), "claims_checked_in_part": summary.claims_checked_in_part,
            "clean_claims": summary.clean_claims}


def _scrub_work(path: Path, work: tuple, isolate: bool, check):
    """``scrub_one(*work)``: the whole file's work in a child (files use every core), or in-process."""
    if isolate and check is scrub.check_file:
        return run_isolated(scrub_one, work, path.name)
    return scrub_one(*work, check=check, read=read_isolated if isolate else ingest.read_claims)


@dataclass
class Scrubbed:
    """What one file's scrub hands back to the nightly run (its outputs are written)."""

    summary: report.ScrubSummary
    findings: pd.DataFrame
    lines: pd.DataFrame  # lines of flagged claims only
    issues: pd.DataFrame
    sessions: pd.DataFrame


def scrub_one(path: Path, column_map: dict | None, as_of: dt.date, config: ScrubConfig, ledger_path: Path | str,
              salt: str, workbook: Path, csv_path: Path, run_id: str, sha256: str | None = None,
              check=scrub.check_file, read=ingest.read_claims) -> "Scrubbed | tuple[str, str, bool | None]":
    """Read, check and write one file (in the nightly run's child process, or in-process).

    A file that cannot be read raises ``IngestError`` (it is quarantined); a failure after that comes
    back as (reason code, reason, outputs written?) and the file stays in the inbox. ``sha256``: the
    hash the night took; content read that differs (a file still being written) is not scrubbed."""
    result = read(path, column_map, date_order=config.date_order)
    if sha256 and result.sha256 != sha256:
        return "E_CHANGED", "the file changed after it was listed (still being written?)", False
    try:
        # The ledger's history is read here, where it is used: handing it to a child would pickle every
        # session of every earlier night once per file.
        keys, window = session_keys(result.lines, salt)
        book = open_ledger(ledger_path, create=False)
        # Not this run's sessions: what other files of tonight recorded depends on which ran first;
        # repeats within the night are found by the night-level pass (``cross_file_repeats``).
        history = (book.injection_history(exclude_run=run_id, keys=keys.values(), exclude_file=sha256 or "",
                                          **window)
                   if keys and book.holds_injections() else None)
        checked = check(result, as_of, config, history, salt)
    except Exception as exc:  # noqa: BLE001 - validation never raises on data; this is a bug: keep the file
        failure = ScrubFailure("checking the claims", exc)
        return failure.code, failure.reason, None
    try:
        summary = scrub.write_outputs(result, checked, workbook, csv_path, as_of, run_id, config.output_mode,
                                      book.dispositions if book.holds_dispositions() else None)
    except OutputError as exc:
        return exc.code, exc.reason, False
    except Exception as exc:  # noqa: BLE001 - a bug while writing: keep the file, say so
        failure = ScrubFailure("writing the outputs", exc)
        return failure.code, failure.reason, False
    try:
        flagged = report.in_set(result.lines[C.CLAIM_ID], set(checked.findings[C.CLAIM_ID].dropna()))
        return Scrubbed(summary, checked.findings, result.lines[flagged], result.issues,
                        night_sessions(checked.claims, result.lines, salt, keys))
    except Exception as exc:  # noqa: BLE001 - a bug after the outputs: keep the file (a re-run replaces them)
        failure = ScrubFailure("listing the injection sessions", exc)
        return failure.code, failure.reason, True


def _quarantine(path, sha256, size, paths, ledger, run_id, code, reason) -> FileOutcome:
    fid = file_id(sha256)
    target = _move(path, paths.quarantine, sha256)
    sidecar = sidecar_for(target)
    sidecar.write_text(
        f"File: {target.name}\nFile id: {fid}\nReason code: {code}\nWhy: {reason}\n"
        f"What to do: {REASON_HELP.get(code, 'export the claims again and drop the new file in the inbox')}\n",
        encoding="utf-8")
    os.chmod(sidecar, 0o600)
    ledger.record_file(sha256, path.name, size, "quarantined", run_id, reason_code=code)
    log.warning("file %s: quarantined [%s]", fid, code)
    return FileOutcome(fid, path.name, "quarantined", code, reason)


REASON_HELP = {
    "E_EMPTY": "the file is empty: export again",
    "E_CORRUPT_ZIP": "the workbook is damaged: export again and do not edit it by hand",
    "E_ENCRYPTED": "remove the password and drop it again",
    "E_FORMAT": "save the claims as .xlsx or .csv",
    "E_HEADER": "include the header row (Claim ID, DOS, CPT, Units, Dx)",
    "E_MISSING_COLUMN": "add the missing columns to the export",
    "E_DUP_COLUMN": "remove or rename one of the duplicate columns",
    "E_SHEET_AMBIGUOUS": "keep one claims sheet per file",
}


def write_combined(outcomes: list[FileOutcome], outbox_day: Path, day: str, as_of: dt.date, run_id: str,
                   version: str, extra: pd.DataFrame | None = None, mode: int = report.DEFAULT_MODE,
                   ledger: Ledger | None = None, tag: str = "") -> Path | None:
    """The nightly review workbook: every scrubbed file's findings (plus ``extra`` night-level ones), and a
    re-sent duplicate's exceptions still open, with a Source File column; its Summary says, file by file,
    which rules were not checked and why, the reference tables the night used (lines and files each) with each
    file's coverage warnings, and the payer profile each payer name matched. Dispositions are carried from the ledger and from a review
    workbook already at its path; what changed is recorded in the ledger. ``tag``: a name part of its own
    (the run's id when other processes ran the same night: their review workbooks may share an outbox)."""
    done = [o for o in outcomes if o.status in ("scrubbed", "duplicate") and o.findings is not None]
    if not done:
        return None
    findings = pd.concat([o.findings.assign(source_file=o.name, _resent=o.status == "duplicate") for o in done]
                         + ([extra.assign(_resent=False)] if extra is not None and len(extra) else []),
                         ignore_index=True)
    findings = report.sort_findings(findings)
    lines = pd.concat([o.lines.assign(source_file=o.name) for o in done], ignore_index=True)
    path = outbox_day / f"nightly-review-{day}{'.' + tag if tag else ''}.xlsx"
    if review.lock_files(path):  # open in a spreadsheet app: never replaced; tonight's is written beside it
        path = path.with_name(f"nightly-review-{day}.{dt.datetime.now(dt.UTC):%H%M%S}.xlsx")
        log.warning("the review workbook is open in a spreadsheet app; tonight's is written beside it")
    ids = report.exception_ids(findings)
    known = ledger.dispositions(ids) if ledger is not None and ledger.holds_dispositions() else None
    carried = review.carry_forward(ids, review.finding_claim_hashes(findings, lines),
                                   review.merge_prior(known, review.prepare_output(path)), dt.date.today())
    # A re-sent file's exceptions that reviewers closed are not listed again (its content is unchanged).
    keep = ~(findings["_resent"].to_numpy(bool) & np.isin(carried.was, list(review.CLOSED)))
    if not keep.all():
        findings, ids = findings[keep].reset_index(drop=True), [i for i, k in zip(ids, keep, strict=True) if k]
        carried = carried.only(keep)
    findings = findings.drop(columns="_resent")
    issues = pd.concat([o.issues for o in done], ignore_index=True)
    total = lambda k: int(sum(o.counts.get(k, 0) for o in done))  # noqa: E731
    at_risk = float(lines[C.CHARGE][report.in_set(lines[C.CLAIM_ID],
                                                  set(findings.loc[findings.severity == "error", C.CLAIM_ID]))].sum())
    not_checked: dict[str, list[str]] = {}
    for o in done:
        for rule, why in sorted(o.not_checked.items()):
            not_checked.setdefault(rule, []).append(f"{o.name}: {why}")
    errors = set(zip(findings.loc[findings.severity == "error", "source_file"],
                     findings.loc[findings.severity == "error", C.CLAIM_ID], strict=True))
    warned = set(zip(findings.loc[findings.severity == "warning", "source_file"],
                     findings.loc[findings.severity == "warning", C.CLAIM_ID], strict=True)) - errors
    profiles: dict[str, str] = {}
    for o in done:  # a payer name matched in one file matches the same profile in every other
        profiles.update(o.payer_profiles)
    # Counted from the night's findings (the night-level pass may add some to a file's claims).
    summary = report.ScrubSummary(
        file=f"nightly review {day}: {len(done)} file(s)", sha256="", rows_read=total("rows"),
        claims=total("claims"), g5133_claims=total("g5133_claims"),
        clean_claims=max(total("claims") - len(errors) - len(warned) - total("claims_checked_in_part"), 0),
        claims_with_errors=len(errors), claims_with_warnings=len(warned),
        at_risk=at_risk, by_rule=findings["rule"].value_counts().sort_index().to_dict(),
        by_payer=findings.drop_duplicates(["source_file", C.CLAIM_ID])[C.PAYER].fillna("(none)").value_counts()
        .to_dict(), not_checked={r: "; ".join(w) for r, w in not_checked.items()}, as_of=as_of.isoformat(),
        run_id=run_id, version=version, claims_checked_in_part=total("claims_checked_in_part"),
        exceptions=len(findings),
        by_status=dict(Counter(s if s in review.STATUSES else review.OTHER_STATUS for s in carried.status)),
        carried=carried.counts, payer_profiles=profiles,
        reference=validate.combine_reference_use([(o.name, o.reference) for o in done]))
    generated = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    written = report.build_workbook(path, summary, lines, findings, issues, generated, source_file_column=True,
                                    ids=ids, carried=carried, mode=mode)
    if ledger is not None:
        ledger.record_dispositions(review.changed_dispositions(
            carried.frame(ids), known if known is not None else pd.DataFrame()), "nightly", run_id)
    return written
