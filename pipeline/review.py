"""The reviewer round-trip: dispositions read back from a workbook, carried forward, kept in the ledger.

A disposition is what a reviewer set on one exception (Status, Reviewer, Notes), keyed by its stable
Exception ID. Columns are found by their header text, never by position. Reviewer names and notes are
the reviewer's free text: they go into workbooks and the ledger, never into logs or Prefect.
"""

import datetime as dt
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import OutputError
from schemas import columns as C

STATUSES = ("Open", "Re-opened", "Fixed", "Not an issue", "Payer confirmed", "Appealed")
OPEN, REOPENED, FIXED, NOT_AN_ISSUE = "Open", "Re-opened", "Fixed", "Not an issue"
OTHER_STATUS = "(not on the list)"  # how a status typed outside the list is counted
CLOSED = frozenset({FIXED, NOT_AN_ISSUE, "Payer confirmed"})  # no longer on the reviewer's list
STATE_SHEET = "Review State"  # hidden: what claimscrub wrote, so a reviewer's later change can be told apart
# "Listed" no: an exception not found in this run, kept with its disposition (so a Fixed that comes back
# later is re-opened); Reviewer and Notes are filled for those only (the Exceptions sheet holds the others').
STATE_HEADERS = ("Exception ID", "Claim Hash", "Status", "Since", "Listed", "Reviewer", "Notes")
EXCEPTIONS_SHEET = "Exceptions"
COLUMNS = ["exception_id", "status", "reviewer", "notes", "claim_hash", "since"]
PREVIOUS_KEPT = 3  # earlier versions kept beside a workbook that is replaced
_HEADER_SCAN_ROWS = 10  # the header row may sit under a title


class WorkbookOpen(OutputError):
    """The output workbook is open in a spreadsheet app (a lock file is beside it): never replaced."""

    def __init__(self, output: Path, lock: Path):
        self.output, self.lock = Path(output), Path(lock)
        super().__init__("E_OUTPUT_OPEN", "the workbook is open in a spreadsheet app (a lock file is beside "
                                          "it); close it and run again")

    def __reduce__(self):  # pickled between processes: rebuilt from its paths, not from its message
        return type(self), (self.output, self.lock)

    @property
    def line(self) -> str:
        """One line for the terminal, naming the output (never shown to logs or Prefect)."""
        return (f"{self.output} is open in a spreadsheet app (lock file {self.lock.name}); nothing was written: "
                "close it and run again (remove the lock file if no one has it open)")


