"""The fleet, measured in one run: real Tritons (the 20 ms sleep model, 50 inferences/s each) behind HAProxy,
four gateway processes, open-loop load. Prints throughput with 1 and 2 Tritons, the new Triton's share
over time after a scale-out (with and without CHANNEL_MAX_AGE_SECONDS), overload latency of accepted and
shed requests, the response cache, and errors per scenario. About two minutes; every load is bounded.

    .venv/bin/python bench/fleet.py [--max-age 3]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localdev.fleet import Fleet  # noqa: E402
from localdev.load import Outcome, percentile, run_load, sleep_body  # noqa: E402
from localdev.model_repo import SLEEP_MS, build_model_repository  # noqa: E402
from localdev.paths import LOCAL_MODEL_REPOSITORY  # noqa: E402

MODELS = ["sleep_model", "sleep_cached", "sleep_patient"]
CAPACITY = 1000 / SLEEP_MS  # inferences/s of one Triton
STEADY = 30.0  # req/s of the steady-load scenarios: 60 % of one Triton


def patient(index: int) -> dict[str, Any]:
    # The steady-load scenarios' model: a 2 s queue timeout, so a CPU stall of this shared machine is not
    # counted as the scenario's failure (throughput and overload use sleep_model's 150 ms).
    return sleep_body(index, "sleep_patient")


errors: dict[str, tuple[Counter[str], int]] = {}
counts: dict[str, int] = {}


def record(scenario: str, outcomes: list[Outcome]) -> None:
    # Shed answers (503 "overloaded") are counted apart: Triton's queue policy working, not a failure.
    shed = sum(o.status == 503 and "overloaded" in o.error for o in outcomes)
    bad = Counter(f"{o.status} {o.error}" for o in outcomes if not o.ok and "overloaded" not in o.error)
    errors[scenario] = (bad, shed)
    print(f"    {scenario}: {len(outcomes)} requests, {shed} shed, errors {dict(bad) or 0}")
    counts[scenario] = len(outcomes)


def ms(values: list[float], fraction: float) -> str:
    return f"{1000 * percentile(values, fraction):7.0f}"


def throughput(fleet: Fleet, label: str, rate: float, seconds: float = 6.0) -> float:
    outcomes = run_load(fleet.gateway_urls, rate=rate, seconds=seconds)
    # Answers completed per second in the steady part of the run (after the first second, up to the end
    # of sending): the queue's fill-up and drain-out are not throughput.
    done = [o.started + o.seconds for o in outcomes if o.ok]
    per_second = sum(1.0 <= t <= seconds for t in done) / (seconds - 1.0)
    print(f"  throughput, {label}: offered {rate:.0f}/s, served {per_second:5.1f}/s")
    record(f"throughput {label}", outcomes)
    return per_second


def share_over_time(fleet: Fleet, spare: str, label: str, seconds: float, joined: float = 2.0) -> None:
    names = [*[n for n in fleet.tritons if n != spare and fleet.tritons[n].is_running()][:1], spare]
    samples: list[tuple[float, dict[str, int]]] = []
    began = time.monotonic()

    def sample() -> None:
        samples.append((time.monotonic() - began, {n: fleet.successes(n, "sleep_patient") for n in names}))

    moments = [(joined, lambda: fleet.register(spare))]
    moments += [(float(t), sample) for t in range(1, int(seconds))]
    outcomes = run_load(fleet.gateway_urls, rate=STEADY, seconds=seconds, body=patient, at=moments)
    shares = []
    for (_, before), (at, after) in itertools.pairwise(samples):
        new = after[spare] - before[spare]
        total = sum(after[n] - before[n] for n in names)
        if at > joined:
            shares.append(f"{at - joined:4.0f}s:{100 * new / total if total else 0:3.0f}%")
    print(f"  new Triton's share after it joined ({label}), per second since joining:")
    print("    " + "  ".join(shares))
    record(f"scale-out {label}", outcomes)


def overload(fleet: Fleet) -> None:
    unloaded = run_load(fleet.gateway_urls, rate=10, seconds=2)
    base = [o.seconds for o in unloaded if o.ok]
    outcomes = run_load(fleet.gateway_urls, rate=4 * CAPACITY, seconds=4, timeout=20)
    accepted = [o.seconds for o in outcomes if o.ok]
    shed = [o.seconds for o in outcomes if o.status == 503 and "overloaded" in o.error]
    timeouts = sum(o.status in (0, 504) for o in outcomes)
    print(f"  overload, 1 Triton at 4x ({4 * CAPACITY:.0f}/s offered, open loop, 4 s):")
    print("                       count   p50 ms  p99 ms")
    print(f"    unloaded        {len(base):8d}  {ms(base, 0.5)} {ms(base, 0.99)}")
    print(f"    accepted        {len(accepted):8d}  {ms(accepted, 0.5)} {ms(accepted, 0.99)}")
    print(f"    shed 503        {len(shed):8d}  {ms(shed, 0.5)} {ms(shed, 0.99)}")
    print(f"    504 / no answer {timeouts:8d}")
    record("overload", outcomes)


def cache(fleet: Fleet, count: int = 40) -> None:
    url = fleet.gateway_urls[0]
    with httpx.Client(base_url=url, timeout=10) as client:
        for model in ("sleep_model", "sleep_cached"):
            client.post("/infer", json=sleep_body(7, model))  # the cached one's entry is made here
            seconds = []
            for _ in range(count):
                began = time.perf_counter()
                assert client.post("/infer", json=sleep_body(7, model)).status_code == 200
                seconds.append(time.perf_counter() - began)
            print(
                f"  same request x{count}, {model:12s}: p50 {ms(seconds, 0.5)} ms  p90 {ms(seconds, 0.9)} ms"
            )
    stats = fleet.statistics("t0", "sleep_cached")
    print(
        f"    sleep_cached on t0: {stats['inference_stats']['cache_hit']['count']} cache hits, "
        f"{stats['execution_count']} executions"
    )


def drain_and_kill(fleet: Fleet, max_age: float) -> None:
    # Drain + SIGTERM of t1 (as the ASG scales in), then kill -9 of t0 with t2 beside it.
    def scale_in() -> None:
        fleet.drain("t1")
        fleet.wait_drained("t1", timeout=max_age + 5)
        fleet.terminate("t1")

    outcomes = run_load(
        fleet.gateway_urls, rate=STEADY, seconds=max_age + 8, body=patient, at=[(1.0, scale_in)]
    )
    print("  drain + SIGTERM of one of two under load:")
    record("drain + SIGTERM", outcomes)
    fleet.add_triton()
    time.sleep(max_age + 1)  # let channels spread over t0 and t2
    outcomes = run_load(
        fleet.gateway_urls, rate=STEADY, seconds=6, body=patient, at=[(2.0, lambda: fleet.kill("t0"))]
    )
    in_flight = sum(o.started <= 2.1 and o.started + o.seconds >= 2.0 for o in outcomes)
    print(f"  kill -9 of one of two under load ({in_flight} requests in flight at the kill):")
    record("kill -9", outcomes)


def make_fleet(repository: Path, work: Path, max_age: float) -> Fleet:
    env = {"CHANNEL_MAX_AGE_SECONDS": str(max_age)}
    return Fleet(
        repository, tritons=1, gateways=4, models=MODELS, gateway_env=env, log_dir=work, work_dir=work
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-age", type=float, default=3.0, help="CHANNEL_MAX_AGE_SECONDS (default 3)")
    args = parser.parse_args()
    repository = build_model_repository(LOCAL_MODEL_REPOSITORY)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleet-") as work:
        with make_fleet(repository, Path(work) / "a", args.max_age) as fleet:
            spare = fleet.start_triton()
            print(f"fleet: 1 Triton ({CAPACITY:.0f} inferences/s), 4 gateways, max age {args.max_age:.0f} s")
            one = throughput(fleet, "1 Triton", 1.2 * CAPACITY)
            overload(fleet)
            cache(fleet)
            share_over_time(fleet, spare, f"max age {args.max_age:.0f} s", seconds=args.max_age + 10)
            time.sleep(1)
            two = throughput(fleet, "2 Tritons", 2.4 * CAPACITY)
            print(f"  2 Tritons / 1 Triton: {two / one:.2f}x")
            drain_and_kill(fleet, args.max_age)
        with make_fleet(repository, Path(work) / "b", 0) as fleet:
            spare = fleet.start_triton()
            share_over_time(fleet, spare, "max age off: channels pinned", seconds=8)
    print("per scenario:                            requests failed  shed (503 overloaded)")
    for scenario, (bad, shed) in errors.items():
        print(f"  {scenario:38s} {counts[scenario]:8d} {sum(bad.values()):6d} {shed:6d}")
    print(f"total {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
