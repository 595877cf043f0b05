"""Triton python-backend decoupled text model: a deterministic stand-in for an LLM, one word per response.

Two input contracts, chosen by the inputs its config declares (the same code serves both local models):
- vLLM's backend: ``text_input``, ``stream``, ``sampling_parameters`` (JSON: ``max_tokens``, ``stop``...),
  ``exclude_input_in_output``, and the optional ``return_num_input_tokens``/``return_num_output_tokens``/
  ``return_finish_reason`` switches -> ``text_output`` (+ ``num_input_tokens``, ``num_output_tokens``,
  ``finish_reason`` when asked);
- TensorRT-LLM's ensemble: ``text_input``, ``max_tokens``, ``stream``, ``stop_words``, ``temperature``,
  ``top_p`` -> ``text_output``.

The words are a function of the prompt only (temperature and top_p are accepted and ignored), sent at
``token_delay_ms`` (config parameter; a request parameter ``delay_ms`` overrides it). Each request runs on
its own thread, so streams overlap; a cancelled request stops at its next word. Every response sent is
counted in ``<model dir>/responses_sent/<sha256 of the prompt>``, so a test can read how many went out.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
)
_DEFAULT_MAX_TOKENS = 16


def words_for(prompt: str, count: int) -> list[str]:
    """The first ``count`` words the model answers ``prompt`` with, each led by a space."""
    start = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    return [f" {_WORDS[(start + i) % len(_WORDS)]}" for i in range(count)]


def _scalar(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    value = tensor.as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else value.item()


def _strings(request: Any, name: str) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return []
    return [item.decode("utf-8") for item in tensor.as_numpy().reshape(-1) if item]


class TritonPythonModel:
    """Decoupled: ``execute`` starts one thread per request and returns at once."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the contract from the config's inputs and the pace from its parameters."""
        config = json.loads(args["model_config"])
        self.inputs = {tensor["name"] for tensor in config["input"]}
        self.outputs = {tensor["name"] for tensor in config["output"]}
        self.vllm = "sampling_parameters" in self.inputs
        parameters = config.get("parameters", {})
        self.delay = float(parameters.get("token_delay_ms", {}).get("string_value", "10")) / 1000.0
        self.counts = Path(args["model_repository"]) / "responses_sent"
        self.counts.mkdir(exist_ok=True)
        self.lock = threading.Lock()

    def execute(self, requests: list[Any]) -> None:
        """Generate each request's words on its own thread."""
        for request in requests:
            threading.Thread(target=self._generate, args=(request,), daemon=True).start()

    def _options(self, request: Any) -> dict[str, Any]:
        if self.vllm:
            sampling = json.loads(_scalar(request, "sampling_parameters") or "{}")
            return {
                "max_tokens": int(sampling.get("max_tokens", _DEFAULT_MAX_TOKENS)),
                "stop": [sampling["stop"]]
                if isinstance(sampling.get("stop"), str)
                else sampling.get("stop") or [],
                "exclude_input": bool(_scalar(request, "exclude_input_in_output")),
                "input_tokens": bool(_scalar(request, "return_num_input_tokens")),
                "output_tokens": bool(_scalar(request, "return_num_output_tokens")),
                "finish_reason": bool(_scalar(request, "return_finish_reason")),
            }
        max_tokens = _scalar(request, "max_tokens")
        return {
            "max_tokens": _DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens),
            "stop": _strings(request, "stop_words"),
            "exclude_input": True,
            "input_tokens": False,
            "output_tokens": False,
            "finish_reason": False,
        }

    def _generate(self, request: Any) -> None:
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            prompt = _scalar(request, "text_input") or ""
            options = self._options(request)
            stream = bool(_scalar(request, "stream"))
            delay = float(json.loads(request.parameters()).get("delay_ms", self.delay * 1000)) / 1000
        except Exception as exc:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=final)
            return
        counter = self.counts / hashlib.sha256(prompt.encode()).hexdigest()
        sent = 0
        words = words_for(prompt, max(options["max_tokens"], 0))
        text, finish = "", "length"
        for i, word in enumerate(words):
            if sender.is_cancelled():
                return
            time.sleep(delay)
            candidate = text + word
            stop = next((s for s in options["stop"] if s in candidate), None)
            if stop is not None:
                word = candidate[: candidate.index(stop)][len(text) :]
                text, finish = text + word, "stop"
            else:
                text = candidate
            last = stop is not None or i == len(words) - 1
            if stream and (word or last):
                sender.send(self._response(prompt, word, 1 if word else 0, finish if last else "", options))
                sent += 1
                self._count(counter, sent)
            if stop is not None:
                break
        if not stream:
            whole = text if options["exclude_input"] else prompt + text
            tokens = len(text.split())
            sender.send(self._response(prompt, whole, tokens, finish, options))
            sent += 1
            self._count(counter, sent)
        sender.send(flags=final)

    def _response(self, prompt: str, text: str, tokens: int, finish: str, options: dict[str, Any]) -> Any:
        tensors = [pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))]
        if options["input_tokens"] and "num_input_tokens" in self.outputs:
            count = np.array([len(prompt.split())], dtype=np.uint32)
            tensors.append(pb_utils.Tensor("num_input_tokens", count))
        if options["output_tokens"] and "num_output_tokens" in self.outputs:
            tensors.append(pb_utils.Tensor("num_output_tokens", np.array([tokens], dtype=np.uint32)))
        if options["finish_reason"] and "finish_reason" in self.outputs and finish:
            reason = np.array([finish.encode()], dtype=np.object_)
            tensors.append(pb_utils.Tensor("finish_reason", reason))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _count(self, counter: Path, sent: int) -> None:
        # Written beside and renamed, so a reader never sees the file empty.
        with self.lock:
            partial = counter.with_suffix(".partial")
            partial.write_text(str(sent))
            os.replace(partial, counter)