class ReviewFileError(ValueError):
    """A workbook whose dispositions cannot be read; ``lines`` says what is wrong, one line each."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("; ".join(lines))


def lock_files(path: Path) -> list[Path]:
    """The lock files beside ``path`` that say it is open: LibreOffice's ``.~lock.<name>#`` and Excel's
    ``~$<name>`` (Excel drops the first two characters of long names)."""
    path = Path(path)
    names = {f".~lock.{path.name}#", f"~${path.name}", f"~${path.name[2:]}"}
    return [path.with_name(n) for n in sorted(names) if path.with_name(n).exists()]


def refuse_if_open(path: Path) -> None:
    """Raise ``WorkbookOpen`` when a lock file says the workbook at ``path`` is open."""
    locks = lock_files(path)
    if locks:
        raise WorkbookOpen(path, locks[0])


def claim_hashes(lines: pd.DataFrame) -> pd.Series:
    """A hash of each claim's lines' content (every column but where the lines sit in the file), by claim id:
    "unchanged" means the same hash. Vectorised: one hash per line, summed per claim (order-free; the
    line number is part of each line)."""
    if lines is None or not len(lines) or C.CLAIM_ID not in lines:
        return pd.Series(dtype=object)
    skip = {C.SOURCE_ROW, C.SOURCE_SHEET, "source_file"}
    cols = sorted(c for c in lines.columns if c not in skip and not str(c).startswith("_"))
    per_line = pd.util.hash_pandas_object(lines[cols], index=False).to_numpy(np.uint64)
    keys = lines[C.CLAIM_ID].astype(object).where(lines[C.CLAIM_ID].notna(), "")
    codes, uniques = pd.factorize(keys)
    sums = np.zeros(len(uniques), dtype=np.uint64)
    np.add.at(sums, codes, per_line)  # wraps modulo 2**64
    return pd.Series(_hex(sums), index=pd.Index(uniques, dtype=object), dtype=object)


def _hex(values: np.ndarray) -> list[str]:
    """Each uint64 as 16 lowercase hex digits (``f"{v:016x}"``): one hex text of the big-endian bytes, cut."""
    text = values.astype(">u8").tobytes().hex()
    return [text[i:i + 16] for i in range(0, len(text), 16)]


def finding_claim_hashes(findings: pd.DataFrame, lines: pd.DataFrame) -> list[str]:
    """The claim hash of each finding's claim, in the findings' order ('' without a claim). ``lines``: the
    file's lines, or only the flagged claims' (``report.flagged_lines``: no filter then)."""
    from pipeline.report import flagged_claims, in_set

    claims = flagged_claims(findings)
    if claims:
        mine = in_set(lines[C.CLAIM_ID], claims)
        hashes = claim_hashes(lines if mine.all() else lines[mine])
    else:
        hashes = claim_hashes(lines.iloc[:0])
    if not len(hashes):
        return [""] * len(findings)
    at = hashes.index.get_indexer(findings[C.CLAIM_ID].astype(object))
    return np.where(at >= 0, hashes.to_numpy(object)[at], "").astype(object).tolist()


def _norm_status(value) -> str:
    text = "" if value is None else str(value).strip()
    for s in STATUSES:
        if text.casefold() == s.casefold():
            return s
    return text


def _text(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def _header_map(rows, wanted: tuple[str, ...]) -> tuple[int, dict[str, int]] | None:
    """(header row index, {header: column index}) of the first row holding ``wanted[0]``."""
    for r, row in enumerate(rows[:_HEADER_SCAN_ROWS]):
        names = [_text(v).strip() for v in row]
        if wanted[0] in names:
            return r, {h: names.index(h) for h in wanted if h in names}
    return None


@dataclass
class ReadBack:
    """What a workbook holds: the dispositions on its Exceptions sheet, and the bad Status values by row."""

    dispositions: pd.DataFrame  # COLUMNS, plus ``edited`` (the reviewer changed the status claimscrub wrote)
    bad_status: list[tuple[int, str]] = field(default_factory=list)  # (sheet row, value)


def read_dispositions(path: Path, saved: dt.date | None = None) -> ReadBack:
    """Status, Reviewer and Notes of every exception in a workbook, by Exception ID (raises ``ReviewFileError``).

    A row counts when its status is not Open or it has a reviewer or notes. ``since``: when the status was
    set, from the hidden Review State sheet when the status is the one claimscrub wrote, else the day the
    workbook was last saved (``saved``, default its modification date)."""
    path = Path(path)
    if not path.is_file():
        raise ReviewFileError([f"{path}: no such file"])
    if not zipfile.is_zipfile(path):
        raise ReviewFileError([f"{path}: not an .xlsx workbook"])
    from python_calamine import CalamineWorkbook  # here: only a run that replaces a workbook needs it

    try:  # calamine: a large workbook's sheets in a fraction of a second (openpyxl takes seconds)
        wb = CalamineWorkbook.from_path(str(path))
        names = wb.sheet_names
        if EXCEPTIONS_SHEET not in names:
            raise ReviewFileError([f"{path}: no {EXCEPTIONS_SHEET} sheet"])
        rows = wb.get_sheet_by_name(EXCEPTIONS_SHEET).to_python(skip_empty_area=False)
        state_rows = wb.get_sheet_by_name(STATE_SHEET).to_python(skip_empty_area=False) if STATE_SHEET in names else []
    except ReviewFileError:
        raise
    except Exception:  # noqa: BLE001 - calamine's errors for a damaged or foreign zip
        raise ReviewFileError([f"{path}: not an .xlsx workbook"]) from None
    found = _header_map(rows, ("Exception ID", "Status", "Reviewer", "Notes"))
    if found is None or len(found[1]) < 4:
        missing = [h for h in ("Exception ID", "Status", "Reviewer", "Notes") if found is None or h not in found[1]]
        raise ReviewFileError([f"{path}: sheet {EXCEPTIONS_SHEET} has no column headed {', '.join(missing)}"])
    head, at = found
    saved = saved or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date()
    state, gone = {}, []
    if (st := _header_map(state_rows, STATE_HEADERS)) is not None and len(st[1]) == len(STATE_HEADERS):
        for row in state_rows[st[0] + 1:]:
            eid, claim_hash, written, since, listed, who, note = (
                _text(row[st[1][h]]).strip() if len(row) > st[1][h] else "" for h in STATE_HEADERS)
            if eid and listed == "no":
                gone.append((eid, written or OPEN, who, note, claim_hash, since, False))
            elif eid:
                state[eid] = (claim_hash, written, since)
    out, bad = [], []
    for r, row in enumerate(rows[head + 1:], start=head + 2):
        eid, status, reviewer, notes = (_text(row[at[h]]).strip() if len(row) > at[h] else ""
                                        for h in ("Exception ID", "Status", "Reviewer", "Notes"))
        if not eid:
            continue
        status = _norm_status(status)
        if status and status not in STATUSES:
            bad.append((r, status))
        claim_hash, written, since = state.get(eid, ("", "", ""))
        edited = status != (written or OPEN)
        if status in ("", OPEN) and not reviewer and not notes and not edited:
            continue
        out.append((eid, status or OPEN, reviewer, notes, claim_hash,
                    saved.isoformat() if edited or not since else since, edited))
    listed = {row[0] for row in out}
    out += [g for g in gone if g[0] not in listed]
    return ReadBack(pd.DataFrame(out, columns=[*COLUMNS, "edited"]), bad)


@dataclass
class Carried:
    """The Status, Reviewer, Notes and Since of each finding (in the findings' order), and counts by what happened."""

    status: list[str]
    reviewer: list[str]
    notes: list[str]
    since: list[str]
    claim_hash: list[str]
    counts: dict[str, int]
    was: list[str] = field(default_factory=list)  # the status each had before this run ('' when new)
    gone: pd.DataFrame | None = None  # earlier dispositions (COLUMNS) of exceptions not found in this run

    def only(self, keep) -> "Carried":
        """The dispositions at the positions where ``keep`` is true."""
        pick = lambda col: [v for v, k in zip(col, keep, strict=True) if k]  # noqa: E731
        return Carried(pick(self.status), pick(self.reviewer), pick(self.notes), pick(self.since),
                       pick(self.claim_hash), self.counts, pick(self.was) if self.was else [], self.gone)

    def frame(self, ids: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"exception_id": ids, "status": self.status, "reviewer": self.reviewer,
                             "notes": self.notes, "claim_hash": self.claim_hash, "since": self.since})


