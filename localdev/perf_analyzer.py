"""Triton's ``perf_analyzer``, run on this machine without a GPU, for bench/ and its compatibility test.

The ``tritonclient==2.41.0`` manylinux wheel is the last on PyPI that ships the binary
(``tritonclient-2.41.0.data/data/bin/perf_analyzer``). Installing that wheel would replace the project's own
tritonclient, so the binary alone is extracted into a cache directory, beside ``libcudart.so.12`` from
PyPI's ``nvidia-cuda-runtime-cu12`` (it links CUDA's runtime even for HTTP; no GPU is needed). Both wheels
are pinned by hash. It also needs Debian's ``libb64-0d`` (``./dev.sh`` installs it).

    python -m localdev.perf_analyzer      # fetch once, print the binary's path
"""

from __future__ import annotations

import csv
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from localdev.paths import LOCAL_DIR

# (requirement, sha256 of its manylinux x86_64 wheel, member to extract -> name in the cache)
_WHEELS = (
    (
        "tritonclient==2.41.0",
        "cf4ed5df836fa99937678a9fd852f86ba05c7b83656dd0a540e20afdb9ab4629",
        {"tritonclient-2.41.0.data/data/bin/perf_analyzer": "perf_analyzer"},
    ),
    (
        "nvidia-cuda-runtime-cu12==12.9.79",
        "25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3",
        {"nvidia/cuda_runtime/lib/libcudart.so.12": "lib/libcudart.so.12"},
    ),
)
CACHE_DIR = LOCAL_DIR / "perf_analyzer-2.41.0"


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer could not be fetched, or a run failed; the message carries its output."""


def ensure_perf_analyzer(cache_dir: Path = CACHE_DIR) -> Path:
    """The perf_analyzer binary, downloaded (hash-checked) and extracted into ``cache_dir`` on first use."""
    binary = cache_dir / "perf_analyzer"
    if binary.is_file() and (cache_dir / "lib" / "libcudart.so.12").is_file():
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(f"{req} --hash=sha256:{digest}\n" for req, digest, _ in _WHEELS))
        # pip download with --platform fetches the manylinux wheel whatever this interpreter is, and
        # --require-hashes refuses anything but the pinned files.
        command = [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
            *("--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64"),
            *("--platform", "manylinux1_x86_64", "--require-hashes", "-r", str(requirements), "-d", tmp),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise PerfAnalyzerError(f"pip download failed:\n{done.stdout}{done.stderr}")
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for req, _, members in _WHEELS:
                    if not wheel.name.startswith(req.split("==")[0].replace("-", "_")):
                        continue
                    for member, name in members.items():
                        target = cache_dir / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        # Extract beside and rename over: two sessions fetching at once never see half a file.
                        partial = target.with_name(f".{target.name}.{os.getpid()}")
                        with archive.open(member) as src, partial.open("wb") as dst:
                            shutil.copyfileobj(src, dst)
                        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                        os.replace(partial, target)
    if not binary.is_file():
        raise PerfAnalyzerError(f"no perf_analyzer in the downloaded wheels under {cache_dir}")
    return binary


def perf_analyzer_env(cache_dir: Path = CACHE_DIR) -> dict[str, str]:
    """The environment perf_analyzer runs in: this one, with the cached libcudart on LD_LIBRARY_PATH."""
    lib = str(cache_dir / "lib")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    return {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{current}" if current else lib}


@dataclass(frozen=True)
class PerfResult:
    """One perf_analyzer measurement at concurrency 1: throughput and client-side latency percentiles."""

    infer_per_sec: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


_UNSTABLE = "Failed to obtain stable measurement"
_UNSTABLE_ATTEMPTS = 3


def run_perf_analyzer(
    address: str,
    model: str,
    *,
    requests: int = 200,
    shape: str | None = None,
    timeout: float = 300,
    stability_percentage: int = 100,
    extra: tuple[str, ...] = (),
) -> PerfResult:
    """Run perf_analyzer over HTTP at concurrency 1 against ``address`` (host:port) and parse its CSV.

    The run is bounded: ``requests`` requests per measurement window, at most three windows, and a wall
    clock ``timeout`` for all of it; a run a busy machine made unstable (three windows' average latencies
    not within ``stability_percentage`` of each other) is repeated, at most three times.
    """
    binary = ensure_perf_analyzer()
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-run-") as tmp:
        report = Path(tmp) / "report.csv"
        command = [
            str(binary),
            *("-m", model, "-u", address, "-i", "http", "--concurrency-range", "1:1"),
            *("--measurement-mode", "count_windows", "--measurement-request-count", str(requests)),
            *("--max-trials", "3", "--stability-percentage", str(stability_percentage), "-f", str(report)),
            *(("--shape", shape) if shape else ()),
            *extra,
        ]
        deadline = time.monotonic() + timeout
        for _ in range(_UNSTABLE_ATTEMPTS):
            try:
                done = subprocess.run(
                    command,
                    env=perf_analyzer_env(),
                    capture_output=True,
                    text=True,
                    timeout=max(deadline - time.monotonic(), 1.0),
                )
            except subprocess.TimeoutExpired as exc:
                raise PerfAnalyzerError(f"perf_analyzer did not finish within {timeout:.0f} s") from exc
            # Three windows whose latencies differ by more than 2x (a neighbour took the CPU): measure
            # again rather than fail, a bounded number of times.
            if done.returncode == 0 or _UNSTABLE not in done.stdout + done.stderr:
                break
        if done.returncode != 0 or not report.is_file():
            raise PerfAnalyzerError(f"perf_analyzer exited {done.returncode}:\n{done.stdout}{done.stderr}")
        with report.open(newline="") as handle:
            row = next(csv.DictReader(handle))
    return PerfResult(
        infer_per_sec=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) / 1000,
        p90_ms=float(row["p90 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
    )


if __name__ == "__main__":
    print(ensure_perf_analyzer())
