"""The policy evaluator the rehearsal judges the instance role with, on AWS's documented cases."""

import pytest
from iam_policy import ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, Request, evaluate

BUCKET = "arn:aws:s3:::bucket"
LIST_UNDER_MODELS = {
    "Effect": "Allow",
    "Action": "s3:ListBucket",
    "Resource": BUCKET,
    "Condition": {"StringLike": {"s3:prefix": ["models", "models/*"]}},
}


def test_a_condition_on_a_key_the_request_lacks_is_false_and_ifexists_makes_it_true() -> None:
    head_bucket = Request("s3:ListBucket", BUCKET)
    assert evaluate([LIST_UNDER_MODELS], head_bucket) == IMPLICIT_DENY
    if_exists = {**LIST_UNDER_MODELS, "Condition": {"StringLikeIfExists": {"s3:prefix": ["models/*"]}}}
    assert evaluate([if_exists], head_bucket) == ALLOW
    assert evaluate([if_exists], Request("s3:ListBucket", BUCKET, {"s3:prefix": "other/"})) == IMPLICIT_DENY


def test_wildcards_values_and_keys() -> None:
    listing = Request("s3:listbucket", BUCKET, {"S3:Prefix": "models/densenet_onnx/1/"})
    assert evaluate([LIST_UNDER_MODELS], listing) == ALLOW
    exact = {**LIST_UNDER_MODELS, "Condition": {"StringEquals": {"s3:prefix": "models/*"}}}
    assert evaluate([exact], listing) == IMPLICIT_DENY
    single = {"Effect": "Allow", "Action": "s3:Get?bject", "Resource": f"{BUCKET}/models/*"}
    assert evaluate([single], Request("s3:GetObject", f"{BUCKET}/models/a/b")) == ALLOW
    assert evaluate([single], Request("s3:GetObject", f"{BUCKET}/modelsX/a")) == IMPLICIT_DENY
    no_prefix = {"Null": {"s3:prefix": "true"}}
    null = {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": no_prefix}
    assert evaluate([null], Request("s3:ListBucket", BUCKET)) == ALLOW
    assert evaluate([null], listing) == IMPLICIT_DENY


def test_an_explicit_deny_wins_and_unknown_operators_are_refused() -> None:
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    assert evaluate([LIST_UNDER_MODELS, deny], Request("s3:ListBucket", BUCKET, {"s3:prefix": "models"})) == (
        EXPLICIT_DENY
    )
    unknown = {**LIST_UNDER_MODELS, "Condition": {"ForAnyValue:StringLike": {"s3:prefix": "models"}}}
    with pytest.raises(NotImplementedError):
        evaluate([unknown], Request("s3:ListBucket", BUCKET, {"s3:prefix": "models"}))