def merge_prior(ledger: pd.DataFrame | None, workbook: pd.DataFrame | None) -> pd.DataFrame:
    """One prior disposition per exception id: the workbook's where the reviewer changed it there (or the
    ledger has none), else the ledger's."""
    parts = []
    if ledger is not None and len(ledger):
        parts.append(ledger.rename(columns={"changed_at": "since"}).assign(edited=False, _rank=1))
    if workbook is not None and len(workbook):
        wb = workbook.copy()
        wb["_rank"] = np.where(wb["edited"].astype(bool), 0, 2)
        parts.append(wb)
    if not parts:
        return pd.DataFrame(columns=[*COLUMNS, "edited"])
    both = pd.concat(parts, ignore_index=True)
    both["_order"] = np.arange(len(both))
    best = both.sort_values(["_rank", "_order"], kind="stable").drop_duplicates("exception_id")
    # a workbook copy of an older disposition keeps the ledger's claim hash when it has none of its own
    hashes = both[both["claim_hash"].fillna("") != ""].drop_duplicates("exception_id").set_index(
        "exception_id")["claim_hash"]
    best["claim_hash"] = [h if h else hashes.get(e, "") for e, h in zip(best["exception_id"],
                                                                         best["claim_hash"].fillna(""), strict=True)]
    return best.drop(columns=["_rank", "_order"]).reset_index(drop=True)


