"""The bad-input battery's measure and verdict, shared by the HTTP cases (a gateway process) and the Lambda
events (the handler in this process): every answer a 4xx ``{"error": "<string>"}`` within 2 s, adding at
most ~100 MB to the serving process's peak RSS (VmHWM, reset before each case), naming nothing internal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

MAX_SECONDS = 2.0
MAX_RSS_GROWTH_MB = 100
INTERNAL = ("127.0.0.1", "/tmp", "/work", "/usr", "/opt", "site-packages", "Traceback", 'File "')


@dataclass
class Row:
    """One line of the battery's table."""

    case: str
    status: int
    seconds: float
    grown_mb: float


@dataclass
class Seen:
    """What one case cost: wall time, and how far the process's peak RSS rose above its RSS before."""

    seconds: float = 0.0
    grown_mb: float = 0.0


def _status_kb(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int | str) -> int:
    """Reset the process's VmHWM to its current RSS (Linux's clear_refs 5); the new peak, in kB."""
    # Without the reset the delta is against the peak so far: a lower bound, still checked.
    with suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kb(pid, "VmHWM")


@contextmanager
def measured(pid: int | str) -> Iterator[Seen]:
    """Time the block, and measure the peak RSS it added to process ``pid`` ("self": this one)."""
    seen = Seen()
    before = _reset_peak(pid)
    began = time.monotonic()
    yield seen
    seen.seconds = time.monotonic() - began
    time.sleep(0.05)  # a peak reached while the answer was being written is still counted
    seen.grown_mb = (_status_kb(pid, "VmHWM") - before) / 1024


def check_answer(status: int, want: int, body: bytes, seen: Seen, secrets: list[str]) -> None:
    """The battery's verdict on one answer."""
    assert status == want, (status, body[:300])
    answer = json.loads(body)
    assert list(answer) == ["error"] and isinstance(answer["error"], str) and answer["error"], answer
    assert seen.seconds < MAX_SECONDS, seen.seconds
    assert seen.grown_mb < MAX_RSS_GROWTH_MB, seen.grown_mb
    text = body.decode(errors="replace")
    for secret in (*INTERNAL, *secrets):
        assert secret not in text, (secret, text[:300])


def print_table(rows: list[Row]) -> None:
    """The table for the report (shown with ``pytest -s``)."""
    if rows:
        print(f"\n{'case':<52} {'status':>6} {'ms':>8} {'peak RSS +MB':>13}")
        for row in rows:
            print(f"{row.case:<52} {row.status:>6} {row.seconds * 1000:>8.1f} {row.grown_mb:>13.1f}")
