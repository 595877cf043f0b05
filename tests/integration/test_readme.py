"""The README and docs/api.md tell the truth: their error lines are what the gateway answers, and their curl
and Python examples run as written (from a temporary directory holding ``examples/``) against a real gateway
and a real Triton.

The pages are read at collection, so each error line is a test of its own: a line added to them without a
request here fails, and so does a request whose line is gone, or a line the code no longer prints."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway
from tests.image_reference import bomb_png

REPO = Path(__file__).parents[2]
# The README's examples, then the rest of the calling guide: one text, in reading order (earlier commands
# write files that later ones read).
README = (REPO / "README.md").read_text()
PAGES = README + "\n" + (REPO / "docs" / "api.md").read_text()
EXAMPLES = REPO / "examples"
README_URL = "http://127.0.0.1:8080"


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the text's ```language blocks, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


# -- error lines ------------------------------------------------------------------------------------------

ERROR_LINE = re.compile(r'^(?P<status>\d{3}) (?P<body>\{"error": ".*?"\})(?:\s+# (?P<comment>.*))?$')


@dataclass(frozen=True)
class ErrorLine:
    status: int
    body: dict[str, str]
    comment: str

    @property
    def message(self) -> str:
        return self.body["error"]


def readme_error_lines() -> list[ErrorLine]:
    """Every ``<status> {"error": ...}  # comment`` line of the pages' text blocks."""
    lines = []
    for block in fenced_blocks(PAGES, "text"):
        for line in block.splitlines():
            if match := ERROR_LINE.match(line):
                body = json.loads(match["body"])
                lines.append(ErrorLine(int(match["status"]), body, match["comment"] or ""))
    return lines


@dataclass
class Gateways:
    """What the requests below are sent to: the session's gateway, and one with its own Triton to fault."""

    client: httpx.Client
    faulty: FaultyTriton


@dataclass(frozen=True)
class Ask:
    """A request that produces one README error line; ``body`` is the JSON it posts, if it posts JSON."""

    send: Callable[[Gateways], httpx.Response]
    body: dict[str, Any] | None = None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_json(body: dict[str, Any], **kwargs: Any) -> Ask:
    return Ask(lambda gw: gw.client.post("/infer", json=body, **kwargs), body)


def tensor(name: str, shape: list[int], raw: bytes) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": shape, "b64": b64(raw)}


CAT = (EXAMPLES / "cat.jpg").read_bytes()

# README error message -> the request that produces it (what a user would send to see that line).
REQUESTS: dict[str, Ask] = {
    "inputs[0].shape: input 'data_0' takes [3, 224, 224] (-1 is free), got [1, 3, 224, 224]": post_json(
        {"inputs": [tensor("data_0", [1, 3, 224, 224], bytes(4 * 3 * 224 * 224))]}
    ),
    "inputs[0].b64: shape [2, 3, 64, 64] of FP32 needs 98304 bytes (24576 x 4), got 49152": post_json(
        {"model": "classifier_batched", "inputs": [tensor("INPUT", [2, 3, 64, 64], bytes(49152))]}
    ),
    "inputs: Field required; name: Extra inputs are not permitted": post_json({"name": "Test inference"}),
    "model 'resnet50' is not served here": post_json(
        {"model": "resnet50", "inputs": [tensor("data_0", [3, 224, 224], bytes(602112))]}
    ),
    "Triton is unavailable; try again shortly (request id ...)": Ask(
        lambda gw: gw.faulty.post_while_stopped()
    ),
    "Triton did not answer within the 10.0 s deadline (request id ...)": Ask(
        lambda gw: gw.faulty.post_while_hung()
    ),
    "images[0]: not valid base64 (Non-base64 digit found)": post_json({"images": ["not base64!"]}),
    "image: not a JPEG, PNG or WebP image": post_json({"image": b64(b"GIF89a, or anything else")}),
    (
        "image: the JPEG data is truncated or corrupt (image file is truncated (44 bytes not processed))"
    ): post_json({"image": b64(CAT[:3000])}),
    "image: 8000x6000 is 48000000 pixels, over the limit of 40000000": post_json(
        {"image": b64(bomb_png(8000, 6000))}
    ),
    "image: the image declares more than 40000000 pixels": post_json({"image": b64(bomb_png(20000, 20000))}),
    "images: 17 images; at most 16 are taken per request": post_json({"images": [b64(CAT)] * 17}),
}