def carry_forward(ids: list[str], claim_hash: list[str], prior: pd.DataFrame, today: dt.date) -> Carried:
    """Each finding's disposition from ``prior`` (see ``merge_prior``).

    "Not an issue" stays while the claim's hash is unchanged (re-opened when the claim changed); "Fixed"
    that comes back is re-opened, saying so in its notes; every other status is carried as it is."""
    n = len(ids)
    status, reviewer, notes, since = [OPEN] * n, [""] * n, [""] * n, [today.isoformat()] * n
    hashes, was = list(claim_hash), [""] * n
    counts = {"carried": 0, "reopened": 0, "not_an_issue": 0}
    if prior is None or not len(prior) or not n:
        return Carried(status, reviewer, notes, since, hashes, counts, was)
    by_id = prior.set_index("exception_id")[["status", "reviewer", "notes", "claim_hash", "since"]]
    by_id = by_id[~by_id.index.duplicated()]
    gone = by_id[~by_id.index.isin(ids)].reset_index()
    found = pd.Index(by_id.index).get_indexer(ids)
    rows = by_id.to_numpy(object)
    for i in np.flatnonzero(found >= 0):  # only the findings a reviewer touched: a small share
        st, who, note, old_hash, when = (_text(v) for v in rows[found[i]])
        when = when[:10] or today.isoformat()
        changed = bool(old_hash) and bool(hashes[i]) and old_hash != hashes[i]
        counts["carried"] += 1
        reviewer[i], notes[i], since[i], was[i] = who, note, when, st
        if st == FIXED or (st == NOT_AN_ISSUE and changed):
            why = f"was Fixed on {when}" if st == FIXED else f"was Not an issue on {when}; the claim changed since"
            status[i], since[i] = REOPENED, today.isoformat()
            notes[i] = f"re-opened {today.isoformat()}: {why}" + (f"\n{note}" if note else "")
            counts["reopened"] += 1
        else:
            status[i] = st or OPEN
            if st in CLOSED and not hashes[i]:
                hashes[i] = old_hash
            counts["not_an_issue"] += st == NOT_AN_ISSUE
    return Carried(status, reviewer, notes, since, hashes, counts, was, gone[COLUMNS])


