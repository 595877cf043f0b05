"""A stand-in for the aws, sam and docker commands, for running the deploy scripts without AWS or Docker.

Each call is appended to $FAKE_CLI_LOG (one JSON list of arguments per line, the tool's name first)
and answered from the world in $FAKE_CLI_WORLD, a JSON object of answers keyed "<AWS service or tool>
<operation>", optionally followed by the call's first identifying argument (--stack-name, --quota-code...),
that key first:
    {"json": {...}}   the API's JSON answer; --query (JMESPath) and --output text|json apply as in the AWS CLI
    {"stdout": "..."} printed as it is;  {"exit": 254, "stderr": "..."} a failure
    "sequence": [...] answers given in turn (the last one repeats);  "then": {key: answer or null} updates the
    world after answering (e.g. a deleted stack stops existing).
A call with no answer fails loudly, so a script cannot call something the test did not expect unnoticed.
Usage: fake_cli.py TOOL ARG...
"""

import json
import os
import sys
from typing import Any

import jmespath

IDENTIFYING = ("--stack-name", "--quota-code", "--function-name", "--role-name", "--name", "--image-ids",
               "--instance-types", "--repository-name")  # fmt: skip


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def keys(tool: str, argv: list[str]) -> list[str]:
    words = [a for a in argv if not a.startswith("-")] + ["", ""]
    base = f"{words[0]} {words[1]}" if tool == "aws" else f"{tool} {words[0]}"
    for name in IDENTIFYING:
        value = option(argv, name)
        if value is not None:
            return [f"{base} {value}", base]
    return [base]


def text(value: Any) -> str:
    """The AWS CLI's text output: scalars as they are, lists tab-separated, lists of lists one row a line."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        if any(isinstance(item, (list, dict)) for item in value):
            return "\n".join(text(item) for item in value)
        return "\t".join(text(item) for item in value)
    if isinstance(value, dict):
        return "\t".join(text(item) for item in value.values())
    return str(value)


def main(argv: list[str]) -> int:
    tool, args = argv[0], argv[1:]
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps([tool, *args]) + "\n")
    if tool == "docker" and args[:1] == ["login"]:
        sys.stdin.read()
    world_path = os.environ["FAKE_CLI_WORLD"]
    with open(world_path) as f:
        world: dict[str, Any] = json.load(f)
    candidates = keys(tool, args)
    key = next((k for k in candidates if k in world), None)
    if key is None:
        print(f"fake {tool}: no answer for {candidates[0]!r} ({' '.join(args)})", file=sys.stderr)
        return 255
    answer = world[key]
    if "sequence" in answer:
        step = answer["sequence"][0]
        if len(answer["sequence"]) > 1:
            answer["sequence"].pop(0)
        answer = {**step, "then": answer.get("then", step.get("then"))}
    for changed, value in (answer.get("then") or {}).items():
        if value is None:
            world.pop(changed, None)
        else:
            world[changed] = value
    with open(world_path, "w") as f:
        json.dump(world, f)
    if "json" in answer:
        result = answer["json"]
        query = option(args, "--query")
        if query is not None:
            result = jmespath.search(query, result)
        print(text(result) if option(args, "--output") == "text" else json.dumps(result, indent=4))
    if "stdout" in answer:
        sys.stdout.write(answer["stdout"])
    if "stderr" in answer:
        sys.stderr.write(answer["stderr"] + "\n")
    return int(answer.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
