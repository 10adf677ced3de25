"""Helper threads that are safe in a child near its memory limit: ``room_for_threads`` and ``beside`` (``here``: the
same shape, on the calling thread)."""

import mmap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


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


@contextmanager
def here(fn: Callable, *args) -> Iterator[Callable]:
    """``beside``'s shape without a thread: ``fn(*args)`` runs on the calling thread when its result is asked for
    (a small file, where a thread costs more than it saves)."""
    yield lambda: fn(*args)
