"""HAProxy in TCP mode as the local stand-in for the internal NLB in front of the Triton fleet.

Like the NLB's target group it balances *connections* (not requests) to each Triton's gRPC port, checks
``GET /v2/health/ready`` on each Triton's HTTP port, and drains: a draining server gets no new connection
while the ones it has carry on. Servers are added, drained and removed at run time through HAProxy's admin
socket, as the Auto Scaling group registers and deregisters targets, so no reload ever resets a connection.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from localdev.paths import LOCAL_DIR, LOG_DIR
from localdev.tritonserver import free_port

BACKEND = "triton"
# Checked every 500 ms; two failures mark a server down (~1 s for a dead one, whose port refuses at once;
# the NLB's is >= 10 s), two passes up. A check may take up to `timeout check` (2 s): on a busy machine a
# live Triton's answer can take longer than the interval, and must not mark it down.
# shutdown-sessions: connections to a server marked down are closed, as the NLB's connection termination
# for unhealthy targets does, so clients reconnect to a healthy one at once instead of waiting on a dead peer.
_SERVER_OPTIONS = "check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions"


class HAProxyError(RuntimeError):
    """haproxy did not start, or its admin socket refused a command."""


def haproxy_binary() -> str:
    """Path of Debian's haproxy (in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise HAProxyError("haproxy is not installed (Debian/Ubuntu: sudo apt-get install haproxy)")
    return found


class HAProxy:
    """One haproxy process balancing TCP connections on ``url`` over Triton servers; a context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        work_dir: Path = LOCAL_DIR / "haproxy",
        log_dir: Path = LOG_DIR,
        name: str = "haproxy",
    ) -> None:
        """Configure, do not start; the balancer starts with no server (add them with :meth:`add`)."""
        self.host = host
        self.port = port or free_port(host)
        self.work_dir = work_dir
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.socket_path = work_dir / f"admin-{self.port}.sock"
        self._config_path = work_dir / f"haproxy-{self.port}.cfg"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """``host:port`` the gateways use as TRITON_GRPC_URL (the NLB's listener)."""
        return f"{self.host}:{self.port}"

    def config(self) -> str:
        """The haproxy.cfg this balancer runs."""
        return f"""\
global
    stats socket {self.socket_path} mode 600 level admin
    maxconn 4096

defaults
    mode tcp
    # A refused connection is retried after min(timeout connect, 1 s): kept short, and every retry may go to
    # another server (redispatch 1), so a connection that reaches a just-killed Triton lands on a live one
    # within ~0.5 s, before the health check marks the dead one down and shuts its sessions.
    timeout connect 500ms
    timeout check 2s
    # Long idle timeouts: pooled gRPC channels sit idle between bursts, as behind the NLB (350 s idle).
    timeout client 350s
    timeout server 350s
    retries 3
    option redispatch 1

frontend grpc
    bind {self.host}:{self.port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk
    http-check send meth GET uri /v2/health/ready
    http-check expect status 200
"""

    def start(self) -> Self:
        """Start haproxy and wait for its admin socket."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._config_path.write_text(self.config())
        self.socket_path.unlink(missing_ok=True)
        self._log = self.log_path.open("wb")
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        self._process = subprocess.Popen(
            [*prefix, haproxy_binary(), "-db", "-f", str(self._config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ends = time.monotonic() + 10
        while time.monotonic() < ends:
            if self._process.poll() is not None:
                raise HAProxyError(f"haproxy exited ({self._process.returncode}): {self.log_tail()}")
            try:
                self.command("show info")
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise HAProxyError(f"haproxy's admin socket did not answer within 10 s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop haproxy (SIGTERM, then SIGKILL after 5 s); safe to call repeatedly."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def command(self, line: str) -> str:
        """Run one admin-socket command and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def _checked(self, line: str) -> None:
        answer = self.command(line).strip()
        # Successful state changes answer nothing, or a short confirmation ("New server registered.").
        if answer and not answer.startswith(("New server registered", "Server deleted")):
            raise HAProxyError(f"haproxy refused {line!r}: {answer}")

    def add(self, name: str, grpc_port: int, http_port: int) -> None:
        """Register a Triton (as the ASG registers a new instance); it gets connections once healthy."""
        self._checked(
            f"add server {BACKEND}/{name} {self.host}:{grpc_port} {_SERVER_OPTIONS} port {http_port}"
        )
        self._checked(f"enable health {BACKEND}/{name}")
        self._checked(f"enable server {BACKEND}/{name}")

    def drain(self, name: str) -> None:
        """No new connection to ``name``; its open connections carry on (NLB deregistration delay)."""
        self._checked(f"set server {BACKEND}/{name} state drain")

    def remove(self, name: str) -> None:
        """Deregister ``name``: close its remaining connections and forget it."""
        self._checked(f"set server {BACKEND}/{name} state maint")
        self._checked(f"shutdown sessions server {BACKEND}/{name}")
        # A closed connection leaves the server's count a moment later; deleting before refuses.
        ends = time.monotonic() + 5
        while self.sessions(name) and time.monotonic() < ends:
            time.sleep(0.05)
        self._checked(f"del server {BACKEND}/{name}")

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers from ``show stat``: name -> fields (status, scur = open connections, ...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = (dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line)
        return {
            row["svname"]: row
            for row in rows
            if row.get("pxname") == BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def status(self, name: str) -> str:
        """``UP``, ``DOWN``, ``DRAIN``, ``MAINT``... of one server, as haproxy reports it."""
        return self.servers()[name]["status"]

    def sessions(self, name: str) -> int:
        """Connections open to ``name`` right now."""
        return int(self.servers()[name]["scur"] or 0)

    def wait_status(self, name: str, wanted: str, timeout: float = 10.0) -> None:
        """Wait until ``name``'s status is ``wanted`` (e.g. ``UP`` once its checks pass, not ``UP 1/2``)."""
        ends = time.monotonic() + timeout
        while self.status(name) != wanted:
            if time.monotonic() > ends:
                raise HAProxyError(f"{name} is {self.status(name)}, not {wanted}, after {timeout:.0f} s")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The end of haproxy's own output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        """Start and return the balancer."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop haproxy."""
        self.stop()
