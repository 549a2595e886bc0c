"""Real server processes for fault tests: uvicorn running the app on a given database, started,
killed with SIGKILL and restarted on the same port. Only 127.0.0.1; each server is its own
process group (uvicorn's workers included), so a kill takes all of it and nothing else."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until either side closes, then shut both down (for test proxies)."""
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        shut(src, dst)


def shut(*socks: socket.socket, close: bool = False) -> None:
    """Shut both directions of these sockets (and close them), ignoring ones already gone."""
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if close:
            sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`uvicorn engine.api.app:create_app --factory` on DATABASE_URL=db_url with its data
    directory (attachments, uploads) at data_dir. No scheduler unless asked."""

    def __init__(self, db_url: str, data_dir: Path, workers: int = 1, port: int | None = None,
                 env: dict | None = None, scheduler: bool = False):
        self.db_url, self.data_dir, self.workers = db_url, Path(data_dir), workers
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": db_url, "CITYLOOP_DATA": str(self.data_dir),
                    "CITYLOOP_SCHEDULER": "1" if scheduler else "0", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.starts = self.kills = 0
        self.log_path = self.data_dir / "server.log"

    def start(self, timeout: float = 60) -> "ServerProcess":
        assert self.proc is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "uvicorn", "engine.api.app:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(self.port), "--log-level", "warning", "--no-access-log",
               "--timeout-graceful-shutdown", "5"]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/openapi.json", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server and its workers (no shutdown code runs), and reap it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self._wait_port_free()
        self.proc = None
        self.kills += 1

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def restart(self, timeout: float = 60) -> "ServerProcess":
        self.kill()
        return self.start(timeout)

    def _wait_port_free(self, timeout: float = 10) -> None:
        """The killed workers may linger a moment after the supervisor is reaped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", self.port))
                    return
                except OSError:
                    time.sleep(0.05)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of a server that cuts the first `cuts` connections
    after `after` bytes from the client (a tablet losing signal mid-request); later
    connections pass untouched. Counts the bytes clients sent through it."""

    def __init__(self, target_port: int, after: int, cuts: int = 1):
        import threading
        self.target_port, self.after, self.cuts_left = target_port, after, cuts
        self.cut = 0
        self.bytes_up = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                limit = self.after if self.cuts_left > 0 else None
                if limit is not None:
                    self.cuts_left -= 1
            threading.Thread(target=self._pipe, args=(client, limit), daemon=True).start()

    def _pipe(self, client: socket.socket, limit: int | None) -> None:
        import threading
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        sent = 0
        try:
            while data := client.recv(65536):
                if limit is not None and sent + len(data) >= limit:
                    upstream.sendall(data[:limit - sent])
                    with self._lock:
                        self.bytes_up += limit - sent
                        self.cut += 1
                    break  # the line goes dead
                upstream.sendall(data)
                sent += len(data)
                with self._lock:
                    self.bytes_up += len(data)
        except OSError:
            pass
        finally:
            shut(upstream, client, close=True)

    def close(self) -> None:
        self._closed = True
        self._sock.close()
