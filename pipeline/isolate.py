"""Read a claims file in a child process with memory and time limits.

A native reader can abort or run away on a crafted file; in a child that costs the file only.
The parent gets the ``IngestResult`` or an ``IngestError`` with a reason code.
"""

import multiprocessing as mp
import resource
from pathlib import Path

from pipeline.errors import IngestError

DEFAULT_MEMORY_MB = 6144
DEFAULT_TIMEOUT_S = 900
_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["pipeline.ingest"])  # children fork with pandas already imported
    return _CTX


def _child(conn, path: str, column_map: dict | None, memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from pipeline import ingest

    try:
        conn.send(("ok", ingest.read_claims(Path(path), column_map)))
    except IngestError as exc:
        conn.send(("ingest", (exc.code, exc.rule, exc.reason, exc.file, exc.sheet)))
    except MemoryError:
        conn.send(("ingest", ("E_TOO_LARGE", "FILE-001", "reading the file needed more memory than allowed",
                              Path(path).name, "")))
    except Exception as exc:  # noqa: BLE001 - reduced to a safe reason code
        conn.send(("ingest", ("E_READER", "FILE-001", f"the reader failed ({type(exc).__name__})",
                              Path(path).name, "")))
    finally:
        conn.close()


def read_isolated(path: Path, column_map: dict | None = None, memory_mb: int = DEFAULT_MEMORY_MB,
                  timeout_s: float = DEFAULT_TIMEOUT_S):
    """``ingest.read_claims`` in a child process; raises ``IngestError`` for anything that goes wrong."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, str(path), column_map, memory_mb), daemon=True)
    proc.start()
    child.close()
    name = Path(path).name
    try:
        if not parent.poll(timeout_s):
            proc.kill()
            raise IngestError("E_TIMEOUT", "FILE-001", f"reading the file took longer than {timeout_s:g} s", name)
        try:
            kind, payload = parent.recv()
        except (EOFError, OSError):
            proc.join(5)
            raise IngestError("E_READER_CRASH", "FILE-001",
                              f"the reader stopped abnormally (exit {proc.exitcode})", name) from None
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    if kind == "ok":
        return payload
    raise IngestError(*payload)
