"""A private redis-server on a free port, for tests that stop and restart the server.

The machine's shared Redis must never be stopped by a test, so fault tests start their own:
no persistence, bound to 127.0.0.1, its files in a temporary directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """Start with `with RedisServer() as server:`; `stop()` and `start()` for fault tests."""

    def __init__(
        self,
        *,
        password: str | None = None,
        tls: bool = False,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make system-deps`")
        self._binary = binary
        self._startup_timeout = startup_timeout
        self.password = password
        self._extra_args = (*extra_args, *(("--requirepass", password) if password else ()))
        self._workdir = Path(tempfile.mkdtemp(prefix="autotuner-redis-"))
        self.port = free_port()
        self.tls = tls
        if tls:
            self._extra_args = (*self._extra_args, *self._tls_args())
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> str:
        """The self-signed certificate a TLS server presents, to trust as a CA."""
        return str(self._workdir / "cert.pem")

    def client(self) -> redis.Redis:
        """A client with full rights (the default user's password if one is set)."""
        tls: dict[str, object] = {"ssl": True, "ssl_ca_certs": self.ca_file} if self.tls else {}
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2, **tls
        )

    def _tls_args(self) -> tuple[str, ...]:
        cert, key = self._workdir / "cert.pem", self._workdir / "key.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", str(key), "-out", str(cert),
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return (
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert),
            "--tls-auth-clients", "no",
        )  # fmt: skip

    def start(self) -> None:
        if self._process is not None:
            return
        command = [
            self._binary,
            "--port", str(self.port),  # for TLS a later --port 0 wins, with --tls-port
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._workdir),
            "--logfile", str(self._workdir / "redis.log"),
            *self._extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + self._startup_timeout
        probe = self.client()
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        log = self._workdir / "redis.log"
                        text = log.read_text() if log.exists() else ""
                        self.stop()
                        raise RuntimeError(
                            f"redis-server on port {self.port} did not start:\n{text}"
                        ) from None
                    time.sleep(0.02)
        finally:
            probe.close()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)