class FaultyTriton:
    """A gateway with default settings in front of a Triton of its own, to stop or freeze (SIGSTOP)."""

    def __init__(self, server: TritonServer, url: str) -> None:
        self.server = server
        self.url = url

    def _post(self) -> httpx.Response:
        body = {"inputs": [tensor("data_0", [3, 224, 224], bytes(602112))]}
        with httpx.Client(base_url=self.url, timeout=60) as http:
            return http.post("/infer", json=body)

    def post_while_stopped(self) -> httpx.Response:
        self.server.stop()
        try:
            return self._post()
        finally:
            self.server.restart()

    def post_while_hung(self) -> httpx.Response:
        pid = self.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            return self._post()
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def faulty(model_repository: Path, triton_log_dir: Path) -> Iterator[FaultyTriton]:
    # The settings' own defaults (not the environment's), since the README quotes the default deadline.
    timeout = Settings.model_fields["triton_timeout_seconds"].default
    with TritonServer(
        model_repository, models=["densenet_onnx"], log_dir=triton_log_dir, log_name="readme-faults"
    ) as server:
        settings = Settings(triton_grpc_url=server.grpc_url, triton_timeout_seconds=timeout)
        with serve_gateway(settings) as url:
            yield FaultyTriton(server, url)


ERROR_LINES = readme_error_lines()


def test_the_readme_has_error_lines_and_each_has_a_request():
    assert len(ERROR_LINES) >= 10, "the error lines (docs/api.md) were not found: has their format changed?"
    # An error example written another way would escape the checks below: every one has the one form.
    for block in fenced_blocks(PAGES, "text"):
        for line in block.splitlines():
            if '"error"' in line:
                assert ERROR_LINE.match(line), f'not "<status> {{"error": ...}}  # comment": {line!r}'
    shown = [line.message for line in ERROR_LINES]
    assert sorted(set(shown)) == sorted(shown), "an error line is shown twice"
    assert set(shown) == set(REQUESTS), "the pages' error lines and the requests here have drifted apart"


@pytest.mark.parametrize("line", ERROR_LINES, ids=[line.message[:40] for line in ERROR_LINES])
def test_a_readme_error_line_is_what_the_gateway_answers(client: httpx.Client, faulty, line: ErrorLine):
    ask = REQUESTS.get(line.message)
    assert ask is not None, f"no request here produces the line {line.message!r}: add one"
    # A body the README shows in the line's comment is the one sent.
    if shown := re.search(r"\{.*\}", line.comment):
        assert json.loads(shown.group()) == ask.body
    response = ask.send(Gateways(client, faulty))
    assert response.status_code == line.status, response.text
    assert set(response.json()) == {"error"}
    # Word for word; "..." in the README stands for a part that differs per request (an id, say).
    pattern = ".+?".join(re.escape(part) for part in line.message.split("..."))
    assert re.fullmatch(pattern, response.json()["error"]), (line.message, response.json()["error"])
    # "with Header: value" in the comment is a header of the answer.
    for header, value in re.findall(r"with ([A-Za-z-]+): (\S+)", line.comment):
        assert response.headers.get(header) == value


# -- curl and Python examples ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    text: str
    expected: str | None  # the ``# {...}`` line after it: what it prints, "..." for elided parts


def shell_commands(block: str) -> list[Command]:
    """The commands of a bash block (continued over lines by ``\\`` or an open quote), each with the
    output shown in the comment line under it, if any; other comment lines are prose."""
    commands: list[Command] = []
    pending = ""
    for line in block.splitlines():
        if not pending and line.startswith("#"):
            shown = line[2:]
            # JSON, or the first event of a stream (the rest shown as "...").
            if (
                commands
                and commands[-1].expected is None
                and (shown[:1] in "{[" or shown.startswith("data:"))
            ):
                commands[-1] = Command(commands[-1].text, shown)
            continue
        if not pending and not line.strip():
            continue
        pending += line + "\n"
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if pending.rstrip().endswith("\\"):
            continue
        commands.append(Command(pending.strip(), None))
        pending = ""
    assert not pending, f"unfinished command in the README: {pending!r}"
    return commands


