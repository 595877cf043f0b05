"""Run the real ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel as a child process.

The wheel ships Triton 2.51 with only the python backend. We build our own backend directory under
``.local/`` (symlinks into the wheel plus the stub for this Python) so site-packages is never modified,
and put this interpreter's ``bin`` first on PATH so the python backend's models run in this venv.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from localdev.paths import LOCAL_DIR, LOG_DIR
from localdev.processes import stop_process


class TritonStartupError(RuntimeError):
    """tritonserver exited or did not become ready; the message carries the end of its log."""


def bundled_triton_dir() -> Path:
    """The ``tritonserver`` directory inside the installed nvidia-pytriton wheel."""
    # find_spec locates the package without importing it: pytriton's import pulls in much we do not need.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonStartupError("nvidia-pytriton is not installed; pip install -e '.[local]'")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonStartupError(f"no tritonserver binary under {root}")
    return root


def prepare_backend_dir(dest: Path, triton_dir: Path | None = None) -> Path:
    """Lay out ``dest/python`` as Triton expects: the backend library, its utils and this Python's stub."""
    triton_dir = triton_dir or bundled_triton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartupError(f"nvidia-pytriton has no python backend stub for Python {version}")
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    backend = triton_dir / "backends" / "python"
    wanted = {
        "libtriton_python.so": backend / "libtriton_python.so",
        "triton_python_backend_utils.py": backend / "triton_python_backend_utils.py",
        # Symlinks (not copies) keep the binaries' $ORIGIN-relative RPATH, which the loader resolves through
        # the link to the wheel's nvidia_pytriton.libs: no LD_LIBRARY_PATH needed.
        "triton_python_backend_stub": stub,
    }
    for name, target in wanted.items():
        link = python_dir / name
        if link.is_symlink() and link.readlink() == target:
            continue
        # Create beside and rename over: two test sessions starting at once never see a missing link.
        tmp = python_dir / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return dest


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may still take it before Triton does)."""
    [port] = free_ports(1, host)
    return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports: each socket stays bound until all are picked, so the kernel cannot
    hand out one port twice (as back-to-back ``free_port()`` calls now and then do)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _die_with_parent_prefix() -> list[str]:
    # If pytest or the dev server is killed outright, the kernel sends Triton SIGTERM (PR_SET_PDEATHSIG)
    # instead of leaving it holding ports and /dev/shm. util-linux's setpriv sets that flag and execs, so
    # the pid stays Triton's; subprocess's preexec_fn could do it too but can deadlock in a threaded
    # process (gRPC clients keep threads). Without setpriv we simply go without this safety net.
    # Linux ties the signal to the *thread* that started Triton: start it from one that outlives it (the
    # main thread, as pytest fixtures and the CLI do), or Triton is stopped when that thread ends.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


class TritonServer:
    """A real tritonserver on free local ports, serving ``model_repository``; use as a context manager."""

    def __init__(
        self,
        model_repository: Path,
        *,
        host: str = "127.0.0.1",
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        models: Sequence[str] | None = None,
        log_dir: Path = LOG_DIR,
        log_name: str | None = None,
        work_dir: Path = LOCAL_DIR / "triton",
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        extra_args: Sequence[str] = (),
        response_cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """Configure, do not start. ``models`` loads only those (explicit model control) for a faster start.

        The log is ``log_dir/<log_name>.log`` (default name: ``tritonserver-<http port>``), truncated on
        start and appended to on restart. ``response_cache_bytes`` sizes Triton's local response cache, used
        by the models whose config opts in (``response_cache { enable: true }``); 0 runs without one.
        """
        self.model_repository = model_repository.resolve()
        self.host = host
        self._fixed_ports = grpc_port is not None or http_port is not None or metrics_port is not None
        picked = free_ports(3, host)
        self.grpc_port = grpc_port or picked[0]
        self.http_port = http_port or picked[1]
        self.metrics_port = metrics_port or picked[2]
        self.models = tuple(models) if models is not None else None
        self.log_dir = log_dir
        self.work_dir = work_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = tuple(extra_args)
        self.response_cache_bytes = response_cache_bytes
        self.startup_seconds: float | None = None
        self._log_name = log_name
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint, as tritonclient.grpc and TRITON_GRPC_URL expect."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_address(self) -> str:
        """``host:port`` of the HTTP endpoint, as tritonclient.http expects (no scheme)."""
        return f"{self.host}:{self.http_port}"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP/REST endpoint, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.http_address}"

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics URL."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def is_running(self) -> bool:
        """True while the tritonserver process is alive (ready or not)."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The tritonserver command line this server runs."""
        triton_dir = bundled_triton_dir()
        args = [
            str(triton_dir / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={prepare_backend_dir(self.work_dir / 'backends', triton_dir)}",
            f"--cache-directory={triton_dir / 'caches'}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            # No GPU here: skip the NVML/DCGM probe that only adds errors to the log.
            "--allow-gpu-metrics=false",
            "--log-verbose=0",
            # A model that fails to load must fail the start, not leave a half-ready server behind.
            "--exit-on-error=true",
            "--strict-readiness=true",
            # Bounded shutdown even with a slow_model call in flight, so stop() and restart() stay quick.
            "--exit-timeout-secs=5",
        ]
        if self.response_cache_bytes:
            args.append(f"--cache-config=local,size={self.response_cache_bytes}")
        if self.models is not None:
            args.append("--model-control-mode=explicit")
            args += [f"--load-model={name}" for name in self.models]
        return [*args, *self.extra_args]

    def environment(self) -> dict[str, str]:
        """Environment for tritonserver: this venv's python first on PATH for the python backend."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        # The stub's embedded Python finds the venv through PATH; a PYTHONHOME would override that.
        env.pop("PYTHONHOME", None)
        return env

    def start(self) -> Self:
        """Start tritonserver and wait until every model is ready; no-op if already running.

        After the first successful start the ports never change, so a stopped server comes back where
        its clients expect it.
        """
        if self.is_running():
            return self
        started_before = self.startup_seconds is not None
        attempts = 1 if self._fixed_ports or started_before else 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(append=started_before)
                return self
            except TritonStartupError as exc:
                # Free ports are picked before Triton binds them; if another process won the race, retry
                # with new ones. Any other failure is real and reported at once.
                if attempt == attempts or "already in use" not in str(exc):
                    raise
                self.grpc_port, self.http_port, self.metrics_port = free_ports(3, self.host)
        return self

    @property
    def log_path(self) -> Path:
        """The file tritonserver's stdout and stderr go to."""
        return self.log_dir / f"{self._log_name or f'tritonserver-{self.http_port}'}.log"

    def _start_once(self, *, append: bool = False) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = self.command()
        self._log = self.log_path.open("ab" if append else "wb")
        self._log.write(f"\n=== localdev: {' '.join(command)}\n".encode())
        self._log.flush()
        began = time.monotonic()
        self._process = subprocess.Popen(
            [*_die_with_parent_prefix(), *command],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            # Its own process group: a terminal's Ctrl-C reaches only us, and we stop Triton after whatever
            # runs on top of it (the gateway) has shut down, not at the same moment.
            start_new_session=True,
        )
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _wait_ready(self, began: float) -> None:
        deadline = began + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise TritonStartupError(f"tritonserver exited ({code}) during startup\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.05)
        raise TritonStartupError(
            f"tritonserver not ready within {self.startup_timeout:.0f}s ({self.log_path})\n{self.log_tail()}"
        )

    def is_ready(self) -> bool:
        """True if ``GET /v2/health/ready`` answers 200 (all models loaded, with strict readiness)."""
        connection = http.client.HTTPConnection(self.host, self.http_port, timeout=1.0)
        try:
            connection.request("GET", "/v2/health/ready")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        """Ask Triton to shut down (SIGINT), kill it after ``stop_timeout``; safe to call repeatedly."""
        process, self._process = self._process, None
        stop_process(process, signal.SIGINT, self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> Self:
        """Stop and start again on the same ports, so clients' URLs stay valid."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log, for error messages."""
        try:
            text = self.log_path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        """Start (if needed) and return the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Show where it listens."""
        state = "running" if self.is_running() else "stopped"
        return f"TritonServer({state}, grpc={self.grpc_url}, http={self.http_url}, {self.model_repository})"
