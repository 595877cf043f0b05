"""What CloudFormation would create from a translated template for one set of parameter values.

The translated template still carries CloudFormation's own conditions (`Conditions`, a resource's `Condition`,
`Fn::If`, `AWS::NoValue`); CloudFormation evaluates them at deploy time. This module does the same for the
condition functions the templates use, so tests can check each parameter set rather than only the defaults.
"""

from typing import Any

_DROP = object()


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Every parameter's value: its default, or the override; comma-delimited lists become lists."""
    values: dict[str, Any] = {}
    for name, parameter in template.get("Parameters", {}).items():
        value = str(overrides.get(name, parameter.get("Default", "")))
        values[name] = value.split(",") if parameter["Type"] == "CommaDelimitedList" else value
    unknown = set(overrides) - set(values)
    assert not unknown, f"no such parameters: {sorted(unknown)}"
    return values


def resolve(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """The template with conditions evaluated: resources whose condition is false dropped, `Fn::If`
    replaced by the chosen branch, `AWS::NoValue` removed. Other intrinsics are left as they are."""
    params = parameter_values(template, overrides)
    definitions = template.get("Conditions", {})
    evaluated: dict[str, bool] = {}

    def condition(name: str) -> bool:
        if name not in evaluated:
            evaluated[name] = bool(evaluate(definitions[name]))
        return evaluated[name]

    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((function, args),) = node.items()
            if function == "Ref":
                return params[args]
            if function == "Condition":
                return condition(args)
            if function == "Fn::Equals":
                left, right = (evaluate(arg) for arg in args)
                return str(left) == str(right)
            if function == "Fn::Not":
                return not evaluate(args[0])
            if function == "Fn::And":
                return all(evaluate(arg) for arg in args)
            if function == "Fn::Or":
                return any(evaluate(arg) for arg in args)
            if function == "Fn::Join":
                separator, items = args
                items = evaluate(items) if isinstance(items, dict) else [evaluate(i) for i in items]
                return separator.join(str(i) for i in items)
            raise AssertionError(f"condition function {function} is not handled here")
        return node

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if node == {"Ref": "AWS::NoValue"}:
                return _DROP
            if len(node) == 1 and "Fn::If" in node:
                name, when_true, when_false = node["Fn::If"]
                return walk(when_true if condition(name) else when_false)
            out = {}
            for key, value in node.items():
                walked = walk(value)
                if walked is not _DROP:
                    out[key] = walked
            return out
        if isinstance(node, list):
            return [w for w in (walk(item) for item in node) if w is not _DROP]
        return node

    resources = {
        name: walk(resource)
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or condition(resource["Condition"])
    }
    outputs = {
        name: walk(output)
        for name, output in template.get("Outputs", {}).items()
        if "Condition" not in output or condition(output["Condition"])
    }
    return {**template, "Resources": resources, "Outputs": outputs, "ParameterValues": params}
