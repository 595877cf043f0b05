"""The fleet as deployed, with real parts: Tritons behind HAProxy (the NLB), gateway processes in front.

Load is open-loop and bounded (localdev.load); who served what is read from each Triton's own statistics.
Timings are asserted only as orders of magnitude: the figures are bench/fleet.py's.
"""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from localdev.load import Outcome, percentile, run_load, sleep_body
from service.settings import Settings
from tests.fleet.conftest import FleetFactory
from tests.gateway import serve_gateway
from tests.settle import settled

pytestmark = pytest.mark.fleet

MAX_AGE = 3.0  # CHANNEL_MAX_AGE_SECONDS in these tests: short, so scale-out shows within seconds
SLEEP = ["sleep_model", "sleep_patient"]
# Steady load goes to sleep_patient (a 2 s queue timeout): a CPU stall of the shared CI machine must not
# make Triton shed, so every failure these tests count is the fault's. Overload goes to sleep_model (150 ms).
STEADY = "sleep_patient"
OVERLOADED = "Triton is overloaded; try again shortly"


def without_request_id(message: str | None) -> str | None:
    """A 5xx message without the request id it ends with."""
    return re.sub(r" \(request id \w+\)$", "", message) if message is not None else None


# Steady load: 40 % of one Triton's 50/s, so that one Triton alone never sheds, even on a shared 2-core box.
RATE = 20


def steady(index: int) -> dict[str, object]:
    return sleep_body(index, STEADY)


def failures(outcomes: list[Outcome]) -> list[tuple[int, str]]:
    return [(o.status, o.error) for o in outcomes if not o.ok]


def test_fleet_scale_out_reaches_the_new_triton_within_max_age(fleet_factory: FleetFactory):
    # GIVEN steady load (under one Triton's 50/s) on four gateways, whose pooled channels all reach t0
    fleet = fleet_factory(
        tritons=1, gateways=4, models=SLEEP, gateway_env={"CHANNEL_MAX_AGE_SECONDS": str(MAX_AGE)}
    )
    spare = fleet.start_triton()  # booted, not yet in the balancer
    counts: list[dict[str, int]] = []

    def snapshot() -> None:
        counts.append({name: fleet.successes(name, STEADY) for name in ("t0", spare)})

    def scale_out() -> None:
        fleet.register(spare)
        snapshot()

    # WHEN the new Triton joins the balancer two seconds in, and load goes on for max-age + 8 s
    joined = 2.0
    outcomes = run_load(
        fleet.gateway_urls,
        rate=RATE,
        seconds=joined + MAX_AGE + 8,
        body=steady,
        at=[(joined, scale_out), (joined + MAX_AGE + 1, snapshot)],
    )
    snapshot()

    # THEN nothing failed, and once every channel has passed its max age the new Triton serves >= 35 %
    assert failures(outcomes) == []
    _, settled, end = counts
    new, old = end[spare] - settled[spare], end["t0"] - settled["t0"]
    assert new + old >= 0.9 * RATE * 7  # Triton's statistics count (nearly) every request of the window
    assert new / (new + old) >= 0.35, (new, old)


def test_fleet_overload_sheds_fast_with_503_overloaded_and_nothing_hangs(fleet_factory: FleetFactory):
    # GIVEN one Triton (50 inferences/s) behind two gateways, warmed up (channels open, metadata cached)
    fleet = fleet_factory(tritons=1, gateways=2, models=SLEEP)
    assert failures(run_load(fleet.gateway_urls, rate=10, seconds=1, body=steady)) == []

    # WHEN load arrives at 4x its capacity, open loop, for 3 s
    outcomes = run_load(fleet.gateway_urls, rate=200, seconds=3, timeout=20)

    # THEN every request got an answer: served, or shed by the queue policy; none hit the 10 s deadline
    accepted = [o.seconds for o in outcomes if o.ok]
    shed = [o for o in outcomes if o.status == 503]
    assert len(accepted) + len(shed) == len(outcomes), failures(outcomes)
    # (each 5xx ends with its request id)
    assert {(without_request_id(o.error), o.retry_after) for o in shed} == {(OVERLOADED, "1")}
    # Triton kept serving near capacity (50/s over 3 s) instead of queueing everything past the deadline
    assert len(accepted) >= 50
    assert len(shed) >= 200
    # Orders of magnitude only (figures: bench/fleet.py): the queue timeout is 0.15 s, the deadline 10 s.
    assert percentile(accepted, 0.99) < 3.0
    assert max(o.seconds for o in shed) < 3.0


def test_fleet_drain_then_sigterm_of_one_of_two_loses_nothing(fleet_factory: FleetFactory):
    # GIVEN load spread over two Tritons by two gateways
    fleet = fleet_factory(
        tritons=2, gateways=2, models=SLEEP, gateway_env={"CHANNEL_MAX_AGE_SECONDS": str(MAX_AGE)}
    )
    served: dict[str, int] = {}

    def scale_in() -> None:
        # WHEN t1 is taken out as the ASG does: deregistered (drained), then SIGTERM once its
        # connections are gone (the deregistration delay covers the channels' max age)
        fleet.drain("t1")
        served["drained"] = fleet.wait_drained("t1", timeout=MAX_AGE + 5)
        served["t1"] = fleet.successes("t1", STEADY)
        fleet.terminate("t1")

    outcomes = run_load(fleet.gateway_urls, rate=RATE, seconds=MAX_AGE + 8, body=steady, at=[(1.0, scale_in)])

    # THEN t1 served its share before, every connection left it, and no request failed
    assert served["drained"]
    assert served["t1"] > 0
    assert not fleet.tritons["t1"].is_running()
    assert failures(outcomes) == []


