"""Stopping the servers localdev starts (Triton, HAProxy, gateway processes), each in a session of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any] | None, sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` and wait up to ``timeout`` s, then SIGKILL; then SIGKILL what is left of its session.

    The leftovers matter for Triton: its python-backend stubs outlive a Triton that was killed (a fault
    test's ``kill -9``, or a stop past its timeout) and would keep their models' memory for good."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # Started with start_new_session=True, so its process group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
