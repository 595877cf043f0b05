"""The pooled client on its own, against the real Triton: metadata cache, deadlines, the retries on a
fresh channel, and the translation of gRPC failures. Its calls are coroutines: each test runs its story in
one event loop (``asyncio.run``), as a gateway process does; ``inline_calls`` makes them as a Lambda does."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from localdev.tritonserver import TritonServer
from service.errors import ModelNotFound, TritonTimeout, TritonUnavailable
from service.protocol.tensors import OutputSpec, Tensor
from service.triton import Deadline, TritonClient
from service.triton.inline import inline_calls
from tests.settle import settled


def run(story: Callable[[], Awaitable[None]]) -> None:
    """A test's story in one event loop."""
    asyncio.run(story())  # type: ignore[arg-type]


@pytest.fixture(params=["awaited", "inline"])
def mode(request: pytest.FixtureRequest) -> str:
    """How the client's calls are made: awaited on an asyncio channel (uvicorn), or inline (a Lambda)."""
    return str(request.param)


def in_mode(mode: str) -> Callable[[], object]:
    return inline_calls if mode == "inline" else nullcontext


def test_metadata_is_fetched_once_per_ttl(triton: TritonServer):
    async def story() -> None:
        # A TTL that two busy cores cannot outlast between two calls, and a sleep past it
        client = TritonClient(triton.grpc_url, metadata_ttl=2, idle_reconnect=30)
        first = await client.model_info("densenet_onnx", "", Deadline(5))
        assert await client.model_info("densenet_onnx", "", Deadline(5)) is first
        await asyncio.sleep(2.1)
        again = await client.model_info("densenet_onnx", "", Deadline(5))
        assert again is not first
        assert again == first
        assert first.config["input"][0]["dims"] == [3, 224, 224]  # int64 as numbers, as Triton's HTTP writes
        client.close()

    run(story)


def requests_seen(triton_grpc: grpcclient.InferenceServerClient, model: str) -> int:
    """Every inference request Triton has counted for ``model``, succeeded or failed."""
    [stats] = triton_grpc.get_inference_statistics(model, "1", as_json=True)["model_stats"]
    counts = stats["inference_stats"]
    return int(counts["success"].get("count", 0)) + int(counts["fail"].get("count", 0))


def test_a_spent_deadline_never_reaches_triton(triton: TritonServer, triton_grpc, mode):
    async def story() -> None:
        # GIVEN a client and Triton's own count of text_bytes requests
        client = TritonClient(triton.grpc_url, metadata_ttl=60, idle_reconnect=30)
        text = [Tensor("TEXT", "BYTES", np.array([b"a"], dtype=np.object_))]
        upper = [OutputSpec("UPPER")]
        start = requests_seen(triton_grpc, "text_bytes")
        assert (await client.infer("text_bytes", "", text, upper, Deadline(5))).outputs  # the channel is open
        before = settled(lambda: requests_seen(triton_grpc, "text_bytes"), start + 1)
        assert before == start + 1  # Triton does count this client's requests
        # WHEN an inference is asked for with a deadline already spent
        deadline = Deadline(0.001)
        time.sleep(0.01)
        with pytest.raises(
            TritonTimeout, match=r"^the request.s deadline of 0\.0 s passed before Triton was called$"
        ):
            await client.infer("text_bytes", "", text, upper, deadline)
        # THEN Triton never counts it: after one more (live) request, the count has grown by that one only
        await client.infer("text_bytes", "", text, upper, Deadline(5))
        assert settled(lambda: requests_seen(triton_grpc, "text_bytes"), before + 1) == before + 1
        assert settled(lambda: requests_seen(triton_grpc, "text_bytes"), before + 2, timeout=1) == before + 1
        client.close()

    with in_mode(mode)():  # type: ignore[attr-defined]
        run(story)


