"""Generation through the real Mangum handler (buffered: a generate answer is one JSON body): its answer,
and the API key id API Gateway names in the event, in the access record and the EMF line, never as a
metric dimension."""

from __future__ import annotations

import json

from tests.lambda_events import LambdaContext, body_of, load_event
from tests.telemetry import access_records, emf_documents

KEY_ID = "a1b2c3d4e5"


def generate_event(path: str, body: dict) -> dict:
    event = load_event("v2_infer", json.dumps(body))
    event["path"], event["requestContext"]["path"] = path, f"/api{path}"
    event["pathParameters"] = {"proxy": path.removeprefix("/v2/")}
    event["requestContext"]["identity"]["apiKeyId"] = KEY_ID
    return event


def test_generate_names_the_api_key_id_in_the_record_not_the_dimensions(lambda_handler, capsys):
    body = {"text_input": "lambda", "sampling_parameters": json.dumps({"max_tokens": 3})}
    capsys.readouterr()
    response = lambda_handler(generate_event("/v2/models/text_gen/generate", body), LambdaContext())
    out = capsys.readouterr().out
    assert response["statusCode"] == 200, response
    assert body_of(response)["text_output"].startswith("lambda ")
    [doc], [record] = emf_documents(out), access_records(out)
    assert record["api_key_id"] == KEY_ID and doc["api_key_id"] == KEY_ID
    assert record["tokens_out"] == 1 and "ttft_ms" in record
    dimensions = {
        d for directive in doc["_aws"]["CloudWatchMetrics"] for s in directive["Dimensions"] for d in s
    }
    assert "api_key_id" not in dimensions


def test_openai_errors_pass_through_the_handler(lambda_handler):
    event = generate_event("/v1/completions", {"model": "text_gen", "prompt": "x", "n": 2})
    event["resource"] = "/v1/{proxy+}"
    response = lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 400
    assert body_of(response)["error"]["param"] == "n"
