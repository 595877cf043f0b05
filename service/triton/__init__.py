"""The gateway's one way to Triton: a pooled gRPC client whose calls are coroutines (``client``, with its
``channel``, ``inline``, ``deadline``, ``failures``, ``infer_request`` and ``fan_out`` parts) and the
conversion of Triton's protobuf answers into v2 JSON and ``ModelInfo`` (``convert``). Nothing above this
package sees gRPC."""

from service.triton.client import TritonClient, get_client
from service.triton.convert import message_to_json
from service.triton.deadline import Deadline

__all__ = ["Deadline", "TritonClient", "get_client", "message_to_json"]
