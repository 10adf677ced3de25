"""Prefect's temporary API for one command, in its own session so that it outlives no command.

With no ``PREFECT_API_URL``, Prefect starts a temporary API server (a uvicorn subprocess) in the
caller's process group: Ctrl-C or a SIGTERM to the group (systemd, ``timeout``) ends it while the
nightly run still has states and logs to send, and a SIGTERM to the main process alone leaves it
running as an orphan. This starts the same server in its own session, stops it when the command
ends, and the server ends itself if the command dies without stopping it (SIGKILL).
"""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.localserver import api_healthy, free_port

ACTIVE: set[str] = set()  # URLs of the temporary APIs running now (they serve this host only)


def _configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


@contextmanager
def temporary_api(timeout_s: float = 120) -> Iterator[str | None]:
    """A temporary API on 127.0.0.1 for the ``with`` block (its URL), unless one is configured (None)."""
    if _configured():
        yield None
        return
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    port = free_port()
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.localapi", str(os.getpid()), "--app-dir",
         str(prefect.__module_path__.parent), "--factory", "prefect.server.api.server:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout_s
        while not api_healthy(url, timeout=2):
            if proc.poll() is not None:
                raise RuntimeError(f"the temporary Prefect API exited at start (exit {proc.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the temporary Prefect API did not start in {timeout_s:g} s")
            time.sleep(0.1)
        ACTIVE.add(url)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        ACTIVE.discard(url)
        _drain_prefect_workers()  # logs and events still queued go out while the API is there
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain_prefect_workers(timeout_s: float = 5) -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - best effort: the run is over either way
            pass


def _exit_with_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1)


if __name__ == "__main__":  # python -m pipeline.localapi PARENT_PID UVICORN_ARGS...
    import uvicorn.main

    threading.Thread(target=_exit_with_parent, args=(int(sys.argv[1]),), daemon=True).start()
    sys.argv = ["uvicorn", *sys.argv[2:]]
    uvicorn.main.main()