def output_pattern(expected: str) -> re.Pattern[str]:
    """The README's shown output as a pattern: "..." stands for anything, a decimal for any number
    (scores are rounded there); everything else, integers, labels and keys, must be as shown."""
    parts = []
    for piece in re.split(r"(\.\.\.|-?\d+\.\d+)", expected):
        if piece == "...":
            parts.append(".*?")
        elif re.fullmatch(r"-?\d+\.\d+", piece):
            parts.append(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.S)


def local_blocks(language: str, text: str = PAGES) -> list[str]:
    """The text's blocks that call the local gateway."""
    return [block for block in fenced_blocks(text, language) if README_URL.removeprefix("http://") in block]


BASH_COMMANDS = [
    command
    for block in local_blocks("bash")
    for command in shell_commands(block)
    if not command.text.startswith("./")  # ./dev.sh run|test: the gateway and the suite themselves
]
# Fail on an HTTP error status, as a reader would notice one.
CURL_FAILS_ON_HTTP_ERRORS = 'curl() { command curl --fail-with-body --show-error "$@"; }\n'


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory like a fresh clone's root for the examples: ``examples/`` and the files they write."""
    path = tmp_path_factory.mktemp("readme")
    (path / "examples").symlink_to(EXAMPLES)
    return path


def run_shell(command: str, gateway_url: str, cwd: Path) -> str:
    script = CURL_FAILS_ON_HTTP_ERRORS + "set -e\n" + command.replace(README_URL, gateway_url)
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    return done.stdout


def test_the_readme_has_local_examples():
    # The README's own examples are among those run below: a tensor, a photo, and Triton's own client.
    readme_commands = [c.text for block in local_blocks("bash", README) for c in shell_commands(block)]
    assert any("tensor.json" in text and "curl" in text for text in readme_commands)
    assert any("examples/cat.jpg" in text for text in readme_commands)
    assert any("tritonclient" in block for block in local_blocks("python", README))
    texts = [command.text for command in BASH_COMMANDS]
    assert sum("curl" in text for text in texts) >= 4
    assert any("examples/cat.jpg" in text for text in texts)
    assert any("examples/dog.png" in text for text in texts)
    assert len(local_blocks("python")) >= 2


@pytest.mark.parametrize(
    "index", range(len(BASH_COMMANDS)), ids=[f"{i}:{c.text[:40]}" for i, c in enumerate(BASH_COMMANDS)]
)
def test_a_readme_shell_command_runs_and_prints_what_it_shows(gateway_url: str, workdir: Path, index):
    # Earlier commands write files later ones read (tensor.json, image.json): run those first, once.
    for earlier in BASH_COMMANDS[:index]:
        if ">" in earlier.text and "curl" not in earlier.text:
            run_shell(earlier.text, gateway_url, workdir)
    command = BASH_COMMANDS[index]
    printed = run_shell(command.text, gateway_url, workdir)
    if command.expected is None:
        assert printed.startswith(("{", "[")) or not printed, printed[:300]
        if printed:
            assert "error" not in json.loads(printed), printed[:300]
        return
    # A command cut short for the terminal (| head -c N) shows its whole answer: compare that.
    whole = re.sub(r"\s*\|\s*head -c \d+$", "", command.text)
    if whole != command.text:
        full = run_shell(whole, gateway_url, workdir)
        assert full.startswith(printed)
        printed = full
    assert output_pattern(command.expected).fullmatch(printed), f"{command.text}\nprinted: {printed[:400]}"


@pytest.mark.parametrize("index", range(len(local_blocks("python"))))
def test_a_readme_python_example_runs(gateway_url: str, workdir: Path, index):
    source = local_blocks("python")[index]
    host = gateway_url.removeprefix("http://")
    source = source.replace(README_URL, gateway_url).replace(README_URL.removeprefix("http://"), host)
    done = subprocess.run(
        [sys.executable, "-c", source], cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
