"""The fidelity benchmark's HTTP service: gunicorn running `bench/fidelity_app.py` on a free
loopback port, started as a subprocess and always stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Gunicorn:
    """`with Gunicorn(workers) as server:` runs the sleeping app; it is always stopped after."""

    def __init__(self, workers: int, startup_timeout: float = 20.0) -> None:
        self.workers = workers
        self.port = free_port()
        self._startup_timeout = startup_timeout
        self._log = Path(tempfile.mkstemp(prefix="autotuner-fidelity-gunicorn-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        command = [
            sys.executable, "-m", "gunicorn",
            "--workers", str(self.workers),
            "--worker-class", "sync",
            "--bind", f"127.0.0.1:{self.port}",
            "--backlog", "2048",
            "--timeout", "120",
            "--graceful-timeout", "2",
            "--log-level", "warning",
            "--error-logfile", str(self._log),
            "--pythonpath", str(REPO),
            "bench.fidelity_app:application",
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=REPO)
        deadline = time.monotonic() + self._startup_timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self._log.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"gunicorn on port {self.port} did not start:\n{log}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as connection:
                connection.sendall(request(0.0))
                reply = b""
                while chunk := connection.recv(4096):
                    reply += chunk
                return reply.startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._log.unlink(missing_ok=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def request(sleep_seconds: float) -> bytes:
    """One request for the app, asking it to sleep `sleep_seconds`; the server closes after."""
    return (
        f"GET /?sleep={sleep_seconds:.6f} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ).encode()
