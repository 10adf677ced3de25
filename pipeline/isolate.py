"""Read (or read, check and write) a claims file in a child process with memory and time limits.

A native reader can abort or run away on a crafted file; in a child that costs the file only.
The parent gets the result or an ``IngestError`` with a reason code. The nightly run does a whole
file's work in its child (``run_isolated``), so files of one night also use every core.

Stopping: children ignore SIGINT and SIGTERM (a signal to the process group must not look like a
reader crash); ``request_stop`` (the nightly run's signal handler) marks the stop and kills them, and
the waiting parent raises ``Interrupted``: the file was not scrubbed and stays where it is.
"""

import multiprocessing as mp
import resource
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import IngestError
from schemas.rules.file import UNREADABLE

DEFAULT_MEMORY_MB = 6144
DEFAULT_TIMEOUT_S = 900
_CTX = None
_STOP = threading.Event()
_STOP_SIGNAL: list[int] = []
_LIVE: set = set()  # children started and not yet reaped
_LIVE_LOCK = threading.Lock()


class Interrupted(Exception):
    """The run was asked to stop (SIGINT/SIGTERM) while this file's child worked: nothing was done."""

    def __init__(self):
        super().__init__("stopped by a signal before the file was done [E_INTERRUPTED]")


def request_stop(signum: int | None = None) -> None:
    """Stop: no new child starts, and the running ones are killed (their files are left untouched)."""
    if signum is not None and not _STOP_SIGNAL:
        _STOP_SIGNAL.append(signum)
    _STOP.set()
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):  # already reaped or never started
            pass


@contextmanager
def stop_on_signals(signals: tuple = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM ask for a stop (``request_stop``) instead of ending the
    process where it stands, so the caller can leave every file in a known state; a second signal
    raises ``KeyboardInterrupt``. Off the main thread (where no handler can be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        again = _STOP.is_set()
        request_stop(signum)
        if again:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_requested() -> bool:
    return _STOP.is_set()


def stop_signal() -> int | None:
    """The first signal that asked to stop, if any."""
    return _STOP_SIGNAL[0] if _STOP_SIGNAL else None


def reset_stop() -> None:
    """Forget an earlier stop (a new run in the same process, e.g. a test or ``serve``)."""
    _STOP.clear()
    _STOP_SIGNAL.clear()


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        # Children fork with pandas, pandera and openpyxl already imported.
        _CTX.set_forkserver_preload(["pipeline.ingest", "pipeline.scrub"])
    return _CTX


def warm_up() -> None:
    """Start the fork server now, so that its imports (pandas and the pipeline) overlap the caller's own."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def _read(path: str, column_map: dict | None, date_order: str = "MDY"):
    from pipeline import ingest

    return ingest.read_claims(Path(path), column_map, date_order)


def _child(conn, path: str, column_map: dict | None, memory_mb: int, date_order: str = "MDY") -> None:
    _run_child(conn, _read, (path, column_map, date_order), Path(path).name, memory_mb)


def read_isolated(path: Path, column_map: dict | None = None, memory_mb: int = DEFAULT_MEMORY_MB,
                  timeout_s: float = DEFAULT_TIMEOUT_S, date_order: str = "MDY"):
    """``ingest.read_claims`` in a child process; raises ``IngestError`` for anything that goes wrong."""
    from pipeline.ingest import check_input

    check_input(Path(path))  # a folder or a pipe is refused here, without a child
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, str(path), column_map, memory_mb, str(date_order)), daemon=True)
    return _await(proc, parent, child, Path(path).name, timeout_s)


def _run_child(conn, work, args: tuple, name: str, memory_mb: int, doing: str = "reading the file",
               progress: bool = False) -> None:
    # The parent decides when a child stops (it kills it): a signal to the whole process group (Ctrl-C,
    # systemd, timeout) must not end the child first, or the parent would take it for a reader crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        if progress:  # each stage as it ends, ahead of the result
            conn.send(("ok", work(*args, progress=lambda stage: conn.send(("stage", stage)))))
        else:
            conn.send(("ok", work(*args)))
    except IngestError as exc:
        conn.send(("ingest", (exc.code, exc.rule, exc.reason, exc.file, exc.sheet)))
    except MemoryError:
        conn.send(("ingest", ("E_TOO_LARGE", UNREADABLE.id, f"{doing} needed more memory than allowed", name, "")))
    except Exception as exc:  # noqa: BLE001 - reduced to a safe reason code
        conn.send(("ingest", ("E_READER", UNREADABLE.id, f"the reader failed ({type(exc).__name__})", name, "")))
    finally:
        conn.close()


def run_isolated(work, args: tuple, name: str, memory_mb: int = DEFAULT_MEMORY_MB,
                 timeout_s: float = DEFAULT_TIMEOUT_S, progress=None):
    """``work(*args)`` (a module-level function whose first step reads the file ``name``) in a child
    process; returns what it returns. What it raises, a crash, a timeout or too little memory comes back
    as an ``IngestError`` (the file is quarantined): ``work`` reports its own later failures as values.
    ``progress``: called here with each stage ``work`` reports through its ``progress`` keyword."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    doing = "scrubbing the file"
    proc = ctx.Process(target=_run_child, args=(child, work, args, name, memory_mb, doing, progress is not None),
                       daemon=True)
    return _await(proc, parent, child, name, timeout_s, doing, progress)


def _await(proc, parent, child, name: str, timeout_s: float, doing: str = "reading the file", progress=None):
    with _LIVE_LOCK:
        if _STOP.is_set():
            parent.close()
            child.close()
            raise Interrupted
        proc.start()
        _LIVE.add(proc)
    child.close()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if not parent.poll(max(deadline - time.monotonic(), 0)):
                proc.kill()
                if _STOP.is_set():
                    raise Interrupted
                raise IngestError("E_TIMEOUT", UNREADABLE.id, f"{doing} took longer than {timeout_s:g} s", name)
            try:
                kind, payload = parent.recv()
            except (EOFError, OSError):
                proc.join(5)
                if _STOP.is_set():  # killed by ``request_stop``: not the file's fault
                    raise Interrupted from None
                raise IngestError("E_READER_CRASH", UNREADABLE.id,
                                  f"{doing} stopped abnormally (exit {proc.exitcode})", name) from None
            if kind != "stage":
                break
            if progress is not None:
                progress(payload)
    except BaseException:  # e.g. a second Ctrl-C while waiting: the child ignores it, so end it here
        if proc.is_alive():
            proc.kill()
        raise
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    if kind == "ok":
        return payload
    raise IngestError(*payload)
