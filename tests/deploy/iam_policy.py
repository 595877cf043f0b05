"""A small IAM policy evaluator for identity policies: is one request allowed?

Covers what the deploy templates' policies use, and fails loudly on anything else, so a policy that grows a
new construct is never judged by a guess:

- Effect Allow/Deny: an explicit Deny wins, then any Allow, else the implicit deny.
- Action / NotAction, Resource / NotResource with the ``*`` and ``?`` wildcards (actions case-insensitively).
- Conditions: StringEquals, StringLike, ArnEquals, ArnLike, Null, each with the ``IfExists`` suffix. Several
  operators, and several keys under one, must all hold; several values for one key are ORed.
- A key absent from the request: "If the key that you specify in a policy condition is not present in the
  request context, the values do not match and the condition is false"; with ``...IfExists`` the condition
  is true; ``Null: true`` holds exactly when it is absent.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html

Libraries on PyPI either lint policies (parliament, policy_sentry) or simulate against a live account; none
evaluates a condition block offline with these semantics, hence this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOW = "Allow"
EXPLICIT_DENY = "ExplicitDeny"
IMPLICIT_DENY = "ImplicitDeny"


@dataclass(frozen=True)
class Request:
    """One authorization request: an IAM action on a resource ARN, with its condition keys."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    # IAM's wildcards: * any run of characters (slashes included), ? exactly one; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _arn_like(pattern: str, value: str) -> bool:
    # ArnLike compares the six colon-separated fields one by one, each with wildcards.
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_wildcard(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


_MATCHERS = {
    "StringEquals": lambda policy, request: policy == request,
    "StringLike": _wildcard,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
}


def _condition_holds(operator: str, key: str, values: list[str], context: Mapping[str, str]) -> bool:
    # Condition key names are case-insensitive; their values are compared as the operator says.
    context = {name.lower(): value for name, value in context.items()}
    key = key.lower()
    present = key in context
    if operator == "Null":
        (wanted,) = values
        return (not present) == (str(wanted).lower() == "true")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if ":" in base or base not in _MATCHERS:
        raise NotImplementedError(f"condition operator {operator} is not evaluated here")
    if not present:
        return if_exists
    return any(_MATCHERS[base](str(value), context[key]) for value in values)


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    known = {"Sid", "Effect", "Condition", "Action", "NotAction", "Resource", "NotResource"}
    unknown = set(statement) - known
    if unknown:
        raise NotImplementedError(f"statement elements {sorted(unknown)} are not evaluated here")
    if "Action" in statement:
        if not any(_wildcard(a, request.action, ignore_case=True) for a in _listed(statement["Action"])):
            return False
    elif any(_wildcard(a, request.action, ignore_case=True) for a in _listed(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(_wildcard(r, request.resource) for r in _listed(statement["Resource"])):
            return False
    elif any(_wildcard(r, request.resource) for r in _listed(statement["NotResource"])):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        for key, values in keys.items():
            if not _condition_holds(operator, key, [str(v) for v in _listed(values)], request.context):
                return False
    return True


def evaluate(statements: list[Mapping[str, Any]], request: Request) -> str:
    """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for ``request`` under these identity-policy statements."""
    effects = {s["Effect"] for s in statements if _statement_applies(s, request)}
    if "Deny" in effects:
        return EXPLICIT_DENY
    return ALLOW if "Allow" in effects else IMPLICIT_DENY
