"""A local Prefect server for `claimscrub serve`: started on 127.0.0.1, health-checked, stopped with its group.

Prefect's temporary (ephemeral) API runs no scheduler service, so a deployment served on it never
fires. `serve` with no ``PREFECT_API_URL`` therefore starts ``prefect server start`` as a child in its
own process group (its database in ``PREFECT_HOME``), points itself at it and stops it on exit.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The local Prefect server did not answer its health check in time (or exited)."""


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api_url`` (ending in /api) answers its health check within ``timeout``."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200 and json.loads(resp.read() or b"false") is True
    except (OSError, ValueError, urllib.error.URLError):
        return False


def server_command(port: int, host: str = HOST) -> list[str]:
    """The command line of a Prefect server on ``host:port`` with its services (scheduler included)."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port),
            "--analytics-off"]


def server_env(base: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """The server's environment: no telemetry, no client API URL of its own, ``PREFECT_HOME`` if given."""
    env = dict(os.environ if base is None else base)
    env.pop("PREFECT_API_URL", None)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM if the process that started it dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalServer:
    """A ``prefect server start`` child process in its own process group."""

    def __init__(self, port: int | None = None, home: Path | None = None, host: str = HOST,
                 log: Path | None = None):
        self.host, self.port, self.home, self.log = host, port or free_port(host), home, log
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def start(self, timeout: float = 90.0) -> "LocalServer":
        """Start the server and wait until its health endpoint answers; raises ServerStartError."""
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._out = out
        self.proc = subprocess.Popen(server_command(self.port, self.host), env=server_env(home=self.home),
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise ServerStartError(f"the local Prefect server exited with status {self.proc.returncode}")
            if api_healthy(self.api_url, timeout=1.0):
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(f"the local Prefect server did not answer within {timeout:.0f} s")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
            proc.wait()
        out = getattr(self, "_out", None)
        if out not in (None, subprocess.DEVNULL):
            out.close()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