def test_unknown_models_and_versions_are_not_found_at_once(triton: TritonServer, mode):
    async def story() -> None:
        # GIVEN a client Triton has answered on
        client = TritonClient(triton.grpc_url, metadata_ttl=60, idle_reconnect=30)
        await client.model_info("text_bytes", "", Deadline(5))
        # WHEN it asks for models Triton never served it THEN each is 404, on the first answer: no retry on a
        # fresh channel (every retry opens one)
        with pytest.raises(ModelNotFound, match=r"^model 'nope' is not served here$"):
            await client.model_info("nope", "", Deadline(5))
        with pytest.raises(ModelNotFound, match=r"^model 'densenet_onnx' version '7' is not served here$"):
            await client.model_info("densenet_onnx", "7", Deadline(5))
        assert client.channels_opened == 1
        client.close()

    with in_mode(mode)():  # type: ignore[attr-defined]
        run(story)


@pytest.mark.parametrize(
    ("parameters", "channels"),
    [({}, 2), ({"sequence_id": 7, "sequence_start": True}, 1)],
    ids=["plain-retried", "sequence-not-retried"],
)
def test_a_model_gone_after_it_was_served_is_tried_once_more_unless_it_is_a_sequence(
    triton_factory, parameters, channels
):
    # GIVEN a client that was served text_bytes (its metadata is cached), and a Triton that then unloads it,
    # as a Triton shutting down does
    server: TritonServer = triton_factory(models=["text_bytes"])
    text = [Tensor("TEXT", "BYTES", np.array([b"a"], dtype=np.object_))]

    async def story() -> None:
        client = TritonClient(server.grpc_url, metadata_ttl=60, idle_reconnect=30)
        assert (await client.infer("text_bytes", "", text, [], Deadline(5))).outputs
        with grpcclient.InferenceServerClient(server.grpc_url) as admin:
            admin.unload_model("text_bytes")
            assert settled(lambda: admin.is_model_ready("text_bytes"), False) is False
        # WHEN it runs the model again
        with pytest.raises(ModelNotFound, match=r"^model 'text_bytes' is not served here$"):
            await client.infer("text_bytes", "", text, [], Deadline(5), parameters=parameters)
        # THEN a plain request went once more, on a fresh channel; a sequence's did not (running it twice
        # would change the sequence's state)
        assert client.channels_opened == channels
        if not parameters:
            # and, once a Triton that is staying said it too, the next call is 404 at once
            with pytest.raises(ModelNotFound):
                await client.infer("text_bytes", "", text, [], Deadline(5))
            assert client.channels_opened == channels
        client.close()

    run(story)


@pytest.mark.parametrize(("idle_reconnect", "channels"), [(0.0, 3), (3600.0, 2)], ids=["idle", "busy"])
def test_a_broken_connection_is_retried_once_on_a_fresh_channel_a_down_triton_only_after_idleness(
    triton_factory, idle_reconnect, channels, mode
):
    server: TritonServer = triton_factory(models=["slow_model"])

    async def story() -> None:
        # GIVEN a client that has just talked to Triton
        client = TritonClient(server.grpc_url, metadata_ttl=60, idle_reconnect=idle_reconnect)
        assert await client.server_live(Deadline(5))
        # WHEN Triton goes away
        server.stop()
        # THEN the call, whose connection just broke, is retried once on a fresh channel, and fails
        # UNAVAILABLE without Triton's address
        with pytest.raises(TritonUnavailable) as caught:
            await client.server_live(Deadline(5))
        assert caught.value.message == "Triton is unavailable; try again shortly"
        assert client.channels_opened == 2
        # WHEN Triton stays down THEN a call on that fresh channel, which Triton never answered, gets another
        # fresh channel only after idleness: a Triton that is down costs one attempt per call, not two
        with pytest.raises(TritonUnavailable):
            await client.server_live(Deadline(5))
        assert client.channels_opened == channels
        client.close()

    with in_mode(mode)():  # type: ignore[attr-defined]
        run(story)


