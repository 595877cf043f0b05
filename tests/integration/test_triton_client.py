"""The pooled client on its own, against the real Triton: metadata cache, deadlines, the idle retry,
and the translation of gRPC failures."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from localdev.tritonserver import TritonServer
from service.errors import ModelNotFound, TritonTimeout, TritonUnavailable
from service.protocol.tensors import OutputSpec, Tensor
from service.triton import Deadline, TritonClient
from tests.settle import settled


def test_metadata_is_fetched_once_per_ttl(triton: TritonServer):
    # A TTL that two busy cores cannot outlast between two calls, and a sleep past it
    client = TritonClient(triton.grpc_url, metadata_ttl=2, idle_reconnect=30)
    first = client.model_info("densenet_onnx", "", Deadline(5))
    assert client.model_info("densenet_onnx", "", Deadline(5)) is first
    time.sleep(2.1)
    again = client.model_info("densenet_onnx", "", Deadline(5))
    assert again is not first
    assert again == first
    assert first.config["input"][0]["dims"] == [3, 224, 224]  # int64 as numbers, as Triton's HTTP writes
    client.close()


def requests_seen(triton_grpc: grpcclient.InferenceServerClient, model: str) -> int:
    """Every inference request Triton has counted for ``model``, succeeded or failed."""
    [stats] = triton_grpc.get_inference_statistics(model, "1", as_json=True)["model_stats"]
    counts = stats["inference_stats"]
    return int(counts["success"].get("count", 0)) + int(counts["fail"].get("count", 0))


def test_a_spent_deadline_never_reaches_triton(triton: TritonServer, triton_grpc):
    # GIVEN a client and Triton's own count of text_bytes requests
    client = TritonClient(triton.grpc_url, metadata_ttl=60, idle_reconnect=30)
    text = [Tensor("TEXT", "BYTES", np.array([b"a"], dtype=np.object_))]
    upper = [OutputSpec("UPPER")]
    start = requests_seen(triton_grpc, "text_bytes")
    assert client.infer("text_bytes", "", text, upper, Deadline(5)).outputs  # the channel is open
    before = settled(lambda: requests_seen(triton_grpc, "text_bytes"), start + 1)
    assert before == start + 1  # Triton does count this client's requests
    # WHEN an inference is asked for with a deadline already spent
    deadline = Deadline(0.001)
    time.sleep(0.01)
    with pytest.raises(
        TritonTimeout, match=r"^the request.s deadline of 0\.0 s passed before Triton was called$"
    ):
        client.infer("text_bytes", "", text, upper, deadline)
    # THEN Triton never counts it: after one more (live) request, the count has grown by that one only
    client.infer("text_bytes", "", text, upper, Deadline(5))
    assert settled(lambda: requests_seen(triton_grpc, "text_bytes"), before + 1) == before + 1
    assert settled(lambda: requests_seen(triton_grpc, "text_bytes"), before + 2, timeout=1) == before + 1
    client.close()


def test_unknown_models_and_versions_are_not_found(triton: TritonServer):
    client = TritonClient(triton.grpc_url, metadata_ttl=60, idle_reconnect=30)
    with pytest.raises(ModelNotFound, match=r"^model 'nope' is not served here$"):
        client.model_info("nope", "", Deadline(5))
    with pytest.raises(ModelNotFound, match=r"^model 'densenet_onnx' version '7' is not served here$"):
        client.model_info("densenet_onnx", "7", Deadline(5))
    client.close()


@pytest.mark.parametrize(("idle_reconnect", "channels"), [(0.0, 3), (3600.0, 2)], ids=["idle", "busy"])
def test_a_broken_connection_is_retried_once_on_a_fresh_channel_a_down_triton_only_after_idleness(
    triton_factory, idle_reconnect, channels
):
    # GIVEN a client that has just talked to Triton
    server: TritonServer = triton_factory(models=["slow_model"])
    client = TritonClient(server.grpc_url, metadata_ttl=60, idle_reconnect=idle_reconnect)
    assert client.server_live(Deadline(5))
    # WHEN Triton goes away
    server.stop()
    # THEN the call, whose connection just broke, is retried once on a fresh channel, and fails UNAVAILABLE
    # without Triton's address
    with pytest.raises(TritonUnavailable) as caught:
        client.server_live(Deadline(5))
    assert caught.value.message == "Triton is unavailable; try again shortly"
    assert client.channels_opened == 2
    # WHEN Triton stays down THEN a call on that fresh channel, which Triton never answered, gets another
    # fresh channel only after idleness: a Triton that is down costs one attempt per call, not two
    with pytest.raises(TritonUnavailable):
        client.server_live(Deadline(5))
    assert client.channels_opened == channels
    client.close()


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
    # GIVEN a cold start's client that tried to connect while its Triton was down
    server: TritonServer = triton_factory(models=["slow_model"])
    server.stop()
    client = TritonClient(server.grpc_url, metadata_ttl=60, idle_reconnect=30)
    client.connect()
    time.sleep(0.5)  # nothing listens: the attempt fails at once, and the channel backs off
    # WHEN Triton is back and the first call comes
    server.start()
    # THEN it is answered (on a fresh channel when the failed one is still backing off)
    assert client.server_live(Deadline(10))
    assert client.channels_opened in (1, 2)
    client.close()


def test_the_metadata_cache_keeps_only_its_most_recent_entries(triton: TritonServer):
    client = TritonClient(triton.grpc_url, metadata_ttl=60, idle_reconnect=30, metadata_entries=2)
    densenet = client.model_info("densenet_onnx", "", Deadline(5))
    first_slow = client.model_info("slow_model", "", Deadline(5))
    assert client.model_info("densenet_onnx", "", Deadline(5)) is densenet  # still cached, and now the newest
    client.model_info("text_bytes", "", Deadline(5))  # evicts slow_model, the least recently used
    assert client.model_info("densenet_onnx", "", Deadline(5)) is densenet
    slow = client.model_info("slow_model", "", Deadline(5))  # fetched again, evicting text_bytes
    assert slow is not first_slow and slow == first_slow
    assert client.model_info("slow_model", "", Deadline(5)) is slow
    assert client.model_info("densenet_onnx", "", Deadline(5)) is densenet


def test_a_channel_past_its_max_age_is_replaced_and_calls_in_flight_finish_on_the_old(triton_factory):
    # GIVEN a client whose channel ages out after 0.3 s, and a 1.5 s call running on it
    server: TritonServer = triton_factory(models=["slow_model"])
    client = TritonClient(server.grpc_url, metadata_ttl=60, idle_reconnect=30, channel_max_age=0.3)
    delay = [Tensor("DELAY_MS", "INT32", np.array([1500], np.int32))]
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.infer, "slow_model", "", delay, [], Deadline(10))
        time.sleep(0.6)
        # WHEN a new call comes after the max age
        quick = [Tensor("DELAY_MS", "INT32", np.array([0], np.int32))]
        assert client.infer("slow_model", "", quick, [], Deadline(5)).outputs[0].array.tolist() == [0]
        # THEN it went to a new channel, and the call in flight finished on the old one, not cancelled
        assert client.channels_opened == 2
        assert slow.result(timeout=10).outputs[0].array.tolist() == [1500]
    client.close()