def changed_dispositions(current: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``current`` (COLUMNS) whose status, reviewer or notes differ from the ledger's latest (an
    exception the ledger does not know counts when it is not plainly Open)."""
    if current is None or not len(current):
        return pd.DataFrame(columns=COLUMNS)
    cur = current.drop_duplicates("exception_id", keep="last")
    known = ledger.set_index("exception_id")[["status", "reviewer", "notes"]] if len(ledger) else None
    keep = []
    for eid, st, who, note in zip(cur["exception_id"], cur["status"], cur["reviewer"].fillna(""),
                                  cur["notes"].fillna(""), strict=True):
        if known is not None and eid in known.index:
            old = known.loc[eid]
            keep.append((st, who, note) != (old["status"], old["reviewer"] or "", old["notes"] or ""))
        else:
            keep.append(st != OPEN or bool(who) or bool(note))
    return cur[np.array(keep, dtype=bool)].reset_index(drop=True)


def previous_name(path: Path, stamp: str) -> Path:
    """``x.exceptions.xlsx`` -> ``x.previous-<stamp>.exceptions.xlsx`` (still one of claimscrub's outputs, so a
    nightly inbox leaves it alone); ``nightly-review-D.xlsx`` -> ``nightly-review-D.previous-<stamp>.xlsx``."""
    name = Path(path).name
    for suffix in (".exceptions.xlsx", ".xlsx"):
        if name.lower().endswith(suffix):
            return Path(path).with_name(f"{name[:-len(suffix)]}.previous-{stamp}{name[-len(suffix):]}")
    return Path(path).with_name(f"{name}.previous-{stamp}")


def keep_previous(path: Path, keep: int = PREVIOUS_KEPT, now: dt.datetime | None = None) -> Path | None:
    """Copy the workbook at ``path`` beside it before it is replaced; keep the newest ``keep`` copies."""
    path = Path(path)
    if not path.is_file():
        return None
    now = now or dt.datetime.now(dt.UTC)
    target = previous_name(path, now.strftime("%Y%m%dT%H%M%S%fZ"))
    try:
        shutil.copy2(path, target)
    except OSError:
        raise OutputError("E_OUTPUT_UNWRITABLE", "the previous workbook could not be kept") from None
    pattern = re.compile(re.escape(previous_name(path, "\x00").name).replace("\x00", r"\d{8}T\d{12}Z") + "$")
    copies = sorted(p for p in path.parent.iterdir() if pattern.match(p.name))
    for old in copies[:-keep] if keep > 0 else copies:
        old.unlink(missing_ok=True)
    return target


def prepare_output(path: Path) -> pd.DataFrame:
    """Before a workbook is replaced: refuse it while open, read its dispositions back, and keep a copy of
    it when it holds reviewers' work (or cannot be read: it is never silently replaced).

    Returns the dispositions it held (empty when there was none). A workbook nobody worked in is replaced
    without a copy: the new one holds all it held (so a re-run leaves one output per input)."""
    path = Path(path)
    refuse_if_open(path)
    if not path.exists():
        return pd.DataFrame(columns=[*COLUMNS, "edited"])
    try:
        found = read_dispositions(path).dispositions
    except ReviewFileError:
        found = None
    if found is None or len(found):
        keep_previous(path)
    return found if found is not None else pd.DataFrame(columns=[*COLUMNS, "edited"])


@dataclass
class Imported:
    """What ``import_workbook`` did: counts only (reviewer text is never echoed)."""

    rows: int
    recorded: int
    unchanged: int


def import_workbook(path: Path, ledger, run_id: str = "", only_edited: bool = False,
                    source: str = "import") -> Imported:
    """Load a reviewed workbook's dispositions into the ledger: one history row per changed exception
    (``only_edited``: only the statuses a reviewer changed from what claimscrub wrote, and new ones).

    Raises ``ReviewFileError`` (nothing recorded) when the file is no workbook, has no Exceptions sheet or
    columns, or holds Status values outside the list (each named by its row)."""
    back = read_dispositions(Path(path), saved=dt.datetime.fromtimestamp(Path(path).stat().st_mtime, dt.UTC).date()
                             if Path(path).exists() else None)
    if back.bad_status:
        allowed = ", ".join(STATUSES)
        raise ReviewFileError([f"{path}: sheet {EXCEPTIONS_SHEET} row {r}: unknown status {v!r} (allowed: {allowed})"
                               for r, v in back.bad_status])
    found = back.dispositions
    if only_edited and len(found):
        found = found[found["edited"].astype(bool) | (found["claim_hash"] == "")]
    known = ledger.dispositions(found["exception_id"].tolist()) if len(found) else None
    changes = changed_dispositions(found[COLUMNS], known if known is not None else pd.DataFrame())
    if len(changes) and known is not None and len(known):  # keep the claim hash the ledger had when none is given
        had = known.set_index("exception_id")["claim_hash"]
        changes["claim_hash"] = [h or had.get(e, "") for e, h in zip(changes["exception_id"], changes["claim_hash"],
                                                                     strict=True)]
    recorded = ledger.record_dispositions(changes, source, run_id)
    return Imported(len(found), recorded, len(found) - recorded)


def latest_reviews(outbox: Path, day: str) -> list[Path]:
    """The nightly review workbooks of the newest night up to ``day`` in ``outbox``, oldest first (one, or
    more when one was open and the night wrote beside it); never a kept previous version."""
    books = [p for p in Path(outbox).glob("*/nightly-review-*.xlsx")
             if ".previous-" not in p.name and p.stem.removeprefix("nightly-review-")[:10] <= day]
    if not books:
        return []
    newest = max(p.stem.removeprefix("nightly-review-")[:10] for p in books)
    return sorted((p for p in books if p.stem.removeprefix("nightly-review-")[:10] == newest),
                  key=lambda p: p.stat().st_mtime)


def import_latest_review(outbox: Path, day: str, ledger, run_id: str) -> int:
    """What the reviewers changed in the last nightly review workbook, into the ledger before the night
    carries it forward; returns how many changes were recorded."""
    return sum(import_workbook(path, ledger, run_id, only_edited=True, source="nightly-review").recorded
               for path in latest_reviews(outbox, day))