def test_connect_opens_the_connection_before_any_call():
    # GIVEN a listening socket where Triton would be (gRPC channels otherwise connect on their first call)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        client = TritonClient(f"127.0.0.1:{listener.getsockname()[1]}", metadata_ttl=60, idle_reconnect=30)
        # WHEN the client is asked to connect, and nothing is called
        client.connect()
        # THEN a connection arrives (accept() raises TimeoutError otherwise), on the client's one channel
        connection, _ = listener.accept()
        connection.close()
        assert client.channels_opened == 1
        client.close()


def test_a_connect_that_failed_does_not_fail_the_first_call(triton_factory):
    # GIVEN a cold start's client (a Lambda's: calls inline) that tried to connect while its Triton was down
    server: TritonServer = triton_factory(models=["slow_model"])
    server.stop()
    client = TritonClient(server.grpc_url, metadata_ttl=60, idle_reconnect=30)
    client.connect()
    time.sleep(0.5)  # nothing listens: the attempt fails at once, and the channel backs off
    # WHEN Triton is back and the first call comes
    server.start()
    # THEN it is answered (on a fresh channel when the failed one is still backing off)
    with inline_calls():
        assert asyncio.run(client.server_live(Deadline(10)))
    assert client.channels_opened in (1, 2)
    client.close()


def test_the_metadata_cache_keeps_only_its_most_recent_entries(triton: TritonServer):
    async def story() -> None:
        client = TritonClient(triton.grpc_url, metadata_ttl=60, idle_reconnect=30, metadata_entries=2)
        densenet = await client.model_info("densenet_onnx", "", Deadline(5))
        first_slow = await client.model_info("slow_model", "", Deadline(5))
        # still cached, and now the newest
        assert await client.model_info("densenet_onnx", "", Deadline(5)) is densenet
        await client.model_info("text_bytes", "", Deadline(5))  # evicts slow_model, the least recently used
        assert await client.model_info("densenet_onnx", "", Deadline(5)) is densenet
        slow = await client.model_info("slow_model", "", Deadline(5))  # fetched again, evicting text_bytes
        assert slow is not first_slow and slow == first_slow
        assert await client.model_info("slow_model", "", Deadline(5)) is slow
        assert await client.model_info("densenet_onnx", "", Deadline(5)) is densenet
        client.close()

    run(story)


def test_a_channel_past_its_max_age_is_replaced_and_calls_in_flight_finish_on_the_old(triton_factory, mode):
    # GIVEN a client whose channel ages out after 0.3 s, and a 1.5 s call running on it
    server: TritonServer = triton_factory(models=["slow_model"])
    delay = [Tensor("DELAY_MS", "INT32", np.array([1500], np.int32))]
    quick = [Tensor("DELAY_MS", "INT32", np.array([0], np.int32))]

    async def story() -> None:
        client = TritonClient(server.grpc_url, metadata_ttl=60, idle_reconnect=30, channel_max_age=0.3)
        await client.model_info("slow_model", "", Deadline(5))
        if mode == "inline":
            # A Lambda makes one call at a time: the slow one runs in a thread, in this context
            slow = asyncio.ensure_future(
                asyncio.to_thread(asyncio.run, client.infer("slow_model", "", delay, [], Deadline(10)))
            )
        else:
            slow = asyncio.ensure_future(client.infer("slow_model", "", delay, [], Deadline(10)))
        await asyncio.sleep(0.6)
        # WHEN a new call comes after the max age
        assert (await client.infer("slow_model", "", quick, [], Deadline(5))).outputs[0].array.tolist() == [0]
        # THEN it went to a new channel, and the call in flight finished on the old one, not cancelled
        assert client.channels_opened == 2
        assert (await asyncio.wait_for(slow, 10)).outputs[0].array.tolist() == [1500]
        client.close()

    with in_mode(mode)():  # type: ignore[attr-defined]
        run(story)
