"""``POST /infer``: the caller's tensors, checked against the model, run on Triton."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.protocol.schemas import InferRequest, InferResponse
from service.protocol.tensors import OutputSpec, check_inputs, check_outputs, decode_input, encode_result
from service.routes.common import (
    ERROR_RESPONSES,
    ApiKey,
    DeadlineDep,
    SettingsDep,
    TritonDep,
    json_response,
    lookup_model,
    parse_json,
    raw_json_body,
    read_body,
)
from service.settings import Settings
from service.triton import Deadline, TritonClient

router = APIRouter(tags=["inference"])


@router.post(
    "/infer",
    summary="Run a model on JSON or base64 tensors",
    response_model=InferResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=raw_json_body(InferRequest),
)
async def infer(
    request: Request, settings: SettingsDep, triton: TritonDep, deadline: DeadlineDep, _key: ApiKey
) -> Response:
    """Inputs as JSON elements (`data`, flat or nested) or base64 raw bytes (`b64`); omitted `outputs`
    mean all of the model's outputs."""
    body = await read_body(request, settings)
    # Decoding a 3 MB body and the gRPC call both block: keep them off the event loop.
    return await run_in_threadpool(_infer_tensors, body, settings, triton, deadline)


def _infer_tensors(body: bytes, settings: Settings, triton: TritonClient, deadline: Deadline) -> Response:
    request = parse_json(InferRequest, body)
    model = request.model or settings.default_model
    version = request.version or ""
    info = lookup_model(triton, settings, model, version, deadline)
    # Names, datatypes and shapes first: a mismatch is the clearer message than the byte count it causes.
    check_inputs(request.inputs, info)
    tensors = [decode_input(tensor, f"inputs[{i}]") for i, tensor in enumerate(request.inputs)]
    if request.outputs:
        names = [output.name for output in request.outputs]
        check_outputs(names, info)
    else:
        names = [output.name for output in info.metadata.outputs]
    result = triton.infer(
        model, version, tensors, [OutputSpec(name) for name in names], deadline, request.id or ""
    )
    b64 = frozenset(output.name for output in request.outputs or () if output.b64)
    return json_response(encode_result(result, b64))
