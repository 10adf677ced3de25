"""Read (or read, check and write) a claims file in a child process with memory and time limits.

A native reader can abort or run away on a crafted file; in a child that costs the file only.
The parent gets the result or an ``IngestError`` with a reason code. The nightly run does a whole
file's work in its child (``run_isolated``), so files of one night also use every core.
"""

import mmap
import multiprocessing as mp
import resource
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import IngestError

DEFAULT_MEMORY_MB = 6144
DEFAULT_TIMEOUT_S = 900
_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        # Children fork with pandas, pandera and openpyxl already imported.
        _CTX.set_forkserver_preload(["pipeline.ingest", "pipeline.scrub"])
    return _CTX


def room_for_threads(mb: int = 64) -> bool:
    """Whether ``mb`` MB of address space can still be had (a child runs under a memory limit).

    A thread that runs out of memory while it starts dies before it reports that it started, and
    Python's ``Thread.start`` then waits for it for ever: so close to the limit, work is done on the
    calling thread instead (the time limit would otherwise end the read, after minutes).
    """
    try:
        mmap.mmap(-1, mb << 20).close()  # reserves address space, touches no memory
    except (OSError, MemoryError, ValueError):
        return False
    return True


@contextmanager
def beside(fn: Callable, *args, name: str = "claimscrub-beside") -> Iterator[Callable]:
    """Run ``fn(*args)`` on a helper thread while the ``with`` block runs; the block gets a callable that
    returns its result (waiting for it). Without room for a thread (``room_for_threads``), ``fn`` runs
    on the calling thread when the result is asked for."""
    if not room_for_threads():
        yield lambda: fn(*args)
        return
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        yield pool.submit(fn, *args).result


def _read(path: str, column_map: dict | None):
    from pipeline import ingest

    return ingest.read_claims(Path(path), column_map)


def _child(conn, path: str, column_map: dict | None, memory_mb: int) -> None:
    _run_child(conn, _read, (path, column_map), Path(path).name, memory_mb)


def read_isolated(path: Path, column_map: dict | None = None, memory_mb: int = DEFAULT_MEMORY_MB,
                  timeout_s: float = DEFAULT_TIMEOUT_S):
    """``ingest.read_claims`` in a child process; raises ``IngestError`` for anything that goes wrong."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, str(path), column_map, memory_mb), daemon=True)
    return _await(proc, parent, child, Path(path).name, timeout_s)


def _run_child(conn, work, args: tuple, name: str, memory_mb: int, doing: str = "reading the file") -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        conn.send(("ok", work(*args)))
    except IngestError as exc:
        conn.send(("ingest", (exc.code, exc.rule, exc.reason, exc.file, exc.sheet)))
    except MemoryError:
        conn.send(("ingest", ("E_TOO_LARGE", "FILE-001", f"{doing} needed more memory than allowed", name, "")))
    except Exception as exc:  # noqa: BLE001 - reduced to a safe reason code
        conn.send(("ingest", ("E_READER", "FILE-001", f"the reader failed ({type(exc).__name__})", name, "")))
    finally:
        conn.close()


def run_isolated(work, args: tuple, name: str, memory_mb: int = DEFAULT_MEMORY_MB,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
    """``work(*args)`` (a module-level function whose first step reads the file ``name``) in a child
    process; returns what it returns. What it raises, a crash, a timeout or too little memory comes back
    as an ``IngestError`` (the file is quarantined): ``work`` reports its own later failures as values."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    doing = "scrubbing the file"
    proc = ctx.Process(target=_run_child, args=(child, work, args, name, memory_mb, doing), daemon=True)
    return _await(proc, parent, child, name, timeout_s, doing)


def _await(proc, parent, child, name: str, timeout_s: float, doing: str = "reading the file"):
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            proc.kill()
            raise IngestError("E_TIMEOUT", "FILE-001", f"{doing} took longer than {timeout_s:g} s", name)
        try:
            kind, payload = parent.recv()
        except (EOFError, OSError):
            proc.join(5)
            raise IngestError("E_READER_CRASH", "FILE-001",
                              f"{doing} stopped abnormally (exit {proc.exitcode})", name) from None
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    if kind == "ok":
        return payload
    raise IngestError(*payload)
