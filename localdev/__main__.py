"""Command line: ``python -m localdev run | triton | fleet | build-models DEST``.

``run``           local Triton + the gateway (uvicorn on service.app:app) wired to it.
``triton``        only Triton, on fixed or free ports, until Ctrl-C (for benchmarks and manual clients).
``fleet``         several Tritons behind HAProxy (the NLB's stand-in) and several gateways, until Ctrl-C.
``build-models``  write the local model repository to DEST and exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from localdev.fleet import Fleet
from localdev.model_repo import build_model_repository
from localdev.paths import LOCAL_DIR, LOCAL_MODEL_REPOSITORY
from localdev.tls import LOCAL_SERVER_NAME, make_test_pki
from localdev.tritonserver import TritonServer, TritonStartupError

TLS_DIR = LOCAL_DIR / "tls"


_TLS_HELP = f"Triton's gRPC with TLS, its certificate signed by a new test CA in {TLS_DIR}"


def _tls_args(tls: bool) -> list[str]:
    if not tls:
        return []
    files = make_test_pki(TLS_DIR)
    print(f"TLS: CA {files.ca_cert}, server name {LOCAL_SERVER_NAME}")
    return files.triton_args()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localdev", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="local Triton + the gateway on http://HOST:PORT")
    run.add_argument("--host", default="127.0.0.1", help="gateway bind address (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    run.add_argument("--reload", action="store_true", help="restart the gateway when service/ changes")
    run.add_argument("--tls", action="store_true", help=_TLS_HELP)

    triton = commands.add_parser("triton", help="only Triton, until Ctrl-C")
    triton.add_argument("--grpc-port", type=int, default=None, help="default: a free port")
    triton.add_argument("--http-port", type=int, default=None, help="default: a free port")
    triton.add_argument("--metrics-port", type=int, default=None, help="default: a free port")
    triton.add_argument("--tls", action="store_true", help=_TLS_HELP)

    fleet = commands.add_parser("fleet", help="Tritons behind HAProxy, gateways in front, until Ctrl-C")
    fleet.add_argument("--tritons", type=int, default=2, help="Tritons behind the balancer (default 2)")
    fleet.add_argument("--gateways", type=int, default=4, help="gateway processes (default 4)")
    fleet.add_argument(
        "--channel-max-age", type=float, default=None, help="CHANNEL_MAX_AGE_SECONDS of the gateways"
    )

    build = commands.add_parser("build-models", help="write the local model repository and exit")
    build.add_argument("dest", type=Path)
    return parser


def _print_triton(server: TritonServer) -> None:
    print(f"Triton ready in {server.startup_seconds:.1f}s (repository {server.model_repository})")
    print(f"  gRPC     {server.grpc_url}")
    print(f"  HTTP     {server.http_url}")
    print(f"  metrics  {server.metrics_url}")
    print(f"  log      {server.log_path}")


def _run_gateway(host: str, port: int, reload: bool, tls: bool) -> None:
    # Imported here: uvicorn is a local-only extra and the other commands must work without it.
    import uvicorn

    extra_args = _tls_args(tls)
    with TritonServer(
        build_model_repository(LOCAL_MODEL_REPOSITORY), log_name="dev", extra_args=extra_args
    ) as server:
        _print_triton(server)
        # The gateway reads its settings from the environment (service.settings); uvicorn's reload worker
        # inherits it too.
        os.environ["TRITON_GRPC_URL"] = server.grpc_url
        # The text models' chat templates live in their repository directories (tokenizer_config.json).
        os.environ.setdefault("CHAT_TEMPLATE_DIR", str(LOCAL_MODEL_REPOSITORY))
        if tls:
            os.environ["TRITON_GRPC_TLS"] = "true"
            os.environ["TRITON_GRPC_TLS_CA"] = str(TLS_DIR / "ca.pem")
            os.environ["TRITON_GRPC_TLS_SERVER_NAME"] = LOCAL_SERVER_NAME
        print(f"Gateway  http://{host}:{port}  (docs: http://{host}:{port}/docs)  Ctrl-C stops both")
        sys.stdout.flush()
        # An import string, not the app object: service/ is loaded by uvicorn, after TRITON_GRPC_URL is set.
        reload_dirs = ["service"] if reload else None
        # No uvicorn access log: the gateway writes one access record per request itself (JSON, stdout).
        # httptools' parser (C), named rather than left to "auto", which falls back to h11 (pure Python,
        # several times slower on a 600 kB tensor body) when httptools is missing.
        uvicorn.run(
            "service.app:app",
            host=host,
            port=port,
            http="httptools",
            reload=reload,
            reload_dirs=reload_dirs,
            access_log=False,
        )


def _run_triton(grpc_port: int | None, http_port: int | None, metrics_port: int | None, tls: bool) -> None:
    server = TritonServer(
        build_model_repository(LOCAL_MODEL_REPOSITORY),
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        log_name="triton",
        extra_args=_tls_args(tls),
    )
    # SIGTERM (e.g. from a process manager) stops Triton as cleanly as Ctrl-C; SIGINT is set explicitly
    # because a shell starting us in the background (`&`) makes us inherit it as ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with server:
        _print_triton(server)
        print("Ctrl-C stops Triton")
        sys.stdout.flush()
        try:
            while server.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            return
    raise SystemExit(f"tritonserver exited unexpectedly; see {server.log_path}\n{server.log_tail()}")


def _run_fleet(tritons: int, gateways: int, channel_max_age: float | None) -> None:
    env = {} if channel_max_age is None else {"CHANNEL_MAX_AGE_SECONDS": str(channel_max_age)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with Fleet(
        build_model_repository(LOCAL_MODEL_REPOSITORY), tritons=tritons, gateways=gateways, gateway_env=env
    ) as fleet:
        for name, server in fleet.tritons.items():
            print(f"Triton {name}  gRPC {server.grpc_url}  HTTP {server.http_url}  log {server.log_path}")
        print(f"HAProxy  {fleet.balancer.url}  admin socket {fleet.balancer.socket_path}")
        print(f"  e.g. echo 'set server triton/t1 state drain' | socat stdio {fleet.balancer.socket_path}")
        for url in fleet.gateway_urls:
            print(f"Gateway  {url}")
        print("Ctrl-C stops everything")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for ``python -m localdev``."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            _run_gateway(args.host, args.port, args.reload, args.tls)
        elif args.command == "triton":
            _run_triton(args.grpc_port, args.http_port, args.metrics_port, args.tls)
        elif args.command == "fleet":
            _run_fleet(args.tritons, args.gateways, args.channel_max_age)
        else:
            print(build_model_repository(args.dest))
    except TritonStartupError as exc:
        raise SystemExit(f"error: {exc}") from exc
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
