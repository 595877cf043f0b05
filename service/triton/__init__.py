"""The gateway's one way to Triton: a pooled gRPC client (``client``) and the conversion of Triton's
protobuf answers into v2 JSON and ``ModelInfo`` (``convert``). Nothing above this package sees gRPC."""

from service.triton.client import Deadline, TritonClient, get_client
from service.triton.convert import message_to_json

__all__ = ["Deadline", "TritonClient", "get_client", "message_to_json"]
