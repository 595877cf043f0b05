"""A local fleet of real parts, as deployed: several Tritons behind one L4 balancer, several gateways.

- Tritons: real ``tritonserver`` processes (:class:`TritonServer`), named ``t0``, ``t1``, ...
- The NLB: HAProxy in TCP mode (:class:`HAProxy`), health-checking each Triton's ``/v2/health/ready``.
- Gateways: one uvicorn process each (one worker), so each has its own pooled gRPC channel to the
  balancer, as separate Lambda execution environments do.

Scale-out, drain, SIGTERM and ``kill -9`` are methods, so tests, the bench and a person at a terminal make
the same faults the same way.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from localdev.haproxy import HAProxy
from localdev.paths import LOCAL_DIR, LOG_DIR, REPO_ROOT
from localdev.processes import stop_process
from localdev.tritonserver import TritonServer, free_port


class Gateway:
    """The gateway under uvicorn in a process of its own, configured by environment variables."""

    def __init__(self, env: Mapping[str, str], log_path: Path, host: str = "127.0.0.1") -> None:
        """Configure, do not start."""
        self.host = host
        self.port = free_port(host)
        self.env = dict(env)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start uvicorn (no waiting: :meth:`wait_started` does, so several start at once)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        command = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", self.host]
        command += [
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--http",
            "httptools",
            "--log-level",
            "warning",
        ]
        self._process = subprocess.Popen(
            [*prefix, *command],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_started(self, timeout: float = 30.0) -> None:
        """Wait until the gateway answers HTTP (any status: Triton may not be there yet)."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            connection = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
            try:
                connection.request("GET", "/openapi.json")
                connection.getresponse().read()
                return
            except OSError:
                time.sleep(0.1)
            finally:
                connection.close()
        raise RuntimeError(f"gateway on {self.url} did not start within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop uvicorn (SIGTERM, SIGKILL after 5 s)."""
        process, self._process = self._process, None
        stop_process(process, signal.SIGTERM, 5)
        if self._log is not None:
            self._log.close()
            self._log = None


class Fleet:
    """Tritons behind HAProxy, and gateways in front of it; a context manager that stops every process."""

    def __init__(
        self,
        model_repository: Path,
        *,
        tritons: int = 2,
        gateways: int = 4,
        models: Sequence[str] | None = None,
        gateway_env: Mapping[str, str] | None = None,
        log_dir: Path = LOG_DIR,
        work_dir: Path = LOCAL_DIR,
    ) -> None:
        """Configure, do not start. ``models`` limits what each Triton loads (a faster start);
        ``gateway_env`` adds settings (e.g. ``CHANNEL_MAX_AGE_SECONDS``) to every gateway."""
        self.model_repository = model_repository
        self.models = tuple(models) if models is not None else None
        self.log_dir = log_dir
        self.work_dir = work_dir
        self.balancer = HAProxy(work_dir=work_dir / "haproxy", log_dir=log_dir)
        self.tritons: dict[str, TritonServer] = {}
        self._initial_tritons = tritons
        self._next = 0
        env = {"TRITON_GRPC_URL": self.balancer.url, **(gateway_env or {})}
        self.gateways = [Gateway(env, log_dir / f"gateway-{i}.log") for i in range(gateways)]

    @property
    def gateway_urls(self) -> list[str]:
        """Base URLs of the gateways."""
        return [gateway.url for gateway in self.gateways]

    def start(self) -> Self:
        """Start the balancer, the first Tritons (registered once ready) and the gateways."""
        try:
            self.balancer.start()
            for gateway in self.gateways:
                gateway.start()
            for _ in range(self._initial_tritons):
                self.add_triton()
            for gateway in self.gateways:
                gateway.wait_started()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every gateway, Triton and the balancer; safe to call repeatedly."""
        for gateway in self.gateways:
            gateway.stop()
        for server in self.tritons.values():
            server.stop()
        self.balancer.stop()

    def add_triton(self) -> str:
        """Start one more Triton and register it with the balancer once ready (a scale-out); its name."""
        name = self.start_triton()
        self.register(name)
        return name

    def start_triton(self) -> str:
        """Start one more Triton, not yet registered with the balancer (an instance still warming up)."""
        name = f"t{self._next}"
        self._next += 1
        server = TritonServer(
            self.model_repository,
            models=self.models,
            log_dir=self.log_dir,
            log_name=f"triton-{name}",
            work_dir=self.work_dir / "triton",
        )
        self.tritons[name] = server
        server.start()
        return name

    def register(self, name: str) -> None:
        """Register a started Triton with the balancer and wait for its health check to pass."""
        server = self.tritons[name]
        self.balancer.add(name, server.grpc_port, server.http_port)
        self.balancer.wait_status(name, "UP")

    def drain(self, name: str) -> None:
        """Deregistration as the NLB does it: no new connection to ``name``; open ones carry on."""
        self.balancer.drain(name)

    def wait_drained(self, name: str, timeout: float) -> bool:
        """Wait until no connection is open to ``name`` (gateways re-opened their channels elsewhere)."""
        ends = time.monotonic() + timeout
        while self.balancer.sessions(name) and time.monotonic() < ends:
            time.sleep(0.1)
        return self.balancer.sessions(name) == 0

    def terminate(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM ``name`` as the ASG's instance shutdown does (Triton finishes in-flight work), wait for
        it to exit, and deregister it."""
        server = self.tritons[name]
        if server.pid is not None:
            os.kill(server.pid, signal.SIGTERM)
            ends = time.monotonic() + timeout
            while server.is_running() and time.monotonic() < ends:
                time.sleep(0.05)
        server.stop()
        self.balancer.remove(name)

    def kill(self, name: str) -> None:
        """``kill -9`` ``name``: no drain, no goodbye; the balancer finds out by its health check."""
        server = self.tritons[name]
        if server.pid is not None:
            os.kill(server.pid, signal.SIGKILL)

    def statistics(self, name: str, model: str) -> dict[str, Any]:
        """Triton ``name``'s own statistics of ``model`` (its HTTP ``/v2/models/<model>/stats``)."""
        server = self.tritons[name]
        connection = http.client.HTTPConnection(server.host, server.http_port, timeout=5)
        try:
            connection.request("GET", f"/v2/models/{model}/stats")
            stats: dict[str, Any] = json.loads(connection.getresponse().read())["model_stats"][0]
            return stats
        finally:
            connection.close()

    def successes(self, name: str, model: str) -> int:
        """Inferences Triton ``name`` has completed for ``model``; 0 once it is gone."""
        if not self.tritons[name].is_running():
            return 0
        return int(self.statistics(name, model)["inference_stats"]["success"]["count"])

    def __enter__(self) -> Self:
        """Start and return the fleet."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop everything."""
        self.stop()