def test_fleet_kill_9_of_one_of_two_fails_at_most_what_was_in_flight(fleet_factory: FleetFactory):
    # GIVEN load on two Tritons through two gateways whose channels stay put (the default max age)
    fleet = fleet_factory(tritons=2, gateways=2, models=SLEEP)
    killed = 2.0

    # WHEN t0 is killed outright under load
    outcomes = run_load(
        fleet.gateway_urls, rate=RATE, seconds=6, body=steady, at=[(killed, lambda: fleet.kill("t0"))]
    )

    # THEN at most the requests in flight at that instant failed (a broken connection's call is retried
    # once, on a fresh connection), and every request after the health check dropped t0 succeeded
    in_flight = [o for o in outcomes if o.started <= killed + 0.1 and o.started + o.seconds >= killed]
    failed = [(round(o.started, 2), round(o.seconds, 3), o.error) for o in outcomes if not o.ok]
    assert len(failed) <= len(in_flight), failed
    later = [o for o in outcomes if o.started > killed + 2.0]
    assert later
    assert [(o.status, o.error) for o in later if not o.ok] == []
    assert fleet.balancer.status("t0").startswith("DOWN")


@pytest.mark.parametrize(
    ("parameters", "status", "runs_on_the_other"),
    [({}, 200, 1), ({"sequence_id": 7, "sequence_start": True}, 503, 0)],
    ids=["plain-retried", "sequence-not-retried"],
)
def test_fleet_a_call_cut_by_a_killed_triton_is_retried_unless_it_is_a_sequence(
    fleet_factory: FleetFactory, parameters, status, runs_on_the_other
):
    # GIVEN a gateway whose channel reaches t0 through the balancer, and a second Triton, t1
    fleet = fleet_factory(tritons=1, gateways=0, models=["slow_model"])
    body = {"inputs": [{"name": "DELAY_MS", "datatype": "INT32", "shape": [1], "data": [1500]}]}
    with serve_gateway(Settings(triton_grpc_url=fleet.balancer.url)) as url, httpx.Client(timeout=30) as http:
        path = f"{url}/v2/models/slow_model/infer"
        assert (
            http.post(path, json={**body, "inputs": [{**body["inputs"][0], "data": [0]}]}).status_code == 200
        )
        other = fleet.add_triton()
        answers: list[httpx.Response] = []
        call = threading.Thread(
            target=lambda: answers.append(http.post(path, json={**body, "parameters": parameters}))
        )

        # WHEN t0 is killed while it runs the call
        call.start()
        time.sleep(0.5)
        fleet.kill("t0")
        call.join(timeout=30)

    # THEN a plain inference is run again on t1 and answered; one that carries sequence parameters is
    # not (running it twice would change the sequence's state): 503, and t1 never saw it
    assert answers[0].status_code == status, answers[0].text
    if status == 503:
        error = answers[0].json()["error"]
        assert without_request_id(error) == "Triton is unavailable; try again shortly", error
    assert settled(lambda: fleet.successes(other, "slow_model"), runs_on_the_other) == runs_on_the_other


def test_one_gateway_process_holds_more_calls_open_than_it_has_threads(fleet_factory: FleetFactory):
    # GIVEN one gateway process (uvicorn, whose executor has 40 threads) and a model whose batcher gathers
    # whatever arrives within a second, so the batches Triton runs count the calls open at once
    fleet = fleet_factory(tritons=1, gateways=1, models=["sleep_batched"])
    warm = run_load(fleet.gateway_urls, rate=5, seconds=0.4, body=lambda i: sleep_body(i, "sleep_batched"))
    assert failures(warm) == []

    # WHEN 100 requests arrive within a fifth of a second
    outcomes = run_load(
        fleet.gateway_urls, rate=500, seconds=0.2, body=lambda i: sleep_body(i, "sleep_batched")
    )

    # THEN all are answered, and Triton ran a batch of more than 40 of them: the process had more calls
    # open than a thread per call allows
    assert failures(outcomes) == []
    stats = fleet.statistics("t0", "sleep_batched")
    largest = max(int(batch["batch_size"]) for batch in stats["batch_stats"])
    assert largest > 40, stats["batch_stats"]


def test_fleet_sigterm_of_a_pooled_triton_without_drain_loses_nothing(fleet_factory: FleetFactory):
    # GIVEN steady load spread over two Tritons by two gateways whose channels stay put
    fleet = fleet_factory(tritons=2, gateways=3, models=SLEEP)
    served: dict[str, int] = {}

    def stop_t1() -> None:
        # WHEN t1 gets SIGTERM while pooled (no drain first): Triton 2.51 unloads its models at once and
        # answers "unknown model" on its open connections, then closes them
        served["t1"] = fleet.successes("t1", STEADY)
        fleet.terminate("t1")

    outcomes = run_load(fleet.gateway_urls, rate=30, seconds=7, body=steady, at=[(2.0, stop_t1)])

    # THEN t1 had served its share, and no request failed: each one t1 turned away went once more, on a
    # fresh connection, to t0
    assert served["t1"] > 0
    assert not fleet.tritons["t1"].is_running()
    assert failures(outcomes) == []
